import type { TasksConfig } from "../contracts/config/tasks.js";
import type { SlaFlag, Task } from "../contracts/model/tasks.js";

/*
 * SLA timers (the policy asks for regular clean-up of cases filed but never handled or closed).
 * Pure: the flags a task has at an instant. A task is "not handled" while it is open and not yet
 * handled past `handleWithinMs` from filing, "not closed" while handled or verified past
 * `closeWithinMs` from handling.
 */
export function slaFlags(sla: TasksConfig["sla"], task: Task, nowMs: number): SlaFlag[] {
  const limits = sla[task.kind];
  switch (task.state) {
    case "filed":
    case "dispatched":
    case "acknowledged":
    case "in_progress":
      return nowMs - Date.parse(task.filedAt) > limits.handleWithinMs ? ["not_handled"] : [];
    case "handled":
    case "verified":
      return nowMs - Date.parse(task.handledAt ?? task.updatedAt) > limits.closeWithinMs
        ? ["not_closed"]
        : [];
    case "closed":
      return [];
  }
}
