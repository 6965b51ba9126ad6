import { describe, expect, it } from "vitest";
import { backoffMs, RECONNECT_FLOOR_MS } from "../../../../edge/uplink/backoff.js";

describe("reconnect backoff", () => {
  const bounds = { minMs: 1_000, maxMs: 60_000 };

  it("doubles its ceiling per attempt up to the maximum", () => {
    const ceilings = [0, 1, 2, 3, 6, 7, 50].map((a) => backoffMs(a, bounds, () => 1));
    expect(ceilings).toEqual([1_000, 2_000, 4_000, 8_000, 60_000, 60_000, 60_000]);
  });

  // Until this used infra/backoff.ts it drew from the upper half [ceiling/2, ceiling] while
  // calling that "full jitter"; this pins full jitter above a small floor.
  it("draws uniformly between the floor and the ceiling (full jitter), so agents cut off together spread out", () => {
    expect(backoffMs(3, bounds, () => 0)).toBe(RECONNECT_FLOOR_MS);
    expect(backoffMs(3, bounds, () => 0.5)).toBe(4_050);
    expect(backoffMs(3, bounds, () => 1 - Number.EPSILON)).toBe(7_999);
    const draws = new Set(Array.from({ length: 50 }, () => backoffMs(4, bounds)));
    expect(draws.size).toBeGreaterThan(10);
    for (const d of draws) expect(d >= RECONNECT_FLOOR_MS && d < 16_000).toBe(true);
  });

  it("never reconnects at ~0 ms, and keeps the floor within a small minimum", () => {
    for (let a = 0; a < 10; a++) {
      expect(backoffMs(a, bounds, () => 0)).toBe(RECONNECT_FLOOR_MS);
    }
    expect(backoffMs(0, { minMs: 40, maxMs: 1_000 }, () => 0)).toBe(40);
    expect(backoffMs(0, { minMs: 40, maxMs: 1_000 }, () => 1 - Number.EPSILON)).toBe(40);
  });
});
