import type pg from "pg";
import type {
  Attachment,
  AuditAction,
  AuditEntry,
  EvidencePackage,
  Task,
  TaskEvent,
  TaskKind,
  TaskSort,
} from "../contracts/index.js";
import { PostgresStore } from "../infra/postgres/store-base.js";
import type { OutboxFence, OutboxRow } from "./notify/outbox.js";
import type { AsyncTaskStore } from "./store-port.js";
import {
  attachmentOf,
  type AttachmentRow,
  auditEntry,
  type AuditRow,
  auditValues,
  checkLeaseArguments,
  KIND_PREFIX,
  likeLiteral,
  type NewComplaint,
  OPEN_STATES,
  NO_DUE,
  sideColumns,
  type NewAudit,
  type TaskFilter,
  type TaskPage,
} from "./store.js";

/*
 * The task service's state in PostgreSQL (issue #21), shared by the nodes: the tables of the
 * embedded tasks.db (tasks/store.ts, whose doc comments say what each method means), prefixed
 * task_ (migration 5, infra/postgres/schema.ts). The same suite runs against both
 * (tests/integration/tasks/task-store.test.ts).
 *
 * What differs from SQLite, and why:
 * - Task numbers come from a counter row updated in the filing's transaction, not a sequence: a
 *   filing that rolls back gives its number back, so case numbers have no gaps, as in SQLite.
 *   Filings on several nodes take turns on that row (a few a minute; the lock lasts one
 *   transaction).
 * - Times, ids and sizes are bigint; pg hands them over as strings, converted here.
 * - A search is ILIKE under COLLATE "C": case-insensitive for ASCII letters alone, as SQLite's
 *   LIKE is.
 * - A statement inside a transaction runs under a savepoint: a refused one undoes only itself,
 *   as in SQLite (#query).
 * - Audit text cannot hold the NUL character (checkAuditText refuses it in both stores).
 * - Durability: a COMMIT returns once PostgreSQL has it on disk (synchronous_commit on, the
 *   server's default), as tasks.db's synchronous=FULL.
 * - The outbox's delivery leases (migration 8) are real: several nodes pump the outbox, one per
 *   target at a time (tasks/notify/outbox.ts). See CLAIM_OUTBOX and fenced().
 */

const MS = "* interval '1 millisecond'";

/*
 * One statement, correct when many nodes run it at once: the lease row is inserted (a target
 * never claimed, or released) or, on conflict, updated only if this holder holds it unexpired
 * (a renewal: its token kept) or it has expired (a takeover: the new token). ON CONFLICT locks
 * the row and checks the condition on its newest version, so of two nodes racing for a free or
 * expired lease one gets it and the other's condition fails against the winner's row: no row
 * returned. An expired lease is taken under a new token even by its own holder, so its writes
 * under the old token stay refused (another node may have held it in between). The sequence
 * value drawn for the VALUES row is spent by every claim, renewals too: tokens have gaps, never
 * repeats (a bigint lasts for ever at any rate of claims).
 */
const CLAIM_OUTBOX = `
INSERT INTO task_outbox_lease AS l (target, holder, token, expires_at)
VALUES ($1, $2, nextval('task_outbox_lease_token'), clock_timestamp() + $3::int ${MS})
ON CONFLICT (target) DO UPDATE
   SET holder = excluded.holder,
       token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                    THEN l.token ELSE excluded.token END,
       expires_at = excluded.expires_at
 WHERE (l.holder = excluded.holder AND l.expires_at > clock_timestamp())
    OR l.expires_at <= clock_timestamp()
RETURNING token`;

/**
 * The condition an outcome's statement adds for `fence`, its parameters numbered from `first`
 * on: the row is the fence's target's, and the lease row carries the token and has not expired
 * (by the database's clock at this statement, not at the transaction's start). The lease row is
 * share-locked: a takeover (ON CONFLICT's row lock) waits until the outcome commits, so the next
 * holder reads the outbox after it, and a row deleted as delivered is not sent again. No fence:
 * no condition (the bury of enqueue at the bound, inside a task change's transaction).
 */
