/** The edge agent's public surface, for the composition root (cli/) and tests. */
export {
  AGENT,
  buildAgent,
  type AgentDeps,
  type AgentStats,
  type EdgeAgent,
} from "./agent/agent.js";
export { edgeMetrics } from "./agent/metrics.js";
export { deadLettersRoute, EdgeDeadLetterLog } from "./agent/dead-letters.js";
export type { DriverDeps, DriverFactory } from "./drivers/index.js";
export type { SampleGenerator, SampleSource, SimulatedSample } from "./drivers/simulated.js";
export type { Driver, DriverSink, FieldSample } from "./drivers/types.js";
