import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  StoreUnavailableError,
  type Point,
  type TimeSeriesStore,
} from "../../../../ingest/store/types.js";
import { MAX_TIME_MS, QueryRangeError } from "../../../../ingest/store/checks.js";
import { baseTags, mixedPoints, noise, reading, T0 } from "./points.js";

/*
 * The behaviour every TimeSeriesStore (ingest/store/types.ts) must have, as one suite that each
 * store's test file runs against its own backend (as aedes-persistence does for its backends):
 * tests/integration/ingest/store/sqlite.test.ts for the embedded store on a real file,
 * tests/integration/ingest/store/influxdb.test.ts for InfluxDB on a real influxd.
 *
 * Where the stores legitimately differ, the difference is a capability the store's file declares,
 * and the suite asserts each side of it: nothing is skipped.
 */

export interface StoreCapabilities {
  /**
   * A field keeps the type it was first written with, and a point giving it another type is
   * rejected (InfluxDB: "field type conflict"). false: the field takes the new type (the embedded
   * store keeps each point's fields as JSON).
   */
  readonly fixedFieldTypes: boolean;
  /**
   * `store.batch()` exists, taking points one at a time (InfluxDB encodes each as it comes). false:
   * the store has no batch, and the caller collects points for `write`.
   */
  readonly pointByPointBatch: boolean;
}

/** One test's storage. */
export interface StoreUnderTest {
  /** A store on this test's storage, opened; again after `close()`, the same data. */
  open(): Promise<TimeSeriesStore>;
  /** Remove the storage; every store opened on it is closed first. */
  dispose(): Promise<void>;
}

export interface StoreFactory {
  readonly capabilities: StoreCapabilities;
  /** Fresh, empty storage for one test (a new file, a new database). */
  fresh(): Promise<StoreUnderTest>;
}

const LATER = T0 + 1_000_000;

