import type Database from "better-sqlite3";
import {
  type Attachment,
  type AttachmentType,
  type AuditAction,
  type AuditEntry,
  type EvidencePackage,
  type Task,
  type TaskCursor,
  type TaskEvent,
  type TaskKind,
  type TaskSort,
  TaskState,
} from "../contracts/index.js";
import { type Held, holdWrite, openSqlite, Statements } from "../infra/sqlite-file.js";
import type { OutboxFence, OutboxRow } from "./notify/outbox.js";

/*
 * The task service's durable state in SQLite (`{dataDir}/tasks.db`):
 * - task: one row per task, the whole task as JSON plus the columns the API filters on; a partial
 *   unique index keeps one open task per (subject, rule) even if the code had a bug;
 * - audit: the append-only audit trail (no UPDATE or DELETE is ever issued on it);
 * - evidence: sealed evidence packages, append-only (triggers refuse UPDATE and DELETE): format 2
 *   (signed, contracts/model/evidence.ts) since packages were signed; format 1 rows sealed
 *   before stay as they were, readable and hash-checkable;
 * - event: every task change as published (SSE replay, MQTT, webhooks read it from here);
 * - outbox / outbox_dead: notifications to deliver, written in the same transaction as the
 *   change, so a crash or an outage of a receiver loses none.
 *
 * WAL with synchronous=FULL: a task change is on disk when its transaction returns (an
 * enforcement record must survive a power cut; tasks change a few times a minute, not 20k/s).
 */
/** The SLA due of a task without one (closed, or its timer not started): after every instant. */
export const NO_DUE = Number.MAX_SAFE_INTEGER;
/** The version of the side columns `saveTask` writes; rows below it are refilled at open. */
const SIDE_COLUMNS_VERSION = 1;

const MIGRATIONS = [
  `CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
   INSERT INTO counter (name, value) VALUES ('task', 0);
   CREATE TABLE task (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     state TEXT NOT NULL,
     open INTEGER NOT NULL,
     rule_id TEXT NOT NULL,
     subject_type TEXT NOT NULL,
     subject_id TEXT NOT NULL,
     site_id TEXT,
     district TEXT,
     filed_ms INTEGER NOT NULL,
     updated_ms INTEGER NOT NULL,
     sla_flagged INTEGER NOT NULL DEFAULT 0,
     party_key TEXT,
     recheck_due_ms INTEGER,
     doc TEXT NOT NULL
   );
   CREATE UNIQUE INDEX task_one_open ON task(subject_type, subject_id, rule_id) WHERE open = 1;
   CREATE INDEX task_filed ON task(filed_ms);
   CREATE INDEX task_party ON task(party_key, filed_ms) WHERE party_key IS NOT NULL;
   CREATE INDEX task_recheck ON task(recheck_due_ms) WHERE recheck_due_ms IS NOT NULL;
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     task_id TEXT NOT NULL,
     at_ms INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     from_state TEXT,
     to_state TEXT,
     detail TEXT NOT NULL
   );
   CREATE INDEX audit_task ON audit(task_id, id);
   CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
   CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
   CREATE TABLE evidence (
     task_id TEXT NOT NULL,
     sequence INTEGER NOT NULL,
     created_ms INTEGER NOT NULL,
     hash TEXT NOT NULL,
     package TEXT NOT NULL,
     PRIMARY KEY (task_id, sequence)
   ) WITHOUT ROWID;
   CREATE TABLE event (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     task_id TEXT NOT NULL,
     at_ms INTEGER NOT NULL,
     payload TEXT NOT NULL
   );
   CREATE TABLE outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id INTEGER NOT NULL,
     target TEXT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_ms INTEGER NOT NULL,
     last_error TEXT,
     created_ms INTEGER NOT NULL
   );
   CREATE INDEX outbox_target ON outbox(target, id);
   CREATE TABLE outbox_dead (
     id INTEGER PRIMARY KEY,
     event_id INTEGER NOT NULL,
     target TEXT NOT NULL,
     attempts INTEGER NOT NULL,
     last_error TEXT,
     created_ms INTEGER NOT NULL,
     dead_ms INTEGER NOT NULL,
     why TEXT NOT NULL
   );`,
  // Evidence is append-only, as the audit trail: a sealed package is never changed or removed.
  `CREATE TRIGGER evidence_append_only_update BEFORE UPDATE ON evidence
     BEGIN SELECT RAISE(ABORT, 'evidence packages are append-only'); END;
   CREATE TRIGGER evidence_append_only_delete BEFORE DELETE ON evidence
     BEGIN SELECT RAISE(ABORT, 'evidence packages are append-only'); END;`,
  // Incidents: one enforcement case per party and episode holds the violations of several rules
  // and sites; each (subject, rule) it holds besides its own points at it here.
  `CREATE TABLE task_link (
     subject_type TEXT NOT NULL,
     subject_id TEXT NOT NULL,
     rule_id TEXT NOT NULL,
     task_id TEXT NOT NULL,
     PRIMARY KEY (subject_type, subject_id, rule_id, task_id)
   );
   CREATE INDEX task_open_party ON task(party_key, filed_ms) WHERE open = 1 AND party_key IS NOT NULL;`,
  // Complaints from hotline platforms: one per (platform, platform's complaint id), the task it
  // became, and the complainant's contact (kept here only: never on the task or sent on).
  `CREATE TABLE complaint (
     platform TEXT NOT NULL,
     complaint_id TEXT NOT NULL,
     task_id TEXT NOT NULL,
     received_ms INTEGER NOT NULL,
     contact TEXT,
     created_ms INTEGER NOT NULL,
     PRIMARY KEY (platform, complaint_id)
   ) WITHOUT ROWID;`,
  // The console's task queue (issue #19): side columns for the filters and sorts that read the
  // JSON before (street, grid cell, level, SLA due, party name), and indexes for the open queue.
  // Rows written before are filled from their JSON at open (`cols_v` < SIDE_COLUMNS_VERSION).
  `ALTER TABLE task ADD COLUMN street TEXT;
   ALTER TABLE task ADD COLUMN grid_cell TEXT;
   ALTER TABLE task ADD COLUMN level TEXT;
   ALTER TABLE task ADD COLUMN level_index INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE task ADD COLUMN sla_due_ms INTEGER;
   ALTER TABLE task ADD COLUMN party_name TEXT;
   ALTER TABLE task ADD COLUMN cols_v INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX task_filed_id ON task(filed_ms, id);
   CREATE INDEX task_open_filed ON task(open, filed_ms, id);
   CREATE INDEX task_open_level ON task(open, level_index, filed_ms, id);
   CREATE INDEX task_open_sla ON task(open, ifnull(sla_due_ms, ${NO_DUE}), id);
   CREATE INDEX task_district ON task(district, open, filed_ms);
   CREATE INDEX task_street ON task(street, open, filed_ms) WHERE street IS NOT NULL;
   CREATE INDEX task_grid ON task(grid_cell, open, filed_ms) WHERE grid_cell IS NOT NULL;
   CREATE INDEX task_cols_v ON task(cols_v);`,
  // Attachments (field photos, documents): one row per (task, file), append-only like the audit
  // trail; the file itself is under {dataDir}/attachments, named by its SHA-256.
  `CREATE TABLE attachment (
     task_id TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     filename TEXT NOT NULL,
     type TEXT NOT NULL,
     size INTEGER NOT NULL,
     actor TEXT NOT NULL,
     at_ms INTEGER NOT NULL,
     PRIMARY KEY (task_id, sha256)
   ) WITHOUT ROWID;
   CREATE TRIGGER attachment_append_only_update BEFORE UPDATE ON attachment
     BEGIN SELECT RAISE(ABORT, 'attachments are append-only'); END;
   CREATE TRIGGER attachment_append_only_delete BEFORE DELETE ON attachment
     BEGIN SELECT RAISE(ABORT, 'attachments are append-only'); END;`,
];

