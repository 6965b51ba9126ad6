import { describe, expect, it } from "vitest";
import { aggregateLevels, noiseModel, secondLevels } from "../../../simulators/models/index.js";
import { EPOCH, HOUR, local, mean, week } from "./fixtures.js";

const site = { epochMs: EPOCH, trafficDayLevel: 62, construction: { phase: "earthwork" as const } };

describe("noise model", () => {
  it("percentiles are ordered and LAeq sits above L50 in every minute of a week", () => {
    const readings = week(noiseModel(4, site));
    const broken = readings.filter(({ values: v }) => {
      return !(
        v.LAmax >= v.L10 &&
        v.L10 >= v.L50 &&
        v.L50 >= v.L90 &&
        v.L90 >= v.LAmin &&
        v.LAeq >= v.L50 - 1 &&
        v.LAeq <= v.LAmax
      );
    });
    expect(broken).toEqual([]);
  });

  it("LAeq is the energy mean of the 1-s samples, not their arithmetic mean", () => {
    const levels = secondLevels(9, site, local(1, 10));
    const agg = aggregateLevels(levels);
    const energyMean = 10 * Math.log10(mean(levels.map((l) => 10 ** (l / 10))));
    expect(agg.LAeq).toBeCloseTo(energyMean, 9);
    expect(agg.LAeq).toBeGreaterThanOrEqual(mean(levels));
    expect(aggregateLevels([50, 50, 50, 80]).LAeq).toBeCloseTo(10 * Math.log10((3e5 + 1e8) / 4), 6);
  });

  it("is louder by day than by night, and construction adds to working hours", () => {
    const laeq = (params: Parameters<typeof noiseModel>[1], from: number, to: number) => {
      const model = noiseModel(5, params);
      const xs: number[] = [];
      for (let day = 0; day < 5; day++) {
        for (let t = local(day, from); t < local(day, to); t += 60_000) {
          xs.push(10 ** (model.at(t).values.LAeq / 10));
        }
      }
      return 10 * Math.log10(mean(xs));
    };
    const ambient = { epochMs: EPOCH, trafficDayLevel: 62 };
    const night = laeq(ambient, 1, 5);
    const day = laeq(ambient, 9, 11);
    expect(day - night).toBeGreaterThan(10);
    expect(laeq(site, 9, 11) - day).toBeGreaterThan(3);
    // Outside working hours the site is silent unless it works without a permit.
    expect(Math.abs(laeq(site, 1, 5) - night)).toBeLessThan(1);
    const illegal = {
      ...site,
      construction: {
        phase: "earthwork" as const,
        extraWork: [0, 1, 2, 3, 4].map((d) => ({ fromMs: local(d, 1), toMs: local(d, 5) })),
      },
    };
    expect(laeq(illegal, 1, 5)).toBeGreaterThan(55);
  });

  it("a quiet night still has occasional events (LAmax well above L50)", () => {
    const model = noiseModel(6, { epochMs: EPOCH, trafficDayLevel: 55 });
    let events = 0;
    for (let t = local(2, 1); t < local(2, 1) + 4 * HOUR; t += 60_000) {
      const v = model.at(t).values;
      if (v.LAmax - v.L50 > 15) events++;
    }
    expect(events).toBeGreaterThan(0);
    expect(events).toBeLessThan(30);
  });
});
