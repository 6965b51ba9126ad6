import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { StoredReading } from "../../../../contracts/model/stored-readings.js";
import type { BacktestRun } from "../../../../contracts/model/backtest.js";
import { backtest, type HistorySource } from "../../../../rules/backtest/index.js";
import { loadRules } from "../../../../rules/load.js";
import { benchHistoryCity, emitHistory } from "../../../../bench/backtest-city.js";

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

function cityHistory(blocks: number) {
  const city = benchHistoryCity(blocks);
  const byDevice = new Map<string, StoredReading[]>();
  city.devices.forEach((device, i) => {
    const readings: StoredReading[] = [];
    emitHistory(device, i, FROM - WARM_UP, TO, (p) =>
      readings.push({
        deviceId: device.id,
        kind: device.kind,
        timeMs: p.timeMs,
        quality: p.tags["quality"],
        values: p.fields,
        replay: false,
      }),
    );
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

describe("backtest: quiet ticks skipped", () => {
  it("reports what judging every subject at every tick reports, with fewer evaluations", async () => {
    const { city, history } = cityHistory(2);
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
          tickMs: 5_000,
          warmUpMs: WARM_UP,
          rules: { label: "pack", load: () => loadRules() },
          everyTick,
        },
      );
    const every = await run(true);
    const quiet = await run(false);
    // Something happened to compare: raises, escalations and clears of several rules.
    expect(every.run.totals.raised).toBeGreaterThan(10);
    expect(every.run.totals.cleared).toBeGreaterThan(10);
    expect(every.run.totals.escalated).toBeGreaterThan(0);
    // Case by case (a difference shows as a line), then the whole report.
    expect(casesOf(quiet.run)).toEqual(casesOf(every.run));
    const { evaluations: everyEvaluations, ...everyRun } = every.run;
    const { evaluations: quietEvaluations, ...quietRun } = quiet.run;
    expect(JSON.stringify(quietRun) === JSON.stringify(everyRun)).toBe(true);
    expect(quietEvaluations * 4).toBeLessThan(everyEvaluations);
  }, 60_000);
});
