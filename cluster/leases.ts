import { performance } from "node:perf_hooks";
import type pg from "pg";
import type { Logger } from "pino";
import { z } from "zod";
import { DEFAULT_PARTITIONS } from "./partition.js";

/*
 * Ownership of work partitions by leases in PostgreSQL (issue #21). The work is cut into P
 * partitions (partitionOf in partition.ts); each is judged by the one node that holds its lease.
 * Every node runs a LeaseKeeper, which each round:
 *
 *   1. heartbeats in `cluster_nodes` and counts the live nodes (seen within one TTL);
 *   2. renews the leases it holds, each only while it still carries this node's token and has not
 *      expired; one that does not come back renewed is reported lost at once;
 *   3. compares what it holds with its fair share, ceil(P / live nodes): below it, it takes
 *      partitions whose lease expired (a dead node's, or released ones); above it, it releases the
 *      surplus so that a node that just joined finds work.
 *
 * Each step is one SQL statement, correct when many nodes run it at once: taking goes through
 * FOR UPDATE SKIP LOCKED (two nodes never pick the same row, and a row picked under an older
 * snapshot is re-checked against its newest version), renewing and releasing are conditional on
 * owner and token. Every acquisition draws a new fencing token from one sequence, so tokens are
 * never reused and grow with each takeover; writes carry them through fencedWrite (fencing.ts).
 *
 * The database's clock (clock_timestamp()) is the only one that decides expiry. The keeper keeps a
 * local deadline per lease, measured from when it sent the statement that set the lease (so never
 * later than the database's expiry), and reports the lease lost when that passes without a
 * renewal, even while a statement hangs. Its view, owned(), is therefore never a partition the
 * database has given to another node by its own clock; if clocks disagree anyway, fencing holds.
 */

export type LossReason =
  /** The local deadline passed without a renewal (the database is slow or unreachable). */
  | "expired"
  /** The renewal found the lease taken over or expired in the database. */
  | "lease-gone"
  /** A round failed (database unreachable, connection closed): every lease is given up at once. */
  | "database-error"
  /** Released for a node with fewer partitions than its share. */
  | "rebalanced"
  /** stop() released it. */
  | "stopped";

/**
 * How long a lease lasts without renewal by default. A dead node's partitions are free at most
 * this long after it died and taken at a living node's next round (a third of it later): 8 s at
 * worst, within the 10 s a takeover may take (issue #21; `npm run bench -- cluster`). Shorter
 * costs more renewals and takes a partition from a node paused longer than it (a long GC, a slow
 * database), which fencing makes safe but not free.
 */
export const DEFAULT_TTL_MS = 6_000;

export interface LeaseKeeperOptions {
  /** Unique among running processes; a restarted process may reuse its id (it takes its leases back). */
  readonly nodeId: string;
  /** A pool on the migrated schema (CITYWATCH_MIGRATIONS); the keeper never closes it. */
  readonly pool: pg.Pool;
  /** The number of partitions; the same on every node (default 64). */
  readonly partitions?: number;
  /** How long a lease lasts without renewal; the same on every node (default 6 s). */
  readonly ttlMs?: number;
  /** Time between rounds (default a third of the TTL, so two renewals may fail before expiry). */
  readonly renewMs?: number;
  readonly log?: Logger;
  /** This node may now work on `partition`; its writes carry `token`. */
  readonly onAcquired?: (partition: number, token: number) => void;
  /** This node must stop working on `partition` now; writes with its old token are refused. */
  readonly onLost?: (partition: number, reason: LossReason) => void;
}

/** What /healthz will show of a node's share of the work. */
export interface LeaseStatus {
  readonly nodeId: string;
  readonly running: boolean;
  /** P, the number of partitions of the deployment. */
  readonly partitions: number;
  /** Partitions this node holds now. */
  readonly owned: number;
  /** Live nodes counted in the last round (this one included). */
  readonly liveNodes: number;
  /** ceil(partitions / liveNodes). */
  readonly fairShare: number;
  /** Since the acquisition of the longest-held lease (null when none is held). */
  readonly oldestLeaseAgeMs: number | null;
  /** Since the last round that completed (null before the first). */
  readonly lastRoundAgeMs: number | null;
  /** Acquisitions since start. */
  readonly acquired: number;
  /** Acquisitions of a partition whose lease another node had let expire (a takeover). */
  readonly takeovers: number;
  /** Leases given up or lost since start. */
  readonly lost: number;
}

