import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import type pg from "pg";
import { migrate } from "../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../infra/postgres/schema.js";
import { inTransaction } from "../../infra/postgres/transaction.js";
import { byteLength, type Copy, copies, type Row, TARGET_TABLES } from "./migrate-copies.js";

/*
 * `citywatch migrate --to postgres://…` (issue #21): copies the state of a stopped single node's
 * data directory into PostgreSQL, for the stores that have a PostgreSQL home so far: the rules'
 * alarm states (alarms.db), the ingest's inbox, commit ledger and dead letters (ingest.db), and
 * the tasks with their audit trail, evidence packages, events, webhook outbox, complaints and
 * attachment records (tasks.db), and the registry's sites, devices (secret hashes and
 * generations), service accounts and parties (registry.db), and the users (password hashes),
 * their browser sessions and the API tokens (hashes) of tokens.db. Ids are kept (an event's id is its
 * webhooks' idempotency key, an audit entry's id its place in the trail) and the sequences set
 * past them; the task counter continues where the data directory's stopped.
 *
 * - The database is migrated first (CITYWATCH_MIGRATIONS), then everything is copied in ONE
 *   transaction: the copy is whole or absent.
 * - It refuses a database that already holds any of that state (a second run, or a live cluster),
 *   and a data directory a running citywatch holds (ingest.db is opened exclusively while the
 *   ingest runs).
 * - Each row gets the partition of its subject (cluster/partition.ts), the device's site read
 *   from registry.db, as the nodes will compute it.
 * - Verified before the commit: per table the rows (and the payload bytes, where a table holds
 *   payloads or documents) in PostgreSQL against the data directory's; any difference rolls the
 *   whole copy back.
 *
 * The SQLite files are opened read-only; nothing in the data directory changes.
 */

/**
 * The migration cannot or must not run, or its copy did not match the data directory: no state
 * was written to PostgreSQL (its schema may have been migrated).
 */
export class MigrateRefusedError extends Error {
  override readonly name = "MigrateRefusedError";
}

export interface TableCopy {
  /** The data directory's file and table, e.g. `ingest.db` `inbox`. */
  readonly file: string;
  readonly table: string;
  /** The PostgreSQL table it went to. */
  readonly target: string;
  readonly rows: number;
  /** Rows found in PostgreSQL after the copy, in the same transaction. */
  readonly copied: number;
  /** Payload bytes, for the tables that hold messages (else undefined). */
  readonly bytes?: number;
  readonly copiedBytes?: number;
}

export interface MigrateReport {
  readonly dataDir: string;
  /** The database's schema version after its migrations. */
  readonly schemaVersion: number;
  readonly tables: readonly TableCopy[];
  /** Files of the data directory whose state has no PostgreSQL store yet: not copied. */
  readonly notMoved: ReadonlyArray<{ readonly file: string; readonly holds: string }>;
}

export interface MigrateOptions {
  readonly dataDir: string;
  /** A pool on the target database (and schema). */
  readonly pool: pg.Pool;
  /** The deployment's partition count; the nodes must be started with the same. */
  readonly partitions: number;
  /** Rows per INSERT (default 1,000). */
  readonly batchRows?: number;
  /** Called after each batch and at the end of each table. */
  readonly onProgress?: (progress: { table: string; done: number; total: number }) => void;
}

/** What stays in the data directory, by file: no PostgreSQL store for it yet. */
const NOT_MOVED: ReadonlyArray<{ file: string; holds: string }> = [
  { file: "timeseries.db", holds: "readings (a cluster keeps them in InfluxDB)" },
];

/**
 * Task numbers and ids continue where tasks.db's stopped. Its ids are AUTOINCREMENT: never issued
 * twice, even once their row is gone (a delivered or buried notification), so each sequence goes
 * past the largest id the file ever issued (sqlite_sequence), not only past the rows copied: an
 * outbox row buried in the file keeps its id in task_outbox_dead, which a reissued id would meet.
 */
async function continueTaskNumbering(
  client: pg.PoolClient,
  tasks: Database.Database,
): Promise<void> {
  if (hasTable(tasks, "counter")) {
    const counter = tasks.prepare("SELECT value FROM counter WHERE name = 'task'").get() as
      { value: number } | undefined;
    await client.query("UPDATE task_counter SET value = $1 WHERE name = 'task'", [
      counter?.value ?? 0,
    ]);
  }
  const issued = new Map(
    hasTable(tasks, "sqlite_sequence")
      ? (
          tasks.prepare("SELECT name, seq FROM sqlite_sequence").all() as Array<{
            name: string;
            seq: number;
          }>
        ).map((r) => [r.name, r.seq])
      : [],
  );
  for (const [source, target, beside] of [
    ["audit", "task_audit", undefined],
    ["event", "task_event", undefined],
    ["outbox", "task_outbox", "task_outbox_dead"],
  ] as const) {
    const largest = `greatest($1::bigint, (SELECT coalesce(max(id), 0) FROM ${target})${
      beside === undefined ? "" : `, (SELECT coalesce(max(id), 0) FROM ${beside})`
    })`;
    await client.query(
      `SELECT setval(pg_get_serial_sequence('${target}', 'id'), ${largest} + 1, false)`,
      [issued.get(source) ?? 0],
    );
  }
}

