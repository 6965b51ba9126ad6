import type { LimitContext, Period, Value } from "../../contracts/model/rule-fields.js";
import { matches, resolveTable, specificity } from "../../contracts/model/rule-fields.js";
import type { RuleOverride } from "../../contracts/model/rule-severity.js";
import { OVERRIDE_LEVELS } from "../../contracts/model/rule-severity.js";
import type { Rule } from "../../contracts/model/rules.js";

import { isRef } from "../../contracts/model/rule-fields.js";
/*
 * The limits, periods and switches in force for one subject: the rule's precedence (limit table
 * rows by specificity, then overrides city → district → site → device), as functions.
 */

// ---------------------------------------------------------------------------------------------
// Limit resolution: the precedence, as a function

/** Where the subject is, for overrides: its district, site and (when evaluating one) device. */
export interface SubjectPlace {
  readonly district?: string | undefined;
  readonly siteId?: string | undefined;
  readonly deviceId?: string | undefined;
}

/** The context and place of one evaluation. */
export type ResolutionContext = LimitContext & SubjectPlace;

/** Limit values in force for a subject, each with where it came from (for evidence). */
export interface ResolvedLimits {
  readonly values: Readonly<Record<string, number>>;
  /** Per name: `limits.default`, `limits.rows.3`, `overrides.1` (+ the clause or source file). */
  readonly origins: Readonly<Record<string, string>>;
}

function overrideApplies(o: RuleOverride, place: ResolutionContext): boolean {
  if (!matches(o.when ?? {}, place)) return false;
  switch (o.at) {
    case "city":
      return true;
    case "district":
      return place.district !== undefined && o.id === place.district;
    case "site":
      return place.siteId !== undefined && o.id === place.siteId;
    case "device":
      return place.deviceId !== undefined && o.id === place.deviceId;
  }
}

/** Overrides that apply to `place`, in the order they take effect (later wins). */
function applicableOverrides(rule: Pick<Rule, "overrides">, place: ResolutionContext) {
  return rule.overrides
    .map((o, index) => ({ o, index }))
    .filter(({ o }) => overrideApplies(o, place))
    .sort(
      (a, b) =>
        OVERRIDE_LEVELS.indexOf(a.o.at) - OVERRIDE_LEVELS.indexOf(b.o.at) ||
        specificity(a.o.when) - specificity(b.o.when) ||
        a.index - b.index,
    );
}

/**
 * The limit values in force for a subject. Later steps win, name by name:
 * 1. `limits.default`;
 * 2. `limits.rows` whose `when` matches the context, less specific first (fewer `when` keys),
 *    then in file order;
 * 3. overrides, by level: city, then district, then site, then device; within a level less
 *    specific `when` first, then in order (the rule's own overrides, then file-level overrides
 *    in load order: the default pack first, then each directory's files sorted by name).
 * A name with no value after all steps is undefined: a rule that needs it does not apply to
 * the subject.
 */
export function resolveLimits(
  rule: Pick<Rule, "limits" | "overrides">,
  place: ResolutionContext,
): ResolvedLimits {
  const { values, origins } = resolveTable(rule.limits, place);
  for (const { o, index } of applicableOverrides(rule, place)) {
    for (const [name, v] of Object.entries(o.values ?? {})) {
      values[name] = v;
      const why = o.clause ? `${o.clause.standard} ${o.clause.section}` : (o.source ?? "");
      origins[name] =
        `overrides.${index} (${o.at}${o.id === undefined ? "" : ` ${o.id}`}${why === "" ? "" : `; ${why}`})`;
    }
  }
  return { values, origins };
}

/** The schedule periods in force for a subject: the rule's, replaced by overrides in the same precedence as limits. */
export function resolvePeriods(
  rule: Pick<Rule, "schedule" | "overrides">,
  place: ResolutionContext,
): Readonly<Record<string, Period>> {
  const periods: Record<string, Period> = { ...rule.schedule.periods };
  for (const { o } of applicableOverrides(rule, place)) Object.assign(periods, o.periods ?? {});
  return periods;
}

/** Whether the rule applies to a subject: `enabled`, then overrides in the same precedence as limits. */
export function resolveEnabled(
  rule: Pick<Rule, "enabled" | "overrides">,
  place: ResolutionContext,
): boolean {
  let enabled = rule.enabled;
  for (const { o } of applicableOverrides(rule, place)) enabled = o.enabled ?? enabled;
  return enabled;
}

/** River station levels from the registry, for `site.levels.*` references. */
export interface StationLevels {
  readonly warning: number;
  readonly guaranteed: number;
  readonly historicalMax: number;
}

/** The number a Value stands for, or undefined when its reference is not defined for the subject. */
export function resolveValue(
  value: Value,
  limits: ResolvedLimits,
  levels?: StationLevels,
): number | undefined {
  if (!isRef(value)) return value;
  if (value.from.startsWith("limits.")) {
    const base = limits.values[value.from.slice("limits.".length)];
    return base === undefined ? undefined : base + value.plus;
  }
  if (levels === undefined) return undefined;
  const key = value.from.slice("site.levels.".length) as keyof StationLevels;
  return levels[key] + value.plus;
}
