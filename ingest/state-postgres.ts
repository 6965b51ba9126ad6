import type pg from "pg";
import type { FencedOutcome, PartitionFence } from "../infra/postgres/fence.js";
import {
  contiguousEnd,
  type DeviceProgress,
  follows,
  handledByDevice,
  type HandledSeq,
  type WaitingGap,
} from "./commit-ledger.js";
import type { DeadLetter, DeadLetterLimits } from "./dead-letters.js";
import { PostgresDeadLetters } from "./dead-letters-postgres.js";
import type { InboxMessage } from "./inbox.js";
import type { BatchOutcome } from "./state.js";

/*
 * The ingest's durable state in PostgreSQL (tables ingest_inbox, ingest_progress,
 * ingest_processed and ingest_dead_letters, migration 3 of infra/postgres/schema.ts), for nodes
 * that share the work (docs/cluster.md). The same three parts as the embedded ingest.db
 * (ingest/state.ts), with one difference that makes a cluster of them: the node that receives a
 * message is not the node that handles it.
 *
 * - Any node appends what a device sent it (`append`), tagged with the partition of the device's
 *   site, before its PUBACK: the message is then as durable as the database.
 * - The owner of a partition takes that partition's rows (`take`) and, after storing their
 *   readings, applies the round's batches (one per partition) in one transaction fenced by their
 *   lease tokens (`applyRound`; `applyBatch` for one): dead letters in, handled seqs recorded and
 *   each device's commit moved over the contiguous ones, the rows deleted. Nothing is written for
 *   a partition whose lease is gone; the new owner takes the same rows again, and the ledger's
 *   (device, seq) dedupe keeps a message from being handled twice.
 *
 * Rows are taken by what is left in the table, not by an id cursor: ids come from a sequence in
 * the order rows were inserted, not the order they were committed, so a cursor past a row that a
 * slower node committed later would skip it for good. The ids this node has taken and not yet
 * applied are kept in memory and left out of the next take.
 */

export interface PartitionedMessage {
  /** The work partition of the device's site (cluster/partition.ts). */
  readonly partition: number;
  readonly topic: string;
  readonly payload: Buffer;
  readonly receivedMs: number;
}

export interface PartitionedInboxMessage extends InboxMessage {
  readonly partition: number;
}

/** One partition's processed batch of a round, with the lease token it was taken under. */
export interface PartitionBatch {
  readonly partition: number;
  readonly token: number;
  readonly outcome: BatchOutcome;
}

export interface RoundOutcome {
  /** Devices whose commit moved, with the new committed seq. */
  readonly moved: Map<string, number>;
  /** Partitions whose lease was gone: nothing was written for them. */
  readonly refused: readonly number[];
}

export interface PostgresIngestStateOptions {
  /** A pool on the schema migrated to CITYWATCH_MIGRATIONS. */
  readonly pool: pg.Pool;
  /** Batches are applied only while this node owns their partition. */
  readonly fence: PartitionFence;
  /**
   * The registry's current generation of a device (CommitLedger.useGenerations): a device
   * registered again starts clean, its old progress and waiting seqs forgotten.
   */
  readonly generationOf?: (deviceId: string) => number | undefined;
  /** The dead letters' bounds kept at every insert (ingest.deadLetters); prune() sets them too. */
  readonly deadLetterLimits?: DeadLetterLimits;
}

/** pg hands int8 columns over as strings; every seq, id and time here is a safe integer. */
const int = (value: string | number): number => Number(value);

/** Messages in the order given, each with its partition; their ids come back. */
export const INSERT_INBOX = `INSERT INTO ingest_inbox (partition, received_ms, topic, payload)
  SELECT p, r, t, b FROM unnest($1::integer[], $2::bigint[], $3::text[], $4::bytea[])
    WITH ORDINALITY AS u(p, r, t, b, n)
  ORDER BY n
  RETURNING id`;

/**
 * Each device's progress, locked for the batch, and whether seqs wait above a gap. Rows are
 * locked in device order (byte order, as the batch inserts them), so two writers of the same
 * devices (an old and a new owner across a takeover) wait for each other, never deadlock.
 */
const LOCK_PROGRESS = `SELECT device_id, committed_seq, generation,
    EXISTS (SELECT 1 FROM ingest_processed q WHERE q.device_id = p.device_id) AS gapped
  FROM ingest_progress p WHERE device_id = ANY($1::text[])
  ORDER BY device_id COLLATE "C" FOR UPDATE`;

