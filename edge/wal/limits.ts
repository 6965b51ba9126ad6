/**
 * Bounds of the write-ahead log and the full-log policy: defined with the edge agent's
 * configuration in contracts/config/edge.ts (`WalLimits`), re-exported here for the log.
 */
export { WalLimits, type WalLimitsInput } from "../../contracts/config/edge.js";
