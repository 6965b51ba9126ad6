/**
 * Token bucket for one connection's PUBLISH packets. `reserve()` takes a token now and says how
 * long the caller must wait before the packet may proceed; tokens may go negative, so packets that
 * arrive together are spaced out at the sustained rate.
 */
export class PublishBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Milliseconds to wait before this packet may proceed (0 when a token was available). */
  reserve(): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
    this.last = t;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.ratePerSecond) * 1000);
  }

  /** Give back a token reserved for a packet that was refused after all. */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }
}