/**
 * The one delivery lease token of the embedded store (claimOutbox). tasks.db is one process's:
 * one citywatch runs on a data directory, and nodes that share their state share PostgreSQL
 * instead (store-postgres.ts). There is no other node to keep off a target, so every claim is
 * granted under this token, which never changes; a write fenced by any other token (one that
 * PostgreSQL issued, say) is still refused, so the contract holds as far as it can mean anything
 * here. A table of leases would add a crash's leftover row to expire, and nothing else.
 */
export const SQLITE_OUTBOX_TOKEN = 1;

export const KIND_PREFIX: Readonly<Record<TaskKind, string>> = {
  enforcement: "enf",
  emergency: "emg",
  maintenance: "mnt",
  environmental: "env",
};

export interface NewAudit {
  readonly taskId: string;
  readonly atMs: number;
  readonly actor: string;
  readonly action: AuditAction;
  readonly from?: TaskState | undefined;
  readonly to?: TaskState | undefined;
  readonly detail: string;
}

/** A complaint taken in, with the task it became. */
export interface NewComplaint {
  readonly platform: string;
  readonly complaintId: string;
  readonly taskId: string;
  readonly receivedMs: number;
  /** The complainant's contact (kept here only), or undefined. */
  readonly contact: unknown;
  readonly createdMs: number;
}

export type { TaskCursor, TaskSort };

export interface TaskFilter {
  readonly kind?: TaskKind | undefined;
  /** One state, `open` (any but closed), or several (any of them). */
  readonly state?: TaskState | "open" | readonly (TaskState | "open")[] | undefined;
  readonly siteId?: string | undefined;
  readonly district?: string | undefined;
  readonly street?: string | undefined;
  readonly gridCell?: string | undefined;
  /** Emergency (or enforcement) level names: any of them. */
  readonly levels?: readonly string[] | undefined;
  /** The party's key (its credit code, or the site when it has none). */
  readonly party?: string | undefined;
  readonly ruleId?: string | undefined;
  readonly flagged?: boolean | undefined;
  /** true: open and past its SLA due at `nowMs`; false: not. */
  readonly overdue?: boolean | undefined;
  /** The instant `overdue` is judged at (default: the wall clock). */
  readonly nowMs?: number | undefined;
  /** Task id (case number) or party key prefix, or part of the party's name; case-insensitive. */
  readonly search?: string | undefined;
  readonly fromMs?: number | undefined;
  readonly toMs?: number | undefined;
  /** Only tasks routed to these districts, streets or grid cells (a user's scope). */
  readonly scope?:
    | {
        readonly districts: readonly string[];
        readonly streets: readonly string[];
        readonly gridCells: readonly string[];
      }
    | undefined;
  /** Default -filedAt. */
  readonly sort?: TaskSort | undefined;
  /** Continue after this position (its sort must be the query's). */
  readonly after?: TaskCursor | undefined;
  readonly limit: number;
}

