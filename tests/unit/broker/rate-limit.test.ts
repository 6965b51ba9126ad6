import { describe, expect, it } from "vitest";
import { PublishBucket } from "../../../broker/rate-limit.js";

describe("publish token bucket", () => {
  it("lets a burst through, then spaces packets at the sustained rate", () => {
    let now = 0;
    const bucket = new PublishBucket(10, 3, () => now);
    expect([bucket.reserve(), bucket.reserve(), bucket.reserve()]).toEqual([0, 0, 0]);
    expect(bucket.reserve()).toBe(100); // 1 token short at 10/s
    expect(bucket.reserve()).toBe(200);
    now = 1_000; // refilled 10 tokens, capped at the burst of 3 after the debt of 2
    expect(bucket.reserve()).toBe(0);
  });

  it("never accumulates more than the burst", () => {
    let now = 0;
    const bucket = new PublishBucket(5, 2, () => now);
    now = 60_000;
    expect([bucket.reserve(), bucket.reserve()]).toEqual([0, 0]);
    expect(bucket.reserve()).toBe(200);
  });

  it("refunds a refused packet's token", () => {
    const bucket = new PublishBucket(1, 1, () => 0);
    expect(bucket.reserve()).toBe(0);
    expect(bucket.reserve()).toBe(1_000);
    bucket.refund();
    expect(bucket.reserve()).toBe(1_000);
  });
});
