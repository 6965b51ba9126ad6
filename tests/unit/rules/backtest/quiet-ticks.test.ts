import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { StoredReading } from "../../../../contracts/model/stored-readings.js";
import type { BacktestRun } from "../../../../contracts/model/backtest.js";
import { backtest, type HistorySource } from "../../../../rules/backtest/index.js";
import { loadRules } from "../../../../rules/load.js";
import type { Device, QualityFlag } from "../../../../contracts/index.js";
import {
  type BenchHistory,
  benchHistoryCity,
  emitHistory,
} from "../../../../bench/backtest-city.js";
import { mulberry32 } from "../../../../simulators/models/random.js";

/*
 * The backtest skips the ticks that cannot decide anything (rules/quiet.ts). Over the default
 * pack and a city of every kind of site (the bench's: exceedance spells, silences, flagged
 * readings), across 22:00 and 06:00 in Asia/Shanghai, it must report exactly what judging every
 * subject at every tick reports, with far fewer evaluations. (The differential tests check the
 * same against the reference evaluator on generated rules.)
 */

const HOUR = 3_600_000;
// 2026-11-26 20:00 to 2026-11-27 08:00 Asia/Shanghai (12:00 to 24:00 UTC).
const FROM = Date.UTC(2026, 10, 26, 12, 0, 0);
const TO = FROM + 12 * HOUR;
const WARM_UP = 2 * HOUR;

type Emit = (device: Device, index: number, push: (reading: StoredReading) => void) => void;

/** The bench's history of its city (bench/backtest-city.ts). */
const benchEmit: Emit = (device, i, push) =>
  emitHistory(device, i, FROM - WARM_UP, TO, (p) =>
    push({
      deviceId: device.id,
      kind: device.kind,
      timeMs: p.timeMs,
      quality: p.tags["quality"],
      values: p.fields,
      replay: false,
    }),
  );

function cityHistory(city: BenchHistory, emit: Emit = benchEmit) {
  const byDevice = new Map<string, StoredReading[]>();
  city.devices.forEach((device, i) => {
    const readings: StoredReading[] = [];
    emit(device, i, (r) => readings.push(r));
    byDevice.set(device.id, readings);
  });
  const history: HistorySource = {
    readings: (d, from, to, limit) =>
      Promise.resolve(
        (byDevice.get(d.id) ?? []).filter((r) => r.timeMs >= from && r.timeMs < to).slice(0, limit),
      ),
  };
  return { city, history };
}

/** One line per case: rule, subject, raised (level), escalations, cleared. */
const casesOf = (run: BacktestRun): string[] =>
  run.byRule.flatMap((rule) =>
    rule.subjects.flatMap((subject) =>
      subject.cases.map(
        (c) =>
          `${rule.id} ${subject.id} raised ${c.raisedAt} ${c.level ?? ""} ${c.escalations.map((e) => `escalated ${e.at} ${e.level ?? ""}`).join(" ")} cleared ${c.clearedAt ?? "-"}`,
      ),
    ),
  );

/** The pack over `city`, judging every subject at every tick or skipping the quiet ones. */
function runBoth(city: BenchHistory, emit?: Emit, tickMs = 5_000) {
  const { history } = cityHistory(city, emit);
  const run = (everyTick: boolean) =>
    backtest(
      {
        log: pino({ level: "silent" }),
        history,
        registry: { devices: () => city.devices, sites: () => city.sites },
        retention: () => Promise.resolve({ ms: undefined, description: "memory" }),
        now: () => TO + HOUR,
      },
      {
        fromMs: FROM,
        toMs: TO,
        region: "default",
        tickMs,
        warmUpMs: WARM_UP,
        rules: { label: "pack", load: () => loadRules() },
        everyTick,
      },
    );
  return Promise.all([run(true), run(false)]);
}

/** The same report both ways, case by case (a difference shows as a line), then whole. */
function expectSameReport(every: BacktestRun, quiet: BacktestRun): void {
  expect(casesOf(quiet)).toEqual(casesOf(every));
  const { evaluations: everyEvaluations, ...everyRun } = every;
  const { evaluations: quietEvaluations, ...quietRun } = quiet;
  expect(JSON.stringify(quietRun) === JSON.stringify(everyRun)).toBe(true);
  expect(quietEvaluations * 4).toBeLessThan(everyEvaluations);
}

/** Raised cases of a rule. */
const raisedOf = (run: BacktestRun, ruleId: string): number =>
  run.byRule.find((r) => r.id === ruleId)?.raised ?? 0;

const FLAGS: readonly QualityFlag[] = ["fault", "maintenance", "calibration", "over_range"];

/**
 * A rougher history than the bench's, seeded: values flapping around the pack's limits (night
 * construction noise about 55 dB(A), PM10 about 150 and 200, oil fume about 2 mg/m³, river stage
 * about its warning level, methane about 20 and 25 %LEL, oxygen dipping under 19.5), silences of
 * 2 to 12 intervals (deadman), bursts of flagged readings (quality gate, device.quality-flag).
 */
