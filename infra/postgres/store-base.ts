import type pg from "pg";
import { inTransaction } from "./transaction.js";

/**
 * What citywatch's PostgreSQL stores share (tasks/store-postgres.ts, registry/store-postgres.ts):
 * a store runs its statements on the pool, each in a transaction of its own; a view of it made
 * by `on(client)` runs them on a connection inside a caller's transaction (a fenced write's, or
 * the store's own `within`), where a transaction the store begins joins the caller's.
 */
export abstract class PostgresStore<Self extends PostgresStore<Self>> {
  protected db: pg.Pool | pg.PoolClient;
  /** This view runs on a connection inside a transaction. */
  protected joined = false;

  /** The pool must hold the schema at the store's migration or later (migrate() on start). */
  constructor(protected readonly pool: pg.Pool) {
    this.db = pool;
  }

  /** A store of the same kind on the same pool: what `on` turns into a view. */
  protected abstract another(): Self;

  /** A view of the store on `client`, inside the caller's transaction: it commits or rolls back with it. */
  on(client: pg.PoolClient): Self {
    const view = this.another();
    view.db = client;
    view.joined = true;
    return view;
  }

  /** Runs one statement (a store may wrap it, e.g. in a savepoint). */
  protected query(sql: string, args: readonly unknown[] = []): Promise<pg.QueryResult> {
    return this.db.query(sql, args as unknown[]);
  }

  protected async rows<R>(sql: string, args: readonly unknown[] = []): Promise<R[]> {
    return (await this.query(sql, args)).rows as R[];
  }

  protected async row<R>(sql: string, args: readonly unknown[] = []): Promise<R | undefined> {
    return (await this.rows<R>(sql, args))[0];
  }

  /** The rows a statement changed. */
  protected async count(sql: string, args: readonly unknown[] = []): Promise<number> {
    return (await this.query(sql, args)).rowCount ?? 0;
  }

  /** Runs `work` in a transaction: this view's, or a new one on a connection of the pool. */
  protected within<T>(work: (tx: Self) => Promise<T>): Promise<T> {
    if (this.joined) return work(this as unknown as Self);
    return inTransaction(this.pool, (client) => work(this.on(client)));
  }
}