const optionsSchema = z
  .object({
    nodeId: z.string().min(1).max(200),
    partitions: z.number().int().min(1).max(1_000_000),
    ttlMs: z.number().int().min(100),
    renewMs: z.number().int().min(10),
  })
  .refine((o) => o.renewMs < o.ttlMs, {
    message: "renewMs must be shorter than ttlMs, or leases expire between renewals",
  });

interface Held {
  readonly token: number;
  /** performance.now() when the acquisition was sent. */
  readonly acquiredAt: number;
  /** performance.now() by which the lease must be renewed; never later than the database's expiry. */
  validUntil: number;
}

const MS = "* interval '1 millisecond'";

const REGISTER = `
INSERT INTO cluster_nodes (node_id, started_at, last_seen)
VALUES ($1, clock_timestamp(), clock_timestamp())
ON CONFLICT (node_id) DO UPDATE SET started_at = clock_timestamp(), last_seen = clock_timestamp()`;

// Nodes not seen for many TTLs own nothing any more; without this, every restart under a new id
// would leave a row behind.
const PRUNE_NODES = `DELETE FROM cluster_nodes WHERE last_seen < clock_timestamp() - 10 * $1::int ${MS}`;

const ENSURE_PARTITIONS = `
INSERT INTO partition_leases (partition) SELECT generate_series(0, $1::int - 1)
ON CONFLICT (partition) DO NOTHING`;

// The CTE's insert is not visible to the count (same snapshot), so this node is counted apart.
const HEARTBEAT = `
WITH beat AS (
  INSERT INTO cluster_nodes (node_id, started_at, last_seen)
  VALUES ($1, clock_timestamp(), clock_timestamp())
  ON CONFLICT (node_id) DO UPDATE SET last_seen = clock_timestamp()
)
SELECT 1 + count(*)::int AS live FROM cluster_nodes
 WHERE node_id <> $1 AND last_seen > clock_timestamp() - $2::int ${MS}`;

// The rows are locked in partition order first, as fencedWriteMany share-locks them, so a
// renewal and a write fenced on several partitions wait for each other instead of deadlocking.
const RENEW = `
WITH locked AS (
  SELECT partition FROM partition_leases WHERE partition = ANY ($2::int[])
   ORDER BY partition FOR UPDATE
)
UPDATE partition_leases AS l
   SET expires_at = clock_timestamp() + $4::int ${MS}
  FROM unnest($2::int[], $3::bigint[]) AS mine (partition, token), locked
 WHERE l.partition = mine.partition AND l.token = mine.token AND locked.partition = l.partition
   AND l.owner = $1 AND l.expires_at > clock_timestamp()
RETURNING l.partition`;

// Free rows have expired (-infinity at creation, the release time after a release). A row still
// owned by this node but not held is one it gave up locally (a failed round) or whose acquisition
// reply was lost: it is taken again under a new token, so the old one is fenced off.
const ACQUIRE = `
WITH candidates AS (
  SELECT partition, owner AS previous_owner FROM partition_leases
   WHERE partition < $5::int
     AND (expires_at <= clock_timestamp() OR owner = $1)
     AND partition <> ALL ($2::int[])
   ORDER BY partition
   LIMIT $3::int
   FOR UPDATE SKIP LOCKED
)
UPDATE partition_leases AS l
   SET owner = $1, token = nextval('partition_lease_token'),
       acquired_at = clock_timestamp(), expires_at = clock_timestamp() + $4::int ${MS}
  FROM candidates AS c
 WHERE l.partition = c.partition
RETURNING l.partition, l.token, c.previous_owner`;

