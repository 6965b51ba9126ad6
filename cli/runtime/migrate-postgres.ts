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
import type { Task } from "../../contracts/index.js";
import { taskColumns } from "../../tasks/store-postgres.js";

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

const TARGET_TABLES = [
  "alarm_states",
  "ingest_inbox",
  "ingest_progress",
  "ingest_processed",
  "ingest_dead_letters",
  "task",
  "task_link",
  "task_audit",
  "task_evidence",
  "task_event",
  "task_outbox",
  "task_outbox_dead",
  "task_complaint",
  "task_attachment",
  "registry_site",
  "registry_device",
  "registry_device_generation",
  "registry_service_account",
  "registry_party",
  "registry_party_site",
  "auth_user",
  "auth_session",
  "auth_api_token",
] as const;

type Cell = string | number | bigint | Buffer | null;
type Row = Record<string, Cell>;

/** One table's copy: where it comes from, how a batch of its rows is written, what is checked. */
interface Copy {
  readonly file: "ingest.db" | "alarms.db" | "tasks.db" | "registry.db" | "tokens.db";
  readonly table: string;
  readonly target: (typeof TARGET_TABLES)[number];
  /** The source rows, in the order they are to be inserted. */
  readonly select: string;
  /** The stores' own INSERT … SELECT FROM unnest($1 … $n), one array parameter per column. */
  readonly insert: string;
  /** A source row as the INSERT's values, in the order of its parameters. */
  readonly values: (row: Row) => unknown[];
  /** Payload or document column, for the tables whose bytes are checked as well. */
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
    ...taskCopies(),
    ...registryCopies(),
    ...authCopies(),
  ];
}

/**
 * tokens.db's tables (tasks/auth/tokens.ts, users.ts) into migration 7's, row for row: password
 * hashes, session and token hashes and times as the file holds them (no secret is in it to
 * copy: the sessions and tokens people hold go on working). The hashes are checked byte for
 * byte in total, like documents. A file from before user accounts has no users or sessions and
 * tokens of no user.
 */
function authCopies(): Copy[] {
  const copy = (
    table: string,
    target: Copy["target"],
    columns: ReadonlyArray<readonly [name: string, type: string]>,
    order: string,
    payload: string,
  ): Copy => rowCopy("tokens.db", table, target, columns, order, payload);
  return [
    copy(
      "app_user",
      "auth_user",
      [
        ["id", "text"],
        ["name", "text"],
        ["badge", "text"],
        ["roles", "text"],
        ["scope", "text"],
        ["team", "text"],
        ["password", "text"],
        ["disabled", "boolean"],
        ["created_ms", "bigint"],
        ["updated_ms", "bigint"],
      ],
      "id",
      "password",
    ),
    copy(
      "user_session",
      "auth_session",
      [
        ["hash", "text"],
        ["user_id", "text"],
        ["csrf", "text"],
        ["created_ms", "bigint"],
        ["last_ms", "bigint"],
        ["expires_ms", "bigint"],
      ],
      "hash",
      "hash",
    ),
    copy(
      "api_token",
      "auth_api_token",
      [
        ["id", "text"],
        ["name", "text"],
        ["role", "text"],
        ["hash", "text"],
        ["created_ms", "bigint"],
        ["revoked_ms", "bigint"],
        ["user_id", "text"],
      ],
      "created_ms, id",
      "hash",
    ),
  ];
}

/**
 * registry.db's tables (registry/store.ts) into migration 6's, row for row: records, secret hashes
 * and registration times as the file holds them, sites before the devices that name them, parties
 * before their sites.
 */
