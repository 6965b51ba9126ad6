import { StoreUnavailableError } from "./types.js";

/** How a store retries a request that failed for a reason that may pass (network, 429, 5xx). */
export interface RetryPolicy {
  /** Retries after the first attempt; 0 = one attempt only. */
  readonly maxRetries: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/** What one attempt came to: a value, or a failure worth another try. */
export type Attempt<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      readonly reason: string;
      /** The peer's Retry-After, in ms from now. */
      readonly retryAfterMs?: number | undefined;
    };

export interface RetryDeps {
  readonly sleep: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), like Math.random. */
  readonly random: () => number;
  /** Called before each wait, to log it. */
  readonly onRetry?: (retry: {
    readonly attempt: number;
    readonly delayMs: number;
    readonly reason: string;
  }) => void;
}

/** The ceiling of the wait before retry number `retry` (0-based): initial·2^retry, at most max. */
export function backoffCeilingMs(retry: number, policy: RetryPolicy): number {
  return Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** retry);
}

/**
 * "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): a uniform wait in
 * [0, ceiling), so clients that failed together do not retry together.
 */
export function jitteredBackoffMs(
  retry: number,
  policy: RetryPolicy,
  random: () => number,
): number {
  return Math.floor(random() * backoffCeilingMs(retry, policy));
}

/**
 * A Retry-After header in ms from `nowMs`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * undefined when absent or unreadable; a date in the past is 0.
 */
export function parseRetryAfterMs(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An IMF-fixdate always names its zone (GMT); a bare number or a relative phrase is not a date.
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * Runs `attempt` until it succeeds or `policy.maxRetries` retries have failed, waiting a full-jitter
 * backoff between tries, and never less than the peer's Retry-After. Throws StoreUnavailableError
 * (with the peer's hint as retryAfterMs when it gave one) when the retries are spent, or at once
 * when the peer asks for a longer wait than maxBackoffMs: the caller holds the batch, so it is
 * better placed to wait that long than a request in flight.
 */
export async function withRetries<T>(
  attempt: (attemptNumber: number) => Promise<Attempt<T>>,
  policy: RetryPolicy,
  deps: RetryDeps,
): Promise<T> {
  for (let n = 0; ; n++) {
    const result = await attempt(n);
    if (result.ok) return result.value;
    const { reason, retryAfterMs } = result;
    if (n >= policy.maxRetries) {
      throw new StoreUnavailableError(
        `${reason} (gave up after ${n + 1} attempt${n === 0 ? "" : "s"})`,
        retryAfterMs,
      );
    }
    if (retryAfterMs !== undefined && retryAfterMs > policy.maxBackoffMs) {
      throw new StoreUnavailableError(
        `${reason} (the store asks to retry after ${retryAfterMs} ms)`,
        retryAfterMs,
      );
    }
    const delayMs = Math.max(jitteredBackoffMs(n, policy, deps.random), retryAfterMs ?? 0);
    deps.onRetry?.({ attempt: n + 1, delayMs, reason });
    await deps.sleep(delayMs);
  }
}
