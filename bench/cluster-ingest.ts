/**
 * The ingest state's part of the cluster bench (bench/cluster.ts): what a message costs in
 * PostgreSQL (ingest/state-postgres.ts) against the embedded ingest.db (ingest/state.ts), on the
 * same messages in the same run. Round trips are counted on the pool's connections (every
 * query, BEGIN and COMMIT included).
 *
 * BENCH_CLUSTER_MESSAGES (default 20,000) messages of 2,000 bytes (about 50 readings) from 1,000
 * devices spread over the partitions by their site, in device order, each device's seqs in a row:
 * - append: 100 messages a call, as the receiving side's group commit makes them;
 * - rounds: as the pipeline's round does, up to 2,000 messages taken, their (device, seq) checked
 *   against the ledger, then one batch applied per partition: on PostgreSQL all of them in one
 *   transaction (applyRound) and, as the baseline, a fenced transaction each (applyBatch); one
 *   transaction on SQLite; for a node holding every partition and for one holding a third of them
 *   (a node of three).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import { leaseFence } from "../cluster/fencing.js";
import { partitionOf } from "../cluster/partition.js";
import { deviceTopic } from "../contracts/index.js";
import type { HandledSeq } from "../ingest/commit-ledger.js";
import { IngestState } from "../ingest/state.js";
import { PostgresIngestState } from "../ingest/state-postgres.js";
import { ROUND_MESSAGES } from "../ingest/pipeline.js";
import { countQueries } from "../tests/support/postgres.js";

const DEVICES = 1_000;
const PAYLOAD_BYTES = 2_000;
const APPEND_BATCH = 100;
const TOKEN = 1;

export interface IngestStateFigures {
  readonly store: string;
  readonly partitionsHeld: number;
  readonly messages: number;
  readonly appendPerSecond: number;
  readonly appendRoundTripsPerCall: number;
  readonly roundsPerSecond: number;
  /** Messages handled per second by the rounds (take, dedupe, apply). */
  readonly handledPerSecond: number;
  readonly roundTripsPerRound: number;
  readonly roundTripsPerMessage: number;
  readonly messagesPerRound: number;
}

interface Message {
  readonly deviceId: string;
  readonly seq: number;
  readonly partition: number;
}

function messages(count: number, partitions: number): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < count; i++) {
    const d = i % DEVICES;
    out.push({
      deviceId: `dev-${d}`,
      seq: Math.floor(i / DEVICES) + 1,
      partition: partitionOf(`site-${Math.floor(d / 4)}`, partitions),
    });
  }
  return out;
}

const payload = Buffer.alloc(PAYLOAD_BYTES, 0x7b);
const topicOf = (deviceId: string) => deviceTopic(deviceId, "data");