const RELEASE = `
WITH locked AS (
  SELECT partition FROM partition_leases WHERE partition = ANY ($2::int[])
   ORDER BY partition FOR UPDATE
)
UPDATE partition_leases AS l
   SET owner = NULL, expires_at = clock_timestamp()
  FROM unnest($2::int[], $3::bigint[]) AS mine (partition, token), locked
 WHERE l.partition = mine.partition AND l.token = mine.token AND locked.partition = l.partition
   AND l.owner = $1`;

const UNREGISTER = "DELETE FROM cluster_nodes WHERE node_id = $1";

/** Holds this node's share of the partitions; see the comment at the top of this file. */
export class LeaseKeeper {
  readonly #nodeId: string;
  readonly #pool: pg.Pool;
  readonly #partitions: number;
  readonly #ttlMs: number;
  readonly #renewMs: number;
  readonly #log: Logger | undefined;
  readonly #onAcquired: LeaseKeeperOptions["onAcquired"];
  readonly #onLost: LeaseKeeperOptions["onLost"];

  readonly #held = new Map<number, Held>();
  #running = false;
  #round: Promise<void> | undefined;
  #roundTimer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  /** The last round failed; the next success is logged as a recovery. */
  #failing = false;
  #liveNodes = 1;
  #lastRoundAt: number | undefined;
  #acquired = 0;
  #takeovers = 0;
  #lost = 0;

  constructor(options: LeaseKeeperOptions) {
    const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    const checked = optionsSchema.safeParse({
      nodeId: options.nodeId,
      partitions: options.partitions ?? DEFAULT_PARTITIONS,
      ttlMs,
      renewMs: options.renewMs ?? Math.floor(ttlMs / 3),
    });
    if (!checked.success) throw new Error(`lease keeper: ${z.prettifyError(checked.error)}`);
    this.#nodeId = checked.data.nodeId;
    this.#partitions = checked.data.partitions;
    this.#ttlMs = checked.data.ttlMs;
    this.#renewMs = checked.data.renewMs;
    this.#pool = options.pool;
    this.#log = options.log;
    this.#onAcquired = options.onAcquired;
    this.#onLost = options.onLost;
  }

  get nodeId(): string {
    return this.#nodeId;
  }

  /**
   * Register the node, make sure the partition rows exist, and run the first round (which may
   * take nothing yet: other nodes release the surplus in their next round). Rejects when the
   * tables are missing or laid out for another partition count.
   */
  async start(): Promise<void> {
    if (this.#running) throw new Error(`lease keeper ${this.#nodeId} is already running`);
    try {
      await this.#query(ENSURE_PARTITIONS, [this.#partitions]);
      const { rows } = await this.#query<{ last: number }>(
        "SELECT max(partition)::int AS last FROM partition_leases",
      );
      const last = rows[0]?.last ?? -1;
      if (last >= this.#partitions) {
        throw new Error(
          `partition_leases holds partitions 0 to ${last}, but this node is configured for ` +
            `${this.#partitions}: every node must use the same partition count`,
        );
      }
      // Registered only once the layout is known to fit, so that a node that refuses to start
      // is never counted live (which would shrink the others' share for a TTL).
      await this.#query(PRUNE_NODES, [this.#ttlMs]);
      await this.#query(REGISTER, [this.#nodeId]);
    } catch (err) {
      if ((err as { code?: unknown }).code === "42P01") {
        throw new Error(
          "the cluster tables do not exist: run the PostgreSQL migrations (CITYWATCH_MIGRATIONS) " +
            "before starting the lease keeper",
          { cause: err },
        );
      }
      throw err;
    }
    this.#running = true;
    this.#log?.info(
      { nodeId: this.#nodeId, partitions: this.#partitions, ttlMs: this.#ttlMs },
      "lease keeper started",
    );
    this.#round = this.#runRound();
    await this.#round;
  }

