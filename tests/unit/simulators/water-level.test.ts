import { describe, expect, it } from "vitest";
import type { Storm } from "../../../simulators/models/index.js";
import {
  chicagoHyetograph,
  waterLevelModel,
  waterModel,
} from "../../../simulators/models/index.js";
import { EPOCH, HOUR, MINUTE, local } from "./fixtures.js";

const intense: Storm = { startMs: local(1, 14), totalMm: 100, durationMin: 120, peakPosition: 0.4 };
const moderate: Storm = { startMs: local(1, 14), totalMm: 30, durationMin: 180, peakPosition: 0.4 };

function trace(storm: Storm, hours = 24) {
  const model = waterModel({ epochMs: EPOCH, station: "river", storms: [storm] });
  const out: { t: number; rain: number; stage: number; ponding: number }[] = [];
  for (let t = storm.startMs - 2 * HOUR; t < storm.startMs + hours * HOUR; t += MINUTE) {
    const s = model.at(t);
    out.push({ t, rain: s.rainMmPerH, stage: s.stage, ponding: s.ponding });
  }
  return out;
}

const argmax = <T>(xs: readonly T[], f: (x: T) => number): T =>
  xs.reduce((best, x) => (f(x) > f(best) ? x : best));

describe("Chicago design storm", () => {
  it("delivers the total depth in the duration with the peak where asked", () => {
    const mm = chicagoHyetograph(intense);
    expect(mm).toHaveLength(120);
    expect(mm.reduce((a, b) => a + b, 0)).toBeCloseTo(100, 6);
    expect(mm.indexOf(Math.max(...mm))).toBe(48);
  });
});

describe("rainstorm → river stage", () => {
  const points = trace(intense);
  const base = points[0]?.stage ?? NaN;

  it("does not rise before the rain starts, and rises after", () => {
    const before = points.filter((p) => p.t < intense.startMs);
    expect(before.every((p) => Math.abs(p.stage - base) < 1e-9)).toBe(true);
    const after2h = points.find((p) => p.t === intense.startMs + 2 * HOUR);
    expect(after2h?.stage).toBeGreaterThan(base + 0.3);
  });

  it("peaks after the rain peak, then recedes towards the base stage", () => {
    const rainPeak = argmax(points, (p) => p.rain);
    const stagePeak = argmax(points, (p) => p.stage);
    expect(stagePeak.t).toBeGreaterThan(rainPeak.t + 30 * MINUTE);
    expect(stagePeak.stage - base).toBeGreaterThan(1.5);
    const afterPeak = points.filter((p) => p.t > stagePeak.t);
    // Monotonic recession once past the peak.
    afterPeak
      .slice(1)
      .forEach((p, i) => expect(p.stage).toBeLessThanOrEqual((afterPeak[i]?.stage ?? 0) + 1e-12));
    const last = points[points.length - 1];
    expect((last?.stage ?? 0) - base).toBeLessThan(0.2 * (stagePeak.stage - base));
  });

  it("a bigger storm raises the river higher", () => {
    const peak = (s: Storm) => Math.max(...trace(s).map((p) => p.stage));
    expect(peak(intense)).toBeGreaterThan(peak(moderate) + 0.5);
  });

  it("the measured stage follows the truth within a few millimetres before the storm", () => {
    const sensor = waterLevelModel(3, { epochMs: EPOCH, station: "river", storms: [intense] });
    for (let t = intense.startMs - HOUR; t < intense.startMs; t += 5 * MINUTE) {
      expect(Math.abs((sensor.at(t).values.stage ?? NaN) - base)).toBeLessThan(0.03);
    }
  });
});

describe("rainstorm → underpass ponding", () => {
  it("exceeds the 15 cm alert only in an intense storm, and drains afterwards", () => {
    const heavy = trace(intense, 6);
    const mild = trace(moderate, 6);
    expect(Math.max(...mild.map((p) => p.ponding))).toBeLessThan(15);
    const deepest = argmax(heavy, (p) => p.ponding);
    expect(deepest.ponding).toBeGreaterThan(15);
    expect(heavy.filter((p) => p.t < intense.startMs).every((p) => p.ponding === 0)).toBe(true);
    const drained = heavy.find((p) => p.t > deepest.t && p.ponding === 0);
    expect(drained).toBeDefined();
    expect((drained?.t ?? Infinity) - deepest.t).toBeLessThan(3 * HOUR);
  });

  it("the underpass sensor reports ponding and no stage", () => {
    const sensor = waterLevelModel(1, { epochMs: EPOCH, station: "underpass", storms: [intense] });
    const reading = sensor.at(intense.startMs + 60 * MINUTE);
    expect(reading.values.stage).toBeUndefined();
    expect(reading.values.ponding).toBeGreaterThan(15);
  });
});
