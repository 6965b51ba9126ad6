import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { QualityFlag } from "../../../contracts/index.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { Point, TimeSeriesStore } from "../../../ingest/store/types.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";

/*
 * The embedded store finds a device's quality flags by seeks of its key and reads each flag's
 * (quality, time) range (ingest/store/sqlite.ts). These pin that the answers are those of a scan
 * of every reading: flags interleaved in time, flags the contracts do not list, a quantity some
 * readings lack, and other devices' readings on both sides of the key.
 */

const T0 = Date.UTC(2026, 2, 1, 0, 0, 0);
const MIN = 60_000;
const HOUR = 3_600_000;
const FLAGS = ["normal", "maintenance", "calibration", "fault", "zz-unlisted", ""] as const;

function point(device: string, timeMs: number, quality: string, fields: Point["fields"]): Point {
  return {
    measurement: "noise",
    tags: {
      device,
      site: "s1",
      district: "Jinjiang",
      grid_cell: "JJ-01",
      quality: quality as QualityFlag,
    },
    fields,
    seq: Math.floor((timeMs - T0) / MIN) + 1,
    timeMs,
  };
}

/** Six hours of one a minute for `device`, flags in turn, LAeq missing every 7th minute. */
function history(device: string, shiftDb = 0): Point[] {
  return Array.from({ length: 360 }, (_, i) =>
    point(
      device,
      T0 + i * MIN,
      FLAGS[(i * 5) % FLAGS.length] ?? "normal",
      i % 7 === 3 ? { LAmax: 70 + shiftDb } : { LAeq: 50 + (i % 13) + shiftDb, LAmax: 70 },
    ),
  );
}

describe("embedded store: a device's readings by flag and time (read path)", () => {
  let dir: string;
  let store: TimeSeriesStore;
  const mine = history("n-b");

  beforeEach(async () => {
    dir = await makeTempDir("cw-sqlite-read-path-");
    store = createSqliteStore(join(dir, "timeseries.db"));
    // Neighbours in the key on both sides, with later readings than n-b's.
    await store.write([...history("n-a", 20), ...mine, ...history("n-c", 30)]);
    await store.write([point("n-a", T0 + 400 * MIN, "normal", { LAeq: 99 })]);
    await store.write([point("n-c", T0 + 500 * MIN, "fault", { LAeq: 99 })]);
  });

  afterEach(async () => {
    await store.close();
    await removeTempDir(dir);
  });

  it("latest is the newest reading under any flag, listed or not", async () => {
    const last = mine[mine.length - 1] as Point;
    expect(await store.latest("n-b", "noise")).toEqual({
      timeMs: last.timeMs,
      quality: last.tags.quality,
      seq: last.seq,
      values: last.fields,
    });
    await store.write([point("n-b", T0 + 361 * MIN, "zz-unlisted", { LAeq: 40 })]);
    expect((await store.latest("n-b", "noise"))?.quality).toBe("zz-unlisted");
    await store.write([point("n-b", T0 + 362 * MIN, "", { LAeq: 41 })]);
    expect((await store.latest("n-b", "noise"))?.values).toEqual({ LAeq: 41 });
  });

  it("aggregates every flag's readings in the range, as a scan would", async () => {
    const fromMs = T0 + 17 * MIN;
    const toMs = T0 + 5 * HOUR + 3 * MIN;
    const expected = (fn: (values: number[]) => number) => {
      const out: Array<{ timeMs: number; value: number | null }> = [];
      for (let bucket = T0; bucket < toMs; bucket += HOUR) {
        const values = mine
          .filter(
            (p) => p.timeMs >= Math.max(bucket, fromMs) && p.timeMs < Math.min(toMs, bucket + HOUR),
          )
          .map((p) => p.fields["LAeq"])
          .filter((v): v is number => typeof v === "number");
        out.push({ timeMs: bucket, value: values.length === 0 ? null : fn(values) });
      }
      return out;
    };
    const query = { deviceId: "n-b", kind: "noise" as const, quantity: "LAeq", fromMs, toMs };
    const mean = await store.aggregate({ ...query, intervalMs: HOUR, fn: "mean" });
    const max = await store.aggregate({ ...query, intervalMs: HOUR, fn: "max" });
    const energy = await store.aggregate({ ...query, intervalMs: HOUR, fn: "energy_mean" });
    const close = (got: typeof mean, want: typeof mean) => {
      expect(got.map((b) => b.timeMs)).toEqual(want.map((b) => b.timeMs));
      got.forEach((b, i) => expect(b.value).toBeCloseTo(want[i]?.value ?? Number.NaN, 9));
    };
    close(
      mean,
      expected((v) => v.reduce((a, b) => a + b, 0) / v.length),
    );
    close(
      max,
      expected((v) => Math.max(...v)),
    );
    close(
      energy,
      expected((v) => 10 * Math.log10(v.reduce((a, b) => a + 10 ** (b / 10), 0) / v.length)),
    );
  });

  it("answers a bucket whose readings all lack the quantity, and a device without readings, as empty", async () => {
    await store.write([point("n-d", T0 + 30 * MIN, "normal", { LAmax: 80 })]);
    const query = { kind: "noise" as const, quantity: "LAeq", fromMs: T0, toMs: T0 + HOUR };
    expect(
      await store.aggregate({ ...query, deviceId: "n-d", intervalMs: HOUR, fn: "mean" }),
    ).toEqual([{ timeMs: T0, value: null }]);
    expect(
      await store.aggregate({ ...query, deviceId: "nobody", intervalMs: HOUR, fn: "max" }),
    ).toEqual([{ timeMs: T0, value: null }]);
    expect(await store.latest("nobody", "noise")).toBeUndefined();
    expect(await store.latest("n-b", "dust")).toBeUndefined();
  });
});