/** Progress rows for devices never heard from: nothing committed (seqs start at 1). */
const INSERT_PROGRESS = `INSERT INTO ingest_progress
    (device_id, partition, committed_seq, last_seq, last_seen_ms, committed_ms, generation)
  SELECT d, p, 0, 0, 0, $1, g FROM unnest($2::text[], $3::integer[], $4::integer[]) AS u(d, p, g)
  ON CONFLICT (device_id) DO NOTHING`;

const INSERT_PROCESSED = `INSERT INTO ingest_processed (device_id, seq, at_ms)
  SELECT d, s, $1 FROM unnest($2::text[], $3::bigint[]) AS u(d, s)
  ON CONFLICT (device_id, seq) DO NOTHING`;

const WAITING_SEQS = `SELECT device_id, array_agg(seq ORDER BY seq) AS seqs
  FROM ingest_processed WHERE device_id = ANY($1::text[]) GROUP BY device_id`;

const DELETE_PROCESSED_UPTO = `DELETE FROM ingest_processed q
  USING unnest($1::text[], $2::bigint[]) AS u(d, c) WHERE q.device_id = u.d AND q.seq <= u.c`;

/**
 * One statement for every device of a batch: the newest seq and receipt time seen, the commit
 * moved (never back), the partition the device now belongs to.
 */
const UPDATE_PROGRESS = `UPDATE ingest_progress p SET
    last_seq = greatest(p.last_seq, u.l), last_seen_ms = greatest(p.last_seen_ms, u.s),
    committed_ms = CASE WHEN u.c > p.committed_seq THEN $1 ELSE p.committed_ms END,
    committed_seq = greatest(p.committed_seq, u.c), partition = u.p
  FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[], $6::bigint[])
    AS u(d, p, l, s, c)
  WHERE p.device_id = u.d`;

interface ProgressRow {
  device_id: string;
  partition: number;
  committed_seq: string;
  last_seq: string;
  last_seen_ms: string;
  committed_ms: string;
  generation: number;
}

export class PostgresIngestState {
  readonly #pool: pg.Pool;
  readonly #fence: PartitionFence;
  readonly #generationOf: (deviceId: string) => number | undefined;
  /** Rejected messages, bounded as the embedded store's are (ingest/dead-letters-postgres.ts). */
  readonly deadLetters: PostgresDeadLetters;
  /** Rows this node has taken and not yet applied (id → partition): left out of the next take. */
  readonly #taken = new Map<number, number>();

  constructor(options: PostgresIngestStateOptions) {
    this.#pool = options.pool;
    this.#fence = options.fence;
    this.#generationOf = options.generationOf ?? (() => undefined);
    this.deadLetters = new PostgresDeadLetters(options.pool, options.deadLetterLimits);
  }

