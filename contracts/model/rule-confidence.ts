import type { UnverifiedParameter } from "./rule-fields.js";
import type { Rule } from "./rules.js";

/*
 * What is not verified in a rule, in one list: what the rules side warns about at start and what
 * a task and its evidence package carry (docs/standards.md, "Placeholders the operator must set").
 */

/**
 * The unverified parts of a rule, each a path inside the rule and a note. A verified rule: its
 * `unverified` list. A placeholder: its `unverified` list when it names one, else the numbers the
 * placeholder stands for with its `note` — its limit table (`limits`) when it has one, otherwise
 * its condition (`condition.factor` of a deadman, else `condition`).
 */
export function unverifiedOf(
  rule: Pick<Rule, "confidence" | "unverified" | "note" | "limits" | "condition">,
): UnverifiedParameter[] {
  const listed = rule.unverified.map((u) => ({ path: u.path, note: u.note }));
  if (rule.confidence !== "placeholder" || listed.length > 0) return listed;
  const note = rule.note ?? "placeholder: the numbers of this rule are not verified";
  const path =
    rule.limits !== undefined
      ? "limits"
      : rule.condition.type === "deadman"
        ? "condition.factor"
        : "condition";
  return [{ path, note }];
}
