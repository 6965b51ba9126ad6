import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Site } from "../contracts/model/registry.js";
import { unverifiedOf } from "../contracts/model/rule-confidence.js";
import {
  type Confidence,
  type LimitContext,
  matches,
  type Rule,
  type RuleOverride,
  type UnverifiedParameter,
} from "../contracts/model/rules.js";
import type { TaskKind } from "../contracts/model/topics.js";
import { scrapedLabelledGauge } from "../infra/metrics.js";
import { resolveEnabled } from "./engine/resolve.js";

/*
 * Placeholders in force: the rules that apply in the deployment's region and are either a
 * placeholder shipped disabled (nothing is raised: a Sichuan site at 500 µg/m³ for two hours
 * raises no task) or carry a number nobody verified. At start each one is logged at warn, shown
 * on /healthz and counted in citywatch_rules_placeholders; docs/standards.md says, per rule and
 * region, what the operator sets.
 *
 * The view is the whole city's: an override counts when it is at city level. A number is set when
 * a city override replaces it everywhere the rule's table supplies it; a district, site or device
 * override sets it only there, so the rule stays listed.
 */

/** Where the rules run: the configured region and the dust regions of its construction sites. */
export interface PlaceholderPlace {
  /** The deployment's regulatory region (`rules.region`). */
  readonly region: string;
  /** Dust regions judged (`Site.dustRegion`, `default` when unset). */
  readonly dustRegions: readonly string[];
}

export type PlaceholderState = "disabled" | "unverified";

/** One unverified part of a rule and how the operator replaces it. */
export interface UnverifiedItem extends UnverifiedParameter {
  /** How: an override (limits, periods) or, for what no override reaches, a local rule. */
  readonly by: "override" | "local_rule";
  readonly set: string;
}

/** A rule in force for the place that is a disabled placeholder or carries unverified numbers. */
export interface RulePlaceholder {
  readonly rule: string;
  readonly version: number;
  readonly title: string;
  readonly taskKind: TaskKind;
  readonly confidence: Confidence;
  /** The standard the rule cites (the source of the real number, when there is one). */
  readonly standard: string;
  /** `disabled`: a placeholder that raises nothing here; `unverified`: runs on unverified numbers. */
  readonly state: PlaceholderState;
  readonly disabled: boolean;
  /** Dust regions the rule is judged for (rules scoped by `dustRegions`). */
  readonly dustRegions?: readonly string[];
  readonly unverified: readonly UnverifiedItem[];
  /** What the operator must set, and how (docs/rules.md, Overrides). */
  readonly set: string;
}

export interface PlaceholderReport {
  readonly region: string;
  readonly dustRegions: readonly string[];
  readonly rules: readonly RulePlaceholder[];
}

/**
 * The place of a deployment: its region, and as dust regions `default` (a site without one), the
 * region itself (a deployment in Sichuan has its sites in dust region `sichuan`) and every
 * `dustRegion` a registered construction site names.
 */
export function placeholderPlace(region: string, sites: readonly Site[] = []): PlaceholderPlace {
  const named = sites.flatMap((s) =>
    s.type === "construction_site" ? [s.dustRegion ?? "default"] : [],
  );
  return { region, dustRegions: [...new Set([region, "default", ...named])] };
}

/** One cell of a limit table: a limit name and the `when` of the row that supplies it. */
interface Cell {
  readonly name: string;
  readonly when: LimitContext;
}

/** The cells a `limits…` path names: `limits`, `limits.default[.x]`, `limits.rows.N[.values.x]`. */
function cellsOf(rule: Rule, path: string): Cell[] {
  const [, part, index, ...rest] = path.split(".");
  const name = part === "rows" ? (rest[0] === "values" ? rest[1] : undefined) : index;
  const table = rule.limits;
  const fromDefault = Object.keys(table?.default ?? {}).map((n) => ({ name: n, when: {} }));
  const fromRows = (table?.rows ?? []).flatMap((row, i) =>
    part === "rows" && String(i) !== index
      ? []
      : Object.keys(row.values).map((n) => ({ name: n, when: row.when })),
  );
  const cells =
    part === undefined ? [...fromDefault, ...fromRows] : part === "rows" ? fromRows : fromDefault;
  return cells.filter((c) => name === undefined || c.name === name);
}