  /**
   * Append received messages in one statement; durable when this resolves. Any node may append
   * for any partition (no fence: receiving is not judging). The rows come back in the order given.
   */
  async append(messages: readonly PartitionedMessage[]): Promise<PartitionedInboxMessage[]> {
    if (messages.length === 0) return [];
    const { rows } = await this.#pool.query<{ id: string }>(INSERT_INBOX, [
      messages.map((m) => m.partition),
      messages.map((m) => m.receivedMs),
      messages.map((m) => m.topic),
      messages.map((m) => m.payload),
    ]);
    // The rows are inserted in the order given (ORDER BY n), each taking the sequence's next id,
    // so the ids in ascending order are the messages' ids in order.
    const ids = rows.map((r) => int(r.id)).sort((a, b) => a - b);
    return messages.map((m, i) => ({
      id: ids[i] as number,
      partition: m.partition,
      receivedMs: m.receivedMs,
      topic: m.topic,
      payload: m.payload,
    }));
  }

  /**
   * The oldest rows of `partitions` not taken by this node yet, in id order, at most `limit`.
   * They stay in the table until `applyBatch` deletes them; `release` gives them back to the next
   * take (a round that failed), `forget` drops a lost partition's.
   */
  async take(partitions: readonly number[], limit: number): Promise<PartitionedInboxMessage[]> {
    if (partitions.length === 0 || limit < 1) return [];
    const { rows } = await this.#pool.query<{
      id: string;
      partition: number;
      received_ms: string;
      topic: string;
      payload: Buffer;
    }>(
      `SELECT id, partition, received_ms, topic, payload FROM ingest_inbox
        WHERE partition = ANY($1::integer[]) AND NOT (id = ANY($2::bigint[]))
        ORDER BY id LIMIT $3`,
      [partitions, [...this.#taken.keys()], limit],
    );
    return rows.map((r) => {
      const message = {
        id: int(r.id),
        partition: r.partition,
        receivedMs: int(r.received_ms),
        topic: r.topic,
        payload: r.payload,
      };
      this.#taken.set(message.id, message.partition);
      return message;
    });
  }

  /** Rows taken by this node and not applied, released or forgotten. */
  takenCount(): number {
    return this.#taken.size;
  }

  /** Give taken rows back: the next take returns them again. */
  release(ids: readonly number[]): void {
    for (const id of ids) this.#taken.delete(id);
  }

  /** Forget the rows taken of partitions this node no longer owns (their new owner takes them). */
  forget(partitions: readonly number[]): void {
    const lost = new Set(partitions);
    for (const [id, partition] of this.#taken) if (lost.has(partition)) this.#taken.delete(id);
  }

  /**
   * Which of these (device, seq) were handled already, in one query: at or below the device's
   * committed seq, or waiting above a gap. A device registered again since its progress was
   * written has handled nothing of its new registration.
   */
  async handled(
    messages: ReadonlyArray<{ readonly deviceId: string; readonly seq: number }>,
  ): Promise<boolean[]> {
    if (messages.length === 0) return [];
    const { rows } = await this.#pool.query<{
      i: string;
      committed_seq: string | null;
      generation: number | null;
      waiting: boolean;
    }>(
      `SELECT u.i, p.committed_seq, p.generation,
              EXISTS (SELECT 1 FROM ingest_processed q
                       WHERE q.device_id = u.d AND q.seq = u.s) AS waiting
         FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(d, s, i)
         LEFT JOIN ingest_progress p ON p.device_id = u.d`,
      [messages.map((m) => m.deviceId), messages.map((m) => m.seq)],
    );
    const out = new Array<boolean>(messages.length).fill(false);
    for (const row of rows) {
      const i = int(row.i) - 1;
      const m = messages[i];
      if (m === undefined || row.committed_seq === null) continue;
      const current = this.#generationOf(m.deviceId);
      if (current !== undefined && current > (row.generation ?? 1)) continue;
      out[i] = m.seq <= int(row.committed_seq) || row.waiting;
    }
    return out;
  }

  /**
   * Apply a processed batch of `partition` atomically, under the lease `token`: dead letters in,
   * handled seqs recorded, inbox rows out, commits moved over contiguous seqs. Resolves with the
   * devices whose commit moved, or `{ ok: false }` with nothing written when the lease is gone
   * (the taken rows are then forgotten: the new owner handles them). A failure of the database
   * rejects, and the rows stay taken for the caller to retry or release.
   */
  async applyBatch(
    partition: number,
    token: number,
    outcome: BatchOutcome,
    nowMs: number,
  ): Promise<FencedOutcome<Map<string, number>>> {
    const round = await this.applyRound([{ partition, token, outcome }], nowMs);
    return round.refused.length === 0
      ? { ok: true, value: round.moved }
      : {
          ok: false,
          reason: `partition ${partition}: the lease with token ${token} is no longer held`,
        };
  }

  /**
   * Apply a round's batches, one per partition, in ONE transaction with every lease checked at
   * its start (PartitionFence.writeMany): what applyBatch does for each, in about as many round
   * trips as for one (seven in the usual case) instead of seven per partition. The batches of
   * partitions whose lease is gone are not written and their taken rows are forgotten (the new
   * owner handles them): they come back in `refused`. A failure of the database rejects, and the
   * rows of every batch stay taken for the caller to retry or release.
   */
  async applyRound(batches: readonly PartitionBatch[], nowMs: number): Promise<RoundOutcome> {
    if (batches.length === 0) return { moved: new Map(), refused: [] };
    const leases = batches.map((b) => ({ partition: b.partition, token: b.token }));
    const { moved, held } = await this.#fence.writeMany(leases, async (client, held) => {
      const mine = batches.filter((b) => held.has(b.partition));
      for (const b of mine) await this.deadLetters.add(client, b.partition, b.outcome.deadLetters);
      const partitionOf = new Map<string, number>();
      const handled: HandledSeq[] = [];
      for (const b of mine) {
        for (const h of b.outcome.handled) {
          partitionOf.set(h.deviceId, b.partition);
          handled.push(h);
        }
      }
      const moved = await this.#record(client, partitionOf, handled, nowMs);
      const ids = mine.flatMap((b) => [...b.outcome.inboxIds]);
      if (ids.length > 0) {
        await client.query("DELETE FROM ingest_inbox WHERE id = ANY($1::bigint[])", [ids]);
      }
      return { moved, held };
    });
    const refused: number[] = [];
    for (const b of batches) {
      if (held.has(b.partition)) this.release(b.outcome.inboxIds);
      else refused.push(b.partition);
    }
    if (refused.length > 0) this.forget(refused);
    return { moved, refused };
  }

  /**
   * One message set aside, under its partition's lease: `letter` in, its row deleted, nothing
   * recorded as handled. For the message PostgreSQL refused to take for its data (ClusterPipeline
   * finds it), so that the partition's later messages are not held behind it.
   */
  async setAside(
    message: PartitionedInboxMessage,
    token: number,
    letter: DeadLetter,
  ): Promise<FencedOutcome<void>> {
    try {
      return await this.#fence.write(message.partition, token, async (client) => {
        await this.deadLetters.add(client, message.partition, [letter]);
        await client.query("DELETE FROM ingest_inbox WHERE id = $1", [message.id]);
      });
    } finally {
      this.release([message.id]);
    }
  }

  /** The ledger's part of a batch (CommitLedger.record), in the batch's transaction. */
  async #record(
    client: pg.PoolClient,
    partitionOf: ReadonlyMap<string, number>,
    handled: readonly HandledSeq[],
    nowMs: number,
  ): Promise<Map<string, number>> {
    const moved = new Map<string, number>();
    const byDevice = handledByDevice(handled);
    if (byDevice.size === 0) return moved;
    const devices = [...byDevice.keys()].sort();
    await client.query(INSERT_PROGRESS, [
      nowMs,
      devices,
      devices.map((d) => partitionOf.get(d) ?? 0),
      devices.map((d) => this.#generationOf(d) ?? 1),
    ]);
    const { rows } = await client.query<{
      device_id: string;
      committed_seq: string;
      generation: number;
      gapped: boolean;
    }>(LOCK_PROGRESS, [devices]);
    const committed = new Map<string, number>();
    const gapped = new Set<string>();
    const restarted: string[] = [];
    for (const row of rows) {
      const current = this.#generationOf(row.device_id);
      if (current !== undefined && current > row.generation) {
        restarted.push(row.device_id);
        committed.set(row.device_id, 0);
        continue;
      }
      committed.set(row.device_id, int(row.committed_seq));
      if (row.gapped) gapped.add(row.device_id);
    }
    if (restarted.length > 0) await this.#restart(client, restarted, nowMs);

    // The usual case: the device's next seqs, in a row, nothing waiting above a gap; its commit
    // moves over them with no detour through ingest_processed. Otherwise the seqs above the
    // commit wait there, and the commit moves over what is contiguous.
    const waitDevices: string[] = [];
    const waitSeqs: number[] = [];
    const target = new Map<string, number>();
    for (const [deviceId, entry] of byDevice) {
      const from = committed.get(deviceId) ?? 0;
      if (!gapped.has(deviceId) && follows(entry.seqs, from)) {
        target.set(deviceId, from + entry.seqs.length);
        continue;
      }
      for (const seq of entry.seqs) {
        if (seq <= from) continue;
        waitDevices.push(deviceId);
        waitSeqs.push(seq);
      }
      gapped.add(deviceId);
    }
    if (waitDevices.length > 0) {
      await client.query(INSERT_PROCESSED, [nowMs, waitDevices, waitSeqs]);
    }
    const waiting = [...byDevice.keys()].filter((d) => gapped.has(d));
    for (const [deviceId, to] of await this.#advance(client, waiting, committed))
      target.set(deviceId, to);

    const ids = [...byDevice.keys()];
    await client.query(UPDATE_PROGRESS, [
      nowMs,
      ids,
      ids.map((d) => partitionOf.get(d) ?? 0),
      ids.map((d) => byDevice.get(d)?.lastSeq ?? 0),
      ids.map((d) => byDevice.get(d)?.lastSeenMs ?? 0),
      ids.map((d) => target.get(d) ?? committed.get(d) ?? 0),
    ]);
    for (const deviceId of ids) {
      const to = target.get(deviceId);
      if (to !== undefined && to > (committed.get(deviceId) ?? 0)) moved.set(deviceId, to);
    }
    // A device registered again: its commit is published even at 0, replacing the old one's.
    for (const deviceId of restarted)
      if (!moved.has(deviceId)) moved.set(deviceId, target.get(deviceId) ?? 0);
    return moved;
  }

  /** Start devices registered again clean: no waiting seqs, nothing committed. */
  async #restart(client: pg.PoolClient, devices: readonly string[], nowMs: number): Promise<void> {
    await client.query("DELETE FROM ingest_processed WHERE device_id = ANY($1::text[])", [devices]);
    await client.query(
      `UPDATE ingest_progress p SET generation = u.g, committed_seq = 0, last_seq = 0,
              committed_ms = $1
         FROM unnest($2::text[], $3::integer[]) AS u(d, g) WHERE p.device_id = u.d`,
      [nowMs, devices, devices.map((d) => this.#generationOf(d) ?? 1)],
    );
  }

  /**
   * Move each device's commit (from `committed`) over the contiguous seqs waiting above it, and
   * delete the waiting seqs it passed. The new commit per device (unchanged ones included).
   */
  async #advance(
    client: pg.PoolClient,
    devices: readonly string[],
    committed: ReadonlyMap<string, number>,
  ): Promise<Map<string, number>> {
    const to = new Map<string, number>();
    if (devices.length === 0) return to;
    const { rows } = await client.query<{ device_id: string; seqs: string[] }>(WAITING_SEQS, [
      devices,
    ]);
    for (const deviceId of devices) to.set(deviceId, committed.get(deviceId) ?? 0);
    for (const row of rows) {
      const from = committed.get(row.device_id) ?? 0;
      const above = row.seqs.map(int).filter((seq) => seq > from);
      to.set(row.device_id, contiguousEnd(from, above));
    }
    await client.query(DELETE_PROCESSED_UPTO, [[...to.keys()], [...to.values()]]);
    return to;
  }

  /**
   * Which of `partitions` hold a gap that has waited longer than `timeoutMs`, in one query: an
   * idle node looks at every partition it holds each second, and only those with a stale gap are
   * worth a fenced transaction (closeStaleGaps).
   */
  async stalePartitions(
    partitions: readonly number[],
    nowMs: number,
    timeoutMs: number,
  ): Promise<number[]> {
    if (partitions.length === 0) return [];
    const { rows } = await this.#pool.query<{ partition: number }>(
      `SELECT DISTINCT p.partition FROM ingest_processed q
         JOIN ingest_progress p ON p.device_id = q.device_id
        WHERE p.partition = ANY($1::integer[]) AND q.at_ms < $2
        ORDER BY p.partition`,
      [partitions, nowMs - timeoutMs],
    );
    return rows.map((r) => r.partition);
  }

  /**
   * Close the gaps of `partition` that have waited longer than `timeoutMs` (IngestState's
   * closeStaleGaps), under the lease `token`: the missing seqs are one dead letter per gap
   * (reason missing_seq) and the commit moves on.
   */
  async closeStaleGaps(
    partition: number,
    token: number,
    nowMs: number,
    timeoutMs: number,
  ): Promise<FencedOutcome<{ moved: Map<string, number>; gaps: number }>> {
    return this.#fence.write(partition, token, async (client) => {
      const { rows } = await client.query<{
        device_id: string;
        first_seq: string;
        committed_seq: string;
      }>(
        `SELECT q.device_id, min(q.seq) AS first_seq, p.committed_seq
           FROM ingest_processed q JOIN ingest_progress p ON p.device_id = q.device_id
          WHERE p.partition = $1
          GROUP BY q.device_id, p.committed_seq HAVING min(q.at_ms) < $2
          ORDER BY q.device_id`,
        [partition, nowMs - timeoutMs],
      );
      const gaps: WaitingGap[] = rows
        .map((r) => ({
          deviceId: r.device_id,
          firstSeq: int(r.first_seq),
          committedSeq: int(r.committed_seq),
        }))
        .filter((g) => g.firstSeq - 1 >= g.committedSeq + 1);
      const moved = new Map<string, number>();
      if (gaps.length === 0) return { moved, gaps: 0 };
      await this.deadLetters.add(
        client,
        partition,
        gaps.map((g) => ({
          receivedMs: nowMs,
          topic: "",
          deviceId: g.deviceId,
          seq: g.committedSeq + 1,
          reason: "missing_seq" as const,
          detail: `seq ${g.committedSeq + 1}..${g.firstSeq - 1} never arrived within ${timeoutMs} ms; commit moved past them`,
          payload: Buffer.alloc(0),
        })),
      );
      const skipped = new Map(gaps.map((g) => [g.deviceId, g.firstSeq - 1]));
      const to = await this.#advance(client, [...skipped.keys()], skipped);
      const ids = [...to.keys()];
      await client.query(
        `UPDATE ingest_progress p SET committed_seq = u.c, committed_ms = $1
           FROM unnest($2::text[], $3::bigint[]) AS u(d, c) WHERE p.device_id = u.d`,
        [nowMs, ids, ids.map((d) => to.get(d) ?? 0)],
      );
      for (const [deviceId, seq] of to) moved.set(deviceId, seq);
      return { moved, gaps: gaps.length };
    });
  }

  /**
   * Restart the gap timers of `partitions` (IngestState's resetGapTimers): a device cannot fill a
   * gap while the store or the broker is down, and a new owner has just taken the partition over.
   */
  async resetGapTimers(partitions: readonly number[], nowMs: number): Promise<void> {
    await this.#pool.query(
      `UPDATE ingest_processed q SET at_ms = $1 FROM ingest_progress p
        WHERE p.device_id = q.device_id AND p.partition = ANY($2::integer[])`,
      [nowMs, partitions],
    );
  }

  async progress(deviceId: string): Promise<DeviceProgress | undefined> {
    const { rows } = await this.#pool.query<ProgressRow>(
      "SELECT * FROM ingest_progress WHERE device_id = $1",
      [deviceId],
    );
    const row = rows[0];
    return row === undefined ? undefined : progressOf(row);
  }

  /** Every device's progress, in id order (the API's device list; CommitLedger.all). */
  async allProgress(): Promise<DeviceProgress[]> {
    const { rows } = await this.#pool.query<ProgressRow>(
      "SELECT * FROM ingest_progress ORDER BY device_id",
    );
    return rows.map(progressOf);
  }

  /**
   * How far the commits of the devices of `partitions` are behind what they sent: the sum of
   * (last seq handled − committed seq), and how many devices are behind (a gap waiting to be
   * filled or closed, or a seq set aside). The embedded ingest's per-device commit-lag gauge,
   * summed for a node's partitions: a node does not keep every device's progress in memory.
   */
  async commitLag(partitions: readonly number[]): Promise<{ messages: number; devices: number }> {
    const { rows } = await this.#pool.query<{ messages: string; devices: string }>(
      `SELECT coalesce(sum(last_seq - committed_seq), 0) AS messages,
              count(*) FILTER (WHERE last_seq > committed_seq) AS devices
         FROM ingest_progress WHERE partition = ANY($1::integer[])`,
      [partitions],
    );
    return { messages: int(rows[0]?.messages ?? 0), devices: int(rows[0]?.devices ?? 0) };
  }

  /** Messages in the inbox (of `partitions`, or all), taken or not: the queue's depth. */
  async depth(partitions?: readonly number[]): Promise<number> {
    const { rows } =
      partitions === undefined
        ? await this.#pool.query<{ n: string }>("SELECT count(*) AS n FROM ingest_inbox")
        : await this.#pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM ingest_inbox WHERE partition = ANY($1::integer[])",
            [partitions],
          );
    return int(rows[0]?.n ?? 0);
  }
}

const progressOf = (row: ProgressRow): DeviceProgress => ({
  deviceId: row.device_id,
  committedSeq: int(row.committed_seq),
  lastSeq: int(row.last_seq),
  lastSeenMs: int(row.last_seen_ms),
  committedMs: int(row.committed_ms),
  generation: row.generation,
});
