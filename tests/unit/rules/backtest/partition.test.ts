import { describe, expect, it } from "vitest";
import type { Device } from "../../../../contracts/index.js";
import { mergeRuns, partitionDevices } from "../../../../rules/backtest/partition.js";
import { type BenchHistory, benchHistoryCity } from "../../../../bench/backtest-city.js";
import {
  backtestCity,
  casesOf,
  type Emit,
  roughCity,
  roughEmit,
} from "../../../support/backtest-cities.js";

/*
 * A backtest split by site into parts (run side by side in worker threads) must report exactly
 * what one replay of every device reports: the parts' drivers see every reading their subjects
 * read, and the merge orders and sums as one sink would.
 */

const runOn = (city: BenchHistory, devices: Device[], emit: Emit | undefined, tickMs: number) =>
  backtestCity(city, { devices, emit, tickMs });

async function expectPartsAgree(city: BenchHistory, parts: number, emit?: Emit, tickMs = 5_000) {
  const whole = (await runOn(city, city.devices, emit, tickMs)).run;
  const groups = partitionDevices(city.devices, parts);
  expect(groups.length).toBe(parts);
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
  it("keeps a site's devices together and balances the parts by expected readings", () => {
    const city = benchHistoryCity(3);
    const groups = partitionDevices(city.devices, 2);
    const siteOf = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const d of g) {
        expect(siteOf.get(d.siteId) ?? i).toBe(i);
        siteOf.set(d.siteId, i);
      }
    });
    expect(groups.flat().length).toBe(city.devices.length);
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
