import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

/*
 * How every component opens its SQLite files (the ingest's inbox and dead letters, the embedded
 * time-series store, alarms, tasks, API tokens, the edge agent's write-ahead log): WAL, a busy
 * timeout, the durability each file needs, and schema steps counted in `user_version`.
 */

export interface OpenSqliteOptions {
  /**
   * FULL: a committed transaction survives a power cut (the WAL is synced at every commit).
   * NORMAL: it survives a crash of the process; a power cut may lose the last few.
   */
  readonly synchronous: "FULL" | "NORMAL";
  /** Page size of a new file (an existing one keeps its own). */
  readonly pageSize?: number;
  /** Pages the WAL may grow to before it is copied back into the file (SQLite's default: 1,000). */
  readonly walAutocheckpoint?: number;
  /** Only this process opens the file: no shared-lock dance on every transaction. */
  readonly exclusive?: boolean;
  readonly foreignKeys?: boolean;
  /** Schema steps in order; those past the file's `user_version` run, each in a transaction. */
  readonly migrations?: readonly string[];
}

/** Open (creating the directory and the file when missing) and bring the schema up to date. */
export function openSqlite(file: string, options: OpenSqliteOptions): Database.Database {
  if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  if (options.pageSize !== undefined) db.pragma(`page_size = ${options.pageSize}`);
  db.pragma("journal_mode = WAL");
  if (options.walAutocheckpoint !== undefined) {
    db.pragma(`wal_autocheckpoint = ${options.walAutocheckpoint}`);
  }
  db.pragma(`synchronous = ${options.synchronous}`);
  if (options.exclusive === true) db.pragma("locking_mode = EXCLUSIVE");
  if (options.foreignKeys === true) db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  const migrations = options.migrations ?? [];
  const version = db.pragma("user_version", { simple: true }) as number;
  for (let v = version; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v] ?? "");
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}

/** What `holdWrite` opens: a write transaction to end one way or the other. */
export interface Held {
  commit(): void;
  rollback(): void;
}

/**
 * Open a write transaction (BEGIN IMMEDIATE) to end later, for one that awaits between its
 * statements (infra/sqlite-turns.ts): the caller keeps every other use of `db` out until it ends.
 */
export function holdWrite(db: Database.Database): Held {
  db.exec("BEGIN IMMEDIATE");
  return {
    commit: () => {
      if (db.inTransaction) db.exec("COMMIT");
    },
    rollback: () => {
      if (db.inTransaction) db.exec("ROLLBACK");
    },
  };
}

/** Prepared statements by SQL text, each prepared once. */
export class Statements {
  readonly #db: Database.Database;
  readonly #prepared = new Map<string, Database.Statement>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  get(sql: string): Database.Statement {
    let statement = this.#prepared.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#prepared.set(sql, statement);
    }
    return statement;
  }
}
