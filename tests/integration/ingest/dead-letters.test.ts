import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import {
  type DeadLetterLimits,
  MISSING_SEQ_PER_DEVICE,
  type Pruned,
} from "../../../ingest/dead-letters.js";
import { type DeadLetter, IngestState, type StoredDeadLetter } from "../../../ingest/state.js";
import { PostgresIngestState } from "../../../ingest/state-postgres.js";
import {
  createLeasedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * The dead letters' bounds (issue #16 item 3), one suite for both stores: the embedded ingest.db
 * (ingest/dead-letters.ts, counted in memory) and PostgreSQL (ingest/dead-letters-postgres.ts,
 * counted in a table of accounts, issue #21).
 */

const postgres = await requireService("the dead letters in PostgreSQL", providePostgres);

/** The dead letters of one store, every answer awaited. */
interface Letters {
  /** A batch's letters, applied as the pipeline applies them. */
  add(letters: DeadLetter[], nowMs: number): Promise<void>;
  prune(nowMs: number, limits: DeadLetterLimits): Promise<Pruned>;
  list(options: { limit: number; deviceId?: string; reason?: string }): Promise<StoredDeadLetter[]>;
  count(): Promise<number>;
  bytes(): Promise<number>;
  held(deviceId: string): Promise<{ bytes: number; rows: number; missingSeq: number }>;
}

interface Kind {
  /** The store on the same data as before, as a restarted process opens it. */
  open(): Promise<Letters>;
  close(): Promise<void>;
}

const DAY = 86_400_000;
const letter = (receivedMs: number, bytes: number, detail = "not JSON"): DeadLetter => ({
  receivedMs,
  topic: "citywatch/v1/devices/d1/data",
  deviceId: "d1",
  reason: "not_json",
  detail,
  payload: Buffer.alloc(bytes, 0x78),
});
const garbage = (device: string, receivedMs: number, bytes: number): DeadLetter => ({
  receivedMs,
  topic: `citywatch/v1/devices/${device}/data`,
  deviceId: device,
  reason: "not_json",
  detail: "payload is not JSON",
  payload: Buffer.alloc(bytes, 0x7a),
});
const gap = (device: string, receivedMs: number, seq: number): DeadLetter => ({
  receivedMs,
  topic: "",
  deviceId: device,
  seq,
  reason: "missing_seq",
  detail: `seq ${seq}..${seq} never arrived within 600000 ms; commit moved past them`,
  payload: Buffer.alloc(0),
});
/** What the store holds, counted letter by letter: the store's own count must agree. */
const heldInStore = async (state: Letters) =>
  (await state.list({ limit: 1_000_000 })).reduce(
    (n, d) => n + d.payload.length + Buffer.byteLength(d.detail),
    0,
  );

function suite(name: string, kind: () => Kind) {
  describe(`dead letter bounds: ${name}`, () => {
    it("prunes the expired ones, oldest first, and keeps the byte count across a restart", async () => {
      const k = kind();
      const now = Date.parse("2026-11-27T00:00:00Z");
      let state = await k.open();
      // 2,500 letters a day apart, so expiry cuts across several 1,000-row steps.
      await state.add(
        Array.from({ length: 2_500 }, (_, i) => letter(now - (2_500 - i) * DAY, 10, "锦江")),
        now,
      );
      expect(await state.bytes()).toBe(2_500 * (10 + Buffer.byteLength("锦江")));
      state = await k.open();
      expect(await state.bytes()).toBe(2_500 * 16);
      const pruned = await state.prune(now, { maxBytes: 1e12, maxAgeMs: 1_000 * DAY });
      expect(pruned).toEqual({ age: 1_500, bytes: 0, device: 0 });
      expect(await state.count()).toBe(1_000);
      expect(await state.bytes()).toBe(1_000 * 16);
      // The newest remain: the oldest kept is exactly 1,000 days old.
      const oldest = (await state.list({ limit: 1_000 })).at(-1);
      expect(oldest?.receivedMs).toBe(now - 1_000 * DAY);
      await k.close();
    });

    it("deletes the oldest past the byte bound, no more than it must", async () => {
      const k = kind();
      const state = await k.open();
      const now = Date.now();
      await state.add(
        Array.from({ length: 300 }, (_, i) => letter(now - 300 + i, 1_000, "")),
        now,
      );
      expect(await state.bytes()).toBe(300_000);
      const limits = { maxBytes: 250_500, maxAgeMs: DAY, perDeviceMaxBytes: 250_500 };
      const pruned = await state.prune(now, limits);
      expect(pruned).toEqual({ age: 0, bytes: 50, device: 0 });
      expect(await state.count()).toBe(250);
      expect(await state.bytes()).toBe(250_000);
      expect((await state.list({ limit: 300 })).at(-1)?.receivedMs).toBe(now - 250);
      // Within bounds: nothing more goes.
      expect(await state.prune(now, limits)).toEqual({ age: 0, bytes: 0, device: 0 });
      await k.close();
    });

    /*
     * Issue #16 item 3: three devices sending 256 KiB garbage pruned 86,645 dead letters of other
     * devices, every missing_seq record among them, and the byte gauge stayed above its bound (the
     * bound was kept once a minute).
     */
    it("a flood of three devices leaves the others' letters and every missing_seq record, within the bound at every insert", async () => {
      const k = kind();
      const state = await k.open();
      const now = Date.now();
      const limits = { maxBytes: 2_000_000, maxAgeMs: DAY, perDeviceMaxBytes: 400_000 };
      await state.prune(now, limits);
      // Before the flood: ten quiet devices with a few letters each, and gaps recorded.
      const quiet = Array.from({ length: 10 }, (_, i) => `quiet-${i}`);
      await state.add(
        quiet.flatMap((d, i) => [
          garbage(d, now - 1_000 + i, 300),
          garbage(d, now - 900 + i, 300),
          gap(d, now - 800 + i, 7),
        ]),
        now,
      );
      const counts = async () =>
        Promise.all(quiet.map(async (d) => (await state.list({ limit: 100, deviceId: d })).length));
      const before = await counts();
      let maxSeen = 0;
      for (let round = 0; round < 60; round++) {
        await state.add(
          ["flood-a", "flood-b", "flood-c"].map((d) => garbage(d, now + round, 256 * 1024)),
          now + round,
        );
        maxSeen = Math.max(maxSeen, await state.bytes());
      }
      expect(maxSeen).toBeLessThanOrEqual(limits.maxBytes);
      expect(await heldInStore(state)).toBe(await state.bytes());
      expect(await counts()).toEqual(before);
      expect(await state.list({ limit: 100, reason: "missing_seq" })).toHaveLength(10);
      // Each flooding device keeps its newest, within its share; its oldest went first.
      for (const d of ["flood-a", "flood-b", "flood-c"]) {
        const held = await state.held(d);
        expect(held.bytes).toBeLessThanOrEqual(limits.perDeviceMaxBytes);
        expect(held.rows).toBeGreaterThan(0);
        expect((await state.list({ limit: 1, deviceId: d }))[0]?.receivedMs).toBe(now + 59);
      }
      expect((await state.prune(now + 60, limits)).device).toBeGreaterThan(100);
      await k.close();
    });

    it("past the total bound, the oldest of the device holding the most go, not the oldest of all", async () => {
      const k = kind();
      const state = await k.open();
      const now = Date.now();
      // Shares as large as the bound: only the total bound acts.
      const limits = { maxBytes: 100_000, maxAgeMs: DAY, perDeviceMaxBytes: 100_000 };
      await state.prune(now, limits);
      await state.add([garbage("early", now - 10_000, 5_000)], now);
      await state.add(
        Array.from({ length: 40 }, (_, i) => garbage("greedy", now + i, 5_000)),
        now + 40,
      );
      expect(await state.bytes()).toBeLessThanOrEqual(limits.maxBytes);
      expect(await state.list({ limit: 10, deviceId: "early" })).toHaveLength(1);
      const greedy = await state.list({ limit: 100, deviceId: "greedy" });
      expect(greedy[0]?.receivedMs).toBe(now + 39);
      expect(greedy.at(-1)?.receivedMs).toBeGreaterThan(now);
      await k.close();
    });

    it("keeps a letter larger than the device's share as its head, saying so, and counts it across a restart", async () => {
      const k = kind();
      let state = await k.open();
      const now = Date.now();
      const limits = { maxBytes: 1_000_000, maxAgeMs: DAY, perDeviceMaxBytes: 10_000 };
      await state.prune(now, limits);
      await state.add([garbage("big", now, 256 * 1024)], now);
      const [kept] = await state.list({ limit: 1, deviceId: "big" });
      expect(kept?.detail).toMatch(/payload cut from 262144 to its first \d+ bytes/);
      expect(kept?.payload.length).toBeGreaterThan(9_000);
      expect((await state.held("big")).bytes).toBeLessThanOrEqual(10_000);
      const bytes = await state.bytes();
      state = await k.open();
      expect(await state.bytes()).toBe(bytes);
      expect(await state.held("big")).toEqual({ bytes, rows: 1, missingSeq: 0 });
      await k.close();
    });

    it("keeps a letter whose text holds U+0000 (PostgreSQL's text cannot), the payload byte for byte", async () => {
      const k = kind();
      const state = await k.open();
      const now = Date.now();
      const payload = Buffer.from('{"deviceId":"d1\\u0000"}');
      await state.add([{ ...letter(now, 0, "deviceId d1\u0000 does not match"), payload }], now);
      const [kept] = await state.list({ limit: 10 });
      // Kept as it came (SQLite), or with U+0000 spelled out as the six characters \u0000.
      expect(["deviceId d1\u0000 does not match", "deviceId d1\\u0000 does not match"]).toContain(
        kept?.detail,
      );
      expect(kept?.payload).toEqual(payload);
      expect(await state.bytes()).toBe(await heldInStore(state));
      await k.close();
    });

    it("bounds a device's missing_seq records by their own count, its oldest first, never another's", async () => {
      const k = kind();
      const state = await k.open();
      const now = Date.now();
      await state.prune(now, { maxBytes: 1e9, maxAgeMs: DAY });
      await state.add([gap("other", now, 3)], now);
      const many = Array.from({ length: MISSING_SEQ_PER_DEVICE + 5 }, (_, i) =>
        gap("gappy", now + i, 2 * i + 1),
      );
      await state.add(many, now);
      expect((await state.held("gappy")).missingSeq).toBe(MISSING_SEQ_PER_DEVICE);
      expect(await state.list({ limit: 1, deviceId: "other" })).toHaveLength(1);
      const oldest = (await state.list({ limit: MISSING_SEQ_PER_DEVICE, deviceId: "gappy" })).at(
        -1,
      );
      expect(oldest?.seq).toBe(11);
      await k.close();
    });
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

suite("SQLite", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-dead-"));
  dirs.push(dir);
  let open: IngestState | undefined;
  return {
    open: () => {
      open?.close();
      const state = new IngestState(join(dir, "ingest.db"));
      open = state;
      return Promise.resolve({
        add: (letters, nowMs) => {
          state.applyBatch({ inboxIds: [], handled: [], deadLetters: letters }, nowMs);
          return Promise.resolve();
        },
        prune: (nowMs, limits) => Promise.resolve(state.deadLetters.prune(nowMs, limits)),
        list: (options) => Promise.resolve(state.deadLetters.list(options)),
        count: () => Promise.resolve(state.deadLetters.count()),
        bytes: () => Promise.resolve(state.deadLetters.bytes()),
        held: (deviceId) => Promise.resolve(state.deadLetters.held(deviceId)),
      } satisfies Letters);
    },
    close: () => {
      open?.close();
      open = undefined;
      return Promise.resolve();
    },
  };
});

/** The partition the letters are applied under, and its lease's token. */
const PARTITION = 3;
const TOKEN = 17;

describe.runIf(postgres)("in PostgreSQL", () => {
  const schemas: TestSchema[] = [];
  afterEach(async () => {
    await Promise.all(schemas.splice(0).map((s) => s.drop()));
  });

  suite("PostgreSQL", () => {
    let pool: Promise<pg.Pool> | undefined;
    const database = async (): Promise<pg.Pool> => {
      const { schema, admin } = await createLeasedSchema(postgresUrl(postgres), PARTITION, TOKEN);
      schemas.push(schema);
      return admin;
    };
    return {
      open: async () => {
        const db = await (pool ??= database());
        // A restarted node: a new store on the same tables, nothing carried over in memory.
        const store = new PostgresIngestState({
          pool: db,
          fence: leaseFence(db, { tokenOf: () => TOKEN }),
        });
        const letters = store.deadLetters;
        return {
          add: async (list, nowMs) => {
            const applied = await store.applyBatch(
              PARTITION,
              TOKEN,
              { inboxIds: [], handled: [], deadLetters: list },
              nowMs,
            );
            expect(applied.ok).toBe(true);
          },
          prune: (nowMs, limits) => letters.prune(nowMs, limits),
          list: (options) => letters.list(options),
          count: () => letters.count(),
          bytes: () => letters.bytes(),
          held: (deviceId) => letters.held(deviceId),
        } satisfies Letters;
      },
      close: () => Promise.resolve(),
    };
  });
});
