import { describe, expect, it } from "vitest";
import { QUANTITIES } from "../../../contracts/index.js";
import { ReadingColumns } from "../../../ingest/reading-columns.js";
import type { StoredBatch } from "../../../contracts/model/stored-readings.js";
import type { Point } from "../../../ingest/store/types.js";

/** Every quantity name of every kind. */
const ALL_QUANTITIES = [...new Set(Object.values(QUANTITIES).flatMap((q) => Object.keys(q)))];

/** The batch's stored readings as plain objects, read through the StoredBatch interface. */
function stored(batch: StoredBatch) {
  const out = [];
  for (let i = 0; i < batch.length; i++) {
    if (!batch.isStored(i)) continue;
    const values: Record<string, number | boolean> = {};
    for (const quantity of ALL_QUANTITIES) {
      const value = batch.value(i, quantity);
      if (value !== undefined) values[quantity] = value;
    }
    out.push({
      deviceId: batch.deviceId(i),
      timeMs: batch.timeMs(i),
      quality: batch.quality(i),
      values,
      replay: batch.replay(i),
    });
  }
  return out;
}

function point(
  measurement: Point["measurement"],
  fields: Point["fields"],
  timeMs: number,
  quality: Point["tags"]["quality"] = "normal",
): Point {
  const tags = { device: "dev-1", site: "site-1", district: "锦江区", grid_cell: "G-1", quality };
  return { measurement, tags, fields, seq: 1, timeMs };
}

describe("ReadingColumns", () => {
  it("gives back each reading as it came: device, kind, time, flag, values and replay", () => {
    const columns = new ReadingColumns();
    columns.add("tunnel-1", false, [
      point("utility_tunnel", { ch4: 0.4, o2: 20.9 }, 1_764_230_400_123),
      point("utility_tunnel", { sumpLevel: 25 }, 1_764_230_401_000, "maintenance"),
    ]);
    columns.add("noise-1", true, [
      point("noise", { LAeq: 61.5, LAmax: 70 }, 1_764_230_402_000, "calibration"),
    ]);
    columns.add("empty", false, []);
    expect(columns.length).toBe(3);
    expect(stored(columns)).toEqual([
      {
        deviceId: "tunnel-1",
        timeMs: 1_764_230_400_123,
        quality: "normal",
        values: { ch4: 0.4, o2: 20.9 },
        replay: false,
      },
      {
        deviceId: "tunnel-1",
        timeMs: 1_764_230_401_000,
        quality: "maintenance",
        values: { sumpLevel: 25 },
        replay: false,
      },
      {
        deviceId: "noise-1",
        timeMs: 1_764_230_402_000,
        quality: "calibration",
        values: { LAeq: 61.5, LAmax: 70 },
        replay: true,
      },
    ]);
  });

  it("leaves out the readings the store refused, by their index in the round", () => {
    const columns = new ReadingColumns();
    columns.add(
      "dust-1",
      false,
      [1, 2, 3].map((n) => point("dust", { pm10: n * 10 }, 1_764_230_400_000 + n)),
    );
    expect(stored(columns.markRefused(new Set([0, 2]))).map((r) => r.values)).toEqual([
      { pm10: 20 },
    ]);
  });

  it("has no value of a quantity the reading lacks or its kind does not have", () => {
    const columns = new ReadingColumns();
    columns.add("tunnel-1", false, [point("utility_tunnel", { ch4: 0.4 }, 1)]);
    expect(columns.value(0, "ch4")).toBe(0.4);
    expect(columns.value(0, "o2")).toBeUndefined();
    expect(columns.value(0, "LAeq")).toBeUndefined();
    expect(() => columns.deviceId(1)).toThrow(RangeError);
  });

  it("keeps booleans as booleans and zero as a number", () => {
    const columns = new ReadingColumns();
    columns.add("fume-1", false, [
      point("cooking_fume", { fanOn: true, purifierOn: false, oilFume: 0 }, 1),
      point("cooking_fume", { fanOn: false }, 2),
    ]);
    const [a, b] = stored(columns);
    expect(a?.values).toEqual({ fanOn: true, purifierOn: false, oilFume: 0 });
    expect(b?.values).toEqual({ fanOn: false });
  });

  it("grows past its first capacity without losing what it holds", () => {
    const columns = new ReadingColumns(2);
    for (let m = 0; m < 5; m++) {
      columns.add(
        `dust-${m}`,
        m === 4,
        [0, 1, 2].map((j) => point("dust", { pm10: m * 10 + j, tsp: j }, m * 100 + j)),
      );
    }
    const readings = stored(columns);
    expect(readings).toHaveLength(15);
    expect(readings.map((r) => r.values["pm10"])).toEqual(
      Array.from({ length: 15 }, (_, i) => Math.floor(i / 3) * 10 + (i % 3)),
    );
    expect(readings.map((r) => r.deviceId)).toEqual(
      Array.from({ length: 15 }, (_, i) => `dust-${Math.floor(i / 3)}`),
    );
    expect(readings.filter((r) => r.replay).map((r) => r.timeMs)).toEqual([400, 401, 402]);
  });

  it("is empty again after clear, keeping its room", () => {
    const columns = new ReadingColumns(2);
    columns.add(
      "dust-1",
      false,
      [1, 2, 3].map((n) => point("dust", { pm10: n }, n)),
    );
    const room = columns.capacity;
    columns.markRefused(new Set([0]));
    columns.clear();
    expect(columns.length).toBe(0);
    expect(stored(columns)).toEqual([]);
    columns.add("noise-1", true, [point("noise", { LAeq: 40 }, 9)]);
    expect(columns.capacity).toBe(room);
    expect(stored(columns)).toEqual([
      {
        deviceId: "noise-1",
        timeMs: 9,
        quality: "normal",
        values: { LAeq: 40 },
        replay: true,
      },
    ]);
  });
});