function registryCopies(): Copy[] {
  const copy = (
    table: string,
    columns: ReadonlyArray<readonly [name: string, type: string]>,
    order: string,
    payload?: string,
  ): Copy =>
    rowCopy("registry.db", table, `registry_${table}` as Copy["target"], columns, order, payload);
  return [
    copy(
      "site",
      [
        ["id", "text"],
        ["type", "text"],
        ["doc", "text"],
      ],
      "id",
      "doc",
    ),
    copy(
      "device",
      [
        ["id", "text"],
        ["kind", "text"],
        ["site_id", "text"],
        ["enabled", "boolean"],
        ["secret_hash", "text"],
        ["doc", "text"],
        ["created_at", "text"],
      ],
      "id",
      "doc",
    ),
    copy(
      "device_generation",
      [
        ["id", "text"],
        ["generation", "integer"],
        ["registered_at", "text"],
      ],
      "id",
    ),
    copy(
      "service_account",
      [
        ["name", "text"],
        ["role", "text"],
        ["secret_hash", "text"],
        ["doc", "text"],
        ["created_at", "text"],
      ],
      "name",
      "doc",
    ),
    copy(
      "party",
      [
        ["key", "text"],
        ["credit_code", "text"],
        ["name", "text"],
        ["doc", "text"],
      ],
      "key",
      "doc",
    ),
    copy(
      "party_site",
      [
        ["site_id", "text"],
        ["party_key", "text"],
      ],
      "site_id",
    ),
  ];
}

/**
 * A table copied row for row: each of `columns` (name, PostgreSQL type) as the file holds it, a
 * boolean from SQLite's 0/1, a number from its integer; a column the file lacks (written before
 * it existed) as null.
 */
function rowCopy(
  file: Copy["file"],
  table: string,
  target: Copy["target"],
  columns: ReadonlyArray<readonly [name: string, type: string]>,
  order: string,
  payload?: string,
): Copy {
  const numeric = new Set(["integer", "bigint"]);
  return {
    file,
    table,
    target,
    select: `SELECT * FROM ${table} ORDER BY ${order}`,
    insert: `INSERT INTO ${target} (${columns.map(([c]) => c).join(", ")})
      SELECT * FROM unnest(${columns.map(([, type], i) => `$${i + 1}::${type}[]`).join(", ")})`,
    values: (r) =>
      columns.map(([c, type]) => {
        const cell = r[c] ?? null;
        if (cell === null) return null;
        return type === "boolean" ? num(cell) !== 0 : numeric.has(type) ? num(cell) : cell;
      }),
    ...(payload === undefined ? {} : { payload }),
  };
}

/** The bytes of a payload (bytea) or a document (text, as UTF-8). */
const byteLength = (cell: Cell | undefined): number =>
  Buffer.isBuffer(cell) ? cell.length : Buffer.byteLength(String(cell ?? ""), "utf8");

/**
 * tasks.db's tables (tasks/store.ts) into migration 5's. A task's side columns are computed from
 * its document as the PostgreSQL store writes them (taskColumns: a file from before some of them
 * existed has them empty until its next open); its party key and re-check due are the file's.
 */
