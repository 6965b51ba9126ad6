/**
 * citywatch contracts: the single source of truth for everything that crosses a process boundary.
 * zod schemas first; TypeScript types are `z.infer` of them.
 */
export * from "./model/ids.js";
export * from "./model/quality.js";
export * from "./model/time.js";
export * from "./model/sensors.js";
export * from "./model/uplink.js";
export * from "./model/device-messages.js";
export * from "./model/topics.js";
export * from "./model/registry.js";
export * from "./model/registry-dates.js";
export * from "./model/rules.js";
export * from "./model/api.js";
export * from "./model/errors.js";
export * from "./model/tasks.js";
export * from "./model/evidence.js";
export * from "./model/people.js";
export * from "./model/complaints.js";
export * from "./model/alarms.js";
export * from "./model/stored-readings.js";
export * from "./model/public.js";
export * from "./config/problems.js";
export * from "./config/fields.js";
export * from "./config/broker.js";
export * from "./config/ingest.js";
export * from "./config/citywatch.js";
export * from "./config/load.js";
export * from "./config/edge.js";