const isCity = (o: RuleOverride) => o.at === "city";

/** Whether a row keyed by region or dust region can supply a subject at `place`. */
const rowInPlace = (when: LimitContext, place: LimitContext) =>
  (when.region === undefined || when.region === place.region) &&
  (when.dustRegion === undefined ||
    place.dustRegion === undefined ||
    when.dustRegion === place.dustRegion);

const listOf = (words: readonly string[]) => [...new Set(words)].join(", ");

function whenText(when: LimitContext): string {
  const keys = Object.entries(when).filter(([k]) => k !== "region" && k !== "dustRegion");
  return keys.length === 0 ? "" : `when: { ${keys.map(([k, v]) => `${k}: ${v}`).join(", ")} }, `;
}

/** Where the real value comes from: the rule's standard, or the city when no standard sets it. */
function sourceOf(rule: Rule): string {
  const standard = rule.clause.standard;
  return /^(none|citywatch)\b/i.test(standard)
    ? "the city's own value (no standard sets it)"
    : `${standard} (or the city's local standard)`;
}

const OVERRIDES = "docs/rules.md, Overrides";

/** What only a local rule can replace (windows, counts, comparisons, levels): one step for all. */
function replaceStep(rule: Rule, paths: readonly string[]): string {
  return `${paths.join(", ")} from ${sourceOf(rule)}: not overridable, so switch the rule off ({ rule: ${rule.id}, at: city, enabled: false }) and define a local rule under a new id (${OVERRIDES})`;
}

/**
 * An unverified item judged at `place`: undefined when it does not apply there (a row of another
 * region) or a city override already replaces it; else what the operator sets.
 */
function judge(
  rule: Rule,
  item: UnverifiedParameter,
  place: LimitContext,
): UnverifiedItem | undefined {
  const overrides = rule.overrides.filter(isCity);
  if (item.path === "limits" || item.path.startsWith("limits.")) {
    const cells = cellsOf(rule, item.path).filter((c) => rowInPlace(c.when, place));
    if (cells.length === 0) return undefined;
    const open = cells.filter(
      (c) =>
        !overrides.some(
          (o) => o.values?.[c.name] !== undefined && matches(o.when ?? {}, { ...place, ...c.when }),
        ),
    );
    if (open.length === 0) return undefined;
    const lines = open.map(
      (c) =>
        `{ rule: ${rule.id}, at: city, ${whenText(c.when)}values: { ${c.name}: … }, clause: { standard: …, section: … } }`,
    );
    return {
      ...item,
      by: "override",
      set: `${listOf(open.map((c) => c.name))} from ${sourceOf(rule)}, by city overrides citing it in clause (${OVERRIDES}): ${listOf(lines)}`,
    };
  }
  const period = /^schedule\.periods\.([^.]+)/.exec(item.path)?.[1];
  if (period !== undefined) {
    const set = overrides.some(
      (o) => o.periods?.[period] !== undefined && matches(o.when ?? {}, place),
    );
    if (set) return undefined;
    return {
      ...item,
      by: "override",
      set: `period ${period} from ${sourceOf(rule)}, by a city override (${OVERRIDES}): { rule: ${rule.id}, at: city, periods: { ${period}: { from: …, to: … } } }`,
    };
  }
  return { ...item, by: "local_rule", set: replaceStep(rule, [item.path]) };
}

/** The operator's steps for a rule: overrides first, then one local rule for the rest, then on. */
function stepsOf(rule: Rule, items: readonly UnverifiedItem[], disabled: boolean): string {
  const local = items.filter((i) => i.by === "local_rule").map((i) => i.path);
  const steps = items.filter((i) => i.by === "override").map((i) => `set ${i.set}`);
  if (local.length > 0) steps.push(`set ${replaceStep(rule, local)}`);
  if (disabled) steps.push(`then switch it on: { rule: ${rule.id}, at: city, enabled: true }`);
  return steps.join("; ");
}

