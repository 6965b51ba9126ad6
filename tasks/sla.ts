import type { SlaLimits, TasksConfig } from "../contracts/config/tasks.js";
import type { SlaFlag, Task } from "../contracts/model/tasks.js";
import type { WorkingCalendar } from "./calendar/working-time.js";

/*
 * SLA timers (the policy asks for regular clean-up of cases filed but never handled or closed).
 * Pure: a task's deadlines and flags at an instant. The handle timer runs from the step the case
 * type names (filing, dispatch or acknowledgement) until the task is handled; the close timer
 * from handling until closing. A `working` clock counts only the office hours of the working
 * calendar (calendar/working-time.ts); a `calendar` clock counts every hour.
 */

export interface SlaState {
  readonly flags: SlaFlag[];
  readonly handleBy?: string;
  readonly closeBy?: string;
}

/** The limits of a task: the longest matching `byRule` prefix, else its kind's. */
export function limitsOf(sla: TasksConfig["sla"], task: Pick<Task, "kind" | "rule">): SlaLimits {
  let best: { prefix: string; limits: SlaLimits } | undefined;
  for (const [prefix, limits] of Object.entries(sla.byRule)) {
    if (task.rule.id.startsWith(prefix) && prefix.length > (best?.prefix.length ?? -1)) {
      best = { prefix, limits };
    }
  }
  return best?.limits ?? sla[task.kind];
}

function due(
  limits: SlaLimits,
  kind: Task["kind"],
  calendar: WorkingCalendar | undefined,
  fromMs: number,
  ms: number,
) {
  const clock = limits.clock ?? (kind === "emergency" ? "calendar" : "working");
  return clock === "working" && calendar !== undefined ? calendar.add(fromMs, ms) : fromMs + ms;
}

/** When the handle timer started, or undefined while the step it waits for has not come. */
function handleStart(limits: SlaLimits, task: Task): number | undefined {
  const at =
    limits.from === "filed"
      ? task.filedAt
      : limits.from === "dispatched"
        ? task.dispatchedAt
        : task.acknowledgedAt;
  return at === undefined ? undefined : Date.parse(at);
}

/** A task's SLA deadlines and the flags it has at `nowMs`. */
export function slaState(
  sla: TasksConfig["sla"],
  task: Task,
  nowMs: number,
  calendar?: WorkingCalendar,
): SlaState {
  const limits = limitsOf(sla, task);
  switch (task.state) {
    case "filed":
    case "dispatched":
    case "acknowledged":
    case "in_progress": {
      const start = handleStart(limits, task);
      if (start === undefined) return { flags: [] };
      const by = due(limits, task.kind, calendar, start, limits.handleWithinMs);
      return {
        flags: nowMs > by ? ["not_handled"] : [],
        handleBy: new Date(by).toISOString(),
      };
    }
    case "handled":
    case "verified": {
      const by = due(
        limits,
        task.kind,
        calendar,
        Date.parse(task.handledAt ?? task.updatedAt),
        limits.closeWithinMs,
      );
      return { flags: nowMs > by ? ["not_closed"] : [], closeBy: new Date(by).toISOString() };
    }
    case "closed":
      return { flags: [] };
  }
}

/** The flags alone (the tick compares them). */
export function slaFlags(
  sla: TasksConfig["sla"],
  task: Task,
  nowMs: number,
  calendar?: WorkingCalendar,
): SlaFlag[] {
  return slaState(sla, task, nowMs, calendar).flags;
}
