import { describe, expect, it } from "vitest";
import type { SensorKind } from "../../../contracts/index.js";
import { MAX_READINGS_PER_MESSAGE, Uplink } from "../../../contracts/index.js";
import type { ModelReading, SignalModel } from "../../../simulators/models/index.js";
import {
  cookingFumeModel,
  dustModel,
  noiseModel,
  utilityTunnelModel,
  waterLevelModel,
} from "../../../simulators/models/index.js";
import { EPOCH, HOUR, local, week } from "./fixtures.js";

const storm = { startMs: local(2, 14), totalMm: 120, durationMin: 120 };

const MODELS: Record<SensorKind, (seed: number) => SignalModel<unknown>> = {
  noise: (seed) =>
    noiseModel(seed, {
      epochMs: EPOCH,
      trafficDayLevel: 68,
      construction: {
        phase: "foundation",
        extraWork: [{ fromMs: local(3, 23), toMs: local(4, 3) }],
      },
    }),
  dust: (seed) =>
    dustModel(seed, {
      epochMs: EPOCH,
      phase: "earthwork",
      meanWindSpeed: 5,
      episodes: [{ fromMs: local(1, 9), toMs: local(1, 15) }],
    }),
  cooking_fume: (seed) =>
    cookingFumeModel(seed, {
      epochMs: EPOCH,
      size: "large",
      purifierOffWindows: [{ fromMs: local(4, 17), toMs: local(4, 21) }],
    }),
  water_level: (seed) =>
    waterLevelModel(seed, {
      epochMs: EPOCH,
      station: seed % 2 === 0 ? "river" : "underpass",
      storms: [storm],
    }),
  utility_tunnel: (seed) =>
    utilityTunnelModel(seed, {
      epochMs: EPOCH,
      leaks: [{ startMs: local(5, 3), equilibriumLel: 90 }],
      ingress: [{ fromMs: local(2, 14), toMs: local(2, 20), cmPerH: 80 }],
    }),
};

function validate(kind: SensorKind, readings: readonly ModelReading<unknown>[]): string[] {
  const problems: string[] = [];
  for (let i = 0; i < readings.length; i += MAX_READINGS_PER_MESSAGE) {
    const message = {
      v: 1,
      deviceId: `sim-${kind}`,
      seq: 1 + i / MAX_READINGS_PER_MESSAGE,
      kind,
      readings: readings.slice(i, i + MAX_READINGS_PER_MESSAGE),
    };
    const result = Uplink.safeParse(message);
    if (!result.success) problems.push(...result.error.issues.map((issue) => issue.message));
  }
  return problems;
}

describe("every model stays in the physical ranges of contracts/model/sensors.ts over a week", () => {
  for (const kind of Object.keys(MODELS) as SensorKind[]) {
    it(`${kind}: a week of 1-minute readings is a valid uplink`, () => {
      for (const seed of [1, 2]) {
        const readings = week(MODELS[kind](seed));
        expect(readings).toHaveLength(7 * 24 * 60);
        expect(validate(kind, readings)).toEqual([]);
      }
    });

    it(`${kind}: the same seed gives the same series, a different seed a different one`, () => {
      const day = (seed: number) => week(MODELS[kind](seed), 600).slice(0, 144);
      // Even seeds: the water-level model is a river gauge (a dry underpass reads 0 whatever the seed).
      expect(day(12)).toEqual(day(12));
      expect(day(14)).not.toEqual(day(12));
    });
  }

  it("flags faults at the configured rate, and only then", () => {
    const count = (faultRate: number) =>
      week(noiseModel(3, { epochMs: EPOCH, faultRate }), 300).filter((r) => r.quality === "fault")
        .length;
    expect(count(0)).toBe(0);
    const n = count(0.05); // 2016 readings: expect ~100
    expect(n).toBeGreaterThan(60);
    expect(n).toBeLessThan(150);
  });

  it("timestamps are the instants asked for", () => {
    const reading = MODELS.dust(1).at(EPOCH + HOUR);
    expect(reading.ts).toBe(new Date(EPOCH + HOUR).toISOString());
  });
});
