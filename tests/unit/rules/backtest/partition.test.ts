import { describe, expect, it } from "vitest";
import type { Device } from "../../../../contracts/index.js";
import { guidedParts, mergeRuns } from "../../../../rules/backtest/partition.js";
import { type BenchHistory, benchHistoryCity } from "../../../../bench/backtest-city.js";
import {
  backtestCity,
  casesOf,
  type Emit,
  roughCity,
  roughEmit,
} from "../../../support/backtest-cities.js";

/*
 * A backtest split by site into parts (taken in turn by worker threads) must report exactly
 * what one replay of every device reports: the parts' drivers see every reading their subjects
 * read, and the merge orders and sums as one sink would.
 */

const runOn = (city: BenchHistory, devices: Device[], emit: Emit | undefined, tickMs: number) =>
  backtestCity(city, { devices, emit, tickMs });

async function expectPartsAgree(city: BenchHistory, threads: number, emit?: Emit, tickMs = 5_000) {
  const whole = (await runOn(city, city.devices, emit, tickMs)).run;
  const groups = guidedParts(city.devices, threads);
  expect(groups.length).toBeGreaterThan(threads);
  const merged = mergeRuns(
    await Promise.all(groups.map(async (g) => (await runOn(city, g, emit, tickMs)).run)),
  );
  expect(casesOf(merged)).toEqual(casesOf(whole));
  expect(JSON.stringify(merged) === JSON.stringify(whole)).toBe(true);
  return whole;
}

/** Each device's readings a few seconds off the minute, its own offset: devices are not in step. */
const offStep =
  (emit: Emit): Emit =>
  (device, index, push) =>
    emit(device, index, (r) => push({ ...r, timeMs: r.timeMs + ((index * 7_919) % 29_000) }));

describe("backtest in parts", () => {
  it("keeps a site's devices together, in parts from large to small", () => {
    const city = benchHistoryCity(20);
    const threads = 2;
    const groups = guidedParts(city.devices, threads);
    const siteOf = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const d of g) {
        expect(siteOf.get(d.siteId) ?? i).toBe(i);
        siteOf.set(d.siteId, i);
      }
    });
    expect(groups.flat().map((d) => d.id)).toEqual(
      expect.arrayContaining(city.devices.map((d) => d.id)),
    );
    expect(groups.flat().length).toBe(city.devices.length);
    // Readings per ms: the first part half a thread's share, each after it half of what is left
    // per thread, none but the last below an eighth of a thread's share.
    const weight = (g: readonly Device[]) => g.reduce((w, d) => w + 1 / d.expectedIntervalS, 0);
    const share = weight(city.devices) / threads;
    const weights = groups.map(weight);
    const site = Math.max(
      ...[...new Set(city.devices.map((d) => d.siteId))].map((id) =>
        weight(city.devices.filter((d) => d.siteId === id)),
      ),
    );
    expect(weights[0]).toBeGreaterThanOrEqual(share / 2);
    expect(weights[0]).toBeLessThan(share / 2 + site);
    for (const w of weights.slice(0, -1)) expect(w).toBeGreaterThanOrEqual(share / 8);
    expect(weights.at(-1)).toBeLessThan(share / 4 + site);
    expect(groups.length).toBeGreaterThan(2 * threads);
    expect(groups.length).toBeLessThanOrEqual(8 * threads + 1);
  });

  it("reports what one replay reports, on the bench city", async () => {
    const whole = await expectPartsAgree(benchHistoryCity(2), 3);
    expect(whole.totals.raised).toBeGreaterThan(10);
  }, 120_000);

  it("reports what one replay reports, on the rough city, at both ticks", async () => {
    await expectPartsAgree(roughCity(3), 2, roughEmit);
    await expectPartsAgree(roughCity(2), 3, roughEmit, 60_000);
  }, 240_000);

  it("reports what one replay reports when the devices are not in step", async () => {
    await expectPartsAgree(roughCity(3), 2, offStep(roughEmit));
    await expectPartsAgree(roughCity(2), 3, offStep(roughEmit), 60_000);
  }, 240_000);
});
