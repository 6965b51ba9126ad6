import { describe, expect, it } from "vitest";
import { valuesSchema } from "../../../contracts/index.js";
import {
  chartQuantity,
  DAY_MS,
  emitDeviceDay,
  loadCity,
  MINUTE_MS,
  queryCity,
  READINGS_PER_DAY,
  tagsOf,
} from "../../../bench/query-city.js";
import { pointProblem } from "../../../ingest/store/checks.js";
import type { Point, TimeSeriesStore, WriteOutcome } from "../../../ingest/store/types.js";

/* The query bench's city and loader (bench/query-city.ts): what it writes, not how fast. */

const FROM = Date.UTC(2026, 10, 1, 0, 0, 0);

/** A store that keeps counts of what it was asked to write, answering after a turn. */
function countingStore(refuseAt?: number) {
  const writes: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const perDevice = new Map<string, number[]>();
  const store = {
    name: "sqlite",
    async write(points: readonly Point[]): Promise<WriteOutcome> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      writes.push(points.length);
      for (const p of points) {
        const times = perDevice.get(p.tags.device) ?? [];
        times.push(p.timeMs);
        perDevice.set(p.tags.device, times);
      }
      const refused = refuseAt !== undefined && writes.length === refuseAt;
      return { rejected: refused ? [{ index: 0, reason: "refused" }] : [] };
    },
  } as unknown as TimeSeriesStore;
  return { store, writes, perDevice, maxInFlight: () => maxInFlight };
}

describe("query bench city", () => {
  it("has the devices asked for, every one at one reading a minute, each with a chart quantity", () => {
    const city = queryCity(1_000);
    expect(city.devices).toHaveLength(1_000);
    expect(new Set(city.devices.map((d) => d.id)).size).toBe(1_000);
    expect(city.devices.every((d) => d.expectedIntervalS === 60)).toBe(true);
    const sites = new Set(city.sites.map((s) => s.id));
    expect(city.devices.every((d) => sites.has(d.siteId))).toBe(true);
    expect(queryCity(13).devices).toHaveLength(13);
    for (const d of queryCity(8).devices) {
      const { quantity } = chartQuantity(d);
      expect(Object.keys(valuesSchema(d.kind).shape)).toContain(quantity);
    }
  });

  it("gives a device-day of 1,440 valid readings a minute apart, the same each time", () => {
    const city = queryCity(8);
    for (const [index, device] of city.devices.entries()) {
      const tags = tagsOf(
        device,
        city.sites.find((s) => s.id === device.siteId),
      );
      const day: Point[] = [];
      emitDeviceDay(device, index, tags, FROM, 3, (p) => day.push(p));
      expect(day).toHaveLength(READINGS_PER_DAY);
      expect(day[0]?.timeMs).toBe(FROM + 3 * DAY_MS);
      expect(day.every((p, i) => p.timeMs === FROM + 3 * DAY_MS + i * MINUTE_MS)).toBe(true);
      expect(day[0]?.seq).toBe(3 * READINGS_PER_DAY + 1);
      const schema = valuesSchema(device.kind);
      const bad = day.filter(
        (p) =>
          pointProblem(p) !== undefined ||
          !schema.safeParse(p.fields).success ||
          p.tags.device !== device.id,
      );
      expect(bad).toEqual([]);
      const again: Point[] = [];
      emitDeviceDay(device, index, tags, FROM, 3, (p) => again.push(p));
      expect(again).toEqual(day);
    }
  });

  it("loads every device's every minute in batches no larger than asked, within the writes in flight", async () => {
    const city = queryCity(10);
    const counting = countingStore();
    const days: number[] = [];
    const written = await loadCity(counting.store, city, {
      fromMs: FROM,
      days: 3,
      batchPoints: 5_000,
      inFlight: 2,
      onDay: (day) => days.push(day),
    });
    expect(written).toBe(10 * 3 * READINGS_PER_DAY);
    expect(counting.writes.reduce((a, b) => a + b, 0)).toBe(written);
    expect(Math.max(...counting.writes)).toBeLessThan(5_000 + READINGS_PER_DAY);
    expect(counting.maxInFlight()).toBeLessThanOrEqual(2);
    expect(days).toEqual([0, 1, 2]);
    for (const device of city.devices) {
      const times = counting.perDevice.get(device.id) ?? [];
      expect(times).toHaveLength(3 * READINGS_PER_DAY);
      expect(new Set(times).size).toBe(times.length);
    }
  });

  it("stops at a write the store refused", async () => {
    const counting = countingStore(2);
    await expect(
      loadCity(counting.store, queryCity(10), {
        fromMs: FROM,
        days: 3,
        batchPoints: 5_000,
        inFlight: 1,
      }),
    ).rejects.toThrow(/refused 1 of/);
  });
});