/** Registers the TimeSeriesStore tests; call inside the store's describe(). */
export function timeSeriesStoreSuite(factory: StoreFactory): void {
  const { capabilities } = factory;
  let storage: StoreUnderTest;
  let store: TimeSeriesStore;
  const opened: TimeSeriesStore[] = [];

  const open = async (): Promise<TimeSeriesStore> => {
    const s = await storage.open();
    opened.push(s);
    return s;
  };
  const all = (s: TimeSeriesStore, deviceId = "n1", kind: Point["measurement"] = "noise") =>
    s.readings({ deviceId, kind, fromMs: T0 - 1_000_000, toMs: LATER, limit: 10_000 });

  beforeEach(async () => {
    storage = await factory.fresh();
    store = await open();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await storage.dispose();
  });

  describe("the TimeSeriesStore contract", () => {
    it("opens again without changing anything, and answers a ping", async () => {
      await store.write([noise(T0, { LAeq: 60 })]);
      await store.open();
      expect(await all(store)).toEqual([reading(noise(T0, { LAeq: 60 }))]);
      expect(await store.ping()).toBe(true);
    });

    it("writes an empty batch as nothing", async () => {
      expect(await store.write([])).toEqual({ rejected: [] });
      expect(await all(store)).toEqual([]);
    });

    it("writes 1,000 points of mixed kinds, qualities and tags, and reads them back exactly", async () => {
      const points = mixedPoints(1_000);
      expect(await store.write(points)).toEqual({ rejected: [] });
      const groups = new Map<string, Point[]>();
      for (const p of points) {
        const key = `${p.measurement}/${p.tags.device}`;
        groups.set(key, [...(groups.get(key) ?? []), p]);
      }
      expect(groups.size).toBe(15);
      for (const group of groups.values()) {
        const [first] = group;
        const stored = await all(store, first!.tags.device, first!.measurement);
        // Full-precision floats, whole numbers in float fields, booleans and 13-digit seqs intact.
        expect(stored).toEqual(group.map(reading));
      }
    });

    it("bounds readings to [fromMs, toMs), oldest first, at most `limit`", async () => {
      // Written out of order: the store sorts.
      await store.write([3, 0, 4, 1, 2].map((i) => noise(T0 + i * 1_000, { LAeq: 50 + i })));
      const q = { deviceId: "n1", kind: "noise" as const, limit: 2 };
      const two = await store.readings({ ...q, fromMs: T0 + 1_000, toMs: T0 + 4_000 });
      expect(two.map((r) => r.values["LAeq"])).toEqual([51, 52]);
      const tail = await store.readings({ ...q, fromMs: T0 + 3_000, toMs: T0 + 4_000, limit: 9 });
      expect(tail.map((r) => r.timeMs)).toEqual([T0 + 3_000]);
      expect(await store.readings({ ...q, fromMs: T0 + 2_000, toMs: T0 + 2_000 })).toEqual([]);
      // Another device, another kind: nothing.
      expect(await all(store, "n2")).toEqual([]);
      expect(await all(store, "n1", "dust")).toEqual([]);
    });

    it("refuses a readings query without a positive whole limit or whole-ms bounds", async () => {
      const q = { deviceId: "n1", kind: "noise" as const, fromMs: T0, toMs: LATER };
      for (const limit of [0, -1, 1.5]) {
        await expect(store.readings({ ...q, limit })).rejects.toThrow(RangeError);
      }
      await expect(store.readings({ ...q, fromMs: T0 + 0.5, limit: 1 })).rejects.toThrow(
        RangeError,
      );
    });

    // Issue #16 item 8: `to=9999999999999` reached InfluxDB, whose error came back as a 503.
    it("refuses a range beyond what every store holds as a QueryRangeError naming the bound, and answers at the edge", async () => {
      const q = { deviceId: "n1", kind: "noise" as const, limit: 1 };
      const far = 9_999_999_999_999;
      for (const [fromMs, toMs, field] of [
        [T0, far, "to"],
        [-far, T0, "from"],
      ] as const) {
        const refused = store.readings({ ...q, fromMs, toMs });
        await expect(refused).rejects.toThrow(QueryRangeError);
        await expect(refused).rejects.toMatchObject({ field });
        await expect(
          store.aggregate({
            ...q,
            quantity: "LAeq",
            fn: "mean",
            intervalMs: 3_600_000 * 24 * 365 * 100,
            fromMs,
            toMs,
          }),
        ).rejects.toThrow(QueryRangeError);
      }
      await store.write([noise(T0, { LAeq: 50 })]);
      const edge = await store.readings({ ...q, fromMs: -MAX_TIME_MS, toMs: MAX_TIME_MS });
      expect(edge.map((r) => r.timeMs)).toEqual([T0]);
    });

    it("a point re-sent with the same time overwrites itself", async () => {
      const batch = [0, 1, 2].map((i) => noise(T0 + i * 1_000, { LAeq: 60 + i }, { seq: i }));
      await store.write(batch);
      await store.write(batch);
      await store.write([noise(T0 + 1_000, { LAeq: 66.6 }, { seq: 99 })]);
      expect((await all(store)).map((r) => [r.timeMs, r.seq, r.values["LAeq"]])).toEqual([
        [T0, 0, 60],
        [T0 + 1_000, 99, 66.6],
        [T0 + 2_000, 2, 62],
      ]);
    });

    it("merges the fields of a point written twice with different fields", async () => {
      await store.write([noise(T0, { LAeq: 60, LAmax: 70 })]);
      await store.write([noise(T0, { LAeq: 61, L90: 40 }, { seq: 2 })]);
      expect(await all(store)).toEqual([
        { timeMs: T0, quality: "normal", seq: 2, values: { LAeq: 61, LAmax: 70, L90: 40 } },
      ]);
    });

    it("keeps the quality flag: the same time under two flags is two readings", async () => {
      const calibration = { ...baseTags, quality: "calibration" as const };
      await store.write([
        noise(T0, { LAeq: 60 }),
        noise(T0, { LAeq: 90 }, { seq: 2, tags: calibration }),
        noise(T0 + 1_000, { LAeq: 61 }, { seq: 3, tags: { ...baseTags, quality: "fault" } }),
      ]);
      const stored = await all(store);
      expect(stored).toHaveLength(3);
      const byFlag = Object.fromEntries(stored.map((r) => [r.quality, r.values["LAeq"]]));
      expect(byFlag).toEqual({ normal: 60, calibration: 90, fault: 61 });
      expect((await store.latest("n1", "noise"))?.quality).toBe("fault");
    });

    it("rejects points no store can hold, by index and with the same reasons, and writes the rest", async () => {
      const batch = [
        noise(T0, { LAeq: Number.NaN }),
        noise(T0 + 1_000, { LAeq: 61 }),
        noise(T0 + 2_000, { LAeq: Number.POSITIVE_INFINITY }),
        noise(T0 + 3_500.5, { LAeq: 63 }),
        noise(T0 + 4_000, { LAeq: 64 }, { seq: 2 ** 60 }),
        noise(T0 + 5_000, { LAeq: 65, seq: 5 }),
        noise(T0 + 6_000, { LAeq: 66 }),
      ];
      const { rejected } = await store.write(batch);
      expect(rejected).toEqual([
        { index: 0, reason: "field LAeq is NaN; InfluxDB stores only finite numbers and booleans" },
        {
          index: 2,
          reason: "field LAeq is Infinity; InfluxDB stores only finite numbers and booleans",
        },
        {
          index: 3,
          reason: `time ${T0 + 3_500.5} is not a whole number of ms within ±9223372036854`,
        },
        { index: 4, reason: `seq ${2 ** 60} is not a safe integer` },
        { index: 5, reason: "fields must not hold seq; it is written from point.seq" },
      ]);
      expect((await all(store)).map((r) => r.values["LAeq"])).toEqual([61, 66]);
    });

    it(
      capabilities.fixedFieldTypes
        ? "rejects a point that gives a field another type (fixed field types)"
        : "takes a point that gives a field another type (field types not fixed)",
      async () => {
        await store.write([noise(T0, { LAeq: 60 })]);
        const { rejected } = await store.write([
          noise(T0 + 1_000, { LAeq: true }),
          noise(T0 + 2_000, { LAeq: 62 }),
        ]);
        const stored = (await all(store)).map((r) => r.values["LAeq"]);
        if (capabilities.fixedFieldTypes) {
          expect(rejected.map((r) => r.index)).toEqual([0]);
          expect(rejected[0]?.reason).toMatch(/field type conflict/);
          expect(stored).toEqual([60, 62]);
        } else {
          expect(rejected).toEqual([]);
          expect(stored).toEqual([60, true, 62]);
        }
      },
    );

    it(
      capabilities.pointByPointBatch
        ? "fills a batch point by point, rejections by order of adding"
        : "has no point-by-point batch (callers collect points for write)",
      async () => {
        expect(typeof store.batch).toBe(capabilities.pointByPointBatch ? "function" : "undefined");
        const batch = store.batch?.();
        if (batch === undefined) return;
        const points = [
          noise(T0 + 1_000, { LAeq: 61 }),
          noise(T0 + 2_000, { LAeq: Number.NaN }),
          noise(T0 + 4_000, { LAeq: 64 }),
        ];
        for (const point of points) batch.add(point);
        expect(batch.size).toBe(3);
        const { rejected } = await batch.write();
        expect(rejected.map((r) => r.index)).toEqual([1]);
        expect(rejected[0]?.reason).toMatch(/LAeq is NaN/);
        expect((await all(store)).map((r) => r.values["LAeq"])).toEqual([61, 64]);
      },
    );

    it("aggregates mean, max and energy mean in the same buckets, with null for empty ones", async () => {
      await store.write([
        noise(T0 - 1, { LAeq: 100 }), // before the range
        noise(T0 + 10_000, { LAeq: 60 }),
        noise(T0 + 50_000, { LAeq: 70 }),
        noise(T0 + 20_000, { LAeq: 90 }, { tags: { ...baseTags, device: "n2" } }), // other device
        noise(T0 + 150_000, { LAeq: 55, LAmax: 80 }),
        noise(T0 + 170_000, { LAeq: 3 }),
        noise(T0 + 180_000, { LAeq: 100 }), // at toMs: outside
      ]);
      const q = {
        deviceId: "n1",
        kind: "noise" as const,
        quantity: "LAeq",
        fromMs: T0,
        toMs: T0 + 180_000,
        intervalMs: 60_000,
      };
      const mean = await store.aggregate({ ...q, fn: "mean" });
      const max = await store.aggregate({ ...q, fn: "max" });
      const energy = await store.aggregate({ ...q, fn: "energy_mean" });
      const times = [T0, T0 + 60_000, T0 + 120_000];
      expect(mean).toEqual([
        { timeMs: times[0], value: 65 },
        { timeMs: times[1], value: null },
        { timeMs: times[2], value: 29 },
      ]);
      expect(max).toEqual([
        { timeMs: times[0], value: 70 },
        { timeMs: times[1], value: null },
        { timeMs: times[2], value: 55 },
      ]);
      expect(energy.map((b) => b.timeMs)).toEqual(times);
      // 10·log10((10^6 + 10^7) / 2) = 67.4036268949424…, never the arithmetic 65.
      expect(energy[0]?.value).toBeCloseTo(10 * Math.log10((1e6 + 1e7) / 2), 10);
      expect(energy[0]?.value).toBeCloseTo(67.403_626_894_942, 10);
      expect(energy[1]?.value).toBeNull();
      // A quiet reading counts as energy, not truncated away: 10·log10((10^5.5 + 10^0.3) / 2).
      expect(energy[2]?.value).toBeCloseTo(10 * Math.log10((10 ** 5.5 + 10 ** 0.3) / 2), 10);
      // The other quantity of the same points, and only where it was given.
      const lamax = await store.aggregate({ ...q, quantity: "LAmax", fn: "max" });
      expect(lamax.map((b) => b.value)).toEqual([null, null, 80]);
    });

    it("starts buckets at multiples of the interval, holding only readings from fromMs on", async () => {
      await store.write([
        noise(T0 + 10_000, { LAeq: 60 }),
        noise(T0 + 40_000, { LAeq: 70 }),
        noise(T0 + 70_000, { LAeq: 80 }),
      ]);
      const q = {
        deviceId: "n1",
        kind: "noise" as const,
        quantity: "LAeq",
        fromMs: T0 + 30_000,
        toMs: T0 + 90_000,
        intervalMs: 60_000,
      };
      for (const fn of ["mean", "max", "energy_mean"] as const) {
        const buckets = await store.aggregate({ ...q, fn });
        expect(buckets.map((b) => b.timeMs)).toEqual([T0, T0 + 60_000]);
        expect(buckets.map((b) => b.value)).toEqual([70, 80]);
      }
      // Nothing stored in the range: the store still lays out the buckets.
      const empty = await store.aggregate({
        ...q,
        fn: "energy_mean",
        fromMs: T0 + 100_000,
        toMs: T0 + 220_000,
      });
      expect(empty).toEqual([
        { timeMs: T0 + 60_000, value: null },
        { timeMs: T0 + 120_000, value: null },
        { timeMs: T0 + 180_000, value: null },
      ]);
      // An empty range has no buckets.
      expect(await store.aggregate({ ...q, fn: "mean", toMs: q.fromMs })).toEqual([]);
    });

    it("refuses aggregates of an on/off or unknown quantity, a bad interval, too many buckets", async () => {
      const q = {
        deviceId: "n1",
        kind: "noise" as const,
        quantity: "LAeq",
        fromMs: T0,
        toMs: T0 + 60_000,
        intervalMs: 60_000,
        fn: "mean",
      } as const;
      await store.write([
        { ...noise(T0, { fanOn: true, oilFume: 1 }), measurement: "cooking_fume" },
      ]);
      const refused = [
        { ...q, kind: "cooking_fume", quantity: "fanOn" },
        { ...q, quantity: "pm10" },
        { ...q, quantity: "toString" },
        { ...q, intervalMs: 0 },
        { ...q, intervalMs: -60_000 },
        { ...q, toMs: T0 + 0.5 },
        { ...q, toMs: T0 + 100_001, intervalMs: 1 },
      ] as const;
      for (const query of refused) {
        await expect(store.aggregate(query)).rejects.toThrow(RangeError);
      }
    });

    it("latest gives the newest reading of a device, or undefined", async () => {
      await store.write([
        noise(T0 + 2_000, { LAeq: 62 }, { seq: 2 }),
        noise(T0 + 3_000, { LAeq: 63 }, { seq: 3, tags: { ...baseTags, quality: "calibration" } }),
        noise(T0 + 1_000, { LAeq: 61 }, { seq: 1 }),
        noise(T0 + 9_000, { LAeq: 99 }, { tags: { ...baseTags, device: "n2" } }),
      ]);
      expect(await store.latest("n1", "noise")).toEqual({
        timeMs: T0 + 3_000,
        quality: "calibration",
        seq: 3,
        values: { LAeq: 63 },
      });
      expect(await store.latest("nobody", "noise")).toBeUndefined();
      expect(await store.latest("n1", "dust")).toBeUndefined();
    });

    it("latestOf gives each asked device's newest reading in one call, as latest does", async () => {
      await store.write([
        noise(T0 + 2_000, { LAeq: 62 }, { seq: 2 }),
        noise(T0 + 3_000, { LAeq: 63 }, { seq: 3, tags: { ...baseTags, quality: "calibration" } }),
        noise(T0 + 1_000, { LAeq: 61 }, { seq: 1 }),
        noise(T0 + 9_000, { LAeq: 99 }, { seq: 9, tags: { ...baseTags, device: "n2" } }),
        noise(T0 + 5_000, { LAeq: 55 }, { seq: 5, tags: { ...baseTags, device: "n3" } }),
      ]);
      expect(typeof store.latestOf).toBe("function");
      const found = await store.latestOf?.("noise", ["n1", "n2", "nobody"]);
      expect(found).toEqual(
        new Map([
          ["n1", await store.latest("n1", "noise")],
          ["n2", { timeMs: T0 + 9_000, quality: "normal", seq: 9, values: { LAeq: 99 } }],
        ]),
      );
      // Not asked: not answered; another kind: none of the noise readings.
      expect(found?.has("n3")).toBe(false);
      // A device heard from in the last minute and one heard from long ago, in one answer (the
      // InfluxDB store asks the last day first, then further back for those not found).
      const recent = Math.floor(Date.now() / 1_000) * 1_000 - 60_000;
      await store.write([
        noise(recent, { LAeq: 44 }, { seq: 44, tags: { ...baseTags, device: "n4" } }),
      ]);
      const both = await store.latestOf?.("noise", ["n4", "n2"]);
      expect(both?.get("n4")?.timeMs).toBe(recent);
      expect(both?.get("n2")?.timeMs).toBe(T0 + 9_000);
      expect(await store.latestOf?.("dust", ["n1", "n2"])).toEqual(new Map());
      expect(await store.latestOf?.("noise", [])).toEqual(new Map());
    });

    it("takes device ids with quotes and backslashes as data, never as query text", async () => {
      const odd = `o'brien"x\\y`;
      await store.write([noise(T0, { LAeq: 60 }, { tags: { ...baseTags, device: odd } })]);
      const q = { kind: "noise" as const, fromMs: T0, toMs: T0 + 1, limit: 10 };
      expect(await store.readings({ ...q, deviceId: odd })).toHaveLength(1);
      expect((await store.latest(odd, "noise"))?.values).toEqual({ LAeq: 60 });
      const injection = `x' OR "device" =~ /.*/ OR 'a'='a`;
      expect(await store.readings({ ...q, deviceId: injection })).toEqual([]);
      expect(await store.latest(injection, "noise")).toBeUndefined();
    });

    it("keeps what it stored across close and reopen", async () => {
      const points = [0, 1, 2].map((i) => noise(T0 + i * 1_000, { LAeq: 60 + i }, { seq: i }));
      await store.write(points);
      await store.close();
      const again = await open();
      expect(await all(again)).toEqual(points.map(reading));
      await again.write([noise(T0 + 3_000, { LAeq: 63 }, { seq: 3 })]);
      expect((await again.latest("n1", "noise"))?.seq).toBe(3);
    });

    it("a closed store takes no more writes and answers no more", async () => {
      await store.write([noise(T0, { LAeq: 60 })]);
      await store.close();
      await expect(store.write([noise(T0, { LAeq: 60 })])).rejects.toThrow(StoreUnavailableError);
      await expect(all(store)).rejects.toThrow(StoreUnavailableError);
      await expect(store.latest("n1", "noise")).rejects.toThrow(StoreUnavailableError);
      expect(await store.ping()).toBe(false);
      await store.close(); // twice is harmless
    });
  });
}
