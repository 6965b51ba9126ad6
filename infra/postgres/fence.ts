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
  /**
   * Runs `write` on a connection in a transaction that commits only while this node holds
   * `partition`: `{ ok: false }` (nothing written) when it does not hold it, or lost it before
   * the write. Any other failure (the database unreachable, a query error) rejects.
   */
  write<T>(
    partition: number,
    write: (client: pg.PoolClient) => Promise<T>,
  ): Promise<FencedOutcome<T>>;
}
