import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import type { DeviceProgress, HandledSeq } from "../../../ingest/commit-ledger.js";
import type { DeadLetter, StoredDeadLetter } from "../../../ingest/dead-letters.js";
import type { InboxMessage } from "../../../ingest/inbox.js";
import { IngestState } from "../../../ingest/state.js";
import { PostgresIngestState } from "../../../ingest/state-postgres.js";
import {
  countQueries,
  createLeasedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { PATIENCE, TestCluster } from "../cluster/keepers.js";

/*
 * The ingest's durable state, one suite for both kinds: the embedded ingest.db (ingest/state.ts)
 * and PostgreSQL (ingest/state-postgres.ts, issue #21): the inbox, the commit ledger with its
 * dedupe and gaps, the dead letters. Then what only the shared one does: rows appended by one node
 * and handled by another, batches refused once the lease is gone, a takeover that handles every
 * message once, rows committed out of id order.
 */

const postgres = await requireService("the ingest state in PostgreSQL", providePostgres);

/** The state of one kind, as the pipeline uses it, every answer awaited. */
interface State {
  append(
    messages: ReadonlyArray<{ topic: string; payload: Buffer; receivedMs: number }>,
  ): Promise<number[]>;
  take(limit: number): Promise<InboxMessage[]>;
  handled(messages: ReadonlyArray<{ deviceId: string; seq: number }>): Promise<boolean[]>;
  apply(
    outcome: { inboxIds?: number[]; handled?: HandledSeq[]; deadLetters?: DeadLetter[] },
    nowMs: number,
  ): Promise<Map<string, number>>;
  closeStaleGaps(
    nowMs: number,
    timeoutMs: number,
  ): Promise<{ moved: Map<string, number>; gaps: number }>;
  resetGapTimers(nowMs: number): Promise<void>;
  progress(deviceId: string): Promise<DeviceProgress | undefined>;
  depth(): Promise<number>;
  deadLetters(): Promise<StoredDeadLetter[]>;
}

interface Kind {
  /** The state on the same data as before, as a restarted process opens it. */
  open(generationOf?: (deviceId: string) => number | undefined): Promise<State>;
  close(state: State): Promise<void>;
}

/** Handled seqs of device `deviceId`, received at `receivedMs`. */
const seqs = (deviceId: string, list: number[], receivedMs = 1_000): HandledSeq[] =>
  list.map((seq) => ({ deviceId, seq, receivedMs }));

const message = (i: number) => ({
  topic: `citywatch/v1/dev/d-${i}/readings`,
  // Bytes that are not UTF-8 text: a payload is kept as it came.
  payload: Buffer.from([0xff, 0x00, i, 0xfe]),
  receivedMs: 1_000 + i,
});

function suite(name: string, kind: () => Kind) {
  describe(`ingest state: ${name}`, () => {
    it("keeps every message until its batch is applied, in order, across a restart", async () => {
      const k = kind();
      let state = await k.open();
      const ids = await state.append([message(1), message(2), message(3)]);
      expect(ids).toHaveLength(3);
      expect([...ids].sort((a, b) => a - b)).toEqual(ids);
      const first = await state.take(2);
      expect(first.map((m) => m.id)).toEqual(ids.slice(0, 2));
      expect(first.map((m) => [m.topic, m.payload, m.receivedMs])).toEqual(
        [message(1), message(2)].map((m) => [m.topic, m.payload, m.receivedMs]),
      );
      expect((await state.take(10)).map((m) => m.id)).toEqual(ids.slice(2));
      expect(await state.take(10)).toEqual([]);
      expect(await state.depth()).toBe(3);
      await state.apply({ inboxIds: ids.slice(0, 2) }, 2_000);
      expect(await state.depth()).toBe(1);
      await k.close(state);

      // Taken but never applied: a restarted process handles it again.
      state = await k.open();
      expect((await state.take(10)).map((m) => [m.id, m.payload])).toEqual([
        [ids[2], message(3).payload],
      ]);
      await k.close(state);
    });

    it("moves the commit over seqs in a row, waits at a gap, closes it, and keeps it across a restart", async () => {
      const k = kind();
      let state = await k.open();
      const handle = async (list: number[], now = 1_000) => {
        await state.handled(list.map((seq) => ({ deviceId: "d1", seq })));
        return state.apply({ handled: seqs("d1", list, now) }, now);
      };
      expect(await handle([1, 2, 3])).toEqual(new Map([["d1", 3]]));
      expect(await handle([5, 4])).toEqual(new Map([["d1", 5]]));
      // 6 missing: 7 and 8 wait above the gap.
      expect(await handle([7, 8])).toEqual(new Map());
      expect(await state.progress("d1")).toMatchObject({ committedSeq: 5, lastSeq: 8 });
      expect(
        await state.handled([
          { deviceId: "d1", seq: 5 },
          { deviceId: "d1", seq: 6 },
          { deviceId: "d1", seq: 7 },
          { deviceId: "d2", seq: 1 },
        ]),
      ).toEqual([true, false, true, false]);
      expect(await handle([6])).toEqual(new Map([["d1", 8]]));
      expect(await handle([9, 10])).toEqual(new Map([["d1", 10]]));
      // A re-sent seq is no reason to move.
      expect(await handle([10])).toEqual(new Map());
      expect(await state.progress("d1")).toMatchObject({
        committedSeq: 10,
        lastSeq: 10,
        committedMs: 1_000,
      });
      await k.close(state);

      state = await k.open();
      expect(await state.handled([{ deviceId: "d1", seq: 10 }])).toEqual([true]);
      expect(await handle([11], 2_000)).toEqual(new Map([["d1", 11]]));
      expect(await state.progress("d1")).toMatchObject({
        committedSeq: 11,
        committedMs: 2_000,
        lastSeenMs: 2_000,
      });
      await k.close(state);
    });

    it("starts a device never heard from at seq 1: a first seq above it waits", async () => {
      const k = kind();
      const state = await k.open();
      expect(await state.apply({ handled: seqs("d1", [3, 4]) }, 1_000)).toEqual(new Map());
      expect(await state.progress("d1")).toMatchObject({ committedSeq: 0, lastSeq: 4 });
      expect(await state.apply({ handled: seqs("d1", [1, 2]) }, 1_000)).toEqual(
        new Map([["d1", 4]]),
      );
      await k.close(state);
    });

    it("gives up on a gap after its timeout, with a missing_seq dead letter, timed from the last reset", async () => {
      const k = kind();
      const state = await k.open();
      await state.apply({ handled: seqs("d1", [1, 2]) }, 1_000);
      await state.apply({ handled: seqs("d1", [5, 6]) }, 1_000);
      await state.apply({ handled: seqs("d2", [1]) }, 1_000);
      // Not yet: the gap has waited less than the timeout.
      expect(await state.closeStaleGaps(1_000 + 500, 1_000)).toEqual({ moved: new Map(), gaps: 0 });
      // The broker was away: the wait starts again.
      await state.resetGapTimers(5_000);
      expect((await state.closeStaleGaps(5_900, 1_000)).gaps).toBe(0);
      expect(await state.closeStaleGaps(6_100, 1_000)).toEqual({
        moved: new Map([["d1", 6]]),
        gaps: 1,
      });
      expect(await state.progress("d1")).toMatchObject({ committedSeq: 6 });
      const [letter] = await state.deadLetters();
      expect(letter).toMatchObject({
        deviceId: "d1",
        seq: 3,
        reason: "missing_seq",
        detail: "seq 3..4 never arrived within 1000 ms; commit moved past them",
      });
      // Closed: nothing more to give up.
      expect((await state.closeStaleGaps(60_000, 1_000)).gaps).toBe(0);
      await k.close(state);
    });

    it("keeps dead letters with their reason and the payload as it came", async () => {
      const k = kind();
      const state = await k.open();
      const ids = await state.append([message(7)]);
      const letter: DeadLetter = {
        receivedMs: 1_007,
        topic: message(7).topic,
        deviceId: "d-7",
        seq: 4,
        reason: "schema",
        detail: "field LAeq: expected a number",
        payload: message(7).payload,
      };
      expect(
        await state.apply(
          { inboxIds: ids, handled: seqs("d-7", [4]), deadLetters: [letter] },
          2_000,
        ),
      ).toEqual(new Map());
      expect(await state.depth()).toBe(0);
      const letters = await state.deadLetters();
      expect(letters).toHaveLength(1);
      expect(letters[0]).toMatchObject({ ...letter, id: expect.any(Number) as number });
      expect(await state.handled([{ deviceId: "d-7", seq: 4 }])).toEqual([true]);
      await k.close(state);
    });

    it("starts a device registered again clean: the old registration's seqs are not duplicates", async () => {
      const k = kind();
      let state = await k.open(() => 1);
      await state.apply({ handled: seqs("d1", [1, 2, 3, 4, 5, 7]) }, 1_000);
      expect(await state.progress("d1")).toMatchObject({ committedSeq: 5, generation: 1 });
      await k.close(state);
      state = await k.open(() => 2);
      expect(await state.handled([{ deviceId: "d1", seq: 1 }])).toEqual([false]);
      expect(await state.apply({ handled: seqs("d1", [1]) }, 2_000)).toEqual(new Map([["d1", 1]]));
      expect(await state.progress("d1")).toMatchObject({
        committedSeq: 1,
        lastSeq: 1,
        generation: 2,
      });
      // Seq 7 waited above the old registration's gap; the new one has not sent it.
      expect(await state.handled([{ deviceId: "d1", seq: 7 }])).toEqual([false]);
      await k.close(state);
    });
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

suite("SQLite", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-ingest-state-"));
  dirs.push(dir);
  const file = join(dir, "ingest.db");
  const states = new Map<State, IngestState>();
  return {
    open: (generationOf) => {
      const s = new IngestState(file);
      if (generationOf !== undefined) s.ledger.useGenerations(generationOf);
      const state: State = {
        append: (messages) => {
          s.inbox.appendMany(messages);
          // The newest rows of the inbox are the ones just appended, in order.
          return Promise.resolve(
            s.inbox
              .peek(s.inbox.depth())
              .slice(-messages.length)
              .map((r) => r.id),
          );
        },
        take: (limit) => Promise.resolve(s.inbox.take(limit)),
        handled: (messages) =>
          Promise.resolve(messages.map((m) => s.ledger.isHandled(m.deviceId, m.seq))),
        apply: (outcome, nowMs) =>
          Promise.resolve(
            s.applyBatch(
              {
                inboxIds: outcome.inboxIds ?? [],
                handled: outcome.handled ?? [],
                deadLetters: outcome.deadLetters ?? [],
              },
              nowMs,
            ),
          ),
        closeStaleGaps: (nowMs, timeoutMs) => Promise.resolve(s.closeStaleGaps(nowMs, timeoutMs)),
        resetGapTimers: (nowMs) => Promise.resolve(s.ledger.resetGapTimers(nowMs)),
        progress: (deviceId) => Promise.resolve(s.ledger.progress(deviceId)),
        depth: () => Promise.resolve(s.inbox.depth()),
        deadLetters: () => Promise.resolve(s.deadLetters.list({ limit: 100 })),
      };
      states.set(state, s);
      return Promise.resolve(state);
    },
    close: (state) => Promise.resolve(states.get(state)?.close()),
  };
});

/** The partition the shared suite's device messages belong to, and its lease's token. */
const PARTITION = 7;
const TOKEN = 41;

describe.runIf(postgres)("ingest state in PostgreSQL", () => {
  const schemas: TestSchema[] = [];
  const clusters: TestCluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.close()));
    await Promise.all(schemas.splice(0).map((s) => s.drop()));
  });

  /** A migrated schema of the test's own, with partition PARTITION leased under TOKEN. */
  async function database(): Promise<{ schema: TestSchema; admin: pg.Pool }> {
    const leased = await createLeasedSchema(postgresUrl(postgres), PARTITION, TOKEN);
    schemas.push(leased.schema);
    return leased;
  }

  /** The PostgreSQL state on a pool of its own, holding PARTITION under `token`. */
  async function node(
    schema: TestSchema,
    token = TOKEN,
    generationOf?: (deviceId: string) => number | undefined,
  ) {
    const pool = await schema.pool(2);
    const fence = leaseFence(pool, { tokenOf: () => token });
    const store = new PostgresIngestState({
      pool,
      fence,
      ...(generationOf === undefined ? {} : { generationOf }),
    });
    return { pool, store };
  }

  describe("the shared suite", () => {
    let db: Promise<{ schema: TestSchema; admin: pg.Pool }> | undefined;
    afterEach(() => {
      db = undefined;
    });
    const pools = new Map<State, pg.Pool>();
    suite("PostgreSQL", () => ({
      open: async (generationOf) => {
        const { schema } = await (db ??= database());
        const { pool, store } = await node(schema, TOKEN, generationOf);
        const state: State = {
          append: async (messages) =>
            (await store.append(messages.map((m) => ({ ...m, partition: PARTITION })))).map(
              (m) => m.id,
            ),
          take: (limit) => store.take([PARTITION], limit),
          handled: (messages) => store.handled(messages),
          apply: async (outcome, nowMs) => {
            const applied = await store.applyBatch(
              PARTITION,
              TOKEN,
              {
                inboxIds: outcome.inboxIds ?? [],
                handled: outcome.handled ?? [],
                deadLetters: outcome.deadLetters ?? [],
              },
              nowMs,
            );
            if (!applied.ok) throw new Error(applied.reason);
            return applied.value;
          },
          closeStaleGaps: async (nowMs, timeoutMs) => {
            const closed = await store.closeStaleGaps(PARTITION, TOKEN, nowMs, timeoutMs);
            if (!closed.ok) throw new Error(closed.reason);
            return closed.value;
          },
          resetGapTimers: (nowMs) => store.resetGapTimers([PARTITION], nowMs),
          progress: (deviceId) => store.progress(deviceId),
          depth: () => store.depth(),
          deadLetters: () => store.deadLetters.list({ limit: 100 }),
        };
        pools.set(state, pool);
        return state;
      },
      close: async (state) => {
        await pools.get(state)?.end();
      },
    }));
  });

  it("applies nothing under a lease that is gone, and the new owner handles the same rows", async () => {
    const { schema, admin } = await database();
    const a = await node(schema);
    const [m1, m2] = await a.store.append([
      { ...message(1), partition: PARTITION },
      { ...message(2), partition: PARTITION },
    ]);
    if (m1 === undefined || m2 === undefined) throw new Error("appended nothing");
    await a.store.applyBatch(
      PARTITION,
      TOKEN,
      { inboxIds: [m1.id], handled: seqs("d-1", [1]), deadLetters: [] },
      1_000,
    );
    expect((await a.store.take([PARTITION], 10)).map((m) => m.id)).toEqual([m2.id]);
    expect(a.store.takenCount()).toBe(1);

    // Another node takes the partition over (a new token), while node a still works on m2.
    await admin.query(
      "UPDATE partition_leases SET owner = 'node-b', token = $1 WHERE partition = $2",
      [TOKEN + 1, PARTITION],
    );
    const refused = await a.store.applyBatch(
      PARTITION,
      TOKEN,
      { inboxIds: [m2.id], handled: seqs("d-1", [2]), deadLetters: [] },
      2_000,
    );
    expect(refused).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no longer held/) as unknown,
    });
    expect(a.store.takenCount()).toBe(0);
    expect(await a.store.depth()).toBe(1);
    expect(await a.store.progress("d-1")).toMatchObject({ committedSeq: 1 });

    const b = await node(schema, TOKEN + 1);
    const taken = await b.store.take([PARTITION], 10);
    expect(taken.map((m) => [m.id, m.payload])).toEqual([[m2.id, message(2).payload]]);
    expect(await b.store.handled([{ deviceId: "d-1", seq: 2 }])).toEqual([false]);
    const applied = await b.store.applyBatch(
      PARTITION,
      TOKEN + 1,
      { inboxIds: [m2.id], handled: seqs("d-1", [2]), deadLetters: [] },
      3_000,
    );
    expect(applied).toEqual({ ok: true, value: new Map([["d-1", 2]]) });
    expect(await b.store.depth()).toBe(0);
  });

  it("applies a round of several partitions in one transaction, leaving out one whose lease is gone", async () => {
    const { schema, admin } = await database();
    const OTHER = PARTITION + 1;
    const GONE = PARTITION + 2;
    await admin.query(
      `INSERT INTO partition_leases (partition, owner, token, acquired_at, expires_at)
       VALUES ($1, 'node-a', $3, now(), 'infinity'), ($2, 'node-b', $3 + 1, now(), 'infinity')`,
      [OTHER, GONE, TOKEN],
    );
    const { pool, store } = await node(schema);
    const rows = await store.append([
      { ...message(1), partition: PARTITION },
      { ...message(2), partition: OTHER },
      { ...message(3), partition: GONE },
    ]);
    const taken = await store.take([PARTITION, OTHER, GONE], 10);
    expect(taken).toHaveLength(3);
    const id = (i: number) => rows[i]?.id ?? -1;
    const statements = countQueries(pool);
    const round = await store.applyRound(
      [
        {
          partition: PARTITION,
          token: TOKEN,
          outcome: { inboxIds: [id(0)], handled: seqs("d-1", [1, 2]), deadLetters: [] },
        },
        {
          partition: OTHER,
          token: TOKEN,
          outcome: { inboxIds: [id(1)], handled: seqs("d-2", [1]), deadLetters: [] },
        },
        {
          // Taken under TOKEN, but node-b holds it now.
          partition: GONE,
          token: TOKEN,
          outcome: { inboxIds: [id(2)], handled: seqs("d-3", [1]), deadLetters: [] },
        },
      ],
      5_000,
    );
    expect(round).toEqual({
      moved: new Map([
        ["d-1", 2],
        ["d-2", 1],
      ]),
      refused: [GONE],
    });
    // One transaction for both partitions: BEGIN, the leases, new devices, lock, update, the
    // inbox rows, COMMIT.
    expect(statements.count()).toBe(7);
    expect(store.takenCount()).toBe(0);
    expect(await store.progress("d-3")).toBeUndefined();
    expect(await store.depth()).toBe(1);
    const { rows: partitions } = await admin.query<{ device_id: string; partition: number }>(
      "SELECT device_id, partition FROM ingest_progress ORDER BY device_id",
    );
    expect(partitions).toEqual([
      { device_id: "d-1", partition: PARTITION },
      { device_id: "d-2", partition: OTHER },
    ]);
    // node-b takes the refused partition's row.
    const b = await node(schema, TOKEN + 1);
    expect((await b.store.take([GONE], 10)).map((m) => m.id)).toEqual([id(2)]);
  });

  it("takes a row that committed after a later one (ids are not commit order)", async () => {
    const { schema, admin } = await database();
    const { store } = await node(schema);
    // A slow node: its row has the lower id but commits last.
    const slow = await admin.connect();
    try {
      await slow.query("BEGIN");
      const { rows } = await slow.query<{ id: string }>(
        `INSERT INTO ingest_inbox (partition, received_ms, topic, payload)
         VALUES ($1, 1, 'slow', '\\x01') RETURNING id`,
        [PARTITION],
      );
      const [fast] = await store.append([{ ...message(2), partition: PARTITION }]);
      expect(Number(rows[0]?.id)).toBeLessThan(fast?.id ?? 0);
      expect((await store.take([PARTITION], 10)).map((m) => m.topic)).toEqual([message(2).topic]);
      await slow.query("COMMIT");
    } finally {
      slow.release();
    }
    expect((await store.take([PARTITION], 10)).map((m) => m.topic)).toEqual(["slow"]);
    // Given back after a failed round, a row is taken again.
    const [again] = await store.take([PARTITION], 10);
    expect(again).toBeUndefined();
    store.forget([PARTITION]);
    expect((await store.take([PARTITION], 10)).map((m) => m.topic).sort()).toEqual(
      [message(2).topic, "slow"].sort(),
    );
  });

  it("hands a dead node's messages to the living with real leases: each seq handled once", async () => {
    const { schema } = await database();
    const cluster = await TestCluster.create(schema);
    clusters.push(cluster);
    const [nodeA, nodeB] = await cluster.start("node-a", "node-b");
    if (nodeA === undefined || nodeB === undefined) throw new Error("no nodes");
    await vi.waitFor(() => cluster.expectSettled([nodeA, nodeB]), PATIENCE);

    // One device per partition, 64 of them, 6 messages each, received by either node.
    const devices = Array.from({ length: 64 }, (_, p) => ({ id: `dev-${p}`, partition: p }));
    const stateOf = (n: typeof nodeA) =>
      new PostgresIngestState({ pool: n.pool, fence: leaseFence(n.pool, n.keeper) });
    const a = stateOf(nodeA);
    const b = stateOf(nodeB);
    const sent: Array<{ deviceId: string; seq: number }> = [];
    /** Device d's message `seq` as `receiver` appends it (a re-send is not counted as sent). */
    const receive = async (
      receiver: PostgresIngestState,
      d: (typeof devices)[number],
      seq: number,
      resend = false,
    ) => {
      await receiver.append([
        {
          partition: d.partition,
          topic: `citywatch/v1/dev/${d.id}/readings`,
          payload: Buffer.from(JSON.stringify({ deviceId: d.id, seq })),
          receivedMs: seq,
        },
      ]);
      if (!resend) sent.push({ deviceId: d.id, seq });
    };
    const appendRound = async (seq: number) => {
      for (const [i, d] of devices.entries()) await receive(i % 2 === 0 ? a : b, d, seq);
    };
    /** Each handled (device, seq), in the order its batch committed. */
    const applied: string[] = [];
    /** One owner's round: take its partitions' rows, apply them per partition under its token. */
    const round = async (state: PostgresIngestState, keeper: typeof nodeA.keeper) => {
      const owned = keeper.owned();
      const rows = await state.take([...owned.keys()], 1_000);
      const byPartition = new Map<number, typeof rows>();
      for (const row of rows)
        byPartition.set(row.partition, [...(byPartition.get(row.partition) ?? []), row]);
      for (const [partition, part] of byPartition) {
        const token = owned.get(partition);
        if (token === undefined) continue;
        const decoded = part.map(
          (r) => JSON.parse(r.payload.toString()) as { deviceId: string; seq: number },
        );
        // As the pipeline dedupes: handled before, or held twice in this batch.
        const already = await state.handled(decoded);
        const keys = new Set<string>();
        const fresh = decoded.filter((m, i) => {
          const key = `${m.deviceId}#${m.seq}`;
          if (already[i] === true || keys.has(key)) return false;
          keys.add(key);
          return true;
        });
        const outcome = await state.applyBatch(
          partition,
          token,
          {
            inboxIds: part.map((r) => r.id),
            handled: fresh.map((m) => ({ ...m, receivedMs: m.seq })),
            deadLetters: [],
          },
          Date.now(),
        );
        if (outcome.ok) for (const m of fresh) applied.push(`${m.deviceId}#${m.seq}`);
      }
    };

    await appendRound(1);
    await appendRound(2);
    await Promise.all([round(a, nodeA.keeper), round(b, nodeB.keeper)]);
    await appendRound(3);
    // Node a takes its rows and dies before it applies them; messages keep arriving at node b.
    await a.take([...nodeA.keeper.owned().keys()], 1_000);
    await nodeA.pool.end(); // kill -9: no renewal, no release
    // Every device re-sends seq 2 (handled) and 3 (not yet: node a held it) to node b, as a
    // device does whose PUBACK never came, then goes on.
    for (const d of devices) {
      await receive(b, d, 2, true);
      await receive(b, d, 3, true);
    }
    for (let seq = 4; seq <= 6; seq++) for (const d of devices) await receive(b, d, seq);
    await vi.waitFor(() => expect(nodeB.keeper.owned().size).toBe(64), PATIENCE);
    await round(b, nodeB.keeper);

    expect(await b.depth()).toBe(0);
    expect(applied.length).toBe(sent.length);
    expect(new Set(applied).size).toBe(sent.length);
    for (const d of devices)
      expect(await b.progress(d.id), d.id).toMatchObject({ committedSeq: 6, lastSeq: 6 });
  });
});
