import type pg from "pg";
import { inTransaction } from "../infra/postgres/transaction.js";
import type { FencedOutcome, PartitionFence } from "../infra/postgres/fence.js";

/*
 * Fencing: the guarantee that a node which lost a partition cannot write for it any more, even if
 * it does not know yet (a long pause, a clock that jumped, a renewal that never came back). A write
 * for a partition goes through fencedWrite with the token the lease keeper reported; in the same
 * transaction the lease row is read FOR SHARE:
 *
 * - a row with another token (the partition was taken over) or an expired lease refuses the write
 *   before it begins (LeaseLostError);
 * - a row found valid stays share-locked until the write commits, and taking the partition over
 *   means updating that row, so a takeover waits for the write in flight (the keeper's FOR UPDATE
 *   SKIP LOCKED passes the row by and tries again next round). The new owner therefore starts
 *   after the old owner's last write is committed, and sees it.
 *
 * The check uses clock_timestamp() (the server's clock now), not now(), which is frozen at the
 * start of the transaction.
 */

/** The lease of `partition` under `token` is gone (taken over or expired); nothing was written. */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(
    readonly partition: number,
    readonly token: number,
  ) {
    super(`partition ${partition}: the lease with token ${token} is no longer held`);
  }
}

const HOLDS_LEASE = `SELECT 1 FROM partition_leases
  WHERE partition = $1 AND token = $2 AND expires_at > clock_timestamp()
  FOR SHARE`;

/**
 * Run `write` in a transaction that commits only while `partition` is held under `token`.
 * Given a pool, a connection is taken for the call and returned; given a connection (not in a
 * transaction), it is used. `write` must use the connection it is handed, and should be short:
 * the partition cannot be renewed or taken over while it runs.
 */
export async function fencedWrite<T>(
  db: pg.Pool | pg.PoolClient,
  partition: number,
  token: number,
  write: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return inTransaction(db, async (client) => {
    const held = await client.query(HOLDS_LEASE, [partition, token]);
    if (held.rowCount !== 1) throw new LeaseLostError(partition, token);
    return write(client);
  });
}

const HOLDS_LEASES = `SELECT l.partition FROM partition_leases l
  JOIN unnest($1::int[], $2::bigint[]) AS mine (partition, token)
    ON l.partition = mine.partition AND l.token = mine.token
 WHERE l.expires_at > clock_timestamp()
 ORDER BY l.partition
   FOR SHARE OF l`;

/**
 * Run `write` in one transaction for several partitions, their leases checked at once at its
 * start; `write` gets the partitions still held under their tokens and must write nothing for the
 * others. The held leases are share-locked, in partition order (as the keeper's renewal and
 * release lock them, so neither waits for the other crosswise), until the transaction ends.
 */
export async function fencedWriteMany<T>(
  db: pg.Pool | pg.PoolClient,
  leases: ReadonlyArray<{ readonly partition: number; readonly token: number }>,
  write: (client: pg.PoolClient, held: ReadonlySet<number>) => Promise<T>,
): Promise<T> {
  return inTransaction(db, async (client) => {
    const { rows } = await client.query<{ partition: number }>(HOLDS_LEASES, [
      leases.map((l) => l.partition),
      leases.map((l) => l.token),
    ]);
    return write(client, new Set(rows.map((r) => r.partition)));
  });
}

/**
 * The fence a store takes (infra/postgres/fence.ts) over a lease keeper's tokens: a write under a
 * token whose lease is gone is refused.
 */
export function leaseFence(
  pool: pg.Pool,
  keeper: { tokenOf(partition: number): number | undefined },
): PartitionFence {
  return {
    tokenOf: (partition) => keeper.tokenOf(partition),
    async write<T>(
      partition: number,
      token: number,
      write: (client: pg.PoolClient) => Promise<T>,
    ): Promise<FencedOutcome<T>> {
      try {
        return { ok: true, value: await fencedWrite(pool, partition, token, write) };
      } catch (err) {
        if (err instanceof LeaseLostError) return { ok: false, reason: err.message };
        throw err;
      }
    },
    writeMany: (leases, write) => fencedWriteMany(pool, leases, write),
  };
}
