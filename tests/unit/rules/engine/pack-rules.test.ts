import { describe, expect, it } from "vitest";
import { ruleApplies } from "../../../../rules/engine/conditions.js";
import { device, Harness, HOUR, MIN, night, packRule, SEC, site } from "./harness.js";

/*
 * One raise test and one quiet test per default rule of the pack, on a fake clock: a night in
 * Asia/Shanghai, readings every few seconds or minutes, clock ticks in between.
 */

function tunnel(ruleId: string, devices = ["gas-1"]) {
  return new Harness(packRule(ruleId), {
    site: site("tunnel_segment"),
    devices: devices.map((id) => device(id, { expectedIntervalS: 10 })),
    start: night("23:00"),
  });
}

describe("tunnel.ch4 (k_of_n, IV at 20 %LEL, III at 25 %LEL)", () => {
  it("raises IV at exactly 20 %LEL and escalates to III at 25, never falling back", () => {
    const h = tunnel("tunnel.ch4", ["gas-1", "gas-2"]);
    h.reading("gas-1", night("23:00:10"), { ch4: 5 });
    h.reading("gas-2", night("23:00:10"), { ch4: 4 });
    expect(h.decisions).toEqual([]);
    const raised = h.reading("gas-2", night("23:00:20"), { ch4: 20 });
    expect(raised).toMatchObject([{ type: "raise", level: "IV", value: 20, limit: 20 }]);
    // The escalation cites its own level's threshold (25), not the first level's (20).
    expect(h.reading("gas-2", night("23:00:30"), { ch4: 25 })).toMatchObject([
      { type: "escalate-level", from: "IV", level: "III", limit: 25 },
    ]);
    h.reading("gas-2", night("23:00:40"), { ch4: 21 });
    expect(h.state.levelIndex).toBe(1);
    expect(h.reading("gas-2", night("23:00:50"), { ch4: 3 })).toMatchObject([
      { type: "clear", level: "III" },
    ]);
  });

  it("stays quiet just below 20 %LEL", () => {
    const h = tunnel("tunnel.ch4");
    h.series("gas-1", night("23:00"), night("23:30"), 10 * SEC, () => ({ ch4: 19.9 }));
    expect(h.decisions).toEqual([]);
  });

  it("ignores test gas during calibration (emergency quality gate)", () => {
    const h = tunnel("tunnel.ch4");
    h.reading("gas-1", night("23:01"), { ch4: 60 }, { quality: "calibration" });
    expect(h.decisions).toEqual([]);
  });

  it("a fault-flagged reading never raises alone; beside a trusted one it counts, shown", () => {
    const h = tunnel("tunnel.ch4", ["gas-1", "gas-2"]);
    h.reading("gas-2", night("23:00:10"), { ch4: 2 });
    expect(h.reading("gas-1", night("23:00:20"), { ch4: 30 }, { quality: "fault" })).toEqual([]);
    // A trusted detector at 21 corroborates: level IV on its value, the flag in the account.
    const raised = h.reading("gas-2", night("23:00:30"), { ch4: 21 });
    expect(raised).toMatchObject([{ type: "raise", level: "IV", limit: 20 }]);
    const detail = (raised[0] as { detail: string }).detail;
    expect(detail).toContain("gas-1=30 (fault)");
    expect(detail).toContain("gas-2=21");
  });
});

