import type pg from "pg";

/*
 * What a store needs of the cluster to write for a partition of the work: a transaction that
 * commits only while this node owns the partition (cluster/fencing.ts implements it over the
 * lease keeper's tokens). Here, in infra/, so that a component's store can take one without
 * importing the cluster.
 */

/** The outcome of a fenced write: done, or refused because this node does not own the partition. */
export type FencedOutcome<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

export interface PartitionFence {
  /** The token under which this node holds `partition` now (undefined: it does not). */
  tokenOf(partition: number): number | undefined;
  /**
   * Runs `write` on a connection in a transaction that commits only while `partition` is held
   * under `token` (by this node): `{ ok: false }`, nothing written, once that lease is gone, even
   * if the node holds the partition again under a newer token (another node may have written in
   * between). Any other failure (the database unreachable, a query error) rejects.
   */
  write<T>(
    partition: number,
    token: number,
    write: (client: pg.PoolClient) => Promise<T>,
  ): Promise<FencedOutcome<T>>;
  /**
   * Runs `write` in one transaction for several partitions, each lease checked once at its start:
   * `write` is handed the partitions still held under their tokens, and must write nothing for
   * the others. The leases of those handed stay held until the transaction ends. Any failure
   * rejects.
   */
  writeMany<T>(
    leases: ReadonlyArray<{ readonly partition: number; readonly token: number }>,
    write: (client: pg.PoolClient, held: ReadonlySet<number>) => Promise<T>,
  ): Promise<T>;
}