/** A data directory's SQLite file, read-only; undefined when the file is not there. */
function openSource(dataDir: string, file: string): Database.Database | undefined {
  const path = join(dataDir, file);
  if (!existsSync(path)) return undefined;
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 1_000 });
    // One read transaction for the whole copy: every count and row read is one snapshot of the
    // file. A running ingest holds ingest.db exclusively: the first read says so.
    db.exec("BEGIN");
    db.prepare("SELECT count(*) FROM sqlite_master").get();
  } catch (error) {
    const code = String((error as { code?: unknown }).code);
    if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
      throw new MigrateRefusedError(
        `${path} is in use by a running citywatch: stop it (every process on this data directory) and run the migration again`,
      );
    }
    throw new MigrateRefusedError(`${path} cannot be read: ${(error as Error).message}`);
  }
  return db;
}

function hasTable(db: Database.Database, table: string): boolean {
  return (
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !==
    undefined
  );
}

/**
 * Copy the data directory's alarm states, ingest state and tasks into the database behind `pool`; see
 * the comment at the top of this file. Rejects with MigrateRefusedError when it must not run,
 * with nothing written.
 */
export async function migrateToPostgres(options: MigrateOptions): Promise<MigrateReport> {
  const dataDir = resolve(options.dataDir);
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) {
    throw new MigrateRefusedError(`no data directory at ${dataDir}`);
  }
  const batchRows = options.batchRows ?? 1_000;
  const sources = new Map<string, Database.Database>();
  try {
    for (const file of ["ingest.db", "alarms.db", "tasks.db", "registry.db", "tokens.db"]) {
      const db = openSource(dataDir, file);
      if (db !== undefined) sources.set(file, db);
    }
    if (!["ingest.db", "alarms.db", "tasks.db"].some((file) => sources.has(file))) {
      throw new MigrateRefusedError(
        `${dataDir} holds none of ingest.db, alarms.db and tasks.db: not the data directory of a citywatch that ran`,
      );
    }
    const registry = sources.get("registry.db");
    const sites = new Map<string, string>();
    if (registry !== undefined && hasTable(registry, "device")) {
      for (const row of registry.prepare("SELECT id, site_id FROM device").iterate() as Iterable<{
        id: string;
        site_id: string;
      }>)
        sites.set(row.id, row.site_id);
    }

    const { version } = await migrate(options.pool, CITYWATCH_MIGRATIONS);
    const tables: TableCopy[] = [];
    await inTransaction(options.pool, async (client) => {
      // Nothing else writes these tables while the copy runs (a node started too early waits).
      await client.query(
        `LOCK TABLE ${TARGET_TABLES.join(", ")}, ingest_dead_letter_accounts IN EXCLUSIVE MODE`,
      );
      const held: string[] = [];
      for (const table of TARGET_TABLES) {
        const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
        const n = Number(rows[0]?.n ?? 0);
        if (n > 0) held.push(`${table} ${n} rows`);
      }
      if (held.length > 0) {
        throw new MigrateRefusedError(
          `the database already holds citywatch state (${held.join(", ")}): migrate into a new database or schema`,
        );
      }
      for (const copy of copies(options.partitions, (d) => sites.get(d))) {
        const source = sources.get(copy.file);
        tables.push(await copyTable(client, source, copy, batchRows, options.onProgress));
      }
      const tasks = sources.get("tasks.db");
      if (tasks !== undefined) await continueTaskNumbering(client, tasks);
      const wrong = tables.filter((t) => t.copied !== t.rows || t.copiedBytes !== t.bytes);
      if (wrong.length > 0) {
        throw new MigrateRefusedError(
          `the copy does not match the data directory (${wrong
            .map((t) => `${t.target}: ${t.copied} of ${t.rows} rows`)
            .join(", ")}); nothing was written`,
        );
      }
    });
    return {
      dataDir,
      schemaVersion: version,
      tables,
      notMoved: NOT_MOVED.filter((f) => existsSync(join(dataDir, f.file))),
    };
  } finally {
    for (const db of sources.values()) db.close();
  }
}

async function copyTable(
  client: pg.PoolClient,
  source: Database.Database | undefined,
  copy: Copy,
  batchRows: number,
  onProgress: MigrateOptions["onProgress"],
): Promise<TableCopy> {
  const base = { file: copy.file, table: copy.table, target: copy.target };
  const present = source !== undefined && hasTable(source, copy.table);
  const total = present
    ? (source.prepare(`SELECT count(*) AS n FROM ${copy.table}`).get() as { n: number }).n
    : 0;
  let bytes = 0;
  let batch: unknown[][] = [];
  let done = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const columns = batch[0]?.map((_, i) => batch.map((values) => values[i])) ?? [];
    await client.query(copy.insert, columns);
    done += batch.length;
    batch = [];
    onProgress?.({ table: copy.target, done, total });
  };
  if (present) {
    for (const row of source.prepare(copy.select).iterate() as Iterable<Row>) {
      if (copy.payload !== undefined) bytes += byteLength(row[copy.payload]);
      batch.push(copy.values(row));
      if (batch.length >= batchRows) await flush();
    }
  }
  await flush();
  if (copy.after !== undefined) await client.query(copy.after);
  const { rows } = await client.query<{ n: string; bytes: string | null }>(
    `SELECT count(*) AS n, ${copy.payload === undefined ? "NULL" : `sum(octet_length(${copy.payload}))`} AS bytes
       FROM ${copy.target}`,
  );
  const copied = Number(rows[0]?.n ?? 0);
  if (copy.payload === undefined) return { ...base, rows: total, copied };
  return { ...base, rows: total, copied, bytes, copiedBytes: Number(rows[0]?.bytes ?? 0) };
}