/** A page of the list and, when more tasks follow, where the next page starts. */
export interface TaskPage {
  readonly tasks: Task[];
  readonly next?: TaskCursor | undefined;
}

export const OPEN_STATES: readonly TaskState[] = TaskState.options.filter((s) => s !== "closed");

/** ORDER BY, the keyset condition after a cursor, and the cursor keys of a row, per sort. */
const SORTS: Readonly<
  Record<TaskSort, { order: string; after: string; keys: (r: TaskKeyRow) => number[] }>
> = {
  "-filedAt": {
    order: "filed_ms DESC, id DESC",
    after: "(filed_ms, id) < (@k0, @afterId)",
    keys: (r) => [r.filed_ms],
  },
  filedAt: {
    order: "filed_ms ASC, id ASC",
    after: "(filed_ms, id) > (@k0, @afterId)",
    keys: (r) => [r.filed_ms],
  },
  slaDue: {
    order: `ifnull(sla_due_ms, ${NO_DUE}) ASC, id ASC`,
    after: `(ifnull(sla_due_ms, ${NO_DUE}), id) > (@k0, @afterId)`,
    keys: (r) => [r.due],
  },
  level: {
    order: "level_index DESC, filed_ms DESC, id DESC",
    after: "(level_index, filed_ms, id) < (@k0, @k1, @afterId)",
    keys: (r) => [r.level_index, r.filed_ms],
  },
};

interface TaskKeyRow {
  id: string;
  filed_ms: number;
  level_index: number;
  due: number;
  doc: string;
}

/** `%` `_` and `\` taken literally in a LIKE pattern (ESCAPE '\'). */
export const likeLiteral = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** The side columns of a task (filters and sorts of the list), from its document. */
export function sideColumns(task: Task) {
  const due = task.state === "closed" ? undefined : (task.sla.handleBy ?? task.sla.closeBy);
  return {
    street: task.routing.street ?? null,
    gridCell: task.routing.gridCell ?? null,
    level: task.level ?? null,
    levelIndex: task.levelIndex,
    slaDueMs: due === undefined ? null : Date.parse(due),
    partyName: task.graduated?.party.name ?? null,
    colsV: SIDE_COLUMNS_VERSION,
  };
}

/*
 * Rows of both task stores (tasks/store-postgres.ts too): integers are numbers in SQLite and, as
 * bigint columns, strings from PostgreSQL's driver.
 */
type Int = number | string;

/** An attachment's row. */
export interface AttachmentRow {
  task_id: string;
  sha256: string;
  filename: string;
  type: AttachmentType;
  size: Int;
  actor: string;
  at_ms: Int;
}

export const attachmentOf = (r: AttachmentRow): Attachment => ({
  taskId: r.task_id,
  sha256: r.sha256,
  filename: r.filename,
  type: r.type,
  size: Number(r.size),
  by: r.actor,
  at: new Date(Number(r.at_ms)).toISOString(),
});

/** An audit entry's row. */
export interface AuditRow {
  id: Int;
  task_id: string;
  at_ms: Int;
  actor: string;
  action: AuditAction;
  from_state: TaskState | null;
  to_state: TaskState | null;
  detail: string;
}

export const auditEntry = (r: AuditRow): AuditEntry => ({
  id: Number(r.id),
  taskId: r.task_id,
  at: new Date(Number(r.at_ms)).toISOString(),
  actor: r.actor,
  action: r.action,
  ...(r.from_state === null ? {} : { from: r.from_state }),
  ...(r.to_state === null ? {} : { to: r.to_state }),
  detail: r.detail,
});

/**
 * An audit entry's text is kept as written, but PostgreSQL's text cannot hold the NUL character
 * (U+0000): both stores refuse it, so an entry one keeps the other keeps too. The API refuses it
 * in every request (cli/runtime/api.ts), so only a bug reaches this.
 */
export function checkAuditText(entry: Pick<NewAudit, "actor" | "detail">): void {
  for (const [field, text] of [
    ["actor", entry.actor],
    ["detail", entry.detail],
  ] as const) {
    if (text.includes("\u0000")) {
      throw new RangeError(`audit ${field}: the NUL character (U+0000) cannot be stored`);
    }
  }
}

/** An audit entry's values in the column order of both stores' INSERT, its text checked. */
export function auditValues(entry: NewAudit): unknown[] {
  checkAuditText(entry);
  const { taskId, atMs, actor, action, from, to, detail } = entry;
  return [taskId, atMs, actor, action, from ?? null, to ?? null, detail];
}

/** A fenced write's lease holds in the embedded store: no fence, or the one token it issues. */
const fenceHolds = (fence: OutboxFence | undefined): boolean =>
  fence === undefined || fence.token === SQLITE_OUTBOX_TOKEN;