function taskCopies(): Copy[] {
  const text = (r: Row, column: string) => (r[column] === null ? null : String(r[column]));
  const optionalNum = (r: Row, column: string) => (r[column] === null ? null : num(r[column]));
  return [
    {
      file: "tasks.db",
      table: "task",
      target: "task",
      select: "SELECT id, party_key, recheck_due_ms, doc FROM task ORDER BY id",
      insert: `INSERT INTO task (id, kind, state, open, rule_id, subject_type, subject_id, site_id,
          district, filed_ms, updated_ms, sla_flagged, party_key, recheck_due_ms, doc, street,
          grid_cell, level, level_index, sla_due_ms, party_name)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::text[],
          $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
          $12::boolean[], $13::text[], $14::bigint[], $15::text[], $16::text[], $17::text[],
          $18::text[], $19::integer[], $20::bigint[], $21::text[])`,
      values: (r) =>
        taskColumns(JSON.parse(String(r["doc"])) as Task, {
          partyKey: text(r, "party_key"),
          recheckDueMs: optionalNum(r, "recheck_due_ms"),
          doc: String(r["doc"]),
        }),
      payload: "doc",
    },
    {
      file: "tasks.db",
      table: "task_link",
      target: "task_link",
      select: "SELECT subject_type, subject_id, rule_id, task_id FROM task_link ORDER BY rowid",
      insert: `INSERT INTO task_link (subject_type, subject_id, rule_id, task_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
      values: (r) => [r["subject_type"], r["subject_id"], r["rule_id"], r["task_id"]],
    },
    {
      file: "tasks.db",
      table: "audit",
      target: "task_audit",
      select: "SELECT * FROM audit ORDER BY id",
      insert: `INSERT INTO task_audit (id, task_id, at_ms, actor, action, from_state, to_state, detail)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
          $6::text[], $7::text[], $8::text[])`,
      values: (r) => [
        num(r["id"]),
        r["task_id"],
        num(r["at_ms"]),
        r["actor"],
        r["action"],
        text(r, "from_state"),
        text(r, "to_state"),
        r["detail"],
      ],
      payload: "detail",
    },
    {
      file: "tasks.db",
      table: "evidence",
      target: "task_evidence",
      select: "SELECT * FROM evidence ORDER BY task_id, sequence",
      insert: `INSERT INTO task_evidence (task_id, sequence, created_ms, hash, package)
        SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::text[])`,
      values: (r) => [
        r["task_id"],
        num(r["sequence"]),
        num(r["created_ms"]),
        r["hash"],
        r["package"],
      ],
      payload: "package",
    },
    {
      file: "tasks.db",
      table: "event",
      target: "task_event",
      select: "SELECT * FROM event ORDER BY id",
      insert: `INSERT INTO task_event (id, task_id, at_ms, payload)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[])`,
      values: (r) => [num(r["id"]), r["task_id"], num(r["at_ms"]), r["payload"]],
      payload: "payload",
    },
    {
      file: "tasks.db",
      table: "outbox",
      target: "task_outbox",
      select: "SELECT * FROM outbox ORDER BY id",
      insert: `INSERT INTO task_outbox (id, event_id, target, attempts, next_ms, last_error, created_ms)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::bigint[],
          $6::text[], $7::bigint[])`,
      values: (r) => [
        num(r["id"]),
        num(r["event_id"]),
        r["target"],
        num(r["attempts"]),
        num(r["next_ms"]),
        text(r, "last_error"),
        num(r["created_ms"]),
      ],
    },
    {
      file: "tasks.db",
      table: "outbox_dead",
      target: "task_outbox_dead",
      select: "SELECT * FROM outbox_dead ORDER BY id",
      insert: `INSERT INTO task_outbox_dead (id, event_id, target, attempts, last_error, created_ms,
          dead_ms, why)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::text[],
          $6::bigint[], $7::bigint[], $8::text[])`,
      values: (r) => [
        num(r["id"]),
        num(r["event_id"]),
        r["target"],
        num(r["attempts"]),
        text(r, "last_error"),
        num(r["created_ms"]),
        num(r["dead_ms"]),
        r["why"],
      ],
    },
    {
      file: "tasks.db",
      table: "complaint",
      target: "task_complaint",
      select: "SELECT * FROM complaint ORDER BY platform, complaint_id",
      insert: `INSERT INTO task_complaint (platform, complaint_id, task_id, received_ms, contact,
          created_ms)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
          $6::bigint[])`,
      values: (r) => [
        r["platform"],
        r["complaint_id"],
        r["task_id"],
        num(r["received_ms"]),
        text(r, "contact"),
        num(r["created_ms"]),
      ],
    },
    {
      file: "tasks.db",
      table: "attachment",
      target: "task_attachment",
      select: "SELECT * FROM attachment ORDER BY task_id, sha256",
      insert: `INSERT INTO task_attachment (task_id, sha256, filename, type, size, actor, at_ms)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
          $6::text[], $7::bigint[])`,
      values: (r) => [
        r["task_id"],
        r["sha256"],
        r["filename"],
        r["type"],
        num(r["size"]),
        r["actor"],
        num(r["at_ms"]),
      ],
    },
  ];
}

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