function fenced(
  fence: OutboxFence | undefined,
  first: number,
): { readonly held: string; readonly args: unknown[] } {
  if (fence === undefined) return { held: "true", args: [] };
  const [target, token] = [`$${first}::text`, `$${first + 1}::bigint`];
  return {
    held: `target = ${target} AND EXISTS (SELECT 1 FROM task_outbox_lease
             WHERE target = ${target} AND token = ${token} AND expires_at > clock_timestamp()
             FOR SHARE)`,
    args: [fence.target, fence.token],
  };
}

const int = (value: string | number): number => Number(value);

/**
 * Text PostgreSQL can store: a NUL character (U+0000), which its text type cannot hold, becomes
 * U+FFFD. Only for what is shown or searched and kept whole elsewhere (a party's name, whose
 * task document keeps it) or diagnostics (a receiver's error): never an id or an audit entry.
 */
const storable = (text: string | null): string | null =>
  text === null ? null : text.replaceAll("\u0000", "\ufffd");

interface Sort {
  readonly order: string;
  /** The keyset condition after a cursor: `$k0`, `$k1`, `$id` stand for its keys and id. */
  readonly after: string;
  readonly keys: (r: TaskKeyRow) => number[];
}

const DUE = `coalesce(sla_due_ms, ${NO_DUE})`;

const SORTS: Readonly<Record<TaskSort, Sort>> = {
  "-filedAt": {
    order: "filed_ms DESC, id DESC",
    after: "(filed_ms, id) < ($k0, $id)",
    keys: (r) => [int(r.filed_ms)],
  },
  filedAt: {
    order: "filed_ms ASC, id ASC",
    after: "(filed_ms, id) > ($k0, $id)",
    keys: (r) => [int(r.filed_ms)],
  },
  slaDue: {
    order: `${DUE} ASC, id ASC`,
    after: `(${DUE}, id) > ($k0, $id)`,
    keys: (r) => [int(r.due)],
  },
  level: {
    order: "level_index DESC, filed_ms DESC, id DESC",
    after: "(level_index, filed_ms, id) < ($k0, $k1, $id)",
    keys: (r) => [r.level_index, int(r.filed_ms)],
  },
};

interface TaskKeyRow {
  id: string;
  filed_ms: string;
  level_index: number;
  due: string;
  doc: string;
}

const docs = (rows: ReadonlyArray<{ doc: string }>): Task[] =>
  rows.map((r) => JSON.parse(r.doc) as Task);

const AUDIT_COLUMNS = "id, task_id, at_ms, actor, action, from_state, to_state, detail";

/**
 * A task's row in the column order of saveTask's INSERT: the document (as written, when `doc` is
 * given) and the columns the queue filters and sorts on. `citywatch migrate` writes tasks.db's
 * tasks with it too.
 */
export function taskColumns(
  task: Task,
  extra: {
    partyKey?: string | null | undefined;
    recheckDueMs?: number | null | undefined;
    doc?: string | undefined;
  },
): unknown[] {
  const side = sideColumns(task);
  return [
    task.id,
    task.kind,
    task.state,
    task.state !== "closed",
    task.rule.id,
    task.subject.type,
    task.subject.id,
    task.siteId ?? null,
    task.routing.district ?? null,
    Date.parse(task.filedAt),
    Date.parse(task.updatedAt),
    task.sla.flags.length > 0,
    extra.partyKey ?? null,
    extra.recheckDueMs ?? null,
    extra.doc ?? JSON.stringify(task),
    storable(side.street),
    storable(side.gridCell),
    side.level,
    side.levelIndex,
    side.slaDueMs,
    storable(side.partyName),
  ];
}

/** The key of the lock every change of the tasks takes first (transaction()). */
const EVENT_ORDER_LOCK = "citywatch\u001ftask-changes";