  /**
   * Stop the rounds, report every partition lost ("stopped"), release the leases so that other
   * nodes take them at their next round instead of after the TTL, and leave the node table.
   * Never rejects: a database that cannot be reached only means the leases expire on their own.
   */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    clearTimeout(this.#roundTimer);
    clearTimeout(this.#watchdog);
    await this.#round;
    const held = [...this.#held];
    for (const [partition] of held) this.#drop(partition, "stopped");
    try {
      if (held.length > 0) await this.#release(held);
      await this.#query(UNREGISTER, [this.#nodeId]);
    } catch (err) {
      this.#log?.warn(
        { nodeId: this.#nodeId, err: messageOf(err) },
        "lease keeper could not release its leases; they expire after the TTL",
      );
    }
    this.#log?.info({ nodeId: this.#nodeId }, "lease keeper stopped");
  }

  /** Partition → fencing token, for the partitions this node may work on now. */
  owned(): ReadonlyMap<number, number> {
    const now = performance.now();
    const owned = new Map<number, number>();
    for (const [partition, held] of this.#held) {
      if (held.validUntil > now) owned.set(partition, held.token);
    }
    return owned;
  }

  /** The token of `partition` if this node holds it now. */
  tokenOf(partition: number): number | undefined {
    const held = this.#held.get(partition);
    // Past its deadline a lease is over even if the watchdog's timer has not run yet (a process
    // that was paused, say), so the answer never depends on timer order.
    return held !== undefined && held.validUntil > performance.now() ? held.token : undefined;
  }

  status(): LeaseStatus {
    const now = performance.now();
    let oldest: number | undefined;
    for (const held of this.#held.values()) {
      if (held.validUntil <= now) continue; // over, as in owned()
      if (oldest === undefined || held.acquiredAt < oldest) oldest = held.acquiredAt;
    }
    return {
      nodeId: this.#nodeId,
      running: this.#running,
      partitions: this.#partitions,
      owned: this.owned().size,
      liveNodes: this.#liveNodes,
      fairShare: this.#fairShare(),
      oldestLeaseAgeMs: oldest === undefined ? null : Math.round(now - oldest),
      lastRoundAgeMs: this.#lastRoundAt === undefined ? null : Math.round(now - this.#lastRoundAt),
      acquired: this.#acquired,
      takeovers: this.#takeovers,
      lost: this.#lost,
    };
  }

  #fairShare(): number {
    return Math.ceil(this.#partitions / Math.max(1, this.#liveNodes));
  }

  /** One round; never rejects. Schedules the next while the keeper runs. */
  async #runRound(): Promise<void> {
    try {
      const { rows } = await this.#query<{ live: number }>(HEARTBEAT, [this.#nodeId, this.#ttlMs]);
      this.#liveNodes = rows[0]?.live ?? 1;
      await this.#renew();
      await this.#rebalance();
      this.#lastRoundAt = performance.now();
      if (this.#failing)
        this.#log?.info({ nodeId: this.#nodeId }, "lease keeper reaches the database again");
      this.#failing = false;
    } catch (err) {
      // Whatever the failure, this node can no longer show that its leases are valid: it stops
      // working on all of them now rather than at their expiry. Those still valid in the database
      // are taken back (under new tokens) once it answers again.
      if (!this.#failing || this.#held.size > 0) {
        this.#log?.warn(
          { nodeId: this.#nodeId, err: messageOf(err), partitions: this.#held.size },
          "lease round failed: giving up every lease",
        );
      }
      this.#failing = true;
      for (const partition of [...this.#held.keys()]) this.#drop(partition, "database-error");
    }
    this.#armWatchdog();
    if (this.#running) {
      this.#roundTimer = setTimeout(() => {
        this.#round = this.#runRound();
      }, this.#renewMs);
      this.#roundTimer.unref();
    }
  }

  async #renew(): Promise<void> {
    const mine = [...this.#held];
    if (mine.length === 0) return;
    const sentAt = performance.now();
    const { rows } = await this.#query<{ partition: number }>(RENEW, [
      this.#nodeId,
      mine.map(([partition]) => partition),
      mine.map(([, held]) => held.token),
      this.#ttlMs,
    ]);
    const renewed = new Set(rows.map((r) => r.partition));
    for (const [partition, held] of mine) {
      // Dropped by the watchdog while the statement ran: it stays dropped (and is taken back
      // under a new token by a later round if still ours).
      if (this.#held.get(partition) !== held) continue;
      if (renewed.has(partition)) held.validUntil = sentAt + this.#ttlMs;
      else this.#drop(partition, "lease-gone");
    }
  }

  async #rebalance(): Promise<void> {
    const share = this.#fairShare();
    const count = this.#held.size;
    if (count > share) {
      // Only possible when more nodes are live than when this node took its partitions, so some
      // of them hold fewer than their share: give them the surplus (the highest partitions).
      const surplus = [...this.#held].sort(([a], [b]) => b - a).slice(0, count - share);
      for (const [partition] of surplus) this.#drop(partition, "rebalanced");
      await this.#release(surplus);
      this.#log?.info(
        { nodeId: this.#nodeId, released: surplus.length, liveNodes: this.#liveNodes },
        "released partitions for other nodes",
      );
    } else if (count < share) {
      await this.#acquire(share - count);
    }
  }

  async #acquire(wanted: number): Promise<void> {
    const sentAt = performance.now();
    const { rows } = await this.#query<{
      partition: number;
      token: string;
      previous_owner: string | null;
    }>(ACQUIRE, [this.#nodeId, [...this.#held.keys()], wanted, this.#ttlMs, this.#partitions]);
    let takeovers = 0;
    for (const row of rows) {
      const token = Number(row.token);
      if (!Number.isSafeInteger(token)) throw new Error(`fencing token ${row.token} is too large`);
      this.#held.set(row.partition, {
        token,
        acquiredAt: sentAt,
        validUntil: sentAt + this.#ttlMs,
      });
      this.#acquired += 1;
      if (row.previous_owner !== null && row.previous_owner !== this.#nodeId) takeovers += 1;
      this.#notify(() => this.#onAcquired?.(row.partition, token));
    }
    this.#takeovers += takeovers;
    if (rows.length > 0) {
      this.#log?.info(
        { nodeId: this.#nodeId, acquired: rows.length, takeovers, owned: this.#held.size },
        "acquired partitions",
      );
    }
  }

  async #release(leases: ReadonlyArray<readonly [number, Held]>): Promise<void> {
    await this.#query(RELEASE, [
      this.#nodeId,
      leases.map(([partition]) => partition),
      leases.map(([, held]) => held.token),
    ]);
  }

  #drop(partition: number, reason: LossReason): void {
    if (!this.#held.delete(partition)) return;
    this.#lost += 1;
    this.#notify(() => this.#onLost?.(partition, reason));
  }

  /** A timer at the earliest local deadline: leases not renewed by then are lost. */
  #armWatchdog(): void {
    clearTimeout(this.#watchdog);
    if (!this.#running || this.#held.size === 0) return;
    let earliest = Infinity;
    for (const held of this.#held.values()) earliest = Math.min(earliest, held.validUntil);
    this.#watchdog = setTimeout(
      () => {
        const now = performance.now();
        const late = [...this.#held].filter(([, held]) => held.validUntil <= now);
        if (late.length > 0) {
          this.#log?.warn(
            { nodeId: this.#nodeId, partitions: late.length },
            "leases not renewed in time: giving them up",
          );
        }
        for (const [partition] of late) this.#drop(partition, "expired");
        this.#armWatchdog();
      },
      Math.max(0, earliest - performance.now()),
    );
    this.#watchdog.unref();
  }

  /** A callback that throws must not break the keeper's bookkeeping. */
  #notify(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.#log?.error({ nodeId: this.#nodeId, err: messageOf(err) }, "lease callback threw");
    }
  }

  /** A statement that takes longer than a TTL fails the round: its leases have lapsed anyway. */
  #query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    // pg honours query_timeout per query; its typings know it only as a client setting.
    const query: pg.QueryConfig & { query_timeout: number } = {
      text,
      values,
      query_timeout: this.#ttlMs,
    };
    return this.#pool.query<R>(query);
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