/**
 * What both stores refuse of an outbox lease's claim or release: an empty target or holder, a
 * TTL that is not a whole number of milliseconds from 1 to a day.
 */
export function checkLeaseArguments(target: string, holder: string, ttlMs?: number): void {
  if (target === "" || holder === "") {
    throw new RangeError("an outbox lease needs a target and a holder");
  }
  if (ttlMs !== undefined && !(Number.isSafeInteger(ttlMs) && ttlMs > 0 && ttlMs <= 86_400_000)) {
    throw new RangeError("an outbox lease's TTL is a whole number of milliseconds, 1 to a day");
  }
}

export class TaskStore {
  private readonly db: Database.Database;
  private readonly statements: Statements;

  constructor(readonly file: string) {
    this.db = openSqlite(file, { synchronous: "FULL", migrations: MIGRATIONS });
    this.statements = new Statements(this.db);
    this.fillSideColumns();
  }

  /**
   * Fill the side columns of rows written before they existed (or by an older version of
   * `sideColumns`) from their JSON, 1,000 rows per transaction. Idempotent: a filled row has
   * `cols_v` = SIDE_COLUMNS_VERSION and is not read again.
   */
  private fillSideColumns(): number {
    let filled = 0;
    for (;;) {
      const rows = this.stmt("SELECT id, doc FROM task WHERE cols_v < ? LIMIT 1000").all(
        SIDE_COLUMNS_VERSION,
      ) as Array<{ id: string; doc: string }>;
      if (rows.length === 0) return filled;
      this.transaction(() => {
        for (const row of rows) {
          this.stmt(
            `UPDATE task SET street = @street, grid_cell = @gridCell, level = @level,
               level_index = @levelIndex, sla_due_ms = @slaDueMs, party_name = @partyName,
               cols_v = @colsV WHERE id = @id`,
          ).run({ id: row.id, ...sideColumns(JSON.parse(row.doc) as Task) });
        }
      });
      filled += rows.length;
    }
  }

  private stmt(sql: string): Database.Statement {
    return this.statements.get(sql);
  }

  close(): void {
    this.db.close();
  }

  /** Run `fn` in one transaction: all of it is durable when this returns, or none of it. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Open a write transaction to end later, for one that awaits between its statements
   * (asyncTaskStore): the caller keeps every other use of the store out until it ends.
   */
  hold(): Held {
    return holdWrite(this.db);
  }

  /** A new task id: `enf-000001`, `emg-000002`, `mnt-000003` (one sequence for all kinds). */
  nextTaskId(kind: TaskKind): string {
    const row = this.stmt(
      "UPDATE counter SET value = value + 1 WHERE name = 'task' RETURNING value",
    ).get() as { value: number };
    return `${KIND_PREFIX[kind]}-${String(row.value).padStart(6, "0")}`;
  }

  /** Insert or replace a task row (the JSON document and its filter columns). */
  saveTask(
    task: Task,
    extra: { partyKey?: string | undefined; recheckDueMs?: number | undefined },
  ): void {
    this.stmt(
      `INSERT INTO task (id, kind, state, open, rule_id, subject_type, subject_id, site_id, district,
                         filed_ms, updated_ms, sla_flagged, party_key, recheck_due_ms, doc,
                         street, grid_cell, level, level_index, sla_due_ms, party_name, cols_v)
       VALUES (@id, @kind, @state, @open, @ruleId, @subjectType, @subjectId, @siteId, @district,
               @filedMs, @updatedMs, @slaFlagged, @partyKey, @recheckDueMs, @doc,
               @street, @gridCell, @level, @levelIndex, @slaDueMs, @partyName, @colsV)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state, open = excluded.open,
         updated_ms = excluded.updated_ms, sla_flagged = excluded.sla_flagged,
         party_key = excluded.party_key, recheck_due_ms = excluded.recheck_due_ms, doc = excluded.doc,
         street = excluded.street, grid_cell = excluded.grid_cell, level = excluded.level,
         level_index = excluded.level_index, sla_due_ms = excluded.sla_due_ms,
         party_name = excluded.party_name, cols_v = excluded.cols_v`,
    ).run({
      id: task.id,
      kind: task.kind,
      state: task.state,
      open: task.state === "closed" ? 0 : 1,
      ruleId: task.rule.id,
      subjectType: task.subject.type,
      subjectId: task.subject.id,
      siteId: task.siteId ?? null,
      district: task.routing.district ?? null,
      filedMs: Date.parse(task.filedAt),
      updatedMs: Date.parse(task.updatedAt),
      slaFlagged: task.sla.flags.length > 0 ? 1 : 0,
      partyKey: extra.partyKey ?? null,
      recheckDueMs: extra.recheckDueMs ?? null,
      doc: JSON.stringify(task),
      ...sideColumns(task),
    });
  }

