import type { Comparison } from "./rule-conditions.js";
import type { LimitContext, LimitTable, Value } from "./rule-fields.js";
import { CONTEXT_KEYS, isByPeriod, isRef, matches, resolveTable } from "./rule-fields.js";
import type { RuleOverride } from "./rule-severity.js";
import { EmergencyLevel, EnforcementLevel, SEVERITY_ORDER } from "./rule-severity.js";
import type { Rule, RuleFields } from "./rules.js";

/** A problem of a rule at load, with its path. */
export interface RuleProblem {
  readonly path: PropertyKey[];
  readonly message: string;
}

type Direction = "up" | "down";
export const directionOf = (op: Comparison): Direction =>
  op === ">" || op === ">=" ? "up" : "down";

/** Records a problem. */
export type Add = (path: PropertyKey[], message: string) => void;

/** The names a limit table defines (default and every row). */
export function tableNames(limits: LimitTable | undefined): Set<string> {
  const names = new Set<string>(Object.keys(limits?.default ?? {}));
  for (const row of limits?.rows ?? []) for (const n of Object.keys(row.values)) names.add(n);
  return names;
}

/*
 * Cross-field checks of thresholds that may be references: raise and clear on the right sides of
 * each other, severity levels in order, overrides that fit the rule.
 */

export function sameContext(a: LimitContext, b: LimitContext): boolean {
  return CONTEXT_KEYS.every((k) => a[k] === b[k]);
}

// Comparing two thresholds that may be references. Limits are compared in every context the
// limit table distinguishes; river-station levels by their registry order
// (warning <= guaranteed <= historicalMax, enforced by the registry schema).

const SITE_LEVEL_RANK: Readonly<Record<string, number>> = {
  "site.levels.warning": 0,
  "site.levels.guaranteed": 1,
  "site.levels.historicalMax": 2,
};

type Order = "lt" | "eq" | "gt" | "le" | "ge" | "unknown";

interface LimitEnvironment {
  readonly label: string;
  readonly values: Readonly<Record<string, number>>;
}

function staticNumber(v: Value, env: LimitEnvironment): number | undefined {
  if (!isRef(v)) return v;
  if (!v.from.startsWith("limits.")) return undefined;
  const base = env.values[v.from.slice("limits.".length)];
  return base === undefined ? undefined : base + v.plus;
}

function compare(a: Value, b: Value, env: LimitEnvironment): Order | "skip" {
  const x = staticNumber(a, env);
  const y = staticNumber(b, env);
  if (x !== undefined && y !== undefined) return x < y ? "lt" : x > y ? "gt" : "eq";
  if (
    (isRef(a) && a.from.startsWith("limits.") && x === undefined) ||
    (isRef(b) && b.from.startsWith("limits.") && y === undefined)
  ) {
    return "skip"; // the limit is not defined in this context: the rule does not apply there
  }
  if (isRef(a) && isRef(b)) {
    const ra = SITE_LEVEL_RANK[a.from];
    const rb = SITE_LEVEL_RANK[b.from];
    if (ra !== undefined && rb !== undefined) {
      if (ra === rb) return a.plus < b.plus ? "lt" : a.plus > b.plus ? "gt" : "eq";
      if (ra < rb && a.plus <= b.plus) return "le";
      if (ra > rb && a.plus >= b.plus) return "ge";
    }
  }
  return "unknown";
}

function describe(v: Value): string {
  if (!isRef(v)) return String(v);
  return v.plus === 0 ? v.from : `${v.from} ${v.plus > 0 ? "+" : "-"} ${Math.abs(v.plus)}`;
}

function contextLabel(ctx: LimitContext): string {
  const parts = CONTEXT_KEYS.filter((k) => ctx[k] !== undefined).map((k) => `${k} ${ctx[k]}`);
  return parts.length === 0 ? "" : ` for ${parts.join(", ")}`;
}

