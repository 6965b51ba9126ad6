import type { ClosureReason, TaskState } from "../contracts/model/tasks.js";
import { EARLY_CLOSURE, NEXT_STATES } from "../contracts/model/task-rules.js";

/*
 * The task lifecycle: filed → dispatched → acknowledged → in_progress → handled → verified →
 * closed. Pure: which transitions are legal, and why not. A case that needs no work (a false
 * alarm, a broken sensor, an exempt party) may be closed before it is handled, but only a
 * verified task closes as `rectified`: the record must show the fix was checked.
 */

/** Open states: the task still needs people. */
export const isOpenState = (state: TaskState): boolean => state !== "closed";

/** States that count as handled for the SLA (work done, not yet closed). */
export const isHandledState = (state: TaskState): boolean =>
  state === "handled" || state === "verified";

export type TransitionCheck = { ok: true } | { ok: false; reason: string };

/** Whether `from → to` (with a closure reason when closing) is legal; the reason names the options. */
export function checkTransition(
  from: TaskState,
  to: TaskState,
  reason: ClosureReason | undefined,
): TransitionCheck {
  const allowed = NEXT_STATES[from];
  if (!allowed.includes(to)) {
    const options = allowed.length === 0 ? "none (closed is final)" : allowed.join(", ");
    return {
      ok: false,
      reason: `illegal transition ${from} → ${to}; allowed from ${from}: ${options}`,
    };
  }
  if (to !== "closed") {
    return reason === undefined
      ? { ok: true }
      : { ok: false, reason: "a closure reason is given only when closing" };
  }
  if (reason === undefined) {
    return {
      ok: false,
      reason: "closing needs a reason: rectified, false_positive, sensor_fault or exempt",
    };
  }
  if (from !== "verified" && !EARLY_CLOSURE.includes(reason)) {
    return {
      ok: false,
      reason: `a ${from} task closes only as ${EARLY_CLOSURE.join(", ")}; rectified needs a verified task`,
    };
  }
  return { ok: true };
}
