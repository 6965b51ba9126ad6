/*
 * Sign-in throttling: failed sign-ins counted per user name and per client address in a sliding
 * window; past the limit further attempts are refused (429 with Retry-After) before any password
 * is checked, so guessing costs the guesser time, not the server CPU. A successful sign-in
 * clears the user name's count. Both maps are bounded (the oldest keys go first), so a flood of
 * names cannot grow memory.
 */

export interface LoginLimits {
  readonly failuresPerUser: number;
  readonly failuresPerAddress: number;
  readonly windowMs: number;
}

const MAX_KEYS = 10_000;

class FailureWindow {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Milliseconds until the key may try again (0: now). */
  waitMs(key: string, now: number): number {
    const times = this.recent(key, now);
    if (times.length < this.limit) return 0;
    return (times[times.length - this.limit] ?? now) + this.windowMs - now;
  }

  fail(key: string, now: number): void {
    const times = this.recent(key, now);
    times.push(now);
    this.failures.delete(key);
    this.failures.set(key, times);
    if (this.failures.size > MAX_KEYS) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  clear(key: string): void {
    this.failures.delete(key);
  }

  private recent(key: string, now: number): number[] {
    const times = (this.failures.get(key) ?? []).filter((t) => t > now - this.windowMs);
    if (times.length === 0) this.failures.delete(key);
    else this.failures.set(key, times);
    return times;
  }
}

export class LoginLimiter {
  private readonly users: FailureWindow;
  private readonly addresses: FailureWindow;
  /** Sign-ins refused by the limit, for the metric. */
  refused = 0;

  constructor(
    limits: LoginLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.users = new FailureWindow(limits.failuresPerUser, limits.windowMs);
    this.addresses = new FailureWindow(limits.failuresPerAddress, limits.windowMs);
  }

  /** Milliseconds the attempt must wait (0: it may go ahead). */
  waitMs(username: string, address: string): number {
    const now = this.now();
    const wait = Math.max(this.users.waitMs(username, now), this.addresses.waitMs(address, now));
    if (wait > 0) this.refused++;
    return wait;
  }

  failed(username: string, address: string): void {
    const now = this.now();
    this.users.fail(username, now);
    this.addresses.fail(address, now);
  }

  succeeded(username: string): void {
    this.users.clear(username);
  }
}