export class PostgresTaskStore extends PostgresStore<PostgresTaskStore> implements AsyncTaskStore {
  protected another(): PostgresTaskStore {
    return new PostgresTaskStore(this.pool);
  }

  /**
   * Runs one statement. Inside a transaction it runs under a savepoint, so that a refused
   * statement undoes only itself, as in SQLite: the work may catch the refusal and go on (the
   * service records "evidence could not be sealed" and commits the rest), where PostgreSQL
   * would otherwise abort the whole transaction.
   */
  protected override async query(
    sql: string,
    args: readonly unknown[] = [],
  ): Promise<pg.QueryResult> {
    const db = this.db;
    if (!this.joined) return db.query(sql, args as unknown[]);
    // Not released: ROLLBACK TO names the newest savepoint of the name, the one just before this
    // statement, and the transaction's end releases them all. A RELEASE after every statement
    // would cost a third round trip (bench/cluster-tasks.ts: 29 against 20 for a filing).
    await db.query("SAVEPOINT task_statement");
    try {
      return await db.query(sql, args as unknown[]);
    } catch (error) {
      await db.query("ROLLBACK TO SAVEPOINT task_statement");
      throw error;
    }
  }

  /**
   * One change of the tasks, in one transaction. Each begins by waiting for one
   * transaction-scoped lock shared by every node (EVENT_ORDER_LOCK), so the changes commit one at
   * a time and their events take ids in commit order. Without it an event could become visible
   * after one with a larger id (two nodes' changes committing out of the order their ids were
   * drawn), and a deliverer that had already sent the larger would send the smaller after it: a
   * receiver would hear a task's events out of order. Taken first, before any other lock, so it
   * never closes a cycle with the row and key locks below. Its cost: the cluster files and moves
   * tasks one at a time (about 5-7 ms each, bench/cluster-tasks.ts), the ingest is untouched.
   */
  transaction<T>(work: (tx: AsyncTaskStore) => Promise<T>): Promise<T> {
    if (this.joined) return work(this);
    return this.within(async (tx) => {
      await tx.db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [
        EVENT_ORDER_LOCK,
      ]);
      return work(tx);
    });
  }

  /** The pool is the caller's: it ends it. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  async nextTaskId(kind: TaskKind): Promise<string> {
    const row = await this.row<{ value: string }>(
      "UPDATE task_counter SET value = value + 1 WHERE name = 'task' RETURNING value",
    );
    if (row === undefined) throw new Error("task_counter has no 'task' row (migration 5)");
    return `${KIND_PREFIX[kind]}-${row.value.padStart(6, "0")}`;
  }

  async saveTask(
    task: Task,
    extra: { partyKey?: string | undefined; recheckDueMs?: number | undefined },
  ): Promise<void> {
    await this.query(
      `INSERT INTO task (id, kind, state, open, rule_id, subject_type, subject_id, site_id, district,
                         filed_ms, updated_ms, sla_flagged, party_key, recheck_due_ms, doc,
                         street, grid_cell, level, level_index, sla_due_ms, party_name)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
               $16, $17, $18, $19, $20, $21)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state, open = excluded.open,
         updated_ms = excluded.updated_ms, sla_flagged = excluded.sla_flagged,
         party_key = excluded.party_key, recheck_due_ms = excluded.recheck_due_ms, doc = excluded.doc,
         street = excluded.street, grid_cell = excluded.grid_cell, level = excluded.level,
         level_index = excluded.level_index, sla_due_ms = excluded.sla_due_ms,
         party_name = excluded.party_name`,
      taskColumns(task, extra),
    );
  }

  /**
   * Inside a transaction, waits for the transaction-scoped lock of `key` (released at its end):
   * what serialises "is there an open task? then file one" between nodes, which a row lock cannot
   * (there is no row yet). Not under a savepoint: waiting for a lock is not refused.
   */
  private async lockKey(key: string): Promise<void> {
    if (this.joined)
      await this.db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [key]);
  }

  /** ` FOR UPDATE` inside a transaction: a task read there is changed there, and no one else's change is lost. */
  private get forUpdate(): string {
    return this.joined ? " FOR UPDATE" : "";
  }

  async task(id: string): Promise<Task | undefined> {
    return docs(await this.rows(`SELECT doc FROM task WHERE id = $1${this.forUpdate}`, [id]))[0];
  }

  async openTask(
    subjectType: string,
    subjectId: string,
    ruleId: string,
  ): Promise<Task | undefined> {
    await this.lockKey(`task-subject\u001f${subjectType}\u001f${subjectId}\u001f${ruleId}`);
    // The outer `open` is checked again on the row's newest version once its lock is granted:
    // a task closed meanwhile is not returned.
    const rows = await this.rows<{ doc: string }>(
      `SELECT doc FROM task WHERE open AND id = (
         SELECT id FROM task WHERE subject_type = $1 AND subject_id = $2 AND rule_id = $3 AND open
         UNION ALL
         SELECT task.id FROM task_link JOIN task ON task.id = task_link.task_id
           WHERE task_link.subject_type = $1 AND task_link.subject_id = $2
             AND task_link.rule_id = $3 AND task.open
         LIMIT 1)${this.forUpdate}`,
      [subjectType, subjectId, ruleId],
    );
    return docs(rows)[0];
  }

  async linkViolation(
    taskId: string,
    subjectType: string,
    subjectId: string,
    ruleId: string,
  ): Promise<void> {
    await this.query(
      `INSERT INTO task_link (subject_type, subject_id, rule_id, task_id) VALUES ($1, $2, $3, $4)
       ON CONFLICT DO NOTHING`,
      [subjectType, subjectId, ruleId, taskId],
    );
  }

  async openIncident(partyKey: string): Promise<Task | undefined> {
    await this.lockKey(`task-party\u001f${partyKey}`);
    const rows = await this.rows<{ doc: string }>(
      `SELECT doc FROM task WHERE party_key = $1 AND open AND kind = 'enforcement'
       ORDER BY filed_ms DESC, id DESC LIMIT 1${this.forUpdate}`,
      [partyKey],
    );
    return docs(rows)[0];
  }

  async partyCases(partyKey: string, sinceMs: number, exceptId: string): Promise<Task[]> {
    return docs(
      await this.rows(
        `SELECT doc FROM task WHERE party_key = $1 AND filed_ms >= $2 AND id <> $3
           AND coalesce(doc::jsonb #>> '{closure,reason}', '') NOT IN ('false_positive', 'sensor_fault', 'exempt')
         ORDER BY filed_ms, id`,
        [partyKey, sinceMs, exceptId],
      ),
    );
  }

  async listTasks(filter: TaskFilter): Promise<Task[]> {
    return (await this.queryTasks(filter)).tasks;
  }

  async queryTasks(filter: TaskFilter): Promise<TaskPage> {
    const sortName = filter.sort ?? "-filedAt";
    const sort = SORTS[sortName];
    const where: string[] = [];
    const args: unknown[] = [];
    /** The placeholder of a new argument. */
    const arg = (value: unknown) => {
      args.push(value);
      return `$${args.length}`;
    };
    const equal = (column: string, value: string | undefined) => {
      if (value !== undefined) where.push(`${column} = ${arg(value)}`);
    };
    equal("kind", filter.kind);
    const states = filter.state === undefined ? undefined : [filter.state].flat();
    if (states !== undefined) {
      const wanted = new Set(states.flatMap((s) => (s === "open" ? OPEN_STATES : [s])));
      const open = OPEN_STATES.every((s) => wanted.has(s));
      if (open && !wanted.has("closed")) where.push("open");
      else if (!(open && wanted.has("closed"))) {
        where.push(`state = ANY(${arg([...wanted])}::text[])`);
      }
    }
    equal("site_id", filter.siteId);
    equal("district", filter.district);
    equal("street", filter.street);
    equal("grid_cell", filter.gridCell);
    equal("party_key", filter.party);
    equal("rule_id", filter.ruleId);
    if (filter.levels !== undefined) where.push(`level = ANY(${arg(filter.levels)}::text[])`);
    if (filter.flagged !== undefined) where.push(`sla_flagged = ${arg(filter.flagged)}`);
    if (filter.overdue !== undefined) {
      const now = arg(filter.nowMs ?? Date.now());
      where.push(
        filter.overdue ? `sla_due_ms < ${now}` : `(sla_due_ms IS NULL OR sla_due_ms >= ${now})`,
      );
    }
    if (filter.search !== undefined) {
      const prefix = arg(`${likeLiteral(filter.search)}%`);
      const contains = arg(`%${likeLiteral(filter.search)}%`);
      // COLLATE "C": letters fold for ASCII alone, as SQLite's LIKE (not the locale's Ü/ü).
      where.push(`(id ILIKE ${prefix} ESCAPE '\\' OR party_key ILIKE ${prefix} ESCAPE '\\'
                   OR party_name ILIKE ${contains} COLLATE "C" ESCAPE '\\')`);
    }
    if (filter.fromMs !== undefined) where.push(`filed_ms >= ${arg(filter.fromMs)}`);
    if (filter.toMs !== undefined) where.push(`filed_ms < ${arg(filter.toMs)}`);
    if (filter.scope !== undefined) {
      where.push(`(district = ANY(${arg(filter.scope.districts)}::text[])
        OR street = ANY(${arg(filter.scope.streets)}::text[])
        OR grid_cell = ANY(${arg(filter.scope.gridCells)}::text[]))`);
    }
    if (filter.after !== undefined) {
      if (filter.after.sort !== sortName) {
        throw new RangeError(`the cursor belongs to sort ${filter.after.sort}`);
      }
      const after = filter.after;
      where.push(
        sort.after.replace(/\$(k\d|id)/g, (_, name: string) =>
          name === "id" ? `${arg(after.id)}::text` : `${arg(after.keys[Number(name[1])])}::bigint`,
        ),
      );
    }
    const sql = `SELECT id, filed_ms, level_index, ${DUE} AS due, doc FROM task
                 ${where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`}
                 ORDER BY ${sort.order} LIMIT ${arg(filter.limit + 1)}`;
    const rows = await this.rows<TaskKeyRow>(sql, args);
    const more = rows.length > filter.limit;
    const page = more ? rows.slice(0, filter.limit) : rows;
    const last = page[page.length - 1];
    return {
      tasks: docs(page),
      ...(more && last !== undefined
        ? { next: { sort: sortName, keys: sort.keys(last), id: last.id } }
        : {}),
    };
  }

  async openTasks(): Promise<Task[]> {
    return docs(await this.rows("SELECT doc FROM task WHERE open"));
  }

  async openCounts(): Promise<Array<{ kind: string; n: number }>> {
    const rows = await this.rows<{ kind: string; n: string }>(
      "SELECT kind, count(*) AS n FROM task WHERE open GROUP BY kind",
    );
    return rows.map((r) => ({ kind: r.kind, n: int(r.n) }));
  }

  async flaggedTasks(): Promise<Task[]> {
    return docs(await this.rows("SELECT doc FROM task WHERE open AND sla_flagged"));
  }

  async dueRechecks(nowMs: number): Promise<Task[]> {
    return docs(
      await this.rows(
        "SELECT doc FROM task WHERE recheck_due_ms <= $1 ORDER BY recheck_due_ms, id",
        [nowMs],
      ),
    );
  }

  async openTasksAtSite(siteId: string): Promise<Task[]> {
    return docs(
      await this.rows(
        "SELECT doc FROM task WHERE site_id = $1 AND open ORDER BY filed_ms DESC, id DESC",
        [siteId],
      ),
    );
  }

  async filedTasks(fromMs: number, toMs: number): Promise<Task[]> {
    if (!(toMs > fromMs) || toMs - fromMs > 400 * 86_400_000) {
      throw new RangeError("filedTasks: the period must be positive and at most 400 days");
    }
    return docs(
      await this.rows(
        "SELECT doc FROM task WHERE filed_ms >= $1 AND filed_ms < $2 ORDER BY filed_ms, id",
        [fromMs, toMs],
      ),
    );
  }

  async filedBetween(
    fromMs: number,
    toMs: number,
  ): Promise<Array<{ task: Task; audit: AuditEntry[] }>> {
    const tasks = await this.filedTasks(fromMs, toMs);
    const audits = new Map<string, AuditEntry[]>(tasks.map((t) => [t.id, []]));
    const rows = await this.rows<AuditRow>(
      `SELECT ${AUDIT_COLUMNS} FROM task_audit
       WHERE task_id IN (SELECT id FROM task WHERE filed_ms >= $1 AND filed_ms < $2)
       ORDER BY id`,
      [fromMs, toMs],
    );
    for (const row of rows) audits.get(row.task_id)?.push(auditEntry(row));
    return tasks.map((task) => ({ task, audit: audits.get(task.id) ?? [] }));
  }

  async appendAudit(entry: NewAudit): Promise<AuditEntry> {
    const row = await this.row<AuditRow>(
      `INSERT INTO task_audit (task_id, at_ms, actor, action, from_state, to_state, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${AUDIT_COLUMNS}`,
      auditValues(entry),
    );
    return auditEntry(row as AuditRow);
  }

  async audit(taskId: string): Promise<AuditEntry[]> {
    const rows = await this.rows<AuditRow>(
      `SELECT ${AUDIT_COLUMNS} FROM task_audit WHERE task_id = $1 ORDER BY id`,
      [taskId],
    );
    return rows.map(auditEntry);
  }

  async addEvidence(pkg: EvidencePackage, createdMs: number): Promise<void> {
    await this.query(
      "INSERT INTO task_evidence (task_id, sequence, created_ms, hash, package) VALUES ($1, $2, $3, $4, $5)",
      [pkg.taskId, pkg.sequence, createdMs, pkg.hash.value, JSON.stringify(pkg)],
    );
  }

  async evidenceCount(taskId: string): Promise<number> {
    const row = await this.row<{ n: number }>(
      "SELECT coalesce(max(sequence), 0) AS n FROM task_evidence WHERE task_id = $1",
      [taskId],
    );
    return row?.n ?? 0;
  }

  async evidence(taskId: string, sequence?: number): Promise<EvidencePackage | undefined> {
    const row =
      sequence === undefined
        ? await this.row<{ package: string }>(
            "SELECT package FROM task_evidence WHERE task_id = $1 ORDER BY sequence DESC LIMIT 1",
            [taskId],
          )
        : await this.row<{ package: string }>(
            "SELECT package FROM task_evidence WHERE task_id = $1 AND sequence = $2",
            [taskId, sequence],
          );
    return row === undefined ? undefined : (JSON.parse(row.package) as EvidencePackage);
  }

  async appendEvent(event: Omit<TaskEvent, "id">, atMs: number): Promise<TaskEvent> {
    const row = await this.row<{ id: string }>(
      "INSERT INTO task_event (task_id, at_ms, payload) VALUES ($1, $2, $3) RETURNING id",
      [event.task.id, atMs, JSON.stringify(event)],
    );
    return { id: int((row as { id: string }).id), ...event };
  }

  async event(id: number): Promise<TaskEvent | undefined> {
    const row = await this.row<{ id: string; payload: string }>(
      "SELECT id, payload FROM task_event WHERE id = $1",
      [id],
    );
    return row === undefined
      ? undefined
      : { id: int(row.id), ...(JSON.parse(row.payload) as Omit<TaskEvent, "id">) };
  }

  async eventsAfter(afterId: number, limit: number): Promise<TaskEvent[]> {
    const rows = await this.rows<{ id: string; payload: string }>(
      "SELECT id, payload FROM task_event WHERE id > $1 ORDER BY id LIMIT $2",
      [afterId, limit],
    );
    return rows.map((r) => ({
      id: int(r.id),
      ...(JSON.parse(r.payload) as Omit<TaskEvent, "id">),
    }));
  }

  async enqueue(eventId: number, target: string, nowMs: number): Promise<void> {
    await this.query(
      "INSERT INTO task_outbox (event_id, target, next_ms, created_ms) VALUES ($1, $2, $3, $3)",
      [eventId, target, nowMs],
    );
  }

  async outboxDepths(): Promise<Map<string, number>> {
    const rows = await this.rows<{ target: string; n: string }>(
      "SELECT target, count(*) AS n FROM task_outbox GROUP BY target",
    );
    return new Map(rows.map((r) => [r.target, int(r.n)]));
  }

  async outboxHead(target: string): Promise<OutboxRow | undefined> {
    const row = await this.row<{
      id: string;
      event_id: string;
      target: string;
      attempts: number;
      next_ms: string;
    }>(
      "SELECT id, event_id, target, attempts, next_ms FROM task_outbox WHERE target = $1 ORDER BY id LIMIT 1",
      [target],
    );
    return row === undefined
      ? undefined
      : {
          id: int(row.id),
          eventId: int(row.event_id),
          target: row.target,
          attempts: row.attempts,
          nextMs: int(row.next_ms),
        };
  }

  async claimOutbox(target: string, holder: string, ttlMs: number): Promise<number | undefined> {
    checkLeaseArguments(target, holder, ttlMs);
    const row = await this.row<{ token: string }>(CLAIM_OUTBOX, [target, holder, ttlMs]);
    if (row === undefined) return undefined;
    const token = int(row.token);
    if (!Number.isSafeInteger(token)) {
      throw new Error(`outbox lease token ${row.token} is too large`);
    }
    return token;
  }

  async releaseOutbox(target: string, holder: string, token: number): Promise<boolean> {
    checkLeaseArguments(target, holder);
    const released = await this.count(
      "DELETE FROM task_outbox_lease WHERE target = $1 AND holder = $2 AND token = $3",
      [target, holder, token],
    );
    return released > 0;
  }

  async delivered(outboxId: number, fence?: OutboxFence): Promise<boolean> {
    const { held, args } = fenced(fence, 2);
    const deleted = await this.count(`DELETE FROM task_outbox WHERE id = $1 AND ${held}`, [
      outboxId,
      ...args,
    ]);
    return deleted > 0;
  }

  async retryLater(
    outboxId: number,
    attempts: number,
    nextMs: number,
    error: string,
    fence?: OutboxFence,
  ): Promise<boolean> {
    const { held, args } = fenced(fence, 5);
    const changed = await this.count(
      `UPDATE task_outbox SET attempts = $1, next_ms = $2, last_error = $3
       WHERE id = $4 AND ${held}`,
      [attempts, nextMs, storable(error), outboxId, ...args],
    );
    return changed > 0;
  }

  bury(outboxId: number, nowMs: number, why: string, fence?: OutboxFence): Promise<boolean> {
    const { held, args } = fenced(fence, 4);
    return this.transaction(async (tx) => {
      const store = tx as PostgresTaskStore;
      // One statement: the row moves only if it is still there (and the fence holds), and is
      // gone from the outbox.
      const moved = await store.count(
        `WITH gone AS (DELETE FROM task_outbox WHERE id = $1 AND ${held} RETURNING *)
         INSERT INTO task_outbox_dead (id, event_id, target, attempts, last_error, created_ms, dead_ms, why)
         SELECT id, event_id, target, attempts, last_error, created_ms, $2, $3 FROM gone`,
        [outboxId, nowMs, storable(why), ...args],
      );
      return moved > 0;
    });
  }

  async deadCount(): Promise<number> {
    const row = await this.row<{ n: string }>("SELECT count(*) AS n FROM task_outbox_dead");
    return int(row?.n ?? 0);
  }

  async complaintTask(platform: string, complaintId: string): Promise<string | undefined> {
    const row = await this.row<{ task_id: string }>(
      "SELECT task_id FROM task_complaint WHERE platform = $1 AND complaint_id = $2",
      [platform, complaintId],
    );
    return row?.task_id;
  }

  async addComplaint(entry: NewComplaint): Promise<void> {
    await this.query(
      `INSERT INTO task_complaint (platform, complaint_id, task_id, received_ms, contact, created_ms)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        entry.platform,
        entry.complaintId,
        entry.taskId,
        entry.receivedMs,
        entry.contact === undefined ? null : JSON.stringify(entry.contact),
        entry.createdMs,
      ],
    );
  }

  eraseComplaintContacts(closedBeforeMs: number): Promise<number> {
    return this.count(
      `UPDATE task_complaint SET contact = NULL
       WHERE contact IS NOT NULL
         AND task_id IN (SELECT id FROM task WHERE NOT open AND updated_ms < $1)`,
      [closedBeforeMs],
    );
  }

  async complaintContact(platform: string, complaintId: string): Promise<unknown> {
    const row = await this.row<{ contact: string | null }>(
      "SELECT contact FROM task_complaint WHERE platform = $1 AND complaint_id = $2",
      [platform, complaintId],
    );
    return row?.contact == null ? undefined : (JSON.parse(row.contact) as unknown);
  }

  async addAttachment(a: Attachment): Promise<boolean> {
    const added = await this.count(
      `INSERT INTO task_attachment (task_id, sha256, filename, type, size, actor, at_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
      [a.taskId, a.sha256, a.filename, a.type, a.size, a.by, Date.parse(a.at)],
    );
    return added > 0;
  }

  async attachmentCount(taskId: string): Promise<number> {
    const row = await this.row<{ n: string }>(
      "SELECT count(*) AS n FROM task_attachment WHERE task_id = $1",
      [taskId],
    );
    return int(row?.n ?? 0);
  }

  async attachments(taskId: string): Promise<Attachment[]> {
    const rows = await this.rows<AttachmentRow>(
      "SELECT * FROM task_attachment WHERE task_id = $1 ORDER BY at_ms, sha256",
      [taskId],
    );
    return rows.map(attachmentOf);
  }

  async attachment(taskId: string, sha256: string): Promise<Attachment | undefined> {
    const row = await this.row<AttachmentRow>(
      "SELECT * FROM task_attachment WHERE task_id = $1 AND sha256 = $2",
      [taskId, sha256],
    );
    return row === undefined ? undefined : attachmentOf(row);
  }

  async partyCaseHistory(partyKey?: string): Promise<Task[]> {
    return docs(
      await this.rows(
        `SELECT doc FROM task WHERE kind = 'enforcement' AND party_key IS NOT NULL
           AND ($1::text IS NULL OR party_key = $1)
         ORDER BY filed_ms, id`,
        [partyKey ?? null],
      ),
    );
  }

  async partyAuditEntries(
    actions: readonly AuditAction[],
    partyKey?: string,
  ): Promise<AuditEntry[]> {
    const rows = await this.rows<AuditRow>(
      `SELECT ${AUDIT_COLUMNS.split(", ")
        .map((c) => `task_audit.${c}`)
        .join(", ")}
       FROM task_audit JOIN task ON task.id = task_audit.task_id
       WHERE task.kind = 'enforcement' AND task.party_key IS NOT NULL
         AND ($1::text IS NULL OR task.party_key = $1)
         AND task_audit.action = ANY($2::text[])
       ORDER BY task_audit.id`,
      [partyKey ?? null, actions],
    );
    return rows.map(auditEntry);
  }
}