const roughEmit: Emit = (device, index, push) => {
  const rng = mulberry32(1_000 + index);
  const rnd = () => rng.next();
  const step = device.expectedIntervalS * 1_000;
  let silentFor = 0;
  let flagged = 0;
  let flag: QualityFlag = "normal";
  let spell = 0;
  for (let ms = Math.ceil((FROM - WARM_UP) / step) * step; ms < TO; ms += step) {
    if (silentFor > 0) {
      silentFor--;
      continue;
    }
    if (rnd() < 0.004) {
      silentFor = 2 + Math.floor(rnd() * 11);
      continue;
    }
    if (flagged > 0) flagged--;
    else if (rnd() < 0.01) {
      flagged = 1 + Math.floor(rnd() * 4);
      flag = FLAGS[Math.floor(rnd() * FLAGS.length)] as QualityFlag;
    }
    // Spells of a few minutes to an hour above the usual level, and noise on top.
    if (spell > 0) spell--;
    else if (rnd() < 0.02) spell = Math.floor(rnd() * (3_600_000 / step));
    const high = spell > 0 ? 1 : 0;
    const hour = new Date(ms + 8 * 3_600_000).getUTCHours();
    const values: Record<string, number | boolean> = {};
    switch (device.kind) {
      case "noise": {
        const laeq = (hour >= 22 || hour < 6 ? 50 : 60) + high * 8 + rnd() * 8 - 2;
        Object.assign(values, { LAeq: laeq, LAmax: laeq + 8 + rnd() * 10 });
        break;
      }
      case "dust": {
        const pm10 = 110 + high * 70 + rnd() * 60;
        Object.assign(values, { pm10, pm2_5: pm10 / 2, tsp: pm10 * 1.6 });
        break;
      }
      case "cooking_fume": {
        const open = hour >= 10 && hour < 22;
        Object.assign(values, {
          oilFume: open ? 1.4 + high * 0.8 + rnd() * 0.6 : 0.05,
          fanOn: open,
          // Off through most of a spell, on now and then (purifier-off flaps around its `for`).
          purifierOn: open && (high === 0 || rnd() < 0.15),
        });
        break;
      }
      case "water_level":
        Object.assign(
          values,
          device.siteId.endsWith("-river")
            ? { stage: 4.1 + high * 0.6 + rnd() * 0.3 }
            : { ponding: high * rnd() * 30 },
        );
        break;
      case "utility_tunnel":
        Object.assign(values, {
          ch4: 5 + high * 14 + rnd() * 8,
          o2: rnd() < 0.01 ? 19 : 20.8,
          h2s: 0.5,
          co: 2,
          temperature: 22,
          humidity: 70,
        });
        break;
    }
    push({
      deviceId: device.id,
      kind: device.kind,
      timeMs: ms,
      quality: flagged > 0 ? flag : "normal",
      values,
      replay: false,
    });
  }
};

/**
 * The bench city, one construction site holding a night_works permit from 23:30 to 04:00 (its
 * edges cross the replay) and one dust monitor whose calibration falls due on the first day
 * (it expires at local midnight, in the middle of the replay).
 */
function roughCity(blocks: number): BenchHistory {
  const city = benchHistoryCity(blocks);
  return {
    sites: city.sites.map((s) =>
      s.id === "b001-construction"
        ? {
            ...s,
            permits: [
              {
                type: "night_works",
                reference: "NW-TEST",
                validFrom: "2026-11-26T23:30:00+08:00",
                validTo: "2026-11-27T04:00:00+08:00",
              },
            ],
          }
        : s,
    ),
    devices: city.devices.map((d) =>
      d.id === "b000-dust" ? { ...d, calibrationDueOn: "2026-11-26" } : d,
    ),
  };
}

describe("backtest: quiet ticks skipped", () => {
  it("reports what judging every subject at every tick reports, with fewer evaluations", async () => {
    const [every, quiet] = await runBoth(benchHistoryCity(2));
    // Something happened to compare: raises, escalations and clears of several rules.
    expect(every.run.totals.raised).toBeGreaterThan(10);
    expect(every.run.totals.cleared).toBeGreaterThan(10);
    expect(every.run.totals.escalated).toBeGreaterThan(0);
    expectSameReport(every.run, quiet.run);
  }, 60_000);

  it("reports the same on a rough city: flapping, night works, permits, silences, flags, calibration", async () => {
    const [every, quiet] = await runBoth(roughCity(3), roughEmit);
    // Every kind of decision the replay skips ticks around happened.
    for (const rule of [
      "noise.construction.laeq",
      "noise.construction.night-works",
      "noise.construction.night-lamax",
      "water.ponding.rate-of-rise",
      "water.underpass.ponding",
      "cooking-fume.purifier-off",
      "dust.pm10.default",
      "cooking-fume.oil-fume",
      "tunnel.ch4",
      "tunnel.o2-low",
      "device.deadman",
      "device.quality-flag",
      "device.calibration-expired",
    ]) {
      expect(raisedOf(every.run, rule), rule).toBeGreaterThan(0);
    }
    expect(every.run.totals.escalated).toBeGreaterThan(0);
    expect(
      every.run.byRule.some((r) => r.subjects.some((s) => s.cases.some((c) => c.repeats > 0))),
    ).toBe(true);
    expectSameReport(every.run, quiet.run);
  }, 120_000);

  it("reports the same on the rough city at the 1-minute tick", async () => {
    const [every, quiet] = await runBoth(roughCity(2), roughEmit, 60_000);
    expect(every.run.totals.raised).toBeGreaterThan(10);
    expect(every.run.totals.cleared).toBeGreaterThan(10);
    expectSameReport(every.run, quiet.run);
  }, 120_000);
});
