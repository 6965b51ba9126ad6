/*
 * The pure rule engine: windowed aggregates (window.ts), condition evaluation (conditions.ts)
 * and the alarm state machine (alarm.ts). No I/O: readings, the registry view and the instant
 * come in; evaluations, alarm states and decisions come out.
 */
export * from "./alarm.js";
export * from "./conditions.js";
export * from "./series.js";
export * from "./window.js";