export async function ingestStateOnPostgres(
  pool: pg.Pool,
  partitions: number,
  held: readonly number[],
  total: number,
  /** A round's batches in one transaction (applyRound), or one per partition (applyBatch). */
  oneTransaction: boolean,
): Promise<IngestStateFigures> {
  const queries = countQueries(pool);
  await pool.query("TRUNCATE partition_leases, ingest_inbox, ingest_progress, ingest_processed");
  await pool.query(
    `INSERT INTO partition_leases (partition, owner, token, acquired_at, expires_at)
     SELECT p, 'bench', $1, now(), 'infinity' FROM generate_series(0, $2 - 1) AS p`,
    [TOKEN, partitions],
  );
  const state = new PostgresIngestState({
    pool,
    fence: leaseFence(pool, { tokenOf: () => TOKEN }),
  });
  const heldSet = new Set(held);
  const all = messages(total, partitions).filter((m) => heldSet.has(m.partition));

  let started = performance.now();
  let before = queries.count();
  let calls = 0;
  for (let i = 0; i < all.length; i += APPEND_BATCH) {
    await state.append(
      all.slice(i, i + APPEND_BATCH).map((m) => ({
        partition: m.partition,
        topic: topicOf(m.deviceId),
        payload,
        receivedMs: Date.now(),
      })),
    );
    calls++;
  }
  const appendSeconds = (performance.now() - started) / 1000;
  const appendRoundTrips = queries.count() - before;

  // Rows come back in id order, which is append order: the nth taken is the nth appended.
  let index = 0;
  started = performance.now();
  before = queries.count();
  let rounds = 0;
  let handledCount = 0;
  for (;;) {
    const taken = await state.take(held, ROUND_MESSAGES);
    if (taken.length === 0) break;
    rounds++;
    const pairs = taken.map((m) => {
      const sent = all[index++];
      if (sent === undefined || topicOf(sent.deviceId) !== m.topic) throw new Error("out of order");
      return { deviceId: sent.deviceId, seq: sent.seq, id: m.id, partition: m.partition };
    });
    await state.handled(pairs);
    const byPartition = new Map<number, typeof pairs>();
    for (const p of pairs)
      byPartition.set(p.partition, [...(byPartition.get(p.partition) ?? []), p]);
    const batches = [...byPartition].map(([partition, batch]) => ({
      partition,
      token: TOKEN,
      outcome: {
        inboxIds: batch.map((p) => p.id),
        handled: batch.map((p) => ({ deviceId: p.deviceId, seq: p.seq, receivedMs: Date.now() })),
        deadLetters: [],
      },
    }));
    if (oneTransaction) {
      const round = await state.applyRound(batches, Date.now());
      if (round.refused.length > 0) throw new Error(`refused: ${round.refused.join(", ")}`);
    } else {
      for (const b of batches) {
        const applied = await state.applyBatch(b.partition, b.token, b.outcome, Date.now());
        if (!applied.ok) throw new Error(`partition ${b.partition}: ${applied.reason}`);
      }
    }
    handledCount += taken.length;
  }
  const roundSeconds = (performance.now() - started) / 1000;
  const roundTrips = queries.count() - before;
  queries.stop();
  if (handledCount !== all.length) {
    throw new Error(`handled ${handledCount} of ${all.length} messages`);
  }
  return {
    store: `PostgreSQL, ${oneTransaction ? "one transaction a round" : "one a partition"}`,
    partitionsHeld: held.length,
    messages: all.length,
    appendPerSecond: all.length / appendSeconds,
    appendRoundTripsPerCall: appendRoundTrips / calls,
    roundsPerSecond: rounds / roundSeconds,
    handledPerSecond: handledCount / roundSeconds,
    roundTripsPerRound: roundTrips / rounds,
    roundTripsPerMessage: roundTrips / handledCount,
    messagesPerRound: handledCount / rounds,
  };
}

/** The same messages through the embedded ingest.db, the baseline. */
export function ingestStateOnSqlite(partitions: number, total: number): IngestStateFigures {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-cluster-ingest-"));
  try {
    const state = new IngestState(join(dir, "ingest.db"));
    const all = messages(total, partitions);
    let started = performance.now();
    for (let i = 0; i < all.length; i += APPEND_BATCH) {
      state.inbox.appendMany(
        all.slice(i, i + APPEND_BATCH).map((m) => ({
          topic: topicOf(m.deviceId),
          payload,
          receivedMs: Date.now(),
        })),
      );
    }
    const appendSeconds = (performance.now() - started) / 1000;
    let index = 0;
    started = performance.now();
    let rounds = 0;
    let handledCount = 0;
    for (;;) {
      const taken = state.inbox.take(ROUND_MESSAGES);
      if (taken.length === 0) break;
      rounds++;
      const handled: HandledSeq[] = taken.map((m) => {
        const sent = all[index++];
        if (sent === undefined || topicOf(sent.deviceId) !== m.topic)
          throw new Error("out of order");
        return { deviceId: sent.deviceId, seq: sent.seq, receivedMs: Date.now() };
      });
      for (const h of handled) state.ledger.isHandled(h.deviceId, h.seq);
      state.applyBatch({ inboxIds: taken.map((m) => m.id), handled, deadLetters: [] }, Date.now());
      handledCount += taken.length;
    }
    const roundSeconds = (performance.now() - started) / 1000;
    state.close();
    return {
      store: "SQLite (ingest.db)",
      partitionsHeld: partitions,
      messages: all.length,
      appendPerSecond: all.length / appendSeconds,
      appendRoundTripsPerCall: 0,
      roundsPerSecond: rounds / roundSeconds,
      handledPerSecond: handledCount / roundSeconds,
      roundTripsPerRound: 0,
      roundTripsPerMessage: 0,
      messagesPerRound: handledCount / rounds,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
