import { randomUUID } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import type { QualityFlag } from "../../../../contracts/index.js";
import { createInfluxStore } from "../../../../ingest/store/influxdb.js";
import { withLatestCache } from "../../../../ingest/store/latest-cache.js";
import { createSqliteStore } from "../../../../ingest/store/sqlite.js";
import type { Point, TimeSeriesStore } from "../../../../ingest/store/types.js";
import { makeTempDir, removeTempDir } from "../../../support/process.js";
import { provideInfluxDB } from "../../../support/services.js";
import { requireService } from "../../../support/suite.js";
import { baseTags, noise, T0 } from "./points.js";

/*
 * The last-value cache (ingest/store/latest-cache.ts) answers what its store answers. Over real
 * stores: seeded random writes (newer, older, the same instant with the same or another quality
 * flag, refused points, through write() and point by point), reads between them, a write to the
 * store behind the cache's back seen after the TTL, and a store answer that raced a write.
 */

const influx = await requireService("ingest: last-value cache on InfluxDB", provideInfluxDB);
afterAll(async () => {
  await influx?.stop();
});

const DEVICES = ["c1", "c2", "c3"];
const QUALITIES: QualityFlag[] = ["normal", "maintenance"];

type Op =
  | {
      type: "write";
      points: Array<{
        device: number;
        minute: number;
        quality: number;
        la: number;
        lmax?: number;
        bad?: boolean;
      }>;
      batch: boolean;
    }
  | { type: "read"; device: number }
  | { type: "readAll" };

const pointOf = (p: Extract<Op, { type: "write" }>["points"][number], seq: number): Point =>
  noise(
    T0 + p.minute * 60_000,
    p.bad === true
      ? { LAeq: Number.NaN } // refused by both stores (not a finite number)
      : { LAeq: p.la, ...(p.lmax === undefined ? {} : { LAmax: p.lmax }) },
    {
      seq,
      tags: {
        ...baseTags,
        device: DEVICES[p.device] as string,
        quality: QUALITIES[p.quality] as QualityFlag,
      },
    },
  );

const ops = fc.array(
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        type: fc.constant("write" as const),
        batch: fc.boolean(),
        points: fc.array(
          fc.record(
            {
              device: fc.integer({ min: 0, max: 2 }),
              minute: fc.integer({ min: 0, max: 6 }),
              quality: fc.integer({ min: 0, max: 1 }),
              la: fc.integer({ min: 30, max: 90 }),
              lmax: fc.integer({ min: 40, max: 100 }),
              bad: fc.boolean(),
            },
            { requiredKeys: ["device", "minute", "quality", "la"] },
          ),
          { minLength: 1, maxLength: 6 },
        ),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        type: fc.constant("read" as const),
        device: fc.integer({ min: 0, max: 2 }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ type: "readAll" as const }) },
  ),
  { minLength: 1, maxLength: 25 },
);

interface Stores {
  /** A fresh store (its own database or file) and a second handle on it, bypassing the cache. */
  fresh(): Promise<{
    cached: TimeSeriesStore;
    direct: TimeSeriesStore;
    dispose: () => Promise<void>;
  }>;
}

function cacheSuite(name: string, stores: () => Stores, runs: number) {
  describe(name, () => {
    it("answers latest and latestOf as the store does, whatever is written in what order", async () => {
      await fc.assert(
        fc.asyncProperty(ops, async (sequence) => {
          const { cached, direct, dispose } = await stores().fresh();
          try {
            let seq = 0;
            for (const op of sequence) {
              if (op.type === "write") {
                const points = op.points.map((p) => pointOf(p, ++seq));
                if (op.batch && cached.batch !== undefined) {
                  const batch = cached.batch();
                  for (const p of points) batch.add(p);
                  await batch.write();
                } else await cached.write(points);
              } else if (op.type === "read") {
                const id = DEVICES[op.device] as string;
                expect(await cached.latest(id, "noise")).toEqual(await direct.latest(id, "noise"));
              } else {
                const got = await cached.latestOf!("noise", DEVICES);
                const want = new Map();
                for (const id of DEVICES) {
                  const r = await direct.latest(id, "noise");
                  if (r !== undefined) want.set(id, r);
                }
                expect(got).toEqual(want);
              }
            }
            for (const id of DEVICES)
              expect(await cached.latest(id, "noise")).toEqual(await direct.latest(id, "noise"));
          } finally {
            await dispose();
          }
        }),
        { numRuns: runs, seed: 20261207 },
      );
    }, 120_000);
  });
}

