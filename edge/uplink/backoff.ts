/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * the ceiling doubles from `minMs` per failed attempt up to `maxMs`, and the delay is drawn
 * uniformly from [ceiling/2, ceiling], so a fleet of agents cut off by the same outage does not
 * reconnect to the broker in lock-step when it returns.
 */
export function backoffMs(
  attempt: number,
  bounds: { readonly minMs: number; readonly maxMs: number },
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(bounds.maxMs, bounds.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
