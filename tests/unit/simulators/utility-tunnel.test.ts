import { describe, expect, it } from "vitest";
import { tunnelModel, utilityTunnelModel } from "../../../simulators/models/index.js";
import { EPOCH, HOUR, MINUTE, local, mean } from "./fixtures.js";

const leakStart = local(2, 3);

describe("utility tunnel model", () => {
  it("without a leak CH4 stays in the 0–2 %LEL background and O2 near 20.9 %", () => {
    const model = utilityTunnelModel(1, { epochMs: EPOCH });
    for (let t = EPOCH; t < EPOCH + 3 * 24 * HOUR; t += 10 * MINUTE) {
      const v = model.at(t).values;
      expect(v.ch4).toBeLessThanOrEqual(2.5);
      expect(v.o2).toBeGreaterThan(20.7);
      expect(v.o2).toBeLessThan(21.1);
    }
  });

  it("a leak pushes CH4 past 20 %LEL and O2 down; ventilation and the gas cut bring it back", () => {
    const model = utilityTunnelModel(2, { epochMs: EPOCH, leaks: [{ startMs: leakStart }] });
    const during: { ch4: number; o2: number }[] = [];
    for (let t = leakStart; t < leakStart + 2 * HOUR; t += MINUTE) {
      const v = model.at(t).values;
      during.push({ ch4: v.ch4, o2: v.o2 });
    }
    const before: number[] = [];
    for (let t = leakStart - HOUR; t < leakStart; t += MINUTE) before.push(model.at(t).values.o2);
    const peak = during.reduce((a, b) => (b.ch4 > a.ch4 ? b : a));
    expect(peak.ch4).toBeGreaterThan(20);
    expect(peak.o2).toBeLessThan(mean(before) - 0.15);
    expect(during[during.length - 1]?.ch4).toBeLessThan(3);

    const truth = tunnelModel({ epochMs: EPOCH, leaks: [{ startMs: leakStart }] });
    const states = Array.from({ length: 120 }, (_, m) => truth.at(leakStart + m * MINUTE));
    expect(states.some((s) => s.accidentVentilation)).toBe(true);
    expect(states[119]?.cut).toEqual([0]);
  });

  it("the sump rises with water ingress and is pumped down", () => {
    const ingress = { fromMs: local(1, 10), toMs: local(1, 12), cmPerH: 60 };
    const truth = tunnelModel({ epochMs: EPOCH, ingress: [ingress] });
    const levels = Array.from({ length: 8 * 60 }, (_, m) => truth.at(local(1, 9) + m * MINUTE));
    expect(levels.some((s) => s.pumping)).toBe(true);
    const top = Math.max(...levels.map((s) => s.sumpCm));
    expect(top).toBeGreaterThanOrEqual(60);
    expect(top).toBeLessThan(120);
    expect(levels[levels.length - 1]?.sumpCm).toBeLessThan(40);
  });
});
