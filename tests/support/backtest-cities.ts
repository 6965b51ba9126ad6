import type { Device, QualityFlag } from "../../contracts/index.js";
import type { StoredReading } from "../../contracts/model/stored-readings.js";
import type { BacktestRun } from "../../contracts/model/backtest.js";
import { pino } from "pino";
import { backtest, type HistorySource } from "../../rules/backtest/index.js";
import { packRules } from "../../rules/backtest/sources.js";
import { type BenchHistory, benchHistoryCity, emitHistory } from "../../bench/backtest-city.js";
import { mulberry32 } from "../../simulators/models/random.js";

/*
 * Histories for backtest tests, served from memory: the bench's city (bench/backtest-city.ts)
 * over 20:00 to 08:00 in Asia/Shanghai, and a rougher seeded one (flapping around the pack's
 * limits, silences, flags, a night-works permit, a calibration expiring at midnight).
 */

export const HOUR = 3_600_000;
// 2026-11-26 20:00 to 2026-11-27 08:00 Asia/Shanghai (12:00 to 24:00 UTC).
export const FROM = Date.UTC(2026, 10, 26, 12, 0, 0);
export const TO = FROM + 12 * HOUR;
export const WARM_UP = 2 * HOUR;

export type Emit = (device: Device, index: number, push: (reading: StoredReading) => void) => void;

/** The bench's history of its city (bench/backtest-city.ts). */
export const benchEmit: Emit = (device, i, push) =>
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

export function cityHistory(city: BenchHistory, emit: Emit = benchEmit) {
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
export const casesOf = (run: BacktestRun): string[] =>
  run.byRule.flatMap((rule) =>
    rule.subjects.flatMap((subject) =>
      subject.cases.map(
        (c) =>
          `${rule.id} ${subject.id} raised ${c.raisedAt} ${c.level ?? ""} ${c.escalations.map((e) => `escalated ${e.at} ${e.level ?? ""}`).join(" ")} cleared ${c.clearedAt ?? "-"}`,
      ),
    ),
  );

/** Raised cases of a rule. */
export const raisedOf = (run: BacktestRun, ruleId: string): number =>
  run.byRule.find((r) => r.id === ruleId)?.raised ?? 0;

const FLAGS: readonly QualityFlag[] = ["fault", "maintenance", "calibration", "over_range"];

/**
 * A rougher history than the bench's, seeded: values flapping around the pack's limits (night
 * construction noise about 55 dB(A), PM10 about 150 and 200, oil fume about 2 mg/m³, river stage
 * about its warning level, methane about 20 and 25 %LEL, oxygen dipping under 19.5), silences of
 * 2 to 12 intervals (deadman), bursts of flagged readings (quality gate, device.quality-flag).
 */
export const roughEmit: Emit = (device, index, push) => {
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
export function roughCity(blocks: number): BenchHistory {
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

/** The default pack over `devices` of `city` (all by default), from FROM to TO, from memory. */
export function backtestCity(
  city: BenchHistory,
  options: {
    devices?: Device[];
    emit?: Emit | undefined;
    tickMs?: number;
    everyTick?: boolean;
  } = {},
) {
  const { history } = cityHistory(city, options.emit);
  const devices = options.devices ?? city.devices;
  return backtest(
    {
      log: pino({ level: "silent" }),
      history,
      registry: { devices: () => devices, sites: () => city.sites },
      retention: () => Promise.resolve({ ms: undefined, description: "memory" }),
      now: () => TO + HOUR,
    },
    {
      fromMs: FROM,
      toMs: TO,
      region: "default",
      tickMs: options.tickMs ?? 5_000,
      warmUpMs: WARM_UP,
      rules: packRules(),
      everyTick: options.everyTick,
    },
  );
}