  task(id: string): Task | undefined {
    const row = this.stmt("SELECT doc FROM task WHERE id = ?").get(id) as
      { doc: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.doc) as Task);
  }

  /** The open task of (subject, rule), if any: its own, or the incident that holds it. */
  openTask(subjectType: string, subjectId: string, ruleId: string): Task | undefined {
    const row = this.stmt(
      `SELECT doc FROM task WHERE subject_type = @t AND subject_id = @s AND rule_id = @r AND open = 1
       UNION ALL
       SELECT task.doc FROM task_link JOIN task ON task.id = task_link.task_id
         WHERE task_link.subject_type = @t AND task_link.subject_id = @s AND task_link.rule_id = @r
           AND task.open = 1
       LIMIT 1`,
    ).get({ t: subjectType, s: subjectId, r: ruleId }) as { doc: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.doc) as Task);
  }

  /** Record that an incident's task holds (subject, rule) besides its own. */
  linkViolation(taskId: string, subjectType: string, subjectId: string, ruleId: string): void {
    this.stmt(
      "INSERT OR IGNORE INTO task_link (subject_type, subject_id, rule_id, task_id) VALUES (?, ?, ?, ?)",
    ).run(subjectType, subjectId, ruleId, taskId);
  }

  /** The party's open enforcement case (its newest), if any. */
  openIncident(partyKey: string): Task | undefined {
    const row = this.stmt(
      `SELECT doc FROM task WHERE party_key = ? AND open = 1 AND kind = 'enforcement'
       ORDER BY filed_ms DESC, id DESC LIMIT 1`,
    ).get(partyKey) as { doc: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.doc) as Task);
  }

  /**
   * A party's enforcement cases filed at or after `sinceMs`, other than `exceptId`, oldest first.
   * A case closed as false positive, sensor fault or exempt was no violation and is left out.
   */
  partyCases(partyKey: string, sinceMs: number, exceptId: string): Task[] {
    return (
      this.stmt(
        `SELECT doc FROM task WHERE party_key = ? AND filed_ms >= ? AND id != ?
           AND coalesce(json_extract(doc, '$.closure.reason'), '') NOT IN ('false_positive', 'sensor_fault', 'exempt')
         ORDER BY filed_ms, id`,
      ).all(partyKey, sinceMs, exceptId) as Array<{ doc: string }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  /** Tasks matching a filter, in its order, at most `limit` (see `queryTasks` for pages). */
  listTasks(filter: TaskFilter): Task[] {
    return this.queryTasks(filter).tasks;
  }

  /**
   * A page of the task list: the filter in SQL on the side columns (indexes task_open_*, task_
   * district/street/grid), in the filter's order with the task id breaking ties, at most `limit`
   * tasks after `after`; `next` names where the next page starts when more tasks match.
   * Keyset pagination: a task filed or changed between pages neither shifts nor repeats the
   * rest of the walk (a task whose sort key changes may move across the cursor, as in any
   * keyset walk).
   */
  queryTasks(filter: TaskFilter): TaskPage {
    const sort = SORTS[filter.sort ?? "-filedAt"];
    const where: string[] = [];
    const args: Record<string, string | number> = { limit: filter.limit + 1 };
    const add = (sql: string, name: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(sql);
      args[name] = value;
    };
    add("kind = @kind", "kind", filter.kind);
    const states = filter.state === undefined ? undefined : [filter.state].flat();
    if (states !== undefined) {
      const wanted = new Set(states.flatMap((s) => (s === "open" ? OPEN_STATES : [s])));
      const open = OPEN_STATES.every((s) => wanted.has(s));
      if (open && !wanted.has("closed")) where.push("open = 1");
      else if (!(open && wanted.has("closed"))) {
        where.push("state IN (SELECT value FROM json_each(@states))");
        args["states"] = JSON.stringify([...wanted]);
      }
    }
    add("site_id = @siteId", "siteId", filter.siteId);
    add("district = @district", "district", filter.district);
    add("street = @street", "street", filter.street);
    add("grid_cell = @gridCell", "gridCell", filter.gridCell);
    add("party_key = @party", "party", filter.party);
    add("rule_id = @ruleId", "ruleId", filter.ruleId);
    if (filter.levels !== undefined) {
      where.push("level IN (SELECT value FROM json_each(@levels))");
      args["levels"] = JSON.stringify(filter.levels);
    }
    add(
      "sla_flagged = @flagged",
      "flagged",
      filter.flagged === undefined ? undefined : filter.flagged ? 1 : 0,
    );
    if (filter.overdue !== undefined) {
      where.push(
        filter.overdue ? "sla_due_ms < @nowMs" : "(sla_due_ms IS NULL OR sla_due_ms >= @nowMs)",
      );
      args["nowMs"] = filter.nowMs ?? Date.now();
    }
    if (filter.search !== undefined) {
      where.push(`(id LIKE @prefix ESCAPE '\\' OR party_key LIKE @prefix ESCAPE '\\'
                   OR party_name LIKE @contains ESCAPE '\\')`);
      args["prefix"] = `${likeLiteral(filter.search)}%`;
      args["contains"] = `%${likeLiteral(filter.search)}%`;
    }
    add("filed_ms >= @fromMs", "fromMs", filter.fromMs);
    add("filed_ms < @toMs", "toMs", filter.toMs);
    if (filter.scope !== undefined) {
      where.push(`(district IN (SELECT value FROM json_each(@scopeDistricts))
        OR street IN (SELECT value FROM json_each(@scopeStreets))
        OR grid_cell IN (SELECT value FROM json_each(@scopeGrid)))`);
      args["scopeDistricts"] = JSON.stringify(filter.scope.districts);
      args["scopeStreets"] = JSON.stringify(filter.scope.streets);
      args["scopeGrid"] = JSON.stringify(filter.scope.gridCells);
    }
    if (filter.after !== undefined) {
      if (filter.after.sort !== (filter.sort ?? "-filedAt")) {
        throw new RangeError(`the cursor belongs to sort ${filter.after.sort}`);
      }
      where.push(sort.after);
      filter.after.keys.forEach((k, i) => (args[`k${i}`] = k));
      args["afterId"] = filter.after.id;
    }
    const sql = `SELECT id, filed_ms, level_index, ifnull(sla_due_ms, ${NO_DUE}) AS due, doc FROM task
                 ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`}
                 ORDER BY ${sort.order} LIMIT @limit`;
    const rows = this.stmt(sql).all(args) as TaskKeyRow[];
    const more = rows.length > filter.limit;
    const page = more ? rows.slice(0, filter.limit) : rows;
    const last = page[page.length - 1];
    return {
      tasks: page.map((r) => JSON.parse(r.doc) as Task),
      ...(more && last !== undefined
        ? { next: { sort: filter.sort ?? "-filedAt", keys: sort.keys(last), id: last.id } }
        : {}),
    };
  }

  /** Open tasks, for the SLA timers. */
  openTasks(): Task[] {
    return (this.stmt("SELECT doc FROM task WHERE open = 1").all() as Array<{ doc: string }>).map(
      (r) => JSON.parse(r.doc) as Task,
    );
  }

  /** Open tasks per kind (the open-tasks gauge). */
  openCounts(): Array<{ kind: string; n: number }> {
    return this.stmt(
      "SELECT kind, count(*) AS n FROM task WHERE open = 1 GROUP BY kind",
    ).all() as Array<{
      kind: string;
      n: number;
    }>;
  }

  /** Open tasks past an SLA limit. */
  flaggedTasks(): Task[] {
    return (
      this.stmt("SELECT doc FROM task WHERE open = 1 AND sla_flagged = 1").all() as Array<{
        doc: string;
      }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  /** Tasks whose graduated-response re-check is due. */
  dueRechecks(nowMs: number): Task[] {
    return (
      this.stmt("SELECT doc FROM task WHERE recheck_due_ms <= ? ORDER BY recheck_due_ms, id").all(
        nowMs,
      ) as Array<{ doc: string }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  appendAudit(entry: NewAudit): AuditEntry {
    const row = this.stmt(
      `INSERT INTO audit (task_id, at_ms, actor, action, from_state, to_state, detail)
       VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ).get(...auditValues(entry)) as AuditRow;
    return auditEntry(row);
  }

  audit(taskId: string): AuditEntry[] {
    return (
      this.stmt("SELECT * FROM audit WHERE task_id = ? ORDER BY id").all(taskId) as AuditRow[]
    ).map(auditEntry);
  }

  addEvidence(pkg: EvidencePackage, createdMs: number): void {
    this.stmt(
      "INSERT INTO evidence (task_id, sequence, created_ms, hash, package) VALUES (?, ?, ?, ?, ?)",
    ).run(pkg.taskId, pkg.sequence, createdMs, pkg.hash.value, JSON.stringify(pkg));
  }

  /** The number of a task's newest evidence package (0: none). */
  evidenceCount(taskId: string): number {
    return (
      this.stmt("SELECT coalesce(max(sequence), 0) AS n FROM evidence WHERE task_id = ?").get(
        taskId,
      ) as { n: number }
    ).n;
  }

  /**
   * A task's evidence package: the given one, or the newest. Format 2 (signed) or format 1
   * (sealed before packages were signed), as stored: verification checks its shape.
   */
  evidence(taskId: string, sequence?: number): EvidencePackage | undefined {
    const row = (
      sequence === undefined
        ? this.stmt(
            "SELECT package FROM evidence WHERE task_id = ? ORDER BY sequence DESC LIMIT 1",
          ).get(taskId)
        : this.stmt("SELECT package FROM evidence WHERE task_id = ? AND sequence = ?").get(
            taskId,
            sequence,
          )
    ) as { package: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.package) as EvidencePackage);
  }

  /** Record an event; its id is the event's (and the webhooks' idempotency key's) identity. */
  appendEvent(event: Omit<TaskEvent, "id">, atMs: number): TaskEvent {
    const row = this.stmt(
      "INSERT INTO event (task_id, at_ms, payload) VALUES (?, ?, ?) RETURNING id",
    ).get(event.task.id, atMs, JSON.stringify(event)) as { id: number };
    return { id: row.id, ...event };
  }

  event(id: number): TaskEvent | undefined {
    const row = this.stmt("SELECT id, payload FROM event WHERE id = ?").get(id) as
      { id: number; payload: string } | undefined;
    return row === undefined
      ? undefined
      : { id: row.id, ...(JSON.parse(row.payload) as Omit<TaskEvent, "id">) };
  }

  /** Events after `afterId`, oldest first (stream resume with Last-Event-ID). */
  eventsAfter(afterId: number, limit: number): TaskEvent[] {
    return (
      this.stmt("SELECT id, payload FROM event WHERE id > ? ORDER BY id LIMIT ?").all(
        afterId,
        limit,
      ) as Array<{
        id: number;
        payload: string;
      }>
    ).map((r) => ({ id: r.id, ...(JSON.parse(r.payload) as Omit<TaskEvent, "id">) }));
  }

  enqueue(eventId: number, target: string, nowMs: number): void {
    this.stmt("INSERT INTO outbox (event_id, target, next_ms, created_ms) VALUES (?, ?, ?, ?)").run(
      eventId,
      target,
      nowMs,
      nowMs,
    );
  }

  /** Pending notifications per target. */
  outboxDepths(): Map<string, number> {
    const rows = this.stmt(
      "SELECT target, count(*) AS n FROM outbox GROUP BY target",
    ).all() as Array<{
      target: string;
      n: number;
    }>;
    return new Map(rows.map((r) => [r.target, r.n]));
  }

  /** The oldest pending notification of a target: delivery is in order, one at a time per target. */
  outboxHead(target: string): OutboxRow | undefined {
    const row = this.stmt(
      "SELECT id, event_id, target, attempts, next_ms FROM outbox WHERE target = ? ORDER BY id LIMIT 1",
    ).get(target) as
      | { id: number; event_id: number; target: string; attempts: number; next_ms: number }
      | undefined;
    return row === undefined
      ? undefined
      : {
          id: row.id,
          eventId: row.event_id,
          target: row.target,
          attempts: row.attempts,
          nextMs: row.next_ms,
        };
  }

  /**
   * The delivery lease of `target`'s outbox: always granted, under SQLITE_OUTBOX_TOKEN (see
   * there). The arguments are checked as PostgreSQL's store would use them.
   */
  claimOutbox(target: string, holder: string, ttlMs: number): number {
    checkLeaseArguments(target, holder, ttlMs);
    return SQLITE_OUTBOX_TOKEN;
  }

  /** Nothing to end (every claim is granted); true when `token` is the one claims return. */
  releaseOutbox(target: string, holder: string, token: number): boolean {
    checkLeaseArguments(target, holder);
    return token === SQLITE_OUTBOX_TOKEN;
  }

  /**
   * Remove a delivered notification; false when it was already gone (moved to the dead outbox
   * meanwhile), or `fence` names another target or token.
   */
  delivered(outboxId: number, fence?: OutboxFence): boolean {
    if (!fenceHolds(fence)) return false;
    return (
      this.stmt("DELETE FROM outbox WHERE id = ? AND target = coalesce(?, target)").run(
        outboxId,
        fence?.target ?? null,
      ).changes > 0
    );
  }

  /** Record a failed attempt; false when the row is gone or the fence refused. */
  retryLater(
    outboxId: number,
    attempts: number,
    nextMs: number,
    error: string,
    fence?: OutboxFence,
  ): boolean {
    if (!fenceHolds(fence)) return false;
    return (
      this.stmt(
        `UPDATE outbox SET attempts = ?, next_ms = ?, last_error = ?
         WHERE id = ? AND target = coalesce(?, target)`,
      ).run(attempts, nextMs, error, outboxId, fence?.target ?? null).changes > 0
    );
  }

  /**
   * Move a notification to the dead outbox (kept for inspection, never delivered); false when it
   * was gone or the fence refused.
   */
  bury(outboxId: number, nowMs: number, why: string, fence?: OutboxFence): boolean {
    if (!fenceHolds(fence)) return false;
    const target = fence?.target ?? null;
    return this.transaction(() => {
      this.stmt(
        `INSERT INTO outbox_dead (id, event_id, target, attempts, last_error, created_ms, dead_ms, why)
         SELECT id, event_id, target, attempts, last_error, created_ms, ?, ? FROM outbox
         WHERE id = ? AND target = coalesce(?, target)`,
      ).run(nowMs, why, outboxId, target);
      return (
        this.stmt("DELETE FROM outbox WHERE id = ? AND target = coalesce(?, target)").run(
          outboxId,
          target,
        ).changes > 0
      );
    });
  }

  deadCount(): number {
    return (this.stmt("SELECT count(*) AS n FROM outbox_dead").get() as { n: number }).n;
  }

  /** The tasks filed in [fromMs, toMs), oldest first, without their audit trails (at most 400 days). */
  filedTasks(fromMs: number, toMs: number): Task[] {
    if (!(toMs > fromMs) || toMs - fromMs > 400 * 86_400_000) {
      throw new RangeError("filedTasks: the period must be positive and at most 400 days");
    }
    return (
      this.stmt(
        "SELECT doc FROM task WHERE filed_ms >= ? AND filed_ms < ? ORDER BY filed_ms, id",
      ).all(fromMs, toMs) as Array<{ doc: string }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  /**
   * The tasks filed in [fromMs, toMs), oldest first, each with its whole audit trail (the
   * assessment report): one query for the tasks (index task_filed), one for their audit entries
   * (index audit_task). The period is bounded to 400 days (a report covers at most 366): a
   * longer one is refused, so one call never reads years of tasks into memory.
   */
  filedBetween(fromMs: number, toMs: number): Array<{ task: Task; audit: AuditEntry[] }> {
    const tasks = this.filedTasks(fromMs, toMs);
    const audits = new Map<string, AuditEntry[]>(tasks.map((t) => [t.id, []]));
    const rows = this.stmt(
      `SELECT audit.* FROM audit
       WHERE audit.task_id IN (SELECT id FROM task WHERE filed_ms >= ? AND filed_ms < ?)
       ORDER BY audit.id`,
    ).all(fromMs, toMs) as AuditRow[];
    for (const row of rows) audits.get(row.task_id)?.push(auditEntry(row));
    return tasks.map((task) => ({ task, audit: audits.get(task.id) ?? [] }));
  }

  /** The task a platform's complaint became, if it was taken in before. */
  complaintTask(platform: string, complaintId: string): string | undefined {
    const row = this.stmt(
      "SELECT task_id FROM complaint WHERE platform = ? AND complaint_id = ?",
    ).get(platform, complaintId) as { task_id: string } | undefined;
    return row?.task_id;
  }

  /** Record a complaint and its task (inside the filing's transaction). */
  addComplaint(entry: NewComplaint): void {
    this.stmt(
      `INSERT INTO complaint (platform, complaint_id, task_id, received_ms, contact, created_ms)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ).run(
      entry.platform,
      entry.complaintId,
      entry.taskId,
      entry.receivedMs,
      entry.contact === undefined ? null : JSON.stringify(entry.contact),
      entry.createdMs,
    );
  }

  /**
   * Erase the complainants' contacts of complaints whose task closed (last changed) before
   * `closedBeforeMs` (tasks.complaints.contactRetentionMs); the complaint record stays. The count
   * erased.
   */
  eraseComplaintContacts(closedBeforeMs: number): number {
    return this.stmt(
      `UPDATE complaint SET contact = NULL
       WHERE contact IS NOT NULL
         AND task_id IN (SELECT id FROM task WHERE open = 0 AND updated_ms < ?)`,
    ).run(closedBeforeMs).changes;
  }

  /** A complaint's stored contact of the complainant (JSON), or undefined when none or erased. */
  complaintContact(platform: string, complaintId: string): unknown {
    const row = this.stmt(
      "SELECT contact FROM complaint WHERE platform = ? AND complaint_id = ?",
    ).get(platform, complaintId) as { contact: string | null } | undefined;
    return row?.contact == null ? undefined : (JSON.parse(row.contact) as unknown);
  }

  /** Open tasks at a site, newest first (a complaint links to the site's open case). */
  openTasksAtSite(siteId: string): Task[] {
    return (
      this.stmt(
        "SELECT doc FROM task WHERE site_id = ? AND open = 1 ORDER BY filed_ms DESC, id DESC",
      ).all(siteId) as Array<{ doc: string }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  // -------------------------------------------------------------------------------------------
  // Attachments

  /** Record a task's attachment (inside the upload's transaction); false when it was there. */
  addAttachment(a: Attachment): boolean {
    return (
      this.stmt(
        `INSERT OR IGNORE INTO attachment (task_id, sha256, filename, type, size, actor, at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(a.taskId, a.sha256, a.filename, a.type, a.size, a.by, Date.parse(a.at)).changes > 0
    );
  }

  /** How many attachments a task holds. */
  attachmentCount(taskId: string): number {
    return (
      this.stmt("SELECT count(*) AS n FROM attachment WHERE task_id = ?").get(taskId) as {
        n: number;
      }
    ).n;
  }

  /** A task's attachments, oldest first. */
  attachments(taskId: string): Attachment[] {
    return (
      this.stmt("SELECT * FROM attachment WHERE task_id = ? ORDER BY at_ms, sha256").all(
        taskId,
      ) as AttachmentRow[]
    ).map(attachmentOf);
  }

  /** One attachment of a task. */
  attachment(taskId: string, sha256: string): Attachment | undefined {
    const row = this.stmt("SELECT * FROM attachment WHERE task_id = ? AND sha256 = ?").get(
      taskId,
      sha256,
    ) as AttachmentRow | undefined;
    return row === undefined ? undefined : attachmentOf(row);
  }

  // -------------------------------------------------------------------------------------------
  // Credit record (issue #18 item 3): read-only

  /** Enforcement cases addressed to a party (all parties' when `partyKey` is absent), oldest first. */
  partyCaseHistory(partyKey?: string): Task[] {
    return (
      this.stmt(
        `SELECT doc FROM task WHERE kind = 'enforcement' AND party_key IS NOT NULL
           AND (@key IS NULL OR party_key = @key)
         ORDER BY filed_ms, id`,
      ).all({ key: partyKey ?? null }) as Array<{ doc: string }>
    ).map((r) => JSON.parse(r.doc) as Task);
  }

  /** Audit entries of `actions` on enforcement cases addressed to a party (or any party), oldest first. */
  partyAuditEntries(actions: readonly AuditAction[], partyKey?: string): AuditEntry[] {
    return (
      this.stmt(
        `SELECT audit.* FROM audit JOIN task ON task.id = audit.task_id
         WHERE task.kind = 'enforcement' AND task.party_key IS NOT NULL
           AND (@key IS NULL OR task.party_key = @key)
           AND audit.action IN (SELECT value FROM json_each(@actions))
         ORDER BY audit.id`,
      ).all({ key: partyKey ?? null, actions: JSON.stringify(actions) }) as AuditRow[]
    ).map(auditEntry);
  }
}