describe("tunnel.o2-low / tunnel.o2-high", () => {
  it("o2-low raises below 19.5 and not at 19.5", () => {
    const h = tunnel("tunnel.o2-low");
    h.reading("gas-1", night("23:01"), { o2: 19.5 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("gas-1", night("23:02"), { o2: 19.4 })).toMatchObject([
      { type: "raise", level: "IV" },
    ]);
  });

  it("o2-low stays quiet at normal air", () => {
    const h = tunnel("tunnel.o2-low");
    h.series("gas-1", night("23:00"), night("23:30"), 10 * SEC, () => ({ o2: 20.9 }));
    expect(h.decisions).toEqual([]);
  });

  it("o2-high raises above 23.5 and not at 23.5", () => {
    const h = tunnel("tunnel.o2-high");
    h.reading("gas-1", night("23:01"), { o2: 23.5 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("gas-1", night("23:02"), { o2: 23.6 })).toMatchObject([{ type: "raise" }]);
  });

  it("o2-high stays quiet at normal air", () => {
    const h = tunnel("tunnel.o2-high");
    h.series("gas-1", night("23:00"), night("23:30"), 10 * SEC, () => ({ o2: 20.9 }));
    expect(h.decisions).toEqual([]);
  });
});

describe("other tunnel thresholds", () => {
  const cases: Array<[string, string, number, number, string?]> = [
    ["tunnel.h2s", "h2s", 10, 10.1],
    ["tunnel.co", "co", 29.9, 30],
    ["tunnel.temperature", "temperature", 40, 40.1],
    ["tunnel.sump", "sumpLevel", 49.9, 50],
  ];
  for (const [id, quantity, quiet, loud] of cases) {
    it(`${id} raises at ${loud} and stays quiet at ${quiet}`, () => {
      const h = tunnel(id);
      h.series("gas-1", night("23:00"), night("23:10"), 10 * SEC, () => ({ [quantity]: quiet }));
      expect(h.decisions).toEqual([]);
      expect(h.reading("gas-1", night("23:10"), { [quantity]: loud })).toMatchObject([
        { type: "raise", level: "IV" },
      ]);
    });
  }

  it("tunnel.co escalates to III at 200 mg/m³", () => {
    const h = tunnel("tunnel.co");
    h.reading("gas-1", night("23:01"), { co: 35 });
    expect(h.reading("gas-1", night("23:02"), { co: 200 })).toMatchObject([
      { type: "escalate-level", level: "III" },
    ]);
  });
});

describe("noise.area.laeq (zone class 2: day 60, night 50; clock-hour energy mean)", () => {
  const ambient = () =>
    new Harness(packRule("noise.area.laeq"), {
      site: site("ambient", { zoneClass: "2" }),
      devices: [device("n-1")],
      start: night("21:00"),
      tickMs: MIN,
    });

  it("raises at the end of the 22:00-23:00 hour when its energy mean is above 50", () => {
    const h = ambient();
    // 21:00-22:00 at 55 dB: compliant by day (limit 60).
    h.series("n-1", night("21:00:30"), night("22:00:30"), MIN, () => ({ LAeq: 55 }));
    expect(h.decisions).toEqual([]);
    // 22:00-23:00 at 52 dB: above the night limit 50.
    h.series("n-1", night("22:00:30"), night("23:00:30"), MIN, () => ({ LAeq: 52 }));
    h.tick(night("23:01"));
    expect(h.raised()).toHaveLength(1);
    const raise = h.raised()[0];
    expect(raise?.at).toBe(night("23:00"));
    expect(raise).toMatchObject({ limit: 50 });
  });

  it("stays quiet on a night at the limit (energy mean exactly 50)", () => {
    const h = ambient();
    h.series("n-1", night("21:00:30"), night("23:30"), MIN, (t) => ({
      LAeq: t < night("22:00") ? 58 : 50,
    }));
    expect(h.decisions).toEqual([]);
  });

  it("a device without a zone class is not evaluated", () => {
    const h = new Harness(packRule("noise.area.laeq"), {
      site: site("ambient"),
      devices: [device("n-1")],
      start: night("22:00"),
    });
    h.series("n-1", night("22:00:30"), night("23:30"), MIN, () => ({ LAeq: 90 }));
    expect(h.decisions).toEqual([]);
    expect(h.evaluations.at(-1)?.applicable).toBe(false);
  });
});

describe("noise.construction.night-lamax (LAmax > 70 at night)", () => {
  const construction = () =>
    new Harness(packRule("noise.construction.night-lamax"), {
      site: site("construction_site"),
      devices: [device("c-1")],
      start: night("21:50"),
    });

  it("is off by day (the reading stamped 22:00 measured 21:59-22:00) and raises at 22:01", () => {
    const h = construction();
    h.reading("c-1", night("21:59"), { LAmax: 85 });
    h.reading("c-1", night("22:00"), { LAmax: 85 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("c-1", night("22:01"), { LAmax: 70.1 })).toMatchObject([
      { type: "raise", limit: 70 },
    ]);
  });

  it("stays quiet at exactly 70 at night", () => {
    const h = construction();
    h.series("c-1", night("22:00"), night("23:00"), MIN, () => ({ LAmax: 70 }));
    expect(h.decisions).toEqual([]);
  });

  it("the reading stamped 06:00 is still night; the alarm leaves with the schedule at 06:01", () => {
    const h = construction();
    h.reading("c-1", night("05:49"), { LAmax: 80 });
    expect(h.raised()).toHaveLength(1);
    expect(h.reading("c-1", night("06:00"), { LAmax: 90 })).toEqual([]);
    // Out of schedule from 06:01; it clears once compliant for the clear hold (5 min).
    h.reading("c-1", night("06:01"), { LAmax: 90 });
    expect(h.reading("c-1", night("06:06"), { LAmax: 90 })).toMatchObject([{ type: "clear" }]);
  });
});

describe("noise.area.night-lamax (zone night limit + 15)", () => {
  it("raises above 65 in zone 2 at night, quiet at 65", () => {
    const h = new Harness(packRule("noise.area.night-lamax"), {
      site: site("ambient", { zoneClass: "2" }),
      devices: [device("n-1")],
      start: night("22:30"),
    });
    h.reading("n-1", night("22:31"), { LAmax: 65 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("n-1", night("22:32"), { LAmax: 65.5 })).toMatchObject([{ type: "raise" }]);
  });
});

describe("noise.construction.laeq (20-min rolling energy mean, 70 day / 55 night)", () => {
  it("raises at night above 55 and stays quiet at 55", () => {
    const quiet = new Harness(packRule("noise.construction.laeq"), {
      site: site("construction_site"),
      devices: [device("c-1")],
      start: night("22:00"),
    });
    quiet.series("c-1", night("22:00"), night("23:00"), MIN, () => ({ LAeq: 55 }));
    expect(quiet.decisions).toEqual([]);
    const loud = new Harness(packRule("noise.construction.laeq"), {
      site: site("construction_site"),
      devices: [device("c-1")],
      start: night("22:00"),
    });
    loud.series("c-1", night("22:00"), night("22:30"), MIN, () => ({ LAeq: 58 }));
    expect(loud.raised()).toHaveLength(1);
  });
});

describe("noise.construction.night-works (permit exemption)", () => {
  it("raises at night without a permit, quiet with a night_works permit", () => {
    const make = () =>
      new Harness(packRule("noise.construction.night-works"), {
        site: site("construction_site"),
        devices: [device("c-1")],
        start: night("22:00"),
      });
    const without = make();
    without.series("c-1", night("22:00"), night("22:30"), MIN, () => ({ LAeq: 60 }));
    expect(without.raised()).toHaveLength(1);
    const permitted = make();
    permitted.permits = ["night_works"];
    permitted.series("c-1", night("22:00"), night("22:30"), MIN, () => ({ LAeq: 60 }));
    expect(permitted.decisions).toEqual([]);
  });
});

describe("noise.commercial.laeq (1-min energy mean, zone 1 night 45)", () => {
  it("raises above 45 at night, quiet at 45", () => {
    const make = () =>
      new Harness(packRule("noise.commercial.laeq"), {
        site: site("commercial_venue", { zoneClass: "1" }),
        devices: [device("v-1")],
        start: night("23:00"),
      });
    const quiet = make();
    quiet.series("v-1", night("23:00"), night("23:10"), 10 * SEC, () => ({ LAeq: 45 }));
    expect(quiet.decisions).toEqual([]);
    const loud = make();
    loud.series("v-1", night("23:00"), night("23:10"), 10 * SEC, () => ({ LAeq: 46 }));
    expect(loud.raised()).toHaveLength(1);
  });
});

describe("water.underpass.ponding (IV at 15 cm, III at 25 cm; Chengdu 30)", () => {
  const underpass = (region?: string) =>
    new Harness(packRule("water.underpass.ponding"), {
      site: site("underpass"),
      devices: [device("u-1")],
      start: night("02:00"),
      ...(region === undefined ? {} : { region }),
    });

  it("raises IV at exactly 15 cm and III at 25 cm", () => {
    const h = underpass();
    h.reading("u-1", night("02:01"), { ponding: 14.9 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("u-1", night("02:02"), { ponding: 15 })).toMatchObject([
      { type: "raise", level: "IV" },
    ]);
    expect(h.reading("u-1", night("02:03"), { ponding: 25 })).toMatchObject([
      { type: "escalate-level", level: "III" },
    ]);
  });

  it("in Chengdu the road closes at 30 cm, not 25", () => {
    const h = underpass("chengdu");
    h.reading("u-1", night("02:01"), { ponding: 25 });
    expect(h.state.levelIndex).toBe(0);
    h.reading("u-1", night("02:02"), { ponding: 30 });
    expect(h.state.levelIndex).toBe(1);
  });

  it("stays quiet on a dry night", () => {
    const h = underpass();
    h.series("u-1", night("02:00"), night("04:00"), MIN, () => ({ ponding: 2 }));
    expect(h.decisions).toEqual([]);
  });
});

describe("water.ponding.rate-of-rise (5 cm in 5 min)", () => {
  const make = () =>
    new Harness(packRule("water.ponding.rate-of-rise"), {
      site: site("underpass"),
      devices: [device("u-1")],
      start: night("02:00"),
    });

  it("raises when ponding rises 5 cm within 5 min", () => {
    const h = make();
    h.series("u-1", night("02:00"), night("02:06"), MIN, (_t, i) => ({ ponding: i * 1.25 }));
    expect(h.raised()).toHaveLength(1);
  });

  it("stays quiet on a slow rise (4 cm in 5 min)", () => {
    const h = make();
    h.series("u-1", night("02:00"), night("02:30"), MIN, (_t, i) => ({ ponding: i * 0.8 }));
    expect(h.decisions).toEqual([]);
  });
});

describe("water.river.stage (levels from the station)", () => {
  const make = () =>
    new Harness(packRule("water.river.stage"), {
      site: site("river_station", { levels: { warning: 4, guaranteed: 5, historicalMax: 6 } }),
      devices: [device("r-1")],
      start: night("01:00"),
    });

  it("raises IV at warning - 0.5 and climbs to I at the historical maximum", () => {
    const h = make();
    h.reading("r-1", night("01:01"), { stage: 3.5 });
    h.reading("r-1", night("01:02"), { stage: 4 });
    h.reading("r-1", night("01:03"), { stage: 5 });
    h.reading("r-1", night("01:04"), { stage: 6 });
    expect(h.decisions.map((d) => ("level" in d ? d.level : d.type))).toEqual([
      "IV",
      "III",
      "II",
      "I",
    ]);
  });

  it("stays quiet below warning - 0.5", () => {
    const h = make();
    h.series("r-1", night("01:00"), night("02:00"), MIN, () => ({ stage: 3.4 }));
    expect(h.decisions).toEqual([]);
  });
});

describe("cooking-fume.purifier-off (fan on, purifier off for 10 min)", () => {
  const make = () =>
    new Harness(packRule("cooking-fume.purifier-off"), {
      site: site("restaurant"),
      devices: [device("f-1", { expectedIntervalS: 600 })],
      start: night("12:00"),
      tickMs: MIN,
    });

  it("raises after 10 min of fan on / purifier off, moved by the clock with no new reading", () => {
    const h = make();
    h.reading("f-1", night("12:00"), { fanOn: true, purifierOn: false });
    expect(h.state.phase).toBe("pending");
    h.tick(night("12:09:59"));
    expect(h.decisions).toEqual([]);
    expect(h.tick(night("12:10"))).toMatchObject([{ type: "raise" }]);
  });

  it("stays quiet when the purifier is on, or off for less than 10 min", () => {
    const h = make();
    h.reading("f-1", night("12:00"), { fanOn: true, purifierOn: true });
    h.tick(night("12:30"));
    h.reading("f-1", night("12:30"), { fanOn: true, purifierOn: false });
    h.reading("f-1", night("12:39"), { fanOn: true, purifierOn: true });
    h.tick(night("13:00"));
    expect(h.decisions).toEqual([]);
  });
});

describe("cooking-fume.oil-fume (three consecutive 10-min means above 2.0, business hours)", () => {
  const make = (region?: string) =>
    new Harness(packRule("cooking-fume.oil-fume"), {
      site: site("restaurant"),
      devices: [device("f-1")],
      start: night("12:00"),
      tickMs: MIN,
      ...(region === undefined ? {} : { region }),
    });

  it("raises at 12:30 after three violating 10-min means", () => {
    const h = make();
    h.series("f-1", night("12:00:30"), night("12:31"), MIN, () => ({ oilFume: 2.5 }));
    expect(h.raised()).toMatchObject([{ at: night("12:30") }]);
  });

  it("two violating means then one compliant: quiet; Beijing limit 1.0 applies", () => {
    const h = make();
    h.series("f-1", night("12:00:30"), night("13:00"), MIN, (t) => ({
      oilFume: t < night("12:20") ? 2.5 : 1.5,
    }));
    expect(h.decisions).toEqual([]);
    const beijing = make("beijing");
    beijing.series("f-1", night("12:00:30"), night("12:31"), MIN, () => ({ oilFume: 1.5 }));
    expect(beijing.raised()).toHaveLength(1);
  });
});

describe("device.deadman (silent > 3 × expected interval)", () => {
  const make = () =>
    new Harness(packRule("device.deadman"), {
      devices: [device("n-1", { expectedIntervalS: 60 })],
      start: night("22:00"),
      tickMs: SEC,
    });

  it("raises on the clock tick after 180 s of silence, clears on the next reading", () => {
    const h = make();
    h.reading("n-1", night("22:00"), { LAeq: 50 });
    h.tick(night("22:03"));
    expect(h.decisions).toEqual([]); // exactly 3 × 60 s is not longer than it
    expect(h.tick(night("22:03:01"))).toMatchObject([{ type: "raise", value: 181 * SEC }]);
    expect(h.reading("n-1", night("22:10"), { LAeq: 50 })).toMatchObject([{ type: "clear" }]);
  });

  it("stays quiet for a device reporting every minute", () => {
    const h = make();
    h.series("n-1", night("22:00"), night("23:00"), MIN, () => ({ LAeq: 50 }));
    expect(h.decisions).toEqual([]);
  });

  it("a device never heard raises after 3 intervals from when it was first watched", () => {
    const h = make();
    expect(h.tick(night("22:03:01"))).toMatchObject([{ type: "raise" }]);
  });
});

describe("device.quality-flag and device.calibration-expired", () => {
  it("quality-flag raises on a fault flag and clears on normal", () => {
    const h = new Harness(packRule("device.quality-flag"), {
      devices: [device("d-1")],
      start: night("22:00"),
    });
    h.reading("d-1", night("22:01"), { LAeq: 50 });
    expect(h.decisions).toEqual([]);
    expect(h.reading("d-1", night("22:02"), { LAeq: 50 }, { quality: "fault" })).toMatchObject([
      { type: "raise" },
    ]);
    expect(h.reading("d-1", night("22:03"), { LAeq: 50 })).toMatchObject([{ type: "clear" }]);
  });

  it("calibration-expired raises the local day after the due date (Shanghai), not on it", () => {
    const h = new Harness(packRule("device.calibration-expired"), {
      devices: [device("d-1", { calibrationDueOn: "2026-11-26" })],
      start: night("23:00"),
      tickMs: HOUR,
    });
    h.tick(night("23:59:59"));
    expect(h.decisions).toEqual([]);
    expect(h.tick(night("00:00"))).toMatchObject([{ type: "raise" }]);
  });
});

describe("dust rules (hourly clock means, dust regions)", () => {
  const make = (id: string, extra: Record<string, unknown> = {}) =>
    new Harness(packRule(id), {
      site: site("construction_site", extra),
      devices: [device("d-1")],
      start: night("00:00"),
      tickMs: MIN,
    });

  it("dust.pm10.default warns above 150 and files a case above 200; quiet at 150", () => {
    const h = make("dust.pm10.default");
    h.series("d-1", night("00:00:30"), night("01:00:30"), MIN, () => ({ pm10: 150 }));
    expect(h.decisions).toEqual([]);
    h.series("d-1", night("01:00:30"), night("02:00:30"), MIN, () => ({ pm10: 160 }));
    h.series("d-1", night("02:00:30"), night("03:00:30"), MIN, () => ({ pm10: 210 }));
    h.tick(night("03:01"));
    expect(h.decisions.map((d) => ("level" in d ? d.level : d.type))).toEqual(["warning", "case"]);
  });

  it("dust.pm10.hebei raises on the third violating hour of the local day, not the second", () => {
    const h = make("dust.pm10.hebei", { dustRegion: "hebei" });
    h.series("d-1", night("00:00:30"), night("02:00:30"), MIN, () => ({ pm10: 90 }));
    h.series("d-1", night("02:00:30"), night("03:00:30"), MIN, () => ({ pm10: 50 }));
    expect(h.decisions).toEqual([]);
    h.series("d-1", night("03:00:30"), night("04:00:30"), MIN, () => ({ pm10: 90 }));
    h.tick(night("04:01"));
    expect(h.raised()).toMatchObject([{ at: night("04:00") }]);
  });

  it("dust.tsp.shaanxi uses the phase's limit (structure 700)", () => {
    const h = make("dust.tsp.shaanxi", { dustRegion: "shaanxi" });
    h.series("d-1", night("00:00:30"), night("01:00:30"), MIN, () => ({ tsp: 700 }));
    expect(h.decisions).toEqual([]);
    h.series("d-1", night("01:00:30"), night("02:00:30"), MIN, () => ({ tsp: 750 }));
    h.tick(night("02:01"));
    expect(h.raised()).toHaveLength(1);
  });

  it("scope: the dust rules apply by dust region; sichuan ships disabled", () => {
    const subject = (dustRegion?: string) => ({
      site: site("construction_site", dustRegion === undefined ? {} : { dustRegion }),
      devices: [],
    });
    expect(ruleApplies(packRule("dust.pm10.default"), "dust", undefined, subject())).toBe(true);
    expect(ruleApplies(packRule("dust.pm10.hebei"), "dust", undefined, subject())).toBe(false);
    expect(ruleApplies(packRule("dust.pm10.hebei"), "dust", undefined, subject("hebei"))).toBe(
      true,
    );
    expect(ruleApplies(packRule("dust.pm10.sichuan"), "dust", undefined, subject("sichuan"))).toBe(
      false,
    );
    expect(ruleApplies(packRule("dust.pm10.default"), "noise", undefined, subject())).toBe(false);
  });
});
