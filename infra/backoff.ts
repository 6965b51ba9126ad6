/*
 * Exponential backoff with a cap and a named jitter strategy, after the AWS Architecture Blog,
 * "Exponential Backoff And Jitter" (Marc Brooker, 2015). The ceiling of retry n (0-based) is
 *
 *     ceiling(n) = min(capMs, baseMs · 2^n)
 *
 * and the wait is drawn from it:
 *
 * - "full":  uniform in [0, ceiling). The best spread when many clients that failed together
 *            retry against one server: it does the least total work and the fewest colliding
 *            calls of the blog's strategies. A wait may be ~0 ms.
 * - "equal": uniform in [ceiling/2, ceiling). Half the spread, but every wait is at least half
 *            the ceiling: for a lone sender whose retries must not come back at ~0 ms (a busy
 *            loop against a dead peer, or an attempt budget burnt in milliseconds).
 * - "none":  exactly the ceiling (deterministic; for tests and for a single client with nothing
 *            to de-synchronise).
 *
 * `floorMs` raises the low end of the draw to a constant (the draw stays uniform above it, so no
 * probability piles up at the floor): full jitter that never retries sooner than the floor, for
 * clients whose ceiling does not grow while they fail (the attempt count resets on a connection
 * that is then dropped at once).
 *
 * Waits are whole milliseconds. `random` is uniform in [0, 1), like Math.random; injected so tests
 * can pin the draw. A source that returns 1 yields the ceiling, never more.
 */

export type Jitter = "full" | "equal" | "none";

export interface BackoffPolicy {
  /** The ceiling of the first retry (n = 0). */
  readonly baseMs: number;
  /** The ceiling never grows past this. */
  readonly capMs: number;
  readonly jitter: Jitter;
  /** No wait is shorter than this; at most `baseMs` (default 0). */
  readonly floorMs?: number;
}

/** Uniform in [0, 1), like Math.random. */
export type RandomSource = () => number;

/** The ceiling of retry `n` (0-based): baseMs · 2^n, at most capMs. */
export function backoffCeilingMs(
  n: number,
  policy: Pick<BackoffPolicy, "baseMs" | "capMs">,
): number {
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, n));
}

/** The wait before retry `n` (0-based), drawn as the policy's jitter says. */
export function backoffDelayMs(
  n: number,
  policy: BackoffPolicy,
  random: RandomSource = Math.random,
): number {
  const floor = policy.floorMs ?? 0;
  if (!(floor >= 0 && floor <= policy.baseMs && policy.baseMs <= policy.capMs)) {
    throw new RangeError(
      `backoff needs 0 <= floorMs <= baseMs <= capMs (got ${floor}, ${policy.baseMs}, ${policy.capMs})`,
    );
  }
  const ceiling = backoffCeilingMs(n, policy);
  const low = Math.max(floor, lowEnd(policy.jitter, ceiling));
  const drawn = random();
  const r = drawn > 0 ? Math.min(1, drawn) : 0; // NaN or below 0 from a broken source: the low end

  const wait = Math.floor(low + r * (ceiling - low));
  // low + r·(ceiling − low) rounds up to the ceiling for r just below 1: keep the range half-open.
  return r < 1 && wait >= ceiling ? Math.max(Math.ceil(low), Math.ceil(ceiling) - 1) : wait;
}

function lowEnd(jitter: Jitter, ceiling: number): number {
  switch (jitter) {
    case "full":
      return 0;
    case "equal":
      return ceiling / 2;
    case "none":
      return ceiling;
  }
}
