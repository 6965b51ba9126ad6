import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { errorResponses } from "../../contracts/index.js";
import { unverifiedOf } from "../../contracts/model/rule-confidence.js";
import { RuleList, type RuleListItem, RuleListQuery } from "../../contracts/model/rule-list.js";
import { formatDuration } from "../../contracts/model/rule-time.js";
import type { Condition, PeriodValue, Rule, Value } from "../../contracts/model/rules.js";
import type { LoadedRule } from "../load.js";

/*
 * GET /api/v1/rules: the rules the running process evaluates (as loaded at start: the default
 * pack and the configured directories, file overrides applied), read-only, for any signed-in role.
 * docs/api.md; the console's rules page (docs/console.md).
 */

export interface RuleListApiOptions {
  /** The rules in force and the configured region. */
  readonly rules: () => { readonly region: string; readonly rules: readonly LoadedRule[] };
  /** An onRequest hook that refuses (throws) a caller without a valid token or session. */
  readonly authenticate: (request: FastifyRequest) => Promise<void>;
}

const security = [{ bearer: [] }, { session: [] }];

function valueText(v: Value): string {
  if (typeof v === "number") return String(v);
  return v.plus === 0 ? v.from : `${v.from} ${v.plus > 0 ? "+" : "−"} ${Math.abs(v.plus)}`;
}

function periodValueText(v: PeriodValue): string {
  if (typeof v === "object" && "byPeriod" in v) {
    return Object.entries(v.byPeriod)
      .map(([period, value]) => `${period}: ${valueText(value)}`)
      .join(" | ");
  }
  return valueText(v);
}

const holdText = (ms: number) => (ms > 0 ? ` for ${formatDuration(ms)}` : "");

/** The condition in one line. */
export function conditionSummary(c: Condition): string {
  switch (c.type) {
    case "threshold":
    case "k_of_n": {
      const window =
        c.window === undefined
          ? ""
          : ` over ${formatDuration(c.window)}${c.align === "clock" ? " (clock)" : ""}`;
      const votes = c.type === "k_of_n" ? `${c.k} of n devices: ` : "";
      const extra =
        c.type === "threshold" && c.nOfM !== undefined
          ? `, ${c.nOfM.n} of the last ${c.nOfM.m} intervals`
          : c.type === "threshold" && c.exceedances !== undefined
            ? `, more than ${c.exceedances.allowedPerDay} intervals a day`
            : "";
      const clear = c.clear === undefined ? "" : `; clears at ${periodValueText(c.clear)}`;
      return `${votes}${c.aggregate}(${c.quantity})${window} ${c.op} ${periodValueText(c.raise)}${extra}${holdText(c.for)}${clear}`;
    }
    case "rate_of_rise":
      return `rise of ${c.quantity} within ${formatDuration(c.window)} ≥ ${valueText(c.raise)}${holdText(c.for)}`;
    case "state":
      return `${c.match === "all" ? "all of" : "any of"} ${c.terms.map((t) => `${t.quantity} is ${String(t.is)}`).join(", ")}${holdText(c.for)}`;
    case "deadman":
      return `no reading for ${c.factor} × the device's interval`;
    case "quality": {
      const parts = [
        ...(c.flags.length > 0 ? [`flag ${c.flags.join(" or ")}`] : []),
        ...(c.calibrationExpired ? ["calibration expired"] : []),
      ];
      return `${parts.join(" or ")}${holdText(c.for)}`;
    }
  }
}

/** Period names the condition's values or the rule's activeDuring use. */
function periodsNamed(rule: Rule): Set<string> {
  const names = new Set<string>(rule.schedule.activeDuring ?? []);
  const add = (v: PeriodValue | undefined) => {
    if (v !== undefined && typeof v === "object" && "byPeriod" in v)
      for (const n of Object.keys(v.byPeriod)) names.add(n);
  };
  const c = rule.condition;
  if (c.type === "threshold" || c.type === "k_of_n") {
    add(c.raise);
    add(c.clear);
  }
  return names;
}

export function ruleListItem(loaded: LoadedRule): RuleListItem {
  const rule = loaded.rule;
  const named = periodsNamed(rule);
  const limits = rule.limits;
  return {
    id: rule.id,
    version: rule.version,
    title: rule.title,
    description: rule.description ?? null,
    file: loaded.file,
    clause: { standard: rule.clause.standard, section: rule.clause.section },
    taskKind: rule.taskKind,
    subject: rule.subject,
    kinds: [...rule.scope.kinds],
    siteTypes: rule.scope.siteTypes === undefined ? null : [...rule.scope.siteTypes],
    regions: rule.scope.regions === undefined ? null : [...rule.scope.regions],
    enabled: rule.enabled,
    confidence: rule.confidence,
    note: rule.note ?? null,
    unverified: unverifiedOf(rule).map((u) => ({ path: u.path, note: u.note })),
    condition: { type: rule.condition.type, summary: conditionSummary(rule.condition) },
    limits: [
      ...(limits?.default === undefined
        ? []
        : [{ when: {}, values: { ...limits.default }, clause: null }]),
      ...(limits?.rows ?? []).map((row) => ({
        when: Object.fromEntries(
          Object.entries(row.when).filter((e): e is [string, string] => e[1] !== undefined),
        ),
        values: { ...row.values },
        clause: row.clause === undefined ? null : { ...row.clause },
      })),
    ],
    periods: Object.entries(rule.schedule.periods)
      .filter(([name]) => named.has(name))
      .map(([name, p]) => ({
        name,
        from: p.from,
        to: p.to,
        days: p.days === undefined ? null : [...p.days],
      })),
    timeZone: rule.schedule.timeZone,
    activeDuring: rule.schedule.activeDuring === undefined ? null : [...rule.schedule.activeDuring],
    levels: rule.levels === undefined ? null : rule.levels.map((l) => l.level),
  };
}

export const ruleListApi: FastifyPluginAsyncZod<RuleListApiOptions> = (app, options) => {
  app.addHook("onRequest", options.authenticate);
  app.get(
    "/api/v1/rules",
    {
      schema: {
        tags: ["rules"],
        summary:
          "The rules the running process evaluates: clause, confidence and unverified parts, condition, limits per context and period",
        security,
        querystring: RuleListQuery,
        response: {
          200: RuleList,
          ...errorResponses({
            bad_request: "a query parameter was given (the route takes none)",
            unauthorized: "no valid bearer token or session",
          }),
        },
      },
    },
    (_request, reply) => {
      const { region, rules } = options.rules();
      void reply.header("cache-control", "private, no-store");
      return { region, rules: rules.map(ruleListItem) };
    },
  );
  return Promise.resolve();
};
