import type { Site } from "./registry.js";
import type { SensorKind } from "./sensors.js";
import { QUANTITIES, type QuantitySpec } from "./sensors.js";
import type { Period, PeriodValue, Value } from "./rule-fields.js";
import { DEFAULT_PERIODS, isByPeriod, isRef } from "./rule-fields.js";
import {
  type Add,
  checkLevels,
  checkSides,
  hasPath,
  type RuleProblem,
  sameContext,
  tableNames,
} from "./rule-limit-checks.js";
import { DAY_MS, formatDuration } from "./rule-time.js";
import type { RuleFields } from "./rules.js";

/*
 * The cross-field checks of a rule at load: every problem with its path, so a rule file is refused
 * with all of them at once.
 */

// ---------------------------------------------------------------------------------------------
// Cross-field checks

export function ruleProblems(rule: RuleFields): RuleProblem[] {
  const out: RuleProblem[] = [];
  const add = (path: PropertyKey[], message: string) => out.push({ path, message });
  const c = rule.condition;

  if (rule.confidence === "placeholder" && rule.note === undefined) {
    add(
      ["note"],
      "a placeholder rule must say in note what is unverified (docs/standards.md, Placeholder)",
    );
  }
  rule.unverified.forEach((u, i) => {
    if (!hasPath(rule, u.path))
      add(["unverified", i, "path"], `${u.path} is not a field of this rule`);
  });

  checkScope(rule, add);
  checkQuantities(rule, add);
  checkWindow(rule, add);
  checkSchedule(rule, add);
  checkReferences(rule, add);
  checkLevels(rule, add);
  checkSides(rule, add);

  // Task-kind specific fields.
  if (rule.taskKind === "emergency" && rule.levels === undefined) {
    add(["levels"], "an emergency rule needs levels (IV, III, II, I) with their actions");
  }
  if (rule.taskKind !== "emergency" && rule.timing.escalateAfter !== undefined) {
    add(
      ["timing", "escalateAfter"],
      "escalation on no acknowledgement applies to emergency rules only",
    );
  }
  if (rule.taskKind === "emergency" && rule.actions.length > 0) {
    add(["actions"], "an emergency rule lists its actions per level (levels.N.actions)");
  }
  if (c.type === "quality" && rule.taskKind !== "maintenance") {
    add(
      ["taskKind"],
      "a quality condition is about the device itself and opens maintenance tasks only",
    );
  }
  if (c.type === "quality" && c.flags.length === 0 && !c.calibrationExpired) {
    add(["condition"], "a quality condition needs flags, calibrationExpired: true, or both");
  }
  if (c.type === "quality" && c.flags.includes("normal")) {
    add(["condition", "flags"], "normal is good data, not a quality problem");
  }
  if (rule.qualityGate?.suppressFlags?.includes("normal") === true) {
    add(["qualityGate", "suppressFlags"], "suppressing normal readings would suppress everything");
  }
  return out;
}

function onlySiteType(rule: RuleFields, type: Site["type"]): boolean {
  return rule.scope.siteTypes?.length === 1 && rule.scope.siteTypes[0] === type;
}

function checkScope(rule: RuleFields, add: Add): void {
  const kinds = rule.scope.kinds;
  const seen = new Set<string>();
  kinds.forEach((k, i) => {
    if (seen.has(k)) add(["scope", "kinds", i], `sensor kind ${k} is listed twice`);
    seen.add(k);
  });
  if (rule.subject === "segment" && !onlySiteType(rule, "tunnel_segment")) {
    add(["subject"], "subject segment needs scope.siteTypes: [tunnel_segment]");
  }
  if (rule.scope.compartments !== undefined && !onlySiteType(rule, "tunnel_segment")) {
    add(["scope", "compartments"], "compartments need scope.siteTypes: [tunnel_segment]");
  }
  for (const key of ["phases", "dustRegions"] as const) {
    if (rule.scope[key] !== undefined && !onlySiteType(rule, "construction_site")) {
      add(["scope", key], `${key} need scope.siteTypes: [construction_site]`);
    }
  }
  if (rule.condition.type === "k_of_n" && rule.subject === "device") {
    add(
      ["subject"],
      "k_of_n votes across the devices of a site or segment; subject must be site or segment",
    );
  }
}

function quantitySpec(kind: SensorKind, name: string): QuantitySpec | undefined {
  const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[kind];
  return Object.hasOwn(specs, name) ? specs[name] : undefined;
}

