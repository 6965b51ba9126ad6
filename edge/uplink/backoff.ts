import { backoffDelayMs } from "../../infra/backoff.js";

/**
 * No reconnect sooner than this after a lost connection (or `minMs` if that is smaller).
 *
 * The attempt count starts again at every accepted connection, so a connection that the broker
 * drops at once (a second agent with the same client id taking the session over, a broker shedding
 * load) never lets the ceiling grow: without a floor, full jitter would let such a pair reconnect
 * at ~0 ms, again and again. 100 ms bounds that to ten connects a second and leaves nine tenths of
 * the first ceiling's (1 s by default) spread intact.
 */
export const RECONNECT_FLOOR_MS = 100;

/**
 * The delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter
 * (infra/backoff.ts). The ceiling doubles from `minMs` per failed attempt up to `maxMs`, and the
 * delay is uniform between the floor and the ceiling. Full jitter, because a whole fleet of agents
 * cut off by the same broker outage retries against that one broker: drawing over the whole range
 * spreads their reconnects most (the earlier draw from [ceiling/2, ceiling] left half of it unused).
 */
export function backoffMs(
  attempt: number,
  bounds: { readonly minMs: number; readonly maxMs: number },
  random: () => number = Math.random,
): number {
  return backoffDelayMs(
    attempt,
    {
      baseMs: bounds.minMs,
      capMs: bounds.maxMs,
      jitter: "full",
      floorMs: Math.min(RECONNECT_FLOOR_MS, bounds.minMs),
    },
    random,
  );
}
