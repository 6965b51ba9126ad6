import { existsSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import Database from "better-sqlite3";
import type pg from "pg";
import { partitionOf, partitionOfSubject } from "../../cluster/partition.js";
import { parseTopic } from "../../contracts/index.js";
import { migrate } from "../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../infra/postgres/schema.js";
import { inTransaction } from "../../infra/postgres/transaction.js";
import {
  INSERT_DEAD_LETTERS,
  RECOUNT_DEAD_LETTER_ACCOUNTS,
} from "../../ingest/dead-letters-postgres.js";
import { INSERT_INBOX } from "../../ingest/state-postgres.js";
import { UPSERT_ALARM_STATES } from "../../rules/alarm-store-postgres.js";

/*
 * `citywatch migrate --to postgres://…` (issue #21): copies the state of a stopped single node's
 * data directory into PostgreSQL, for the stores that have a PostgreSQL home so far: the rules'
 * alarm states (alarms.db) and the ingest's inbox, commit ledger and dead letters (ingest.db).
 *
 * - The database is migrated first (CITYWATCH_MIGRATIONS), then everything is copied in ONE
 *   transaction: the copy is whole or absent.
 * - It refuses a database that already holds any of that state (a second run, or a live cluster),
 *   and a data directory a running citywatch holds (ingest.db is opened exclusively while the
 *   ingest runs).
 * - Each row gets the partition of its subject (cluster/partition.ts), the device's site read
 *   from registry.db, as the nodes will compute it.
 * - Verified before the commit: per table the rows (and the payload bytes, where a table holds
 *   payloads) in PostgreSQL against the data directory's; any difference rolls the whole copy back.
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
  { file: "registry.db", holds: "sites, devices, parties, service accounts" },
  { file: "tasks.db", holds: "tasks, audit trail, webhook outbox, evidence packages" },
  { file: "tokens.db", holds: "users and API tokens" },
  { file: "timeseries.db", holds: "readings (a cluster keeps them in InfluxDB)" },
];

const TARGET_TABLES = [
  "alarm_states",
  "ingest_inbox",
  "ingest_progress",
  "ingest_processed",
  "ingest_dead_letters",
] as const;

type Cell = string | number | bigint | Buffer | null;
type Row = Record<string, Cell>;

/** One table's copy: where it comes from, how a batch of its rows is written, what is checked. */
interface Copy {
  readonly file: "ingest.db" | "alarms.db";
  readonly table: string;
  readonly target: (typeof TARGET_TABLES)[number];
  /** The source rows, in the order they are to be inserted. */
  readonly select: string;
  /** The stores' own INSERT … SELECT FROM unnest($1 … $n), one array parameter per column. */
  readonly insert: string;
  /** A source row as the INSERT's values, in the order of its parameters. */
  readonly values: (row: Row) => unknown[];
  /** Payload column, for the tables whose bytes are checked as well. */
  readonly payload?: string;
  /** Run once the rows are in (what the stores keep beside them). */
  readonly after?: string;
}

const num = (cell: Cell | undefined): number => Number(cell);

/**
 * The tables copied, with each row's partition computed as the nodes compute it: a device's is its
 * site's (a device the registry does not hold: its own id's), a rule subject's by
 * partitionOfSubject.
 */
function copies(partitions: number, siteOf: (deviceId: string) => string | undefined): Copy[] {
  const partitionOfDevice = (deviceId: string): number =>
    partitionOf(siteOf(deviceId) ?? deviceId, partitions);
  const inboxPartition = (topic: string): number => {
    const parsed = parseTopic(topic);
    // A topic that names no device is dead-lettered by whichever node takes it: partition 0.
    return parsed.ok && parsed.topic.type === "device"
      ? partitionOfDevice(parsed.topic.deviceId)
      : 0;
  };
  return [
    {
      file: "ingest.db",
      table: "inbox",
      target: "ingest_inbox",
      select: "SELECT received_ms, topic, payload FROM inbox ORDER BY id",
      insert: INSERT_INBOX,
      values: (r) => [
        inboxPartition(String(r["topic"])),
        num(r["received_ms"]),
        r["topic"],
        r["payload"],
      ],
      payload: "payload",
    },
    {
      file: "ingest.db",
      table: "progress",
      target: "ingest_progress",
      select: "SELECT * FROM progress ORDER BY device_id",
      insert: `INSERT INTO ingest_progress (device_id, partition, committed_seq, last_seq,
          last_seen_ms, committed_ms, generation)
        SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::bigint[], $5::bigint[],
          $6::bigint[], $7::integer[])`,
      values: (r) => [
        r["device_id"],
        partitionOfDevice(String(r["device_id"])),
        num(r["committed_seq"]),
        num(r["last_seq"]),
        num(r["last_seen_ms"]),
        num(r["committed_ms"]),
        // A file written before device generations has no such column: its rows are generation 1.
        r["generation"] === undefined ? 1 : num(r["generation"]),
      ],
    },
    {
      file: "ingest.db",
      table: "processed",
      target: "ingest_processed",
      select: "SELECT device_id, seq, at_ms FROM processed ORDER BY device_id, seq",
      insert: `INSERT INTO ingest_processed (device_id, seq, at_ms)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])`,
      values: (r) => [r["device_id"], num(r["seq"]), num(r["at_ms"])],
    },
    {
      file: "ingest.db",
      table: "dead_letter",
      target: "ingest_dead_letters",
      select: `SELECT received_ms, topic, device_id, seq, reason, detail, payload
        FROM dead_letter ORDER BY id`,
      insert: INSERT_DEAD_LETTERS,
      values: (r) => [
        r["device_id"] === null ? null : partitionOfDevice(String(r["device_id"])),
        num(r["received_ms"]),
        r["topic"],
        r["device_id"],
        r["seq"] === null ? null : num(r["seq"]),
        r["reason"],
        r["detail"],
        r["payload"],
      ],
      payload: "payload",
      // Each source's bytes and letters, which the nodes keep the bounds by.
      after: RECOUNT_DEAD_LETTER_ACCOUNTS,
    },
    {
      file: "alarms.db",
      table: "alarm",
      target: "alarm_states",
      select: "SELECT rule_id, subject, state, updated_ms FROM alarm ORDER BY rule_id, subject",
      insert: UPSERT_ALARM_STATES,
      values: (r) => [
        r["rule_id"],
        r["subject"],
        partitionOfSubject(String(r["subject"]), partitions, siteOf),
        r["state"],
        num(r["updated_ms"]),
      ],
    },
  ];
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
 * Copy the data directory's alarm states and ingest state into the database behind `pool`; see
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
    for (const file of ["ingest.db", "alarms.db", "registry.db"]) {
      const db = openSource(dataDir, file);
      if (db !== undefined) sources.set(file, db);
    }
    if (!sources.has("ingest.db") && !sources.has("alarms.db")) {
      throw new MigrateRefusedError(
        `${dataDir} holds neither ingest.db nor alarms.db: not the data directory of a citywatch that ran`,
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
      if (copy.payload !== undefined) bytes += (row[copy.payload] as Buffer).length;
      batch.push(copy.values(row));
      if (batch.length >= batchRows) await flush();
    }
  }
  await flush();
  if (copy.after !== undefined) await client.query(copy.after);
  const { rows } = await client.query<{ n: string; bytes: string | null }>(
    `SELECT count(*) AS n, ${copy.payload === undefined ? "NULL" : `sum(length(${copy.payload}))`} AS bytes
       FROM ${copy.target}`,
  );
  const copied = Number(rows[0]?.n ?? 0);
  if (copy.payload === undefined) return { ...base, rows: total, copied };
  return { ...base, rows: total, copied, bytes, copiedBytes: Number(rows[0]?.bytes ?? 0) };
}
