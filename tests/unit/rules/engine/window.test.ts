import { describe, expect, it } from "vitest";
import {
  addSample,
  aggregate,
  clockWindow,
  clockWindows,
  inInterval,
  insertSample,
  localMidnight,
  passGate,
  pruneSamples,
  retentionByQuantity,
  rollingWindow,
  type Sample,
  windowValue,
} from "../../../../rules/engine/window.js";
import { HOUR, MIN, night, packRule, SEC } from "./harness.js";

const TZ = "Asia/Shanghai";
const s = (at: number, value: number, quality: Sample["quality"] = "normal"): Sample => ({
  at,
  value,
  quality,
});

describe("aggregates", () => {
  const samples = [s(1, 50), s(2, 60), s(3, 40)];

  it("latest, mean, max, min", () => {
    expect(aggregate(samples, "latest")).toBe(40);
    expect(aggregate(samples, "mean")).toBe(50);
    expect(aggregate(samples, "max")).toBe(60);
    expect(aggregate(samples, "min")).toBe(40);
  });

  it("energy_mean is 10·log10(mean(10^(L/10))), not the arithmetic mean", () => {
    expect(aggregate([s(1, 60), s(2, 60)], "energy_mean")).toBeCloseTo(60, 10);
    // 50 dB and 60 dB: 10·log10((10^5 + 10^6) / 2) = 57.40 dB.
    expect(aggregate([s(1, 50), s(2, 60)], "energy_mean")).toBeCloseTo(57.404, 3);
  });

  it("no numbers: undefined; booleans are ignored", () => {
    expect(aggregate([], "mean")).toBeUndefined();
    expect(aggregate([{ at: 1, value: true, quality: "normal" }], "max")).toBeUndefined();
  });
});

describe("windows", () => {
  it("a rolling window is (t − w, t]: the reading exactly w old is out", () => {
    const w = rollingWindow(10 * MIN, 5 * MIN);
    const samples = [s(5 * MIN, 1), s(5 * MIN + 1, 2), s(10 * MIN, 3)];
    expect(inInterval(samples, w).map((x) => x.value)).toEqual([2, 3]);
  });

  it("clock windows align to local midnight in Asia/Shanghai and are (from, to]", () => {
    expect(localMidnight(night("23:30"), TZ)).toBe(Date.parse("2026-11-26T00:00:00+08:00"));
    expect(clockWindow(night("22:05"), 10 * MIN, TZ)).toEqual({
      from: night("21:50"),
      to: night("22:00"),
      clock: true,
    });
    // At exactly 22:00 the 21:00-22:00 hour is the newest complete one.
    expect(clockWindow(night("22:00"), HOUR, TZ)).toMatchObject({
      from: night("21:00"),
      to: night("22:00"),
    });
    // Just after midnight: the last interval of the previous day.
    expect(clockWindow(night("00:00:01"), HOUR, TZ)).toMatchObject({
      from: night("23:00"),
      to: night("00:00"),
    });
    const w = clockWindow(night("22:00"), HOUR, TZ);
    const samples = [s(night("21:00"), 1), s(night("21:59:59"), 2), s(night("22:00"), 3)];
    // (from, to]: the reading stamped 22:00 measured the hour's last minute.
    expect(inInterval(samples, w).map((x) => x.value)).toEqual([2, 3]);
  });

  it("the m newest clock intervals, oldest first", () => {
    expect(clockWindows(night("00:35"), 10 * MIN, TZ, 3).map((w) => w.from)).toEqual([
      night("00:00"),
      night("00:10"),
      night("00:20"),
    ]);
  });

  it("windowValue: latest without a window uses the newest numeric reading at or before t", () => {
    const samples = [s(1 * SEC, 10), s(2 * SEC, 20), s(5 * SEC, 50)];
    expect(windowValue(samples, "latest", 3 * SEC, { align: "rolling" }, TZ).value).toBe(20);
    expect(
      windowValue(samples, "max", 5 * SEC, { windowMs: 4 * SEC, align: "rolling" }, TZ).value,
    ).toBe(50);
  });
});

describe("quality gate and bounded memory", () => {
  it("readings with a suppressed flag are left out", () => {
    const samples = [s(1, 10), s(2, 99, "calibration"), s(3, 12, "fault")];
    expect(passGate(samples, { suppressFlags: ["calibration"] }).map((x) => x.value)).toEqual([
      10, 12,
    ]);
  });

  it("insert keeps time order; a duplicate instant replaces", () => {
    let samples: Sample[] = [];
    samples = insertSample(samples, s(3, 3));
    samples = insertSample(samples, s(1, 1));
    samples = insertSample(samples, s(2, 2));
    samples = insertSample(samples, s(2, 22));
    expect(samples.map((x) => x.value)).toEqual([1, 22, 3]);
  });

  it("keeps only the retention window, and always the newest sample", () => {
    let samples: Sample[] = [];
    for (let t = 0; t < 10 * HOUR; t += MIN) samples = addSample(samples, s(t, 1), HOUR, t);
    expect(samples).toHaveLength(60);
    expect(pruneSamples(samples, 0, 20 * HOUR)).toHaveLength(1);
  });

  it("retention per quantity: the longest window the rules need", () => {
    const r = retentionByQuantity([
      packRule("noise.area.laeq"),
      packRule("noise.construction.laeq"),
      packRule("cooking-fume.oil-fume"),
      packRule("cooking-fume.purifier-off"),
    ]);
    expect(r.get("LAeq")).toBe(2 * HOUR); // 1-h clock window plus the hour before
    expect(r.get("oilFume")).toBe(40 * MIN); // 3 × 10 min plus one
    expect(r.get("fanOn")).toBe(0);
  });
});
