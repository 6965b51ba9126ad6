import type pg from "pg";
import type { Logger } from "pino";
import { type BackoffPolicy, backoffDelayMs } from "../infra/backoff.js";
import { isDataRefusal } from "../infra/postgres/errors.js";
import type { PartitionFence } from "../infra/postgres/fence.js";
import type { AlarmState } from "./engine/alarm.js";
import { type AlarmKey, type AlarmStates, type StoredAlarm, UNSAVED_MAX } from "./alarm-store.js";

/*
 * The alarm states in PostgreSQL (table alarm_states, migration 2 of infra/postgres/schema.ts),
 * for nodes that share their state (docs/cluster.md). The same contract as the embedded store
 * (AlarmStates): the states are read once when the store opens; the driver hands over each move
 * without waiting, and the store writes them behind it, in batches (one INSERT … ON CONFLICT of
 * every move kept, per partition), in order, one batch at a time.
 *
 * A move waits in memory, the latest per (rule, subject), until its batch commits: a database out
 * of reach keeps it (up to UNSAVED_MAX subjects; a new subject past it is dropped and counted),
 * and the batch is tried again after a backoff. A batch the database refuses for its data (SQLSTATE
 * classes 22 and 23: a value out of range, a constraint) is dropped, logged and counted, so one bad
 * move cannot hold back every later one. With a fence (a cluster node), a move is kept with the
 * lease token under which the node judged its subject, and written only under that token: a move
 * made for a partition the node does not hold, or whose lease is gone by the time of the write
 * (even if the node holds the partition again: another node may have judged it meanwhile), is
 * dropped and counted, and the partition's owner judges from the states in the database. What a
 * crash loses (the moves not yet written) the next evaluations make again, as with the embedded
 * store's synchronous=NORMAL.
 */

/** Moves per INSERT at most. */
const BATCH_MAX = 1_000;

const RETRY: BackoffPolicy = { baseMs: 100, capMs: 10_000, jitter: "equal" };

export interface PostgresAlarmStoreOptions {
  /** A pool on the schema migrated to CITYWATCH_MIGRATIONS. */
  readonly pool: pg.Pool;
  readonly log?: Logger;
  /**
   * The partition whose lease covers a subject's writes (a cluster: partitions by site, see
   * docs/cluster.md). Absent: the node does not partition its work (the column is null).
   */
  readonly partitionOf?: (subject: string) => number;
  /** Writes for a partition only while this node owns it (a cluster node). */
  readonly fence?: PartitionFence;
  /** Waits before a failed batch is tried again (default 100 ms doubling to 10 s, equal jitter). */
  readonly retry?: BackoffPolicy;
  /** Read only these partitions' states (a cluster node: those it owns); absent: every state. */
  readonly partitions?: readonly number[];
}

interface Move {
  readonly key: AlarmKey;
  readonly state: string;
  readonly nowMs: number;
  readonly partition: number | null;
  /** The lease token the move was made under (a fenced store), else undefined. */
  readonly token: number | undefined;
}

/** States by (rule, subject), with their partitions: inserted, or written over. */
export const UPSERT_ALARM_STATES = `INSERT INTO alarm_states (rule_id, subject, partition, state, updated_ms)
  SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::jsonb[], $5::bigint[])
  ON CONFLICT (rule_id, subject) DO UPDATE SET
    partition = excluded.partition, state = excluded.state, updated_ms = excluded.updated_ms`;

interface Row {
  rule_id: string;
  subject: string;
  state: AlarmState;
  updated_ms: string;
}

/** Read the states of `partitions` (absent: every state). */
export async function readAlarmStates(
  db: pg.Pool | pg.PoolClient,
  partitions?: readonly number[],
): Promise<StoredAlarm[]> {
  const { rows } =
    partitions === undefined
      ? await db.query<Row>("SELECT rule_id, subject, state, updated_ms FROM alarm_states")
      : await db.query<Row>(
          "SELECT rule_id, subject, state, updated_ms FROM alarm_states WHERE partition = ANY($1::integer[])",
          [partitions],
        );
  return rows.map((r) => ({
    ruleId: r.rule_id,
    subject: r.subject,
    state: r.state,
    updatedMs: Number(r.updated_ms),
  }));
}

