import { describe, expect, it } from "vitest";
import { backoffMs } from "../../../../edge/uplink/backoff.js";

describe("reconnect backoff", () => {
  const bounds = { minMs: 1_000, maxMs: 60_000 };

  it("doubles its ceiling per attempt up to the maximum", () => {
    const ceilings = [0, 1, 2, 3, 6, 7, 50].map((a) => backoffMs(a, bounds, () => 1));
    expect(ceilings).toEqual([1_000, 2_000, 4_000, 8_000, 60_000, 60_000, 60_000]);
  });

  it("draws from the upper half of the ceiling, so agents cut off together spread out", () => {
    expect(backoffMs(3, bounds, () => 0)).toBe(4_000);
    expect(backoffMs(3, bounds, () => 0.5)).toBe(6_000);
    const draws = new Set(Array.from({ length: 50 }, () => backoffMs(4, bounds)));
    expect(draws.size).toBeGreaterThan(10);
    for (const d of draws) expect(d >= 8_000 && d <= 16_000).toBe(true);
  });
});