/** The spec of a quantity in every kind of the scope, or a problem message. */
function lookupQuantity(kinds: readonly SensorKind[], name: string): QuantitySpec | string {
  let found: QuantitySpec | undefined;
  for (const kind of kinds) {
    const spec = quantitySpec(kind, name);
    if (spec === undefined) {
      const known = Object.keys(QUANTITIES[kind]).join(", ");
      return `unknown quantity ${JSON.stringify(name)} for kind ${kind}; known: ${known}`;
    }
    if (found !== undefined && (found.type !== spec.type || unitOf(found) !== unitOf(spec))) {
      return `quantity ${name} has different units across the scope's kinds; scope one kind`;
    }
    found = spec;
  }
  return found ?? `unknown quantity ${JSON.stringify(name)}`;
}

const unitOf = (spec: QuantitySpec): string => (spec.type === "number" ? spec.unit : "switch");

function numericQuantity(
  rule: RuleFields,
): { name: string; spec: QuantitySpec & { type: "number" } } | undefined {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return undefined;
  const spec = lookupQuantity(rule.scope.kinds, c.quantity);
  return typeof spec === "string" || spec.type !== "number"
    ? undefined
    : { name: c.quantity, spec };
}

function checkQuantities(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  const kinds = rule.scope.kinds;
  if (c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise") {
    const spec = lookupQuantity(kinds, c.quantity);
    if (typeof spec === "string") {
      add(["condition", "quantity"], spec);
      return;
    }
    if (spec.type === "boolean") {
      add(
        ["condition", "quantity"],
        `${c.quantity} is a switch (true/false); use a state condition`,
      );
      return;
    }
    if (c.type !== "rate_of_rise") {
      if (c.aggregate === "energy_mean" && spec.unit !== "dB(A)") {
        add(
          ["condition", "aggregate"],
          `energy_mean applies to levels in dB(A); ${c.quantity} is in ${spec.unit}`,
        );
      }
      if (c.aggregate === "mean" && spec.unit === "dB(A)") {
        add(
          ["condition", "aggregate"],
          `the arithmetic mean of dB(A) levels is not an equivalent level; use energy_mean for ${c.quantity} (GB 3096-2008: LAeq is an energy average)`,
        );
      }
    }
  }
  if (c.type === "state") {
    c.terms.forEach((term, i) => {
      const spec = lookupQuantity(kinds, term.quantity);
      if (typeof spec === "string") add(["condition", "terms", i, "quantity"], spec);
      else if (spec.type !== "boolean") {
        add(
          ["condition", "terms", i, "quantity"],
          `${term.quantity} is a measured quantity, not a switch; use a threshold condition`,
        );
      }
    });
  }
}

function checkWindow(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n") return;
  if (c.aggregate === "latest" && c.window !== undefined) {
    add(["condition", "window"], "aggregate latest uses the newest reading; remove window");
  }
  if (c.aggregate !== "latest" && c.window === undefined) {
    add(["condition", "window"], `aggregate ${c.aggregate} needs a window, e.g. "10m"`);
  }
  if (c.align === "clock") {
    if (c.window === undefined) add(["condition", "align"], "align: clock needs a window");
    else if (DAY_MS % c.window !== 0) {
      add(
        ["condition", "window"],
        `a clock-aligned window must divide the day evenly; ${formatDuration(c.window)} does not`,
      );
    }
  }
  if (c.type === "threshold") {
    if (c.nOfM !== undefined && c.align !== "clock") {
      add(["condition", "nOfM"], "nOfM counts complete clock intervals; set align: clock");
    }
    if (c.exceedances !== undefined && c.align !== "clock") {
      add(
        ["condition", "exceedances"],
        "exceedances count complete clock intervals per day; set align: clock",
      );
    }
    if (c.nOfM !== undefined && c.exceedances !== undefined) {
      add(["condition", "exceedances"], "use nOfM or exceedances, not both");
    }
  }
}

/** The rule's periods; the defaults too when a sibling's problem kept the schedule's transform from running. */
const periodsOf = (rule: Pick<RuleFields, "schedule">): Record<string, Period> => ({
  ...DEFAULT_PERIODS,
  ...rule.schedule.periods,
});

