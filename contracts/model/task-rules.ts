import type { ApiRole, ClosureReason, TaskState } from "./tasks.js";
import type { TaskKind } from "./topics.js";

/*
 * The task lifecycle's and the roles' tables, shared by the server (tasks/lifecycle.ts,
 * tasks/auth/roles.ts), which decides, and the console (console/src/tasks.ts), which only hides
 * what the server would refuse. Plain data with type-only imports, so the console's bundle takes
 * them without zod.
 */

/** The states each state may move to: filed → dispatched → acknowledged → in_progress → handled → verified → closed. */
export const NEXT_STATES: Readonly<Record<TaskState, readonly TaskState[]>> = {
  filed: ["dispatched", "acknowledged", "closed"],
  dispatched: ["acknowledged", "closed"],
  acknowledged: ["in_progress", "handled", "closed"],
  in_progress: ["handled", "closed"],
  // A verification that finds the work not done sends the task back to work.
  handled: ["verified", "in_progress"],
  verified: ["closed", "in_progress"],
  closed: [],
};

/** Reasons that close a task that was never verified: there was nothing to rectify. */
export const EARLY_CLOSURE: readonly ClosureReason[] = ["false_positive", "sensor_fault", "exempt"];

/**
 * The kinds of work each role changes. Every role reads every task of its scope; acting is
 * limited to the role's own kind of work.
 */
export const ACTS_ON: Readonly<Record<ApiRole, readonly TaskKind[]>> = {
  admin: ["enforcement", "emergency", "maintenance", "environmental"],
  command_centre: ["enforcement", "emergency", "maintenance", "environmental"],
  // Grid inspectors of the urban-management teams investigate environmental-quality alerts.
  enforcement: ["enforcement", "environmental"],
  emergency: ["emergency"],
  operator: ["maintenance"],
  legal_reviewer: [],
  viewer: [],
};