/** The distinct limit environments a rule can see: each context of its table, each override on top. */
function limitEnvironments(rule: Pick<RuleFields, "limits" | "overrides">): LimitEnvironment[] {
  if (rule.limits === undefined) return [{ label: "", values: {} }];
  const whens = [
    ...rule.limits.rows.map((r) => r.when),
    ...rule.overrides.flatMap((o) => (o.when ? [o.when] : [])),
  ];
  const axes = CONTEXT_KEYS.map((key) => {
    const options = new Set<string | undefined>([undefined]);
    for (const w of whens) if (w[key] !== undefined) options.add(w[key]);
    return { key, options: [...options] };
  });
  let contexts: LimitContext[] = [{}];
  for (const axis of axes) {
    const next: LimitContext[] = [];
    for (const ctx of contexts)
      for (const option of axis.options)
        next.push(option === undefined ? ctx : { ...ctx, [axis.key]: option });
    contexts = next;
    if (contexts.length > 2_000) return [{ label: "", values: rule.limits.default ?? {} }];
  }
  const out: LimitEnvironment[] = [];
  const seen = new Set<string>();
  const push = (label: string, values: Record<string, number>) => {
    const key = JSON.stringify(values);
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ label, values });
  };
  for (const ctx of contexts) {
    const base = resolveTable(rule.limits, ctx).values;
    push(contextLabel(ctx), base);
    rule.overrides.forEach((o, i) => {
      if (o.values !== undefined && matches(o.when ?? {}, ctx)) {
        push(
          `${contextLabel(ctx)} with the ${o.at}${o.id === undefined ? "" : ` ${o.id}`} override${o.source === undefined ? ` (overrides.${i})` : ` from ${o.source}`}`,
          { ...base, ...o.values },
        );
      }
    });
  }
  return out;
}

export function checkSides(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return;
  if (c.clear === undefined) return;
  const direction = c.type === "rate_of_rise" ? "up" : directionOf(c.op);
  const pairs: Array<{ path: PropertyKey[]; raise: Value; clear: Value }> = [];
  const raise = c.raise;
  const clear = c.clear;
  if (isByPeriod(raise)) {
    for (const [name, r] of Object.entries(raise.byPeriod)) {
      const cl = isByPeriod(clear) ? clear.byPeriod[name] : clear;
      if (cl !== undefined)
        pairs.push({
          path: isByPeriod(clear)
            ? ["condition", "clear", "byPeriod", name]
            : ["condition", "clear"],
          raise: r,
          clear: cl,
        });
    }
  } else if (!isByPeriod(clear)) {
    pairs.push({ path: ["condition", "clear"], raise, clear });
  } else {
    add(["condition", "clear"], "clear.byPeriod needs raise.byPeriod");
    return;
  }
  const envs = limitEnvironments(rule);
  for (const pair of pairs) {
    for (const env of envs) {
      const order = compare(pair.clear, pair.raise, env);
      if (order === "skip") continue;
      const wrongSide =
        direction === "up" ? order === "gt" || order === "ge" : order === "lt" || order === "le";
      if (order === "unknown") {
        add(
          pair.path,
          `clear (${describe(pair.clear)}) cannot be compared with raise (${describe(pair.raise)}) at load; use the same reference with a different plus`,
        );
        break;
      }
      if (wrongSide) {
        const should = direction === "up" ? "at or below" : "at or above";
        const x = staticNumber(pair.clear, env);
        const y = staticNumber(pair.raise, env);
        const numbers =
          x !== undefined && y !== undefined && (isRef(pair.clear) || isRef(pair.raise))
            ? ` (${x} vs ${y}${env.label})`
            : "";
        add(
          pair.path,
          `clear ${describe(pair.clear)} must be ${should} raise ${describe(pair.raise)}${numbers}: op ${c.type === "rate_of_rise" ? ">=" : c.op} clears on the compliant side`,
        );
        break;
      }
    }
  }
}

