/**
 * Threshold bands read from the rule pack at build time, so a dashboard line moves when the rule
 * moves and every band names the rule it comes from. A limit the pack does not hold fails the
 * build: a dashboard must not show a line no rule enforces.
 */
import type { LimitContext, Rule } from "../contracts/index.js";

export class DashboardError extends Error {
  override readonly name = "DashboardError";
}

/** One threshold line: its value and the rule (id and clause) that enforces it. */
export interface Band {
  readonly value: number;
  readonly rule: string;
  readonly clause: string;
  /** The colour above the line, when the rule names one (a flood signal); else by rank. */
  readonly colour?: string;
}

/**
 * The value of limit `name` of rule `ruleId`: the row whose `when` equals `context` exactly
 * (e.g. `{ zoneClass: "2" }`), else the rule's default values, as the engine resolves a subject
 * with no more specific context.
 */
export function limitOf(
  rules: readonly Rule[],
  ruleId: string,
  name: string,
  context: LimitContext = {},
): Band {
  const rule = rules.find((r) => r.id === ruleId);
  if (rule === undefined) throw new DashboardError(`rule ${ruleId} is not in the rule pack`);
  const wanted = Object.entries(context);
  const row = rule.limits?.rows.find((r) => {
    const when = Object.entries(r.when);
    return (
      when.length === wanted.length &&
      wanted.every(([k, v]) => (r.when as Record<string, unknown>)[k] === v)
    );
  });
  const value = wanted.length > 0 ? row?.values[name] : rule.limits?.default?.[name];
  if (value === undefined) {
    throw new DashboardError(
      `rule ${ruleId} has no limit ${name}${wanted.length > 0 ? ` for ${JSON.stringify(context)}` : ""}`,
    );
  }
  const clause = row?.clause ?? rule.clause;
  return { value, rule: ruleId, clause: `${clause.standard}, ${clause.section}` };
}
