import pg from "pg";

/**
 * The transaction's work resolved, but a statement of it had failed (and the failure was caught):
 * PostgreSQL rolled the whole transaction back at COMMIT.
 */
export class TransactionAbortedError extends Error {
  override readonly name = "TransactionAbortedError";
  constructor() {
    super("the transaction was rolled back: one of its statements failed");
  }
}

/**
 * Run `work` in a transaction: committed when it resolves, rolled back when it throws (the error
 * passes through). Given a pool, a connection is taken for the call and returned; given a
 * connection (not in a transaction), it is used. A pooled connection whose ROLLBACK failed is
 * broken: the pool closes it instead of reusing it.
 */
export async function inTransaction<T>(
  db: pg.Pool | pg.PoolClient,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = db instanceof pg.Pool ? await db.connect() : db;
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    try {
      const value = await work(client);
      // COMMIT of a transaction a failed statement aborted rolls back without an error (its
      // command tag says ROLLBACK): the caller must not take that for a commit.
      const commit = await client.query("COMMIT");
      if (commit.command === "ROLLBACK") throw new TransactionAbortedError();
      return value;
    } catch (error) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
      throw error;
    }
  } finally {
    if (client !== db) client.release(broken);
  }
}
