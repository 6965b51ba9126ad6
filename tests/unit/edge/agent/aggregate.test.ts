import { describe, expect, it } from "vitest";
import {
  IntervalAggregator,
  intervalEnd,
  LateSampleError,
} from "../../../../edge/agent/aggregate.js";

const T0 = Date.parse("2026-11-27T14:00:00Z");
const MIN = 60_000;

/** Feeds 1-s samples ending at T0+1s, T0+2s, ... and closes the minute. */
function noiseMinute(levels: readonly number[]) {
  const agg = new IntervalAggregator("noise", MIN);
  levels.forEach((level, i) => agg.add(T0 + (i + 1) * 1000, "normal", { LAeq: level }));
  return agg.close(T0 + MIN);
}

describe("interval boundaries", () => {
  it("aligns intervals to the wall clock; a sample stamped at the end belongs to that interval", () => {
    expect(intervalEnd(T0 + 1, MIN)).toBe(T0 + MIN);
    expect(intervalEnd(T0 + MIN, MIN)).toBe(T0 + MIN);
    expect(intervalEnd(T0 + MIN + 1, MIN)).toBe(T0 + 2 * MIN);
    expect(intervalEnd(T0 + 7 * 60_000 + 5, 15 * MIN)).toBe(T0 + 15 * MIN);
  });

  it("closes an interval when a sample of the next arrives, stamped with its end", () => {
    const agg = new IntervalAggregator("dust", MIN);
    expect(agg.add(T0 + 30_000, "normal", { pm10: 10 })).toEqual([]);
    expect(agg.add(T0 + MIN, "normal", { pm10: 20 })).toEqual([]);
    const closed = agg.add(T0 + MIN + 1, "normal", { pm10: 99 });
    expect(closed).toEqual([
      { ts: "2026-11-27T14:01:00.000Z", quality: "normal", values: { pm10: 15 } },
    ]);
  });

  it("closes on the clock only once the interval has ended", () => {
    const agg = new IntervalAggregator("dust", MIN);
    agg.add(T0 + 5_000, "normal", { pm10: 10 });
    expect(agg.close(T0 + MIN - 1)).toEqual([]);
    expect(agg.close(T0 + MIN)).toHaveLength(1);
    expect(agg.close(T0 + 2 * MIN)).toEqual([]);
  });

  it("refuses a sample of an interval already closed instead of merging it elsewhere", () => {
    const agg = new IntervalAggregator("dust", MIN);
    agg.add(T0 + 5_000, "normal", { pm10: 10 });
    agg.close(T0 + MIN);
    expect(() => agg.add(T0 + 59_000, "normal", { pm10: 10 })).toThrow(LateSampleError);
    expect(agg.add(T0 + MIN + 1_000, "normal", { pm10: 10 })).toEqual([]);
  });

  it("a new interval length cuts the open interval at now, never stamping the future", () => {
    const agg = new IntervalAggregator("dust", 10 * MIN);
    agg.add(T0 + 1_000, "normal", { pm10: 10 });
    agg.add(T0 + 2_000, "normal", { pm10: 30 });
    const cut = agg.setInterval(MIN, T0 + 150_000);
    expect(cut).toEqual([
      { ts: "2026-11-27T14:02:30.000Z", quality: "normal", values: { pm10: 20 } },
    ]);
    expect(agg.interval).toBe(MIN);
    agg.add(T0 + 170_000, "normal", { pm10: 50 });
    expect(agg.close(T0 + 3 * MIN)[0]?.ts).toBe("2026-11-27T14:03:00.000Z");
  });
});

