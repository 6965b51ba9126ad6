import { describe, expect, it } from "vitest";
import type { CookingFumeParams } from "../../../simulators/models/index.js";
import { cookingFumeModel } from "../../../simulators/models/index.js";
import { EPOCH, local, mean } from "./fixtures.js";

/** GB 18483-2001: 10-minute means, limit 2.0 mg/m³. */
function tenMinuteMeans(params: CookingFumeParams, day: number, from: number, to: number) {
  const model = cookingFumeModel(7, params);
  const means: number[] = [];
  for (let t = local(day, from); t < local(day, to); t += 600_000) {
    const xs: number[] = [];
    for (let m = 1; m <= 10; m++) xs.push(model.at(t + m * 60_000).values.oilFume);
    means.push(mean(xs));
  }
  return means;
}

describe("cooking fume model", () => {
  it("with the purifier off at dinner, 10-min means exceed 2.0; with it on they stay below", () => {
    for (const day of [0, 1, 2, 3, 4, 5, 6]) {
      const off = tenMinuteMeans(
        { epochMs: EPOCH, size: "medium", purifierOn: false },
        day,
        17.5,
        20,
      );
      const on = tenMinuteMeans({ epochMs: EPOCH, size: "medium" }, day, 17, 20.5);
      expect(Math.max(...off)).toBeGreaterThan(2 * 2.0);
      expect(off.filter((m) => m > 2.0).length).toBeGreaterThan(off.length / 2);
      expect(Math.max(...on)).toBeLessThan(2.0);
    }
  });

  it("the fan runs at meal times only, and the duct is clean outside them", () => {
    const model = cookingFumeModel(8, { epochMs: EPOCH, size: "large" });
    const night = model.at(local(1, 3));
    expect(night.values.fanOn).toBe(false);
    expect(night.values.purifierOn).toBe(false);
    expect(night.values.oilFume).toBeLessThan(0.1);
    const lunch = model.at(local(1, 12));
    expect(lunch.values.fanOn).toBe(true);
    expect(lunch.values.purifierOn).toBe(true);
  });

  it("switching the purifier off for a window multiplies the fume several times", () => {
    const window = { fromMs: local(2, 18), toMs: local(2, 19) };
    const base = { epochMs: EPOCH, size: "small" as const };
    const on = tenMinuteMeans(base, 2, 18, 19);
    const off = tenMinuteMeans({ ...base, purifierOffWindows: [window] }, 2, 18, 19);
    expect(mean(off)).toBeGreaterThan(4 * mean(on));
    expect(
      cookingFumeModel(1, { ...base, purifierOffWindows: [window] }).at(local(2, 18.5)).values
        .purifierOn,
    ).toBe(false);
  });
});
