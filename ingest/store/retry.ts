import { backoffDelayMs, type BackoffPolicy } from "../../infra/backoff.js";
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

/**
 * The wait before retry `retry` (0-based): initial·2^retry at most max, with full jitter
 * (infra/backoff.ts), a uniform wait in [0, ceiling). Full jitter, because the requests that fail
 * together here are many against one server: the chunks of a round, the rounds in flight and the
 * API's queries all hit the same InfluxDB, and full jitter spreads them most. No floor: the retries
 * are few, and when they are spent the pipeline's outage loop takes over, which waits with a floor.
 */
export function retryBackoff(policy: RetryPolicy): BackoffPolicy {
  return { baseMs: policy.initialBackoffMs, capMs: policy.maxBackoffMs, jitter: "full" };
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
    const delayMs = Math.max(
      backoffDelayMs(n, retryBackoff(policy), deps.random),
      retryAfterMs ?? 0,
    );
    deps.onRetry?.({ attempt: n + 1, delayMs, reason });
    await deps.sleep(delayMs);
  }
}