export function checkLevels(rule: RuleFields, add: Add): void {
  const levels = rule.levels;
  if (levels === undefined) return;
  if (rule.taskKind === "maintenance") {
    add(["levels"], "maintenance rules have no severity levels");
    return;
  }
  const allowed = rule.taskKind === "emergency" ? EmergencyLevel.options : EnforcementLevel.options;
  const c = rule.condition;
  const numeric = c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise";
  levels.forEach((l, i) => {
    if (!(allowed as readonly string[]).includes(l.level)) {
      add(
        ["levels", i, "level"],
        `${rule.taskKind} levels are ${allowed.join(", ")}; ${l.level} is not one`,
      );
    }
    if (i > 0) {
      const prev = levels[i - 1];
      if (
        prev !== undefined &&
        (SEVERITY_ORDER[l.level] ?? 0) <= (SEVERITY_ORDER[prev.level] ?? 0)
      ) {
        add(
          ["levels", i, "level"],
          `levels must rise in severity (${allowed.join(" < ")}); ${l.level} does not follow ${prev.level}`,
        );
      }
    }
    if (rule.taskKind === "emergency" && l.actions.length === 0) {
      add(["levels", i, "actions"], "an emergency level needs at least one recommended action");
    }
    if (l.area === "subject_and_neighbours" && rule.subject !== "segment") {
      add(
        ["levels", i, "area"],
        "subject_and_neighbours needs subject: segment (tunnel neighbours)",
      );
    }
    if (i === 0 && l.raise !== undefined) {
      add(["levels", 0, "raise"], "the first level raises at condition.raise; omit raise here");
    }
    if (i > 0 && numeric && l.raise === undefined)
      add(["levels", i, "raise"], "a level above the first needs its own raise");
    if (!numeric && l.raise !== undefined)
      add(["levels", i, "raise"], `a ${c.type} condition has no threshold; remove raise`);
  });
  if (!numeric && levels.length > 1) add(["levels"], `a ${c.type} condition raises one level only`);
  if (
    rule.taskKind === "enforcement" &&
    levels.length > 0 &&
    levels[levels.length - 1]?.level !== "case"
  ) {
    add(["levels"], "the last enforcement level must be case (a warning alone files nothing)");
  }
  if (!numeric || levels.length < 2) return;
  if (isByPeriod(c.raise)) {
    add(
      ["condition", "raise"],
      "levels above the first need condition.raise to be one value, not byPeriod",
    );
    return;
  }
  const direction = c.type === "rate_of_rise" ? "up" : directionOf(c.op);
  const envs = limitEnvironments(rule);
  let previous: Value = c.raise;
  levels.forEach((l, i) => {
    if (i === 0 || l.raise === undefined) return;
    for (const env of envs) {
      const order = compare(previous, l.raise, env);
      if (order === "skip") continue;
      const ok =
        direction === "up" ? order === "lt" || order === "le" : order === "gt" || order === "ge";
      if (!ok) {
        const x = staticNumber(previous, env);
        const y = staticNumber(l.raise, env);
        const numbers =
          x !== undefined && y !== undefined && (isRef(previous) || isRef(l.raise))
            ? ` (${y} vs ${x}${env.label})`
            : "";
        add(
          ["levels", i, "raise"],
          order === "unknown"
            ? `raise ${describe(l.raise)} cannot be compared with the level below (${describe(previous)}) at load`
            : `levels not monotonic: raise ${describe(l.raise)} must be ${direction === "up" ? "above" : "below"} the level below (${describe(previous)})${numbers}`,
        );
        break;
      }
    }
    previous = l.raise;
  });
}

/** Does `path` (dotted) name a field present in `value`? */
export function hasPath(value: unknown, path: string): boolean {
  let node: unknown = value;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null || !Object.hasOwn(node, key)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  return node !== undefined;
}

/** Override problems against the rule they target (used by the loader for file-level overrides). */
export function overrideProblems(
  rule: Pick<Rule, "limits" | "schedule">,
  override: Pick<RuleOverride, "values" | "periods">,
): Array<{ path: string[]; message: string }> {
  const out: Array<{ path: string[]; message: string }> = [];
  const names = tableNames(rule.limits);
  const known = names.size === 0 ? "none" : [...names].join(", ");
  for (const name of Object.keys(override.values ?? {})) {
    if (!names.has(name))
      out.push({
        path: ["values", name],
        message: `${name} is not in the rule's limits table (defined: ${known})`,
      });
  }
  for (const name of Object.keys(override.periods ?? {})) {
    if (!Object.hasOwn(rule.schedule.periods, name)) {
      out.push({
        path: ["periods", name],
        message: `unknown period ${name}; the rule defines ${Object.keys(rule.schedule.periods).join(", ")}`,
      });
    }
  }
  return out;
}

/**
 * Problems of a rule after overrides were added to it (the same side and monotony checks as at
 * parse time, now including the added overrides), as `path: message` relative to the rule.
 */
export function resolvedRuleProblems(rule: Rule): Array<{ path: PropertyKey[]; message: string }> {
  const out: RuleProblem[] = [];
  const add = (path: PropertyKey[], message: string) => out.push({ path, message });
  checkSides(rule, add);
  checkLevels(rule, add);
  return out;
}