function checkSchedule(rule: RuleFields, add: Add): void {
  const periods = periodsOf(rule);
  const known = () => Object.keys(periods).join(", ");
  rule.schedule.activeDuring?.forEach((name, i) => {
    if (!Object.hasOwn(periods, name))
      add(["schedule", "activeDuring", i], `unknown period ${name}; defined: ${known()}`);
  });
  const c = rule.condition;
  if (c.type === "threshold" || c.type === "k_of_n") {
    for (const field of ["raise", "clear"] as const) {
      const v = c[field];
      if (v === undefined || !isByPeriod(v)) continue;
      for (const name of Object.keys(v.byPeriod)) {
        if (!Object.hasOwn(periods, name)) {
          add(
            ["condition", field, "byPeriod", name],
            `unknown period ${name}; defined: ${known()}`,
          );
        }
      }
    }
    const raise = c.raise;
    const clear = c.clear;
    if (clear !== undefined && isByPeriod(clear)) {
      const raiseKeys = isByPeriod(raise) ? Object.keys(raise.byPeriod).join(",") : "";
      if (Object.keys(clear.byPeriod).join(",") !== raiseKeys) {
        add(
          ["condition", "clear", "byPeriod"],
          "clear.byPeriod must name the same periods, in the same order, as raise.byPeriod",
        );
      }
    }
  }
  rule.overrides.forEach((o, i) => {
    for (const name of Object.keys(o.periods ?? {})) {
      if (!Object.hasOwn(periods, name))
        add(["overrides", i, "periods", name], `unknown period ${name}; defined: ${known()}`);
    }
  });
}

/** Every Value of the rule with its path. */
function valuesOf(rule: RuleFields): Array<{ path: PropertyKey[]; value: Value }> {
  const out: Array<{ path: PropertyKey[]; value: Value }> = [];
  const c = rule.condition;
  const push = (path: PropertyKey[], v: PeriodValue | undefined) => {
    if (v === undefined) return;
    if (isByPeriod(v))
      for (const [k, x] of Object.entries(v.byPeriod))
        out.push({ path: [...path, "byPeriod", k], value: x });
    else out.push({ path, value: v });
  };
  if (c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise") {
    push(["condition", "raise"], c.raise);
    push(["condition", "clear"], c.clear);
  }
  rule.levels?.forEach((l, i) => push(["levels", i, "raise"], l.raise));
  return out;
}

function checkReferences(rule: RuleFields, add: Add): void {
  const names = tableNames(rule.limits);
  const known = () => (names.size === 0 ? "none" : [...names].join(", "));
  for (const { path, value } of valuesOf(rule)) {
    if (!isRef(value)) continue;
    if (value.from.startsWith("limits.")) {
      const name = value.from.slice("limits.".length);
      if (rule.limits === undefined)
        add([...path, "from"], `${value.from}: this rule has no limits table`);
      else if (!names.has(name))
        add([...path, "from"], `${value.from} is not in the limits table (defined: ${known()})`);
    } else if (!onlySiteType(rule, "river_station")) {
      add(
        [...path, "from"],
        `${value.from} exists on river stations only; set scope.siteTypes: [river_station]`,
      );
    }
  }
  rule.limits?.rows.forEach((row, i) => {
    rule.limits?.rows.slice(0, i).forEach((earlier, j) => {
      if (sameContext(earlier.when, row.when))
        add(["limits", "rows", i, "when"], `same when as limits.rows.${j}`);
    });
  });
  rule.overrides.forEach((o, i) => {
    for (const name of Object.keys(o.values ?? {})) {
      if (!names.has(name))
        add(
          ["overrides", i, "values", name],
          `${name} is not in the limits table (defined: ${known()})`,
        );
    }
  });
  // Literal thresholds must be plausible readings of the quantity.
  const q = numericQuantity(rule);
  if (q !== undefined && rule.condition.type !== "rate_of_rise") {
    const { min, max, unit } = q.spec;
    for (const { path, value } of valuesOf(rule)) {
      if (typeof value === "number" && (value < min || value > max)) {
        add(path, `${value} is outside the plausible range ${min}..${max} ${unit} of ${q.name}`);
      }
    }
  }
  if (q !== undefined && rule.condition.type === "rate_of_rise") {
    for (const { path, value } of valuesOf(rule)) {
      if (typeof value === "number" && value <= 0)
        add(path, `a rise must be > 0 ${q.spec.unit} per window`);
    }
  }
}