const log = pino({ level: "silent" });

cacheSuite(
  "last-value cache on the embedded store",
  () => ({
    async fresh() {
      const dir = await makeTempDir("cw-latest-cache-");
      const file = join(dir, "timeseries.db");
      const direct = createSqliteStore(file);
      const cached = withLatestCache(createSqliteStore(file));
      return {
        cached,
        direct,
        dispose: async () => {
          await cached.close();
          await direct.close();
          await removeTempDir(dir);
        },
      };
    },
  }),
  150,
);

if (influx !== undefined) {
  const url = influx.url;
  cacheSuite(
    "last-value cache on InfluxDB (points encoded one by one)",
    () => ({
      async fresh() {
        const options = {
          url,
          api: "v1" as const,
          v1: { database: `cw_${randomUUID().slice(0, 8)}` },
        };
        const direct = createInfluxStore(options, { log });
        await direct.open();
        const cached = withLatestCache(createInfluxStore(options, { log }));
        return {
          cached,
          direct,
          dispose: async () => {
            await fetch(`${url}/query`, {
              method: "POST",
              body: new URLSearchParams({ q: `DROP DATABASE "${options.v1.database}"` }),
            });
            await cached.close();
            await direct.close();
          },
        };
      },
    }),
    40,
  );
}

describe("last-value cache: what it cannot see", () => {
  it("counts hits and misses, sees a write behind its back only after the TTL, and keeps no answer that raced a write", async () => {
    const dir = await makeTempDir("cw-latest-cache-");
    const file = join(dir, "timeseries.db");
    const direct = createSqliteStore(file);
    let now = 1_000;
    const lookups = { hit: 0, miss: 0 };
    // The store's latest held until released: a write lands while it is being asked.
    let hold: Promise<void> | undefined;
    const slow: TimeSeriesStore = {
      ...direct,
      async latest(id, kind) {
        const answer = await direct.latest(id, kind);
        if (hold !== undefined) await hold;
        return answer;
      },
    };
    const cached = withLatestCache(slow, {
      ttlMs: 60_000,
      now: () => now,
      onLookup: (result, n) => (lookups[result] += n),
    });
    try {
      const at = (minute: number, la: number, seq: number) =>
        noise(T0 + minute * 60_000, { LAeq: la }, { seq, tags: { ...baseTags, device: "d1" } });
      await cached.write([at(0, 50, 1)]);
      expect((await cached.latest("d1", "noise"))?.values).toEqual({ LAeq: 50 });
      expect((await cached.latest("d1", "noise"))?.values).toEqual({ LAeq: 50 });
      expect(lookups).toEqual({ hit: 1, miss: 1 });
      // Another writer: unseen until the entry's TTL has passed.
      await direct.write([at(1, 61, 2)]);
      expect((await cached.latest("d1", "noise"))?.values).toEqual({ LAeq: 50 });
      now += 60_000;
      expect((await cached.latest("d1", "noise"))?.values).toEqual({ LAeq: 61 });
      // An answer read before a write landed is not kept: the next asks the store again.
      now += 60_000;
      let release!: () => void;
      hold = new Promise((r) => (release = r));
      const asked = cached.latest("d1", "noise");
      await new Promise((r) => setImmediate(r));
      await cached.write([at(2, 70, 3)]);
      release();
      hold = undefined;
      expect((await asked)?.values).toEqual({ LAeq: 61 }); // the store's answer when asked
      const misses = lookups.miss;
      expect((await cached.latest("d1", "noise"))?.values).toEqual({ LAeq: 70 });
      expect(lookups.miss).toBe(misses + 1);
    } finally {
      await cached.close();
      await removeTempDir(dir);
    }
  });
});
