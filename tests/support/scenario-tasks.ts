import type { Task } from "../../contracts/index.js";
import type { ExpectedTask } from "../../simulators/index.js";

/**
 * A task in a scenario's `expect.tasks` terms: one entry per violation it holds. An enforcement
 * case of an incident lists every rule and subject of the episode (its `violations`); any other
 * task is its own rule and subject.
 */
export function expectedEntries(
  task: Pick<Task, "kind" | "rule" | "subject" | "level" | "violations">,
): ExpectedTask[] {
  const level = task.level === undefined ? {} : { level: task.level };
  const violations = task.violations ?? [{ ruleId: task.rule.id, subject: task.subject }];
  return violations.map((v) => ({
    rule: v.ruleId,
    subject: v.subject.id,
    kind: task.kind,
    ...level,
  }));
}