export class PostgresAlarmStore implements AlarmStates {
  readonly #options: PostgresAlarmStoreOptions;
  readonly #read: StoredAlarm[];
  /** Moves not yet written, by (rule, subject), in the order they first came. */
  readonly #unsaved = new Map<string, Move>();
  /** The batch being written (its moves stay in #unsaved until it commits). */
  #writing: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;
  #dropped = 0;
  #fencedOut = 0;
  #refused = 0;
  #written = 0;
  #lastError: string | undefined;

  private constructor(options: PostgresAlarmStoreOptions, read: StoredAlarm[]) {
    this.#options = options;
    this.#read = read;
  }

  /** Opens the store: reads the states (of `partitions`, when given). */
  static async open(options: PostgresAlarmStoreOptions): Promise<PostgresAlarmStore> {
    return new PostgresAlarmStore(options, await readAlarmStates(options.pool, options.partitions));
  }

  all(): StoredAlarm[] {
    return [...this.#read];
  }

  save(key: AlarmKey, state: AlarmState, nowMs: number): void {
    if (this.#closed) throw new Error("the alarm store is closed");
    const id = `${key.ruleId}\u0000${key.subject}`;
    if (!this.#unsaved.has(id) && this.#unsaved.size >= UNSAVED_MAX) {
      this.#dropped += 1;
      return;
    }
    const partition = this.#options.partitionOf?.(key.subject) ?? null;
    const fence = this.#options.fence;
    const token = fence === undefined || partition === null ? undefined : fence.tokenOf(partition);
    if (fence !== undefined && partition !== null && token === undefined) {
      // Judged for a partition this node does not hold (lost since): its owner's state counts.
      this.#fencedOut += 1;
      return;
    }
    // Deleted first: a move goes behind the moves kept before it (writes stay in order).
    this.#unsaved.delete(id);
    this.#unsaved.set(id, { key, state: JSON.stringify(state), nowMs, partition, token });
    // After the current turn: the moves of one tick go in one batch.
    if (this.#writing === undefined && this.#retryTimer === undefined) this.#start(true);
  }

  /** Starts writing what is kept (`deferred`: after the current turn), unless a writer runs. */
  #start(deferred: boolean): void {
    if (this.#writing !== undefined) return;
    const run = deferred
      ? new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#writeAll())
      : this.#writeAll();
    this.#writing = run.finally(() => {
      this.#writing = undefined;
    });
  }

  unsavedCount(): number {
    return this.#unsaved.size;
  }

  /** Moves not written: past the bound, judged under a lease that is gone, refused for their data. */
  droppedCount(): number {
    return this.#dropped + this.#fencedOut + this.#refused;
  }

  /**
   * What the store did: moves written, dropped for want of room, refused by the fence (judged
   * under a lease that is gone), refused by the database for their data.
   */
  counts(): {
    written: number;
    dropped: number;
    fencedOut: number;
    refused: number;
    lastError?: string;
  } {
    return {
      written: this.#written,
      dropped: this.#dropped,
      fencedOut: this.#fencedOut,
      refused: this.#refused,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /**
   * Resolves when every move handed over before the call is written (or dropped: judged under a
   * lease that is gone, or refused by the database for its data);
   * rejects with the database's error when a batch fails (the moves stay kept, retried later).
   */
  async flush(): Promise<void> {
    if (this.#retryTimer !== undefined) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    // One writer at a time (a flush during a flush, or during a write a save started).
    await this.#idle();
    if (this.#unsaved.size === 0) return;
    this.#start(false);
    await this.#idle();
    if (this.#lastError !== undefined && this.#unsaved.size > 0) {
      throw new Error(`alarm states not written: ${this.#lastError}`);
    }
  }

  /** Resolves when no writer runs (whichever writers start meanwhile). */
  async #idle(): Promise<void> {
    for (let w = this.#writing; w !== undefined; w = this.#writing) await w;
  }

  /** Writes what is kept (one last attempt), then stops; the pool is the caller's. */
  async close(): Promise<void> {
    await this.flush().catch((err: unknown) =>
      this.#options.log?.warn(
        { err: err instanceof Error ? err.message : String(err), unsaved: this.#unsaved.size },
        "alarm states not written at close",
      ),
    );
    this.#closed = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
  }

  /** Batches until nothing is kept, or a batch fails (then a retry is scheduled). */
  async #writeAll(): Promise<void> {
    try {
      while (this.#unsaved.size > 0) {
        const taken: Array<[string, Move]> = [];
        for (const entry of this.#unsaved) {
          taken.push(entry);
          if (taken.length === BATCH_MAX) break;
        }
        await this.#writeBatch(taken);
      }
      this.#failures = 0;
      this.#lastError = undefined;
    } catch (err) {
      this.#lastError = err instanceof Error ? err.message : String(err);
      const delay = backoffDelayMs(this.#failures++, this.#options.retry ?? RETRY);
      this.#options.log?.warn(
        { err: this.#lastError, unsaved: this.#unsaved.size, retryInMs: delay },
        "alarm states not written; kept, retrying",
      );
      if (!this.#closed) {
        if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#start(false);
        }, delay);
        this.#retryTimer.unref();
      }
    }
  }

  /**
   * One batch, per partition and token; each group's moves leave #unsaved once written, refused
   * by the fence, or refused by the database for their data (a group refused is written again
   * move by move, so only the moves the database refuses are dropped).
   */
  async #writeBatch(taken: ReadonlyArray<[string, Move]>): Promise<void> {
    const groups = new Map<string, Array<[string, Move]>>();
    for (const entry of taken) {
      const group = `${entry[1].partition} ${entry[1].token}`;
      const list = groups.get(group);
      if (list === undefined) groups.set(group, [entry]);
      else list.push(entry);
    }
    const { pool, fence, log } = this.#options;
    for (const moves of groups.values()) {
      const { partition, token } = (moves[0] as [string, Move])[1];
      const params = [
        moves.map(([, m]) => m.key.ruleId),
        moves.map(([, m]) => m.key.subject),
        moves.map(([, m]) => m.partition),
        moves.map(([, m]) => m.state),
        moves.map(([, m]) => m.nowMs),
      ];
      try {
        if (fence === undefined || partition === null || token === undefined) {
          await pool.query(UPSERT_ALARM_STATES, params);
          this.#written += moves.length;
        } else {
          const outcome = await fence.write(partition, token, (client) =>
            client.query(UPSERT_ALARM_STATES, params),
          );
          if (outcome.ok) this.#written += moves.length;
          else {
            this.#fencedOut += moves.length;
            log?.warn(
              { partition, moves: moves.length, reason: outcome.reason },
              "alarm states judged under a lease that is gone: not written",
            );
          }
        }
      } catch (err) {
        if (!isDataRefusal(err)) throw err;
        if (moves.length > 1) {
          // One bad move refuses its whole statement: each move alone, so only the bad are lost.
          for (const move of moves) await this.#writeBatch([move]);
          continue;
        }
        this.#refused += 1;
        log?.error(
          {
            err: (err as Error).message,
            code: (err as { code?: string }).code,
            subject: moves[0]?.[1].key.subject,
          },
          "an alarm state refused by the database for its data: dropped",
        );
      }
      // A move handed over since the batch was taken is newer: it stays.
      for (const [id, m] of moves) if (this.#unsaved.get(id) === m) this.#unsaved.delete(id);
    }
  }
}
