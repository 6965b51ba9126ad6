import type { Task } from "../../contracts/index.js";
import { parseTopic } from "../../contracts/index.js";
import { partitionOf, partitionOfSubject } from "../../cluster/partition.js";
import {
  INSERT_DEAD_LETTERS,
  RECOUNT_DEAD_LETTER_ACCOUNTS,
} from "../../ingest/dead-letters-postgres.js";
import { INSERT_INBOX } from "../../ingest/state-postgres.js";
import { UPSERT_ALARM_STATES } from "../../rules/alarm-store-postgres.js";
import { taskColumns } from "../../tasks/store-postgres.js";

/*
 * What `citywatch migrate --to postgres://…` (migrate-postgres.ts) copies: each SQLite table of a
 * data directory, where its rows go in PostgreSQL, how a batch of them is written (the stores' own
 * INSERT … SELECT FROM unnest), and which column's bytes are checked besides the row count.
 */

export const TARGET_TABLES = [
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

export type Cell = string | number | bigint | Buffer | null;
export type Row = Record<string, Cell>;

/** One table's copy: where it comes from, how a batch of its rows is written, what is checked. */
export interface Copy {
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
export function copies(
  partitions: number,
  siteOf: (deviceId: string) => string | undefined,
): Copy[] {
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
export const byteLength = (cell: Cell | undefined): number =>
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
