/**
 * citywatch contracts: the single source of truth for everything that crosses a process boundary.
 * zod schemas first; TypeScript types are `z.infer` of them.
 */
export * from "./ids.js";
export * from "./quality.js";
export * from "./time.js";
export * from "./sensors.js";
export * from "./uplink.js";
export * from "./device-messages.js";
export * from "./topics.js";
export * from "./registry.js";
export * from "./rules.js";
export * from "./api.js";
export * from "./tasks.js";
export * from "./config/problems.js";
export * from "./config/fields.js";
export * from "./config/broker.js";
export * from "./config/ingest.js";
export * from "./config/citywatch.js";
export * from "./config/load.js";
export * from "./config/edge.js";
