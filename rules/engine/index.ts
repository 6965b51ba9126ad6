/*
 * The pure rule engine: windowed aggregates (window.ts, reduce.ts), what a rule resolves to and
 * where a reading lies in time (in-force.ts), a window judged in place (verdict.ts), condition
 * evaluation (conditions.ts)
 * and the alarm state machine (alarm.ts). No I/O: readings, the registry view and the instant
 * come in; evaluations, alarm states and decisions come out.
 */
export * from "./alarm.js";
export * from "./conditions.js";
export {
  periodClockOf,
  periodic,
  placeOf,
  readingMs,
  resolutionContext,
  resolutionOf,
} from "./in-force.js";
export { columns, newestUsable } from "./reduce.js";
export { judgeWindow, UNCORROBORATED_FLAGS } from "./verdict.js";
export * from "./series.js";
export * from "./window.js";
