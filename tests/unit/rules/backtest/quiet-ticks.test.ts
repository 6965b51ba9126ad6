import { describe, expect, it } from "vitest";
import type { BacktestRun } from "../../../../contracts/model/backtest.js";
import { type BenchHistory, benchHistoryCity } from "../../../../bench/backtest-city.js";
import {
  backtestCity,
  casesOf,
  type Emit,
  raisedOf,
  roughCity,
  roughEmit,
} from "../../../support/backtest-cities.js";

/*
 * The backtest skips the ticks that cannot decide anything (rules/quiet.ts). Over the default
 * pack and a city of every kind of site (the bench's: exceedance spells, silences, flagged
 * readings), across 22:00 and 06:00 in Asia/Shanghai, it must report exactly what judging every
 * subject at every tick reports, with far fewer evaluations. (The differential tests check the
 * same against the reference evaluator on generated rules.)
 */

/** The pack over `city`, judging every subject at every tick or skipping the quiet ones. */
function runBoth(city: BenchHistory, emit?: Emit, tickMs = 5_000) {
  return Promise.all([
    backtestCity(city, { emit, tickMs, everyTick: true }),
    backtestCity(city, { emit, tickMs, everyTick: false }),
  ]);
}

/** The same report both ways, case by case (a difference shows as a line), then whole. */
function expectSameReport(every: BacktestRun, quiet: BacktestRun): void {
  expect(casesOf(quiet)).toEqual(casesOf(every));
  const { evaluations: everyEvaluations, ...everyRun } = every;
  const { evaluations: quietEvaluations, ...quietRun } = quiet;
  expect(JSON.stringify(quietRun) === JSON.stringify(everyRun)).toBe(true);
  expect(quietEvaluations * 4).toBeLessThan(everyEvaluations);
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