/** The rule judged in one context (one dust region, or none): undefined when nothing is open. */
function judgeIn(
  rule: Rule,
  place: LimitContext,
): { disabled: boolean; items: UnverifiedItem[] } | undefined {
  const enabled = resolveEnabled(rule, place);
  // A rule that ships enabled and a city override switched off is the operator's decision.
  if (!enabled && (rule.enabled || rule.confidence !== "placeholder")) return undefined;
  const items = unverifiedOf(rule)
    .map((u) => judge(rule, u, place))
    .filter((u): u is UnverifiedItem => u !== undefined);
  if (enabled && items.length === 0) return undefined;
  return { disabled: !enabled, items };
}

/** Every rule that applies at `place` and is a disabled placeholder or carries unverified numbers. */
export function rulePlaceholders(
  rules: readonly Rule[],
  place: PlaceholderPlace,
): RulePlaceholder[] {
  const out: RulePlaceholder[] = [];
  for (const rule of rules) {
    const { regions, dustRegions } = rule.scope;
    if (regions !== undefined && !regions.includes(place.region)) continue;
    const judged = (dustRegions?.filter((d) => place.dustRegions.includes(d)) ?? [undefined])
      .map((dustRegion) => ({
        dustRegion,
        verdict: judgeIn(rule, {
          region: place.region,
          ...(dustRegion === undefined ? {} : { dustRegion }),
        }),
      }))
      .flatMap(({ dustRegion, verdict }) =>
        verdict === undefined ? [] : [{ dustRegion, ...verdict }],
      );
    if (judged.length === 0) continue;
    const disabled = judged.every((j) => j.disabled);
    const items = [...new Map(judged.flatMap((j) => j.items).map((i) => [i.path, i])).values()];
    const judgedRegions = judged.flatMap((j) => (j.dustRegion === undefined ? [] : [j.dustRegion]));
    out.push({
      rule: rule.id,
      version: rule.version,
      title: rule.title,
      taskKind: rule.taskKind,
      confidence: rule.confidence,
      standard: rule.clause.standard,
      state: disabled ? "disabled" : "unverified",
      disabled,
      ...(judgedRegions.length === 0 ? {} : { dustRegions: judgedRegions }),
      unverified: items,
      set: stepsOf(rule, items, disabled),
    });
  }
  return out;
}

/** The report for the rules in force at a place. */
export function placeholderReport(
  rules: readonly Rule[],
  place: PlaceholderPlace,
): PlaceholderReport {
  return {
    region: place.region,
    dustRegions: place.dustRegions,
    rules: rulePlaceholders(rules, place),
  };
}

/** One warn line per rule of the report (nothing when there is none). */
export function logPlaceholders(log: Logger, report: PlaceholderReport): void {
  for (const p of report.rules) {
    log.warn(
      {
        rule: p.rule,
        version: p.version,
        title: p.title,
        region: report.region,
        ...(p.dustRegions === undefined ? {} : { dustRegions: p.dustRegions }),
        state: p.state,
        disabled: p.disabled,
        unverified: p.unverified.map((u) => ({ path: u.path, note: u.note })),
        set: p.set,
      },
      p.disabled
        ? `rule ${p.rule} is a disabled placeholder in region ${report.region}: it raises nothing until the operator sets it`
        : `rule ${p.rule} runs on unverified numbers in region ${report.region}: ${p.unverified.map((u) => u.path).join(", ")}`,
    );
  }
}

/** What /healthz shows of the report. */
export function placeholderHealth(report: PlaceholderReport) {
  return {
    region: report.region,
    placeholders: report.rules.map((p) => ({
      rule: p.rule,
      title: p.title,
      state: p.state,
      unverified: p.unverified.map((u) => u.path),
      set: p.set,
    })),
  };
}

/** citywatch_rules_placeholders{rule,state}: 1 per rule of the report `read` gives at scrape. */
export function placeholderGauge(registry: Registry, read: () => PlaceholderReport) {
  return scrapedLabelledGauge(
    registry,
    {
      name: "citywatch_rules_placeholders",
      help: "Rules in force in the configured region that are a disabled placeholder (state=disabled) or run on unverified numbers (state=unverified), as found at start (docs/standards.md).",
      labelNames: ["rule", "state"] as const,
    },
    () => read().rules.map((p) => [{ rule: p.rule, state: p.state }, 1] as const),
  );
}
