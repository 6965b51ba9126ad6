/**
 * citywatch simulators: seeded signal models per sensor kind (models/), scenario files compiled
 * to deterministic device timelines (scenario/), and the fleet runner that plays them over MQTT
 * with the commit protocol and fault injection (fleet/). See docs/simulators.md.
 */
export * from "./models/index.js";
export * from "./scenario/schema.js";
export * from "./scenario/model-params.js";
export * from "./scenario/load.js";
export * from "./scenario/compile.js";
export * from "./scenario/load-fleet.js";
export * from "./fleet/counters.js";
export * from "./fleet/scheduler.js";
export * from "./fleet/faults.js";
export * from "./fleet/device.js";
export * from "./fleet/runner.js";
export * from "./fleet/progress.js";
