import { describe, expect, it } from "vitest";
import type { ConstructionPhase } from "../../../contracts/index.js";
import { dustModel } from "../../../simulators/models/index.js";
import { EPOCH, local, mean, week } from "./fixtures.js";

const weekMean = (phase: ConstructionPhase, seed = 1) =>
  mean(week(dustModel(seed, { epochMs: EPOCH, phase }), 300).map((r) => r.values.pm10));

describe("dust model", () => {
  it("earthwork is dustier than decoration on average, for several seeds", () => {
    for (const seed of [1, 2, 3]) {
      expect(weekMean("earthwork", seed)).toBeGreaterThan(1.5 * weekMean("decoration", seed));
    }
  });

  it("keeps PM2.5 ≤ PM10 ≤ TSP", () => {
    const readings = week(
      dustModel(2, { epochMs: EPOCH, phase: "earthwork", meanWindSpeed: 6 }),
      300,
    );
    for (const { values: v } of readings) {
      expect(v.pm2_5).toBeLessThanOrEqual(v.pm10);
      expect(v.pm10).toBeLessThanOrEqual(v.tsp);
    }
  });

  it("an episode with controls off pushes the hourly mean past 200 µg/m³", () => {
    const episode = { fromMs: local(2, 9), toMs: local(2, 12) };
    const model = dustModel(3, { epochMs: EPOCH, phase: "earthwork", episodes: [episode] });
    const hour: number[] = [];
    for (let t = local(2, 10); t < local(2, 11); t += 60_000) hour.push(model.at(t).values.pm10);
    expect(mean(hour)).toBeGreaterThan(200);
  });
});