describe("noise", () => {
  it("LAeq is the energy mean, not the mean of dB", () => {
    // 10·log10((10^6 + 10^7) / 2) = 10·log10(5.5e6) = 67.40 dB, where the dB mean would be 65.
    const [reading] = noiseMinute([60, 70]);
    expect(reading?.values).toMatchObject({ LAeq: 67.4, LAmax: 70, LAmin: 60 });
  });

  it("equal levels give that level", () => {
    const [reading] = noiseMinute(Array.from({ length: 60 }, () => 55.3));
    expect(reading?.values).toEqual({
      LAeq: 55.3,
      LAmax: 55.3,
      LAmin: 55.3,
      L10: 55.3,
      L50: 55.3,
      L90: 55.3,
    });
  });

  it("L10, L50, L90 are the levels exceeded 10, 50, 90 % of the time (nearest rank)", () => {
    // Ten samples 50..59: L10 is the highest (1 of 10), L50 the 5th highest, L90 the 9th.
    const [ten] = noiseMinute([57, 50, 59, 51, 58, 52, 56, 53, 55, 54]);
    expect(ten?.values).toMatchObject({ L10: 59, L50: 55, L90: 51, LAmax: 59, LAmin: 50 });
    // Sixty samples 40.0, 40.5, ..., 69.5: L10 is the 6th highest (67.0), L50 the 30th (55.0),
    // L90 the 54th (43.0).
    const [sixty] = noiseMinute(Array.from({ length: 60 }, (_, i) => 40 + i * 0.5));
    expect(sixty?.values).toMatchObject({ L10: 67, L50: 55, L90: 43 });
  });

  it("uses the samples' own LAmax and LAmin where they carry them", () => {
    const agg = new IntervalAggregator("noise", MIN);
    agg.add(T0 + 1_000, "normal", { LAeq: 60, LAmax: 72.4, LAmin: 58 });
    agg.add(T0 + 2_000, "normal", { LAeq: 61, LAmax: 66, LAmin: 55.2 });
    expect(agg.close(T0 + MIN)[0]?.values).toMatchObject({ LAmax: 72.4, LAmin: 55.2 });
  });

  it("an interval without any level gives no reading", () => {
    const agg = new IntervalAggregator("noise", MIN);
    agg.add(T0 + 1_000, "normal", { LAmax: 70 });
    expect(agg.close(T0 + MIN)).toEqual([]);
  });
});

describe("other quantities", () => {
  it("means numbers, vector-means wind direction", () => {
    const agg = new IntervalAggregator("dust", MIN);
    agg.add(T0 + 10_000, "normal", { pm10: 10, windDirection: 350, windSpeed: 2 });
    agg.add(T0 + 20_000, "normal", { pm10: 20, windDirection: 10 });
    agg.add(T0 + 30_000, "normal", { pm10: 33, windDirection: 0, windSpeed: 3 });
    expect(agg.close(T0 + MIN)[0]?.values).toEqual({ pm10: 21, windDirection: 0, windSpeed: 2.5 });
  });

  it("fan on if it ran at all; purifier on only if it ran the whole interval", () => {
    const agg = new IntervalAggregator("cooking_fume", MIN);
    agg.add(T0 + 10_000, "normal", { fanOn: false, purifierOn: true, oilFume: 1 });
    agg.add(T0 + 20_000, "normal", { fanOn: true, purifierOn: false, oilFume: 2 });
    expect(agg.close(T0 + MIN)[0]?.values).toEqual({
      fanOn: true,
      purifierOn: false,
      oilFume: 1.5,
    });
    agg.add(T0 + MIN + 10_000, "normal", { fanOn: false, purifierOn: true });
    agg.add(T0 + MIN + 20_000, "normal", { fanOn: false, purifierOn: true });
    expect(agg.close(T0 + 2 * MIN)[0]?.values).toEqual({ fanOn: false, purifierOn: true });
  });
});

describe("quality", () => {
  it("is the most severe flag of the interval", () => {
    const agg = new IntervalAggregator("utility_tunnel", MIN);
    agg.add(T0 + 10_000, "normal", { ch4: 1 });
    agg.add(T0 + 20_000, "calibration", { ch4: 50 });
    agg.add(T0 + 30_000, "normal", { ch4: 1 });
    expect(agg.close(T0 + MIN)[0]?.quality).toBe("calibration");
    agg.add(T0 + MIN + 10_000, "calibration", { ch4: 1 });
    agg.add(T0 + MIN + 20_000, "fault", { ch4: 1 });
    expect(agg.close(T0 + 2 * MIN)[0]?.quality).toBe("fault");
    agg.add(T0 + 2 * MIN + 10_000, "normal", { ch4: 1 });
    expect(agg.close(T0 + 3 * MIN)[0]?.quality).toBe("normal");
  });
});
