import { describe, expect, it } from "vitest";
import {
  backoffCeilingMs,
  backoffDelayMs,
  type BackoffPolicy,
  type Jitter,
} from "../../../infra/backoff.js";

const JUST_BELOW_ONE = 1 - Number.EPSILON;
const policy = (jitter: Jitter, floorMs?: number): BackoffPolicy => ({
  baseMs: 100,
  capMs: 1_000,
  jitter,
  ...(floorMs === undefined ? {} : { floorMs }),
});

/** A deterministic stand-in for Math.random: a fixed cycle of draws. */
function cycle(...draws: number[]): () => number {
  let i = 0;
  return () => draws[i++ % draws.length] ?? 0;
}

describe("backoff ceiling", () => {
  it("doubles from the base per retry up to the cap", () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 9, 2_000].map((n) => backoffCeilingMs(n, policy("full")));
    expect(ceilings).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]);
  });

  it("treats a negative retry as the first", () => {
    expect(backoffCeilingMs(-3, policy("full"))).toBe(100);
  });
});

describe("full jitter: uniform in [0, ceiling)", () => {
  it("waits 0 at random() = 0 and just under the ceiling as random() → 1", () => {
    for (let n = 0; n < 8; n++) {
      const ceiling = backoffCeilingMs(n, policy("full"));
      expect(backoffDelayMs(n, policy("full"), () => 0)).toBe(0);
      expect(backoffDelayMs(n, policy("full"), () => 0.5)).toBe(ceiling / 2);
      expect(backoffDelayMs(n, policy("full"), () => JUST_BELOW_ONE)).toBe(ceiling - 1);
    }
  });

  it("never exceeds the ceiling, even for a source that returns 1 or more", () => {
    expect(backoffDelayMs(2, policy("full"), () => 1)).toBe(400);
    expect(backoffDelayMs(2, policy("full"), () => 7)).toBe(400);
    expect(backoffDelayMs(2, policy("full"), () => -1)).toBe(0);
    expect(backoffDelayMs(2, policy("full"), () => Number.NaN)).toBe(0);
  });

  it("spreads over the whole range (not only its upper half)", () => {
    const random = cycle(0.05, 0.13, 0.42, 0.71, 0.99);
    const waits = Array.from({ length: 5 }, () => backoffDelayMs(3, policy("full"), random));
    expect(waits).toEqual([40, 104, 336, 568, 792]);
    expect(waits.filter((w) => w < 400)).toHaveLength(3);
  });

  it("draws with Math.random when no source is given, inside the bounds", () => {
    const waits = Array.from({ length: 200 }, () => backoffDelayMs(3, policy("full")));
    for (const w of waits) expect(w >= 0 && w < 800 && Number.isInteger(w)).toBe(true);
    expect(new Set(waits).size).toBeGreaterThan(50);
    expect(Math.min(...waits)).toBeLessThan(400);
  });
});

describe("equal jitter: uniform in [ceiling/2, ceiling)", () => {
  it("waits half the ceiling at random() = 0 and just under it as random() → 1", () => {
    for (let n = 0; n < 8; n++) {
      const ceiling = backoffCeilingMs(n, policy("equal"));
      expect(backoffDelayMs(n, policy("equal"), () => 0)).toBe(ceiling / 2);
      expect(backoffDelayMs(n, policy("equal"), () => JUST_BELOW_ONE)).toBe(ceiling - 1);
      expect(backoffDelayMs(n, policy("equal"), () => 1)).toBe(ceiling);
    }
  });
});

describe("rounding", () => {
  it("keeps the range half-open where low + r·(ceiling − low) rounds up to the ceiling", () => {
    const wide = { baseMs: 2_500, capMs: 5_000 };
    expect(backoffDelayMs(1, { ...wide, jitter: "equal" }, () => JUST_BELOW_ONE)).toBe(4_999);
    expect(backoffDelayMs(1, { ...wide, jitter: "full" }, () => JUST_BELOW_ONE)).toBe(4_999);
    expect(
      backoffDelayMs(9, { baseMs: 1, capMs: 2 ** 40, jitter: "full" }, () => JUST_BELOW_ONE),
    ).toBe(511);
  });
});

describe("no jitter", () => {
  it("waits exactly the ceiling whatever the draw", () => {
    expect(backoffDelayMs(1, policy("none"), () => 0)).toBe(200);
    expect(backoffDelayMs(1, policy("none"), () => JUST_BELOW_ONE)).toBe(200);
  });
});

describe("a floor", () => {
  it("raises the low end of full jitter and keeps the draw uniform above it", () => {
    expect(backoffDelayMs(0, policy("full", 20), () => 0)).toBe(20);
    expect(backoffDelayMs(0, policy("full", 20), () => 0.5)).toBe(60);
    expect(backoffDelayMs(3, policy("full", 20), () => 0.5)).toBe(410);
    expect(backoffDelayMs(3, policy("full", 20), () => JUST_BELOW_ONE)).toBe(799);
  });

  it("equal to the base makes the first retry wait exactly the base", () => {
    expect(backoffDelayMs(0, policy("full", 100), () => 0)).toBe(100);
    expect(backoffDelayMs(0, policy("full", 100), () => JUST_BELOW_ONE)).toBe(100);
  });

  it("does not lower equal jitter's own low end", () => {
    expect(backoffDelayMs(3, policy("equal", 20), () => 0)).toBe(400);
  });

  it("is refused above the base, and so is a base above the cap", () => {
    expect(() => backoffDelayMs(0, policy("full", 101), () => 0)).toThrow(RangeError);
    expect(() => backoffDelayMs(0, { ...policy("full"), capMs: 50 }, () => 0)).toThrow(RangeError);
    expect(() => backoffDelayMs(0, policy("full", -1), () => 0)).toThrow(RangeError);
  });
});
