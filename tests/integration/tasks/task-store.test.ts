import { createHash } from "node:crypto";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Attachment,
  type AuditEntry,
  type ClosureReason,
  type EvidencePackage,
  type Task,
  type TaskCursor,
  type TaskEvent,
  type TaskSort,
  TaskState,
} from "../../../contracts/index.js";
import { asyncTaskStore, type AsyncTaskStore } from "../../../tasks/store-port.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { TaskStore, type TaskFilter } from "../../../tasks/store.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { createMigratedSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { queueParty, queueTask } from "../../unit/tasks/queue-fixture.js";

/*
 * The task store's contract (tasks/store-port.ts, issue #21), one suite for both implementations:
 * the embedded tasks.db (tasks/store.ts behind asyncTaskStore) and PostgreSQL
 * (tasks/store-postgres.ts). Every case runs on an empty store of its own; what the SQLite store
 * does is the contract. The queue's filters, sorts and pages are compared with a plain filter and
 * sort over the same task documents (ties broken by id in byte order). The append-only tables are
 * tried past the store, on a connection of the test's own: the database itself must refuse.
 * Then what only the shared database does: concurrent transactions, and isolation from them.
 */

const postgres = await requireService("the task store in PostgreSQL", providePostgres);

/** One implementation, on empty storage of its own. */
interface Backend {
  readonly store: AsyncTaskStore;
  /** Run one SQL statement on the database itself, past the store. */
  readonly raw: (sql: string) => Promise<void>;
  /** The database's name of one of the store's tables (`audit`, `evidence`, …). */
  readonly table: (name: string) => string;
  readonly close: () => Promise<void>;
}

const NOW = Date.parse("2026-12-06T08:00:00.000Z");
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** The SLA due a task without one sorts by (after every instant), as the cursor carries it. */
const NO_DUE = Number.MAX_SAFE_INTEGER;
const OPEN_STATES: readonly TaskState[] = TaskState.options.filter((s) => s !== "closed");
const SORTS: readonly TaskSort[] = ["-filedAt", "filedAt", "slaDue", "level"];

const iso = (ms: number) => new Date(ms).toISOString();
const ids = (tasks: readonly Task[]) => tasks.map((t) => t.id);
/** Strings in byte order (SQLite's BINARY collation). */
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Queue task i (tests/unit/tasks/queue-fixture.ts, open), with fields replaced. */
const taskOf = (i: number, fields: Partial<Task> = {}): Task => ({
  ...queueTask(i, { nowMs: NOW }),
  ...fields,
});
/** The fixture's kinds run enforcement, emergency, maintenance, enforcement: case n is task 4n. */
const enforcementCase = (n: number, fields: Partial<Task> = {}) => taskOf(4 * n, fields);
const emergencyTask = (n: number, fields: Partial<Task> = {}) => taskOf(4 * n + 1, fields);
/** Filed (and last changed) at `ms`. */
const filed = (ms: number): Partial<Task> => ({ filedAt: iso(ms), updatedAt: iso(ms) });

/** The task closed for `reason`, last changed at `atMs` (default: a minute after its last change). */
function closed(task: Task, reason: ClosureReason = "rectified", atMs?: number): Task {
  const at = iso(atMs ?? Date.parse(task.updatedAt) + MINUTE);
  return {
    ...task,
    state: "closed",
    closedAt: at,
    updatedAt: at,
    closure: { reason },
    sla: { flags: [] },
  };
}

/** Save as the service does: the party's key (an enforcement case's) beside the document. */
const save = (
  store: AsyncTaskStore,
  task: Task,
  extra: { partyKey?: string | undefined; recheckDueMs?: number | undefined } = {},
) => store.saveTask(task, { partyKey: task.graduated?.party.key, ...extra });

const audit = (taskId: string, action: AuditEntry["action"], atMs = NOW) => ({
  taskId,
  atMs,
  actor: "system",
  action,
  detail: `${action} on ${taskId}`,
});

const eventOf = (task: Task, atMs: number): Omit<TaskEvent, "id"> => ({
  type: "filed",
  at: iso(atMs),
  task,
  entries: [
    {
      id: 1,
      taskId: task.id,
      at: iso(atMs),
      actor: "system",
      action: "filed",
      to: "filed",
      detail: "filed",
    },
  ],
});

/** An evidence package as stored: only taskId, sequence and hash.value are the store's concern. */
const evidencePackage = (taskId: string, sequence: number): EvidencePackage =>
  ({
    format: "citywatch-evidence/2",
    taskId,
    sequence,
    hash: {
      algorithm: "sha256",
      value: createHash("sha256").update(`${taskId}/${sequence}`).digest("hex"),
    },
    readings: [
      { at: iso(NOW - sequence * MINUTE), LAeq: 71.25 + sequence, flags: ["ok"], gap: null },
    ],
    party: { name: "蓉城餐饮3号店", note: "“quoted”, a back\\slash and a tab\t" },
    nested: { deep: { list: [1, -2.5, true, null, "x"], empty: {} } },
  }) as unknown as EvidencePackage;

const sha = (n: number) => createHash("sha256").update(`file ${n}`).digest("hex");
const attachmentOf = (taskId: string, n: number, atMs: number): Attachment => ({
  taskId,
  sha256: sha(n),
  filename: `photo-${n}.jpg`,
  type: "image/jpeg",
  size: 1_000 + n,
  by: "Li Wei (enforcement)",
  at: iso(atMs),
});

/** `promise`, or a rejection naming `what` when it has not settled in 10 s (a wait that never ends). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in 10 s`)), 10_000);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The queue, and the reference the store's list is compared with

/** A task as the store's columns see it: the document and the party key saved beside it. */
interface Row {
  readonly task: Task;
  readonly partyKey: string | undefined;
}

/**
 * 300 queue tasks (every 5th closed) and ties that only byte order breaks as SQLite does, a task due
 * exactly at NOW, one due only to close, a party name holding LIKE's wildcards and one starting
 * with a capital outside ASCII (which LIKE, folding ASCII letters only, does not fold).
 */
function queueRows(): Row[] {
  const tasks = Array.from({ length: 300 }, (_, i) => queueTask(i, { nowMs: NOW, closedEvery: 5 }));
  const twin = tasks[2];
  const literal = tasks[8];
  if (twin === undefined || literal?.graduated === undefined) throw new Error("fixture changed");
  // Same filing, due and level as task 2: ids a locale's collation orders otherwise than bytes.
  const twins = ["mnt-b00000", "mnt-B00000", "mnt-a00000", "MNT-c00000"].map((id, k): Task => ({
    ...twin,
    id,
    subject: { type: "device", id: `dev-twin-${k}` },
  }));
  // Due exactly now (not overdue yet), and handled with only a closing due (closeBy).
  const [dueNow, handled] = [tasks[10], tasks[11]];
  if (dueNow === undefined || handled === undefined) throw new Error("fixture changed");
  tasks[10] = { ...dueNow, sla: { flags: [], handleBy: iso(NOW) } };
  tasks[11] = { ...handled, state: "handled", sla: { flags: [], closeBy: iso(NOW - HOUR) } };
  const umlaut = tasks[12];
  if (umlaut?.graduated === undefined) throw new Error("fixture changed");
  tasks[12] = {
    ...umlaut,
    graduated: {
      ...umlaut.graduated,
      party: { key: "91510100MA88888888", name: "Über Logistik (Chengdu) Co., Ltd." },
    },
  };
  tasks[8] = {
    ...literal,
    graduated: {
      ...literal.graduated,
      party: { key: "91510100MA99999999", name: "Jinjiang 100% Recycling_Co" },
    },
  };
  return [...tasks, ...twins].map((task) => ({ task, partyKey: task.graduated?.party.key }));
}

/** The SLA due the store sorts and judges overdue by (none when closed or not started). */
function dueOf(task: Task): number | undefined {
  if (task.state === "closed") return undefined;
  const due = task.sla.handleBy ?? task.sla.closeBy;
  return due === undefined ? undefined : Date.parse(due);
}

/** LIKE's case folding: ASCII letters only. */
const fold = (text: string) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());
const among = (list: readonly string[], value: string | undefined) =>
  value !== undefined && list.includes(value);

function matches(filter: Omit<TaskFilter, "limit">, { task, partyKey }: Row): boolean {
  const filedMs = Date.parse(task.filedAt);
  const due = dueOf(task);
  const states =
    filter.state === undefined
      ? undefined
      : [filter.state].flat().flatMap((s) => (s === "open" ? OPEN_STATES : [s]));
  const search = filter.search === undefined ? undefined : fold(filter.search);
  const name = task.graduated?.party.name;
  const scope = filter.scope;
  return (
    (filter.kind === undefined || task.kind === filter.kind) &&
    (states === undefined || states.includes(task.state)) &&
    (filter.siteId === undefined || task.siteId === filter.siteId) &&
    (filter.district === undefined || task.routing.district === filter.district) &&
    (filter.street === undefined || task.routing.street === filter.street) &&
    (filter.gridCell === undefined || task.routing.gridCell === filter.gridCell) &&
    (filter.party === undefined || partyKey === filter.party) &&
    (filter.ruleId === undefined || task.rule.id === filter.ruleId) &&
    (filter.levels === undefined || among(filter.levels, task.level)) &&
    (filter.flagged === undefined || task.sla.flags.length > 0 === filter.flagged) &&
    (filter.overdue === undefined ||
      (due !== undefined && due < (filter.nowMs ?? Date.now())) === filter.overdue) &&
    (search === undefined ||
      fold(task.id).startsWith(search) ||
      (partyKey !== undefined && fold(partyKey).startsWith(search)) ||
      (name !== undefined && fold(name).includes(search))) &&
    (filter.fromMs === undefined || filedMs >= filter.fromMs) &&
    (filter.toMs === undefined || filedMs < filter.toMs) &&
    (scope === undefined ||
      among(scope.districts, task.routing.district) ||
      among(scope.streets, task.routing.street) ||
      among(scope.gridCells, task.routing.gridCell))
  );
}

/** A task's keys in a sort, as its cursor carries them. */
function cursorKeys(sort: TaskSort, task: Task): number[] {
  const filedMs = Date.parse(task.filedAt);
  switch (sort) {
    case "-filedAt":
    case "filedAt":
      return [filedMs];
    case "slaDue":
      return [dueOf(task) ?? NO_DUE];
    case "level":
      return [task.levelIndex, filedMs];
  }
}

/** The sort's order: its keys (level: index and filing descending), then the id in byte order. */
function compare(sort: TaskSort) {
  return (a: Task, b: Task): number => {
    const [ka, kb] = [cursorKeys(sort, a), cursorKeys(sort, b)];
    const ascending = sort === "filedAt" || sort === "slaDue";
    for (let k = 0; k < ka.length; k++) {
      const d = (ka[k] ?? 0) - (kb[k] ?? 0);
      if (d !== 0) return ascending ? d : -d;
    }
    return ascending ? byBytes(a.id, b.id) : byBytes(b.id, a.id);
  };
}

/** What the list should hold: every match, in the filter's order. */
const reference = (rows: readonly Row[], filter: Omit<TaskFilter, "limit">): Task[] =>
  rows
    .filter((r) => matches(filter, r))
    .map((r) => r.task)
    .sort(compare(filter.sort ?? "-filedAt"));

/** Queries of the queue; `none`: the reference (and the store) must find nothing. */
const QUERIES: ReadonlyArray<{ name: string; filter: Omit<TaskFilter, "limit">; none?: true }> = [
  { name: "no filter", filter: {} },
  { name: "state open", filter: { state: "open" } },
  { name: "state [closed]", filter: { state: ["closed"] } },
  { name: "state filed or closed", filter: { state: ["filed", "closed"] } },
  { name: "state open or closed", filter: { state: ["open", "closed"] } },
  { name: "state handled or verified", filter: { state: ["handled", "verified"] } },
  { name: "no state at all", filter: { state: [] }, none: true },
  { name: "kind", filter: { kind: "emergency" } },
  { name: "site", filter: { siteId: "site-wuhou-2" } },
  { name: "district", filter: { district: "wuhou" } },
  { name: "street", filter: { street: "qingyang-s2" } },
  { name: "grid cell", filter: { gridCell: "jinjiang-s1-g2" } },
  { name: "levels", filter: { levels: ["I", "II"] } },
  { name: "enforcement level", filter: { levels: ["case"] } },
  { name: "no levels at all", filter: { levels: [] }, none: true },
  { name: "party", filter: { party: queueParty(3).key } },
  { name: "rule", filter: { ruleId: "enforcement.rule.2" } },
  { name: "flagged", filter: { flagged: true } },
  { name: "not flagged", filter: { flagged: false } },
  { name: "overdue now", filter: { overdue: true, nowMs: NOW } },
  { name: "not overdue now", filter: { overdue: false, nowMs: NOW } },
  { name: "overdue 20 h later", filter: { overdue: true, nowMs: NOW + 20 * HOUR } },
  { name: "search: id prefix in upper case", filter: { search: "ENF-10012" } },
  { name: "search: id prefix of ids in both cases", filter: { search: "mnt-b" } },
  { name: "search: party key prefix in lower case", filter: { search: "91510100ma0000001" } },
  { name: "search: part of a name in another case", filter: { search: "builders" } },
  { name: "search: part of a Chinese name", filter: { search: "餐饮1" } },
  { name: "search: a name's own case outside ASCII", filter: { search: "Über Logistik" } },
  { name: "search: no folding outside ASCII", filter: { search: "über logistik" }, none: true },
  { name: "search: % and _ found literally", filter: { search: "100% Recycling_c" } },
  { name: "search: % taken literally", filter: { search: "%builders" }, none: true },
  { name: "search: _ taken literally", filter: { search: "Builders_1" }, none: true },
  { name: "search: _ in an id prefix", filter: { search: "enf_1001" }, none: true },
  { name: "filed from … to", filter: { fromMs: NOW - 30 * MINUTE, toMs: NOW - 10 * MINUTE } },
  {
    name: "scope",
    filter: {
      scope: { districts: ["wuhou"], streets: ["jinjiang-s1"], gridCells: ["qingyang-s3-g4"] },
    },
  },
  {
    name: "empty scope",
    filter: { scope: { districts: [], streets: [], gridCells: [] } },
    none: true,
  },
  { name: "sort -filedAt", filter: { sort: "-filedAt" } },
  { name: "sort filedAt", filter: { sort: "filedAt" } },
  { name: "sort slaDue", filter: { sort: "slaDue" } },
  { name: "sort level", filter: { sort: "level" } },
  {
    name: "open enforcement by level",
    filter: { kind: "enforcement", state: "open", sort: "level" },
  },
  {
    name: "overdue in a district by due",
    filter: { district: "chenghua", overdue: true, nowMs: NOW, sort: "slaDue" },
  },
  {
    name: "search in a period, oldest first",
    filter: { search: "builders", fromMs: NOW - 60 * MINUTE, sort: "filedAt" },
  },
];

// ---------------------------------------------------------------------------------------------
// The implementations

async function openSqlite(): Promise<Backend> {
  const dir = await makeTempDir("cw-task-store-");
  const file = join(dir, "tasks.db");
  const store = asyncTaskStore(new TaskStore(file));
  const db = new Database(file);
  return {
    store,
    raw: (sql) =>
      Promise.resolve().then(() => {
        db.prepare(sql).run();
      }),
    table: (name) => name,
    close: async () => {
      await store.close();
      db.close();
      await removeTempDir(dir);
    },
  };
}

async function openPostgres(): Promise<Backend> {
  const { schema, pool } = await createMigratedSchema(postgresUrl(postgres));
  const store = new PostgresTaskStore(pool);
  return {
    store,
    raw: async (sql) => {
      await pool.query(sql);
    },
    // The shared schema's tables are prefixed task_ (infra/postgres/schema.ts).
    table: (name) => (name.startsWith("task") ? name : `task_${name}`),
    close: async () => {
      await store.close();
      await schema.drop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The contract

function suite(name: string, open: () => Promise<Backend>) {
  describe(`task store: ${name}`, () => {
    const opened: Backend[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });
    /** An empty store of the test's own, closed after it. */
    const fresh = async () => {
      const backend = await open();
      opened.push(backend);
      return backend;
    };

    describe("task ids", () => {
      it("numbers tasks enf-000001, emg-000002, mnt-000003: one counter across kinds", async () => {
        const { store } = await fresh();
        expect(await store.nextTaskId("enforcement")).toBe("enf-000001");
        expect(await store.nextTaskId("emergency")).toBe("emg-000002");
        expect(await store.nextTaskId("maintenance")).toBe("mnt-000003");
        expect(await store.nextTaskId("environmental")).toBe("env-000004");
      });

      it("gives the id a rolled-back transaction took again", async () => {
        const { store } = await fresh();
        expect(await store.nextTaskId("enforcement")).toBe("enf-000001");
        let taken: string | undefined;
        await expect(
          store.transaction(async (tx) => {
            taken = await tx.nextTaskId("emergency");
            throw new Error("abandoned");
          }),
        ).rejects.toThrow("abandoned");
        expect(taken).toBe("emg-000002");
        expect(await store.nextTaskId("emergency")).toBe("emg-000002");
      });
    });

    describe("tasks", () => {
      it("reads a saved task back as it was; saving it again replaces it and its columns", async () => {
        const { store } = await fresh();
        const first = enforcementCase(0);
        // Task 3: an enforcement case of a party with a Chinese name.
        const other = taskOf(3);
        await save(store, first);
        await save(store, other);
        expect(await store.task(first.id)).toStrictEqual(first);
        expect(await store.task(other.id)).toStrictEqual(other);
        expect(await store.task("enf-999999")).toBeUndefined();

        const second = closed({ ...first, title: "renamed" });
        await save(store, second, { partyKey: "91510100MA77777777" });
        expect(await store.task(first.id)).toStrictEqual(second);
        expect(ids((await store.queryTasks({ limit: 10 })).tasks).sort()).toEqual(
          [first.id, other.id].sort(),
        );
        expect(ids((await store.queryTasks({ limit: 10, state: "open" })).tasks)).toEqual([
          other.id,
        ]);
        expect(ids(await store.openTasks())).toEqual([other.id]);
        expect(
          ids((await store.queryTasks({ limit: 10, party: "91510100MA77777777" })).tasks),
        ).toEqual([first.id]);
        expect(
          (await store.queryTasks({ limit: 10, party: first.graduated?.party.key })).tasks,
        ).toEqual([]);
      });

      it("keeps one open task per (subject, rule): a second is refused, a closed one is not in the way", async () => {
        const { store } = await fresh();
        const first = enforcementCase(0);
        const { subject, rule } = first;
        await save(store, first);
        const second = enforcementCase(1, { subject, rule });
        await expect(save(store, second)).rejects.toThrow();
        expect(await store.task(second.id)).toBeUndefined();

        await save(store, closed(first));
        await save(store, second);
        expect((await store.openTask(subject.type, subject.id, rule.id))?.id).toBe(second.id);
        // Closed ones of the same subject and rule are many.
        await save(store, closed(enforcementCase(2, { subject, rule })));
        expect((await store.queryTasks({ limit: 10, state: "closed" })).tasks).toHaveLength(2);
      });

      it("finds the open task of a subject and rule: its own, or the incident that holds it", async () => {
        const { store } = await fresh();
        const own = enforcementCase(0);
        await save(store, own);
        expect((await store.openTask("device", own.subject.id, own.rule.id))?.id).toBe(own.id);
        expect(
          await store.openTask("device", own.subject.id, "enforcement.rule.9"),
        ).toBeUndefined();
        expect(await store.openTask("site", own.subject.id, own.rule.id)).toBeUndefined();

        const incident = enforcementCase(1);
        await save(store, incident);
        await store.linkViolation(incident.id, "site", "site-x", "enforcement.rule.9");
        await store.linkViolation(incident.id, "site", "site-x", "enforcement.rule.9");
        expect((await store.openTask("site", "site-x", "enforcement.rule.9"))?.id).toBe(
          incident.id,
        );
        expect(await store.openTask("site", "site-y", "enforcement.rule.9")).toBeUndefined();

        // Closed, neither holds anything any more.
        await save(store, closed(incident));
        await save(store, closed(own));
        expect(await store.openTask("site", "site-x", "enforcement.rule.9")).toBeUndefined();
        expect(await store.openTask("device", own.subject.id, own.rule.id)).toBeUndefined();
      });

      it("finds a party's open incident: its newest open enforcement case", async () => {
        const { store } = await fresh();
        const party = "91510100MA33333333";
        const older = enforcementCase(0, filed(NOW - 3 * HOUR));
        const newer = enforcementCase(1, filed(NOW - HOUR));
        await save(store, newer, { partyKey: party });
        await save(store, older, { partyKey: party });
        await save(store, closed(enforcementCase(2, filed(NOW - 10 * MINUTE))), {
          partyKey: party,
        });
        await save(store, emergencyTask(0, filed(NOW - 5 * MINUTE)), { partyKey: party });
        const another = enforcementCase(3, filed(NOW - 2 * MINUTE));
        await save(store, another, { partyKey: "91510100MA44444444" });

        expect((await store.openIncident(party))?.id).toBe(newer.id);
        expect((await store.openIncident("91510100MA44444444"))?.id).toBe(another.id);
        expect(await store.openIncident("91510100MA00000000")).toBeUndefined();
        await save(store, closed(newer), { partyKey: party });
        expect((await store.openIncident(party))?.id).toBe(older.id);
      });

      it("lists a party's cases since an instant, oldest first, without the given one or those that were no violation", async () => {
        const { store } = await fresh();
        const party = "91510100MA55555555";
        const since = NOW - 5 * HOUR;
        const before = enforcementCase(0, filed(since - 1));
        const atSince = enforcementCase(1, filed(since));
        const rectified = closed(enforcementCase(2, filed(NOW - 4 * HOUR)), "rectified");
        const noViolation = [
          closed(enforcementCase(3, filed(NOW - 3 * HOUR)), "false_positive"),
          closed(enforcementCase(4, filed(NOW - 2 * HOUR)), "sensor_fault"),
          closed(enforcementCase(5, filed(NOW - 90 * MINUTE)), "exempt"),
        ];
        const except = enforcementCase(6, filed(NOW - HOUR));
        const latest = enforcementCase(7, filed(NOW - 30 * MINUTE));
        for (const task of [latest, except, ...noViolation, rectified, atSince, before]) {
          await save(store, task, { partyKey: party });
        }
        await save(store, enforcementCase(8, filed(NOW - HOUR)), {
          partyKey: "91510100MA66666666",
        });
        expect(ids(await store.partyCases(party, since, except.id))).toEqual(
          ids([atSince, rectified, latest]),
        );
        expect(await store.partyCases(party, NOW, "")).toEqual([]);
        expect(await store.partyCases("91510100MA00000000", 0, "")).toEqual([]);
      });
    });

    describe("the queue", () => {
      const rows = queueRows();
      let backend: Backend | undefined;
      let store: AsyncTaskStore;
      beforeAll(async () => {
        backend = await open();
        store = backend.store;
        await store.transaction(async (tx) => {
          for (const { task, partyKey } of rows) await tx.saveTask(task, { partyKey });
        });
      });
      afterAll(async () => {
        await backend?.close();
      });

      it.each(QUERIES)("lists $name as a plain filter and sort does", async ({ filter, none }) => {
        const expected = ids(reference(rows, filter));
        expect(expected.length === 0).toBe(none === true);
        const page = await store.queryTasks({ ...filter, limit: 1_000 });
        expect(ids(page.tasks)).toEqual(expected);
        expect(page.next).toBeUndefined();
      });

      it.each(SORTS)(
        "walks pages of 7 in order %s: exactly the whole list, each cursor at its page's last task",
        async (sort) => {
          const filters: Array<Omit<TaskFilter, "limit">> = [
            { sort },
            { sort, state: "open", kind: "enforcement" },
          ];
          for (const filter of filters) {
            const all = reference(rows, filter);
            const walked: Task[] = [];
            let after: TaskCursor | undefined;
            let pages = 0;
            do {
              const page = await store.queryTasks({ ...filter, limit: 7, after });
              walked.push(...page.tasks);
              pages++;
              const last = page.tasks[page.tasks.length - 1];
              if (page.next !== undefined) {
                expect(page.tasks).toHaveLength(7);
                expect(page.next).toEqual({
                  sort,
                  keys: last === undefined ? [] : cursorKeys(sort, last),
                  id: last?.id,
                });
              }
              after = page.next;
            } while (after !== undefined && pages <= all.length);
            expect(ids(walked)).toEqual(ids(all));
            expect(pages).toBe(Math.ceil(all.length / 7));
          }
        },
      );

      it("stops at the limit and names the next page's start only when more follow", async () => {
        const all = reference(rows, {});
        const whole = await store.queryTasks({ limit: all.length });
        expect(ids(whole.tasks)).toEqual(ids(all));
        expect(whole.next).toBeUndefined();
        const short = await store.queryTasks({ limit: all.length - 1 });
        expect(ids(short.tasks)).toEqual(ids(all.slice(0, -1)));
        const last = all[all.length - 2];
        expect(short.next).toEqual({
          sort: "-filedAt",
          keys: [Date.parse(last?.filedAt ?? "")],
          id: last?.id,
        });
        expect(ids(await store.listTasks({ limit: 5, sort: "slaDue" }))).toEqual(
          ids(reference(rows, { sort: "slaDue" }).slice(0, 5)),
        );
      });

      it("refuses a cursor of another sort with a RangeError", async () => {
        const first = await store.queryTasks({ limit: 7 });
        expect(first.next?.sort).toBe("-filedAt");
        await expect(
          store.queryTasks({ limit: 7, sort: "filedAt", after: first.next }),
        ).rejects.toThrow(RangeError);
        const byLevel = await store.queryTasks({ limit: 7, sort: "level" });
        await expect(store.queryTasks({ limit: 7, after: byLevel.next })).rejects.toThrow(
          RangeError,
        );
        // Its own sort, named or by default, goes on.
        expect(
          ids((await store.queryTasks({ limit: 7, sort: "-filedAt", after: first.next })).tasks),
        ).toEqual(ids(reference(rows, {}).slice(7, 14)));
      });

      it("lists the open tasks, counts them per kind, and lists the flagged ones", async () => {
        const open = rows.map((r) => r.task).filter((t) => t.state !== "closed");
        expect(ids(await store.openTasks()).sort(byBytes)).toEqual(ids(open).sort(byBytes));
        const counts = new Map<string, number>();
        for (const t of open) counts.set(t.kind, (counts.get(t.kind) ?? 0) + 1);
        expect(
          [...(await store.openCounts())].sort((a, b) => byBytes(a.kind, b.kind)),
        ).toStrictEqual(
          [...counts].map(([kind, n]) => ({ kind, n })).sort((a, b) => byBytes(a.kind, b.kind)),
        );
        const flagged = open.filter((t) => t.sla.flags.length > 0);
        expect(flagged.length).toBeGreaterThan(0);
        expect(ids(await store.flaggedTasks()).sort(byBytes)).toEqual(ids(flagged).sort(byBytes));
      });

      it("lists the tasks filed in [from, to), oldest first, ties by id; refuses an empty or a longer period than 400 days", async () => {
        const periods: Array<[number, number]> = [
          [NOW - 30 * MINUTE, NOW - 10 * MINUTE],
          [NOW - 2 * MINUTE, NOW + 1],
          [NOW + 1 - 400 * DAY, NOW + 1],
        ];
        for (const [fromMs, toMs] of periods) {
          const expected = ids(reference(rows, { fromMs, toMs, sort: "filedAt" }));
          expect(expected.length).toBeGreaterThan(0);
          expect(ids(await store.filedTasks(fromMs, toMs))).toEqual(expected);
        }
        for (const [fromMs, toMs] of [
          [NOW, NOW],
          [NOW, NOW - 1],
          [NOW - 400 * DAY - 1, NOW],
        ] as const) {
          await expect(store.filedTasks(fromMs, toMs)).rejects.toThrow(RangeError);
          await expect(store.filedBetween(fromMs, toMs)).rejects.toThrow(RangeError);
        }
      });
    });

    describe("more lists of tasks", () => {
      it("lists the tasks whose re-check is due, in due order", async () => {
        const { store } = await fresh();
        const tasks = Array.from({ length: 5 }, (_, i) => taskOf(i));
        const dues = [NOW - HOUR, NOW + HOUR, NOW, undefined, NOW - 2 * HOUR];
        for (const [i, task] of tasks.entries()) await save(store, task, { recheckDueMs: dues[i] });
        const [t0, , t2, , t4] = tasks.map((t) => t.id);
        expect(ids(await store.dueRechecks(NOW))).toEqual([t4, t0, t2]);
        expect(await store.dueRechecks(NOW - 3 * HOUR)).toEqual([]);
        // Saved again without one: no longer due.
        await save(store, tasks[4] ?? taskOf(4));
        expect(ids(await store.dueRechecks(NOW))).toEqual([t0, t2]);
      });

      it("lists a site's open tasks, newest first", async () => {
        const { store } = await fresh();
        const site = "site-test-1";
        const oldest = taskOf(0, { siteId: site, ...filed(NOW - 2 * HOUR) });
        const tied = taskOf(1, { siteId: site, ...filed(NOW - HOUR) });
        const tiedLater = taskOf(5, { siteId: site, ...filed(NOW - HOUR) });
        for (const task of [tied, oldest, tiedLater]) await save(store, task);
        await save(store, closed(taskOf(2, { siteId: site, ...filed(NOW) })));
        await save(store, taskOf(3, { siteId: "site-test-2", ...filed(NOW) }));
        // Ties newest first by id descending: emg-100005 before emg-100001.
        expect(ids(await store.openTasksAtSite(site))).toEqual([tiedLater.id, tied.id, oldest.id]);
        expect(await store.openTasksAtSite("site-none")).toEqual([]);
      });

      it("gives the tasks filed in a period with their audit trails, in id order", async () => {
        const { store } = await fresh();
        const a = taskOf(0, filed(NOW - 3 * HOUR));
        const b = taskOf(1, filed(NOW - 2 * HOUR));
        const c = taskOf(2, filed(NOW - HOUR));
        const outside = taskOf(3, filed(NOW));
        for (const task of [outside, c, b, a]) await save(store, task);
        const b1 = await store.appendAudit(audit(b.id, "filed"));
        const a1 = await store.appendAudit(audit(a.id, "filed"));
        await store.appendAudit(audit(outside.id, "filed"));
        const b2 = await store.appendAudit(audit(b.id, "routed"));
        const a2 = await store.appendAudit(audit(a.id, "transition"));
        expect(await store.filedBetween(NOW - 3 * HOUR, NOW)).toStrictEqual([
          { task: a, audit: [a1, a2] },
          { task: b, audit: [b1, b2] },
          { task: c, audit: [] },
        ]);
      });
    });

    describe("the audit trail", () => {
      it("appends entries with an id and an ISO instant, from and to only when given, read back in order", async () => {
        const { store } = await fresh();
        const task = taskOf(0);
        const first = await store.appendAudit({
          ...audit(task.id, "filed", NOW + 123),
          to: "filed",
        });
        expect(first).toStrictEqual({
          id: expect.any(Number) as number,
          taskId: task.id,
          at: "2026-12-06T08:00:00.123Z",
          actor: "system",
          action: "filed",
          to: "filed",
          detail: `filed on ${task.id}`,
        });
        const other = await store.appendAudit(audit("enf-000042", "filed"));
        const second = await store.appendAudit({
          ...audit(task.id, "transition", NOW + 1_000),
          actor: "Li Wei (enforcement)",
          from: "filed",
          to: "dispatched",
        });
        const third = await store.appendAudit(audit(task.id, "routed", NOW + 2_000));
        expect(third).toStrictEqual({
          id: expect.any(Number) as number,
          taskId: task.id,
          at: iso(NOW + 2_000),
          actor: "system",
          action: "routed",
          detail: `routed on ${task.id}`,
        });
        expect(other.id).toBeGreaterThan(first.id);
        expect(second.id).toBeGreaterThan(other.id);
        expect(third.id).toBeGreaterThan(second.id);
        expect(await store.audit(task.id)).toStrictEqual([first, second, third]);
        expect(await store.audit("enf-000042")).toStrictEqual([other]);
        expect(await store.audit("enf-999999")).toEqual([]);
      });

      it("keeps an entry's text as written, whatever its characters but NUL", async () => {
        const { store } = await fresh();
        // A person's note goes into the detail as typed (TransitionRequest.note).
        const detail = "note: a\u0001b, 蓉城 🚧, “quotes”, back\\slash, 'single' and \"double\"";
        const entry = await store.appendAudit({ ...audit("enf-000001", "transition"), detail });
        expect(entry.detail).toBe(detail);
        expect((await store.audit("enf-000001")).map((e) => e.detail)).toEqual([detail]);
        // PostgreSQL's text cannot hold U+0000: both stores refuse it, clearly, and keep nothing.
        await expect(
          store.appendAudit({ ...audit("enf-000001", "transition"), detail: "a\u0000b" }),
        ).rejects.toThrow(/audit detail: the NUL character \(U\+0000\) cannot be stored/);
        expect(await store.audit("enf-000001")).toHaveLength(1);
      });

      it("is append-only in the database itself", async () => {
        const { store, raw, table } = await fresh();
        const entry = await store.appendAudit(audit("enf-000001", "filed"));
        await expect(raw(`UPDATE ${table("audit")} SET detail = 'x'`)).rejects.toThrow(
          /append-only/,
        );
        await expect(raw(`DELETE FROM ${table("audit")}`)).rejects.toThrow(/append-only/);
        expect(await store.audit("enf-000001")).toStrictEqual([entry]);
      });

      it("lists a party's enforcement cases and the audit entries of given actions on them", async () => {
        const { store } = await fresh();
        const [p1, p2] = ["91510100MA11111111", "91510100MA22222222"];
        const a = enforcementCase(0, filed(NOW - 3 * HOUR));
        const b = enforcementCase(1, filed(NOW - 5 * HOUR));
        const c = closed(enforcementCase(2, filed(NOW - 4 * HOUR)));
        const f = enforcementCase(4, filed(NOW - 3 * HOUR));
        const noParty = enforcementCase(3, filed(NOW - HOUR));
        const emergency = emergencyTask(0, filed(NOW - 2 * HOUR));
        await save(store, a, { partyKey: p1 });
        await save(store, b, { partyKey: p2 });
        await save(store, c, { partyKey: p1 });
        await save(store, f, { partyKey: p2 });
        await save(store, noParty, { partyKey: undefined });
        await save(store, emergency, { partyKey: p1 });

        // Oldest first, ties by id: a (enf-100000) before f (enf-100016).
        expect(ids(await store.partyCaseHistory())).toEqual([b.id, c.id, a.id, f.id]);
        expect(ids(await store.partyCaseHistory(p1))).toEqual([c.id, a.id]);
        expect(ids(await store.partyCaseHistory(p2))).toEqual([b.id, f.id]);
        expect(await store.partyCaseHistory("91510100MA00000000")).toEqual([]);

        const aWarned = await store.appendAudit(audit(a.id, "warning_issued"));
        const bReferred = await store.appendAudit(audit(b.id, "referred_for_penalty"));
        await store.appendAudit(audit(a.id, "transition"));
        await store.appendAudit(audit(emergency.id, "warning_issued"));
        await store.appendAudit(audit(noParty.id, "warning_issued"));
        const cReferred = await store.appendAudit(audit(c.id, "referred_for_penalty"));
        const fWarned = await store.appendAudit(audit(f.id, "warning_issued"));
        expect(
          await store.partyAuditEntries(["warning_issued", "referred_for_penalty"]),
        ).toStrictEqual([aWarned, bReferred, cReferred, fWarned]);
        expect(await store.partyAuditEntries(["warning_issued"], p1)).toStrictEqual([aWarned]);
        expect(await store.partyAuditEntries(["referred_for_penalty"], p2)).toStrictEqual([
          bReferred,
        ]);
        expect(await store.partyAuditEntries([], p1)).toEqual([]);
      });
    });

    describe("evidence", () => {
      it("keeps packages as they were, the newest by sequence; a sequence taken twice is refused", async () => {
        const { store } = await fresh();
        const task = "enf-000001";
        expect(await store.evidenceCount(task)).toBe(0);
        expect(await store.evidence(task)).toBeUndefined();
        await store.addEvidence(evidencePackage(task, 1), NOW);
        await store.addEvidence(evidencePackage(task, 3), NOW + 1_000);
        // Sealed earlier than 3, stored later: the newest is still 3.
        await store.addEvidence(evidencePackage(task, 2), NOW - 1_000);
        await store.addEvidence(evidencePackage("enf-000002", 1), NOW);
        expect(await store.evidenceCount(task)).toBe(3);
        expect(await store.evidence(task)).toStrictEqual(evidencePackage(task, 3));
        expect(await store.evidence(task, 1)).toStrictEqual(evidencePackage(task, 1));
        expect(await store.evidence(task, 4)).toBeUndefined();
        expect(await store.evidenceCount("enf-000002")).toBe(1);
        expect(await store.evidenceCount("enf-000003")).toBe(0);

        const again = {
          ...evidencePackage(task, 2),
          note: "changed",
        } as unknown as EvidencePackage;
        await expect(store.addEvidence(again, NOW + 5_000)).rejects.toThrow();
        expect(await store.evidence(task, 2)).toStrictEqual(evidencePackage(task, 2));
      });

      it("is append-only in the database itself", async () => {
        const { store, raw, table } = await fresh();
        await store.addEvidence(evidencePackage("enf-000001", 1), NOW);
        await expect(raw(`UPDATE ${table("evidence")} SET hash = 'x'`)).rejects.toThrow(
          /append-only/,
        );
        await expect(raw(`DELETE FROM ${table("evidence")}`)).rejects.toThrow(/append-only/);
        expect(await store.evidence("enf-000001")).toStrictEqual(evidencePackage("enf-000001", 1));
      });
    });

    describe("events and the outbox", () => {
      it("appends events with growing ids, and reads them one by one or after an id", async () => {
        const { store } = await fresh();
        const tasks = [taskOf(0), taskOf(1), taskOf(2)];
        const events: TaskEvent[] = [];
        for (const [i, task] of tasks.entries()) {
          events.push(await store.appendEvent(eventOf(task, NOW + i), NOW + i));
        }
        const [e1, e2, e3] = events;
        if (e1 === undefined || e2 === undefined || e3 === undefined) throw new Error("no events");
        expect(e1).toStrictEqual({ id: e1.id, ...eventOf(taskOf(0), NOW) });
        expect(e2.id).toBeGreaterThan(e1.id);
        expect(e3.id).toBeGreaterThan(e2.id);
        expect(await store.event(e2.id)).toStrictEqual(e2);
        expect(await store.event(e3.id + 1_000)).toBeUndefined();
        expect(await store.eventsAfter(0, 10)).toStrictEqual([e1, e2, e3]);
        expect(await store.eventsAfter(e1.id, 1)).toStrictEqual([e2]);
        expect(await store.eventsAfter(e1.id, 10)).toStrictEqual([e2, e3]);
        expect(await store.eventsAfter(e3.id, 10)).toEqual([]);
      });

      it("delivers per target oldest first, retries later, and buries what it gives up on", async () => {
        const { store } = await fresh();
        const e1 = await store.appendEvent(eventOf(taskOf(0), NOW), NOW);
        const e2 = await store.appendEvent(eventOf(taskOf(1), NOW + 1), NOW + 1);
        await store.enqueue(e1.id, "webhook:a", NOW);
        await store.enqueue(e1.id, "mqtt", NOW);
        await store.enqueue(e2.id, "webhook:a", NOW + 1);
        expect(await store.outboxDepths()).toEqual(
          new Map([
            ["webhook:a", 2],
            ["mqtt", 1],
          ]),
        );
        const head = await store.outboxHead("webhook:a");
        expect(head).toStrictEqual({
          id: expect.any(Number) as number,
          eventId: e1.id,
          target: "webhook:a",
          attempts: 0,
          nextMs: NOW,
        });
        expect((await store.outboxHead("mqtt"))?.eventId).toBe(e1.id);
        expect(await store.outboxHead("webhook:b")).toBeUndefined();
        if (head === undefined) return;

        // A receiver's error text is whatever it sent, NUL included: kept, never a failure.
        await store.retryLater(head.id, 2, NOW + MINUTE, "HTTP 500: \u0000 in the body");
        await store.retryLater(head.id, 3, NOW + MINUTE, "HTTP 503");
        expect(await store.outboxHead("webhook:a")).toStrictEqual({
          ...head,
          attempts: 3,
          nextMs: NOW + MINUTE,
        });
        expect(await store.delivered(head.id)).toBe(true);
        expect(await store.delivered(head.id)).toBe(false);

        const next = await store.outboxHead("webhook:a");
        expect(next).toMatchObject({ eventId: e2.id, attempts: 0, nextMs: NOW + 1 });
        if (next === undefined) return;
        expect(await store.deadCount()).toBe(0);
        expect(await store.bury(next.id, NOW + 5, "gave up after 10 attempts")).toBe(true);
        expect(await store.deadCount()).toBe(1);
        expect(await store.bury(next.id, NOW + 6, "again")).toBe(false);
        expect(await store.bury(head.id, NOW + 6, "delivered before")).toBe(false);
        expect(await store.deadCount()).toBe(1);
        expect(await store.delivered(next.id)).toBe(false);
        expect(await store.retryLater(next.id, 4, NOW + MINUTE, "gone")).toBe(false);
        expect(await store.outboxHead("webhook:a")).toBeUndefined();
        expect(await store.outboxDepths()).toEqual(new Map([["mqtt", 1]]));
      });

      it("leases a target's delivery: claimed, renewed under the same token, released", async () => {
        const { store } = await fresh();
        const token = await store.claimOutbox("webhook:a", "node-a", MINUTE);
        if (token === undefined) throw new Error("a free lease was not granted");
        expect(Number.isSafeInteger(token)).toBe(true);
        expect(await store.claimOutbox("webhook:a", "node-a", MINUTE)).toBe(token);
        // Each target has a lease of its own.
        expect(await store.claimOutbox("mqtt", "node-b", MINUTE)).toEqual(expect.any(Number));
        expect(await store.releaseOutbox("webhook:a", "node-a", token + 1)).toBe(false);
        expect(await store.releaseOutbox("webhook:a", "node-a", token)).toBe(true);
        // Released: another holder takes it at once, under a token never smaller.
        const next = await store.claimOutbox("webhook:a", "node-b", MINUTE);
        if (next === undefined) throw new Error("a released lease was not granted");
        expect(next).toBeGreaterThanOrEqual(token);
        await expect(store.claimOutbox("", "node-a", MINUTE)).rejects.toThrow(RangeError);
        await expect(store.claimOutbox("webhook:a", "", MINUTE)).rejects.toThrow(RangeError);
        await expect(store.claimOutbox("webhook:a", "node-a", 0)).rejects.toThrow(RangeError);
      });

      it("changes a row under a fence only while its target's lease carries the fence's token", async () => {
        const { store } = await fresh();
        for (let i = 0; i < 3; i++) {
          const event = await store.appendEvent(eventOf(taskOf(i), NOW + i), NOW + i);
          await store.enqueue(event.id, "webhook:a", NOW + i);
          if (i === 0) await store.enqueue(event.id, "mqtt", NOW);
        }
        const token = await store.claimOutbox("webhook:a", "node-a", MINUTE);
        const mqttToken = await store.claimOutbox("mqtt", "node-a", MINUTE);
        const mqtt = await store.outboxHead("mqtt");
        if (token === undefined || mqttToken === undefined || mqtt === undefined) {
          throw new Error("no leases or rows");
        }
        const fence = { target: "webhook:a", token };

        // A token the lease does not carry changes nothing.
        const stale = { target: "webhook:a", token: token + 1 };
        const head = await store.outboxHead("webhook:a");
        if (head === undefined) throw new Error("no head");
        expect(await store.retryLater(head.id, 1, NOW + MINUTE, "HTTP 503", stale)).toBe(false);
        expect(await store.delivered(head.id, stale)).toBe(false);
        expect(await store.bury(head.id, NOW, "max_attempts", stale)).toBe(false);
        // Nor does a fence on another target's row, even with that target's own token.
        expect(await store.delivered(mqtt.id, fence)).toBe(false);
        expect(await store.delivered(mqtt.id, { target: "webhook:a", token: mqttToken })).toBe(
          false,
        );
        expect(await store.outboxHead("webhook:a")).toStrictEqual(head);
        expect(await store.outboxDepths()).toEqual(
          new Map([
            ["webhook:a", 3],
            ["mqtt", 1],
          ]),
        );
        expect(await store.deadCount()).toBe(0);

        // The lease's own token does.
        expect(await store.retryLater(head.id, 1, NOW + MINUTE, "HTTP 503", fence)).toBe(true);
        expect(await store.outboxHead("webhook:a")).toStrictEqual({
          ...head,
          attempts: 1,
          nextMs: NOW + MINUTE,
        });
        expect(await store.delivered(head.id, fence)).toBe(true);
        expect(await store.delivered(head.id, fence)).toBe(false);
        const second = await store.outboxHead("webhook:a");
        if (second === undefined) throw new Error("no second row");
        expect(await store.bury(second.id, NOW, "max_attempts", fence)).toBe(true);
        expect(await store.deadCount()).toBe(1);
        expect(await store.delivered(mqtt.id, { target: "mqtt", token: mqttToken })).toBe(true);
        // Unfenced, as enqueue buries at the bound inside a task change's transaction.
        const third = await store.outboxHead("webhook:a");
        if (third === undefined) throw new Error("no third row");
        expect(await store.transaction((tx) => tx.bury(third.id, NOW, "outbox_full"))).toBe(true);
        expect(await store.deadCount()).toBe(2);
        expect(await store.outboxDepths()).toEqual(new Map());
      });
    });

    describe("complaints", () => {
      it("records a complaint, its task and the complainant's contact", async () => {
        const { store } = await fresh();
        const contact = { name: "张三", phone: "+86 138 0000 0000", consent: { callBack: true } };
        const entry = {
          platform: "12345",
          complaintId: "C-1",
          taskId: "enf-000001",
          receivedMs: NOW,
          contact,
          createdMs: NOW + 5,
        };
        await store.addComplaint(entry);
        await store.addComplaint({ ...entry, complaintId: "C-2", contact: undefined });
        expect(await store.complaintTask("12345", "C-1")).toBe("enf-000001");
        expect(await store.complaintTask("12345", "C-3")).toBeUndefined();
        expect(await store.complaintTask("wechat", "C-1")).toBeUndefined();
        expect(await store.complaintContact("12345", "C-1")).toStrictEqual(contact);
        expect(await store.complaintContact("12345", "C-2")).toBeUndefined();
        expect(await store.complaintContact("12345", "C-3")).toBeUndefined();
        await expect(store.addComplaint({ ...entry, taskId: "enf-000002" })).rejects.toThrow();
        expect(await store.complaintTask("12345", "C-1")).toBe("enf-000001");
      });

      it("erases only the contacts of tasks closed before the cut; the complaints stay", async () => {
        const { store } = await fresh();
        const cut = NOW - 5 * DAY;
        const tasks = {
          long: closed(taskOf(0, filed(NOW - 20 * DAY)), "rectified", NOW - 10 * DAY),
          atCut: closed(taskOf(1, filed(NOW - 20 * DAY)), "rectified", cut),
          recent: closed(taskOf(2, filed(NOW - 20 * DAY)), "rectified", NOW - DAY),
          open: taskOf(3, filed(NOW - 20 * DAY)),
        };
        for (const [key, task] of Object.entries(tasks)) {
          await save(store, task);
          await store.addComplaint({
            platform: "12345",
            complaintId: key,
            taskId: task.id,
            receivedMs: NOW - 20 * DAY,
            contact: { phone: `phone of ${key}` },
            createdMs: NOW - 20 * DAY,
          });
        }
        expect(await store.eraseComplaintContacts(cut)).toBe(1);
        expect(await store.complaintContact("12345", "long")).toBeUndefined();
        expect(await store.complaintTask("12345", "long")).toBe(tasks.long.id);
        for (const key of ["atCut", "recent", "open"]) {
          expect(await store.complaintContact("12345", key)).toEqual({ phone: `phone of ${key}` });
        }
        expect(await store.eraseComplaintContacts(cut)).toBe(0);
        expect(await store.eraseComplaintContacts(NOW)).toBe(2);
        expect(await store.complaintContact("12345", "open")).toEqual({ phone: "phone of open" });
      });
    });

    describe("attachments", () => {
      it("records each file of a task once and lists them oldest first", async () => {
        const { store } = await fresh();
        const task = "enf-000001";
        const [a, b, c] = [
          attachmentOf(task, 1, NOW + 2_000),
          attachmentOf(task, 2, NOW),
          attachmentOf(task, 3, NOW + 1_000),
        ];
        if (a === undefined || b === undefined || c === undefined) throw new Error("unreachable");
        expect(await store.attachmentCount(task)).toBe(0);
        expect(await store.addAttachment(a)).toBe(true);
        expect(await store.addAttachment(b)).toBe(true);
        expect(await store.addAttachment(c)).toBe(true);
        expect(await store.addAttachment({ ...a, filename: "renamed.jpg", at: iso(NOW) })).toBe(
          false,
        );
        // The same file on another task is another attachment.
        expect(await store.addAttachment({ ...a, taskId: "enf-000002" })).toBe(true);
        expect(await store.attachmentCount(task)).toBe(3);
        expect(await store.attachmentCount("enf-000002")).toBe(1);
        expect(await store.attachments(task)).toStrictEqual([b, c, a]);
        expect(await store.attachment(task, a.sha256)).toStrictEqual(a);
        expect(await store.attachment(task, sha(9))).toBeUndefined();
        expect(await store.attachment("enf-000003", a.sha256)).toBeUndefined();
        expect(await store.attachments("enf-000003")).toEqual([]);
      });

      it("is append-only in the database itself", async () => {
        const { store, raw, table } = await fresh();
        const a = attachmentOf("enf-000001", 1, NOW);
        await store.addAttachment(a);
        await expect(raw(`UPDATE ${table("attachment")} SET filename = 'x'`)).rejects.toThrow(
          /append-only/,
        );
        await expect(raw(`DELETE FROM ${table("attachment")}`)).rejects.toThrow(/append-only/);
        expect(await store.attachments("enf-000001")).toStrictEqual([a]);
      });
    });

    describe("transactions", () => {
      it("commits a transaction's writes together and resolves to its value", async () => {
        const { store } = await fresh();
        const task = taskOf(0);
        const value = await store.transaction(async (tx) => {
          await save(tx, task);
          await tx.appendAudit(audit(task.id, "filed"));
          return "done";
        });
        expect(value).toBe("done");
        expect(await store.task(task.id)).toStrictEqual(task);
        expect(await store.audit(task.id)).toHaveLength(1);
      });

      it("keeps nothing of a transaction that throws", async () => {
        const { store } = await fresh();
        const task = taskOf(0);
        await expect(
          store.transaction(async (tx) => {
            expect(await tx.nextTaskId("enforcement")).toBe("enf-000001");
            await save(tx, task);
            await tx.linkViolation(task.id, "site", "site-x", "enforcement.rule.9");
            await tx.appendAudit(audit(task.id, "filed"));
            const event = await tx.appendEvent(eventOf(task, NOW), NOW);
            await tx.enqueue(event.id, "webhook:a", NOW);
            await tx.addEvidence(evidencePackage(task.id, 1), NOW);
            await tx.addAttachment(attachmentOf(task.id, 1, NOW));
            await tx.addComplaint({
              platform: "12345",
              complaintId: "C-1",
              taskId: task.id,
              receivedMs: NOW,
              contact: { phone: "x" },
              createdMs: NOW,
            });
            expect(await tx.task(task.id)).toStrictEqual(task);
            throw new Error("abandoned");
          }),
        ).rejects.toThrow("abandoned");
        expect(await store.task(task.id)).toBeUndefined();
        expect((await store.queryTasks({ limit: 10 })).tasks).toEqual([]);
        expect(await store.openTask("site", "site-x", "enforcement.rule.9")).toBeUndefined();
        expect(await store.audit(task.id)).toEqual([]);
        expect(await store.eventsAfter(0, 10)).toEqual([]);
        expect(await store.outboxDepths()).toEqual(new Map());
        expect(await store.evidenceCount(task.id)).toBe(0);
        expect(await store.attachmentCount(task.id)).toBe(0);
        expect(await store.complaintTask("12345", "C-1")).toBeUndefined();
        expect(await store.nextTaskId("enforcement")).toBe("enf-000001");
      });

      it("runs a transaction begun inside another as part of it", async () => {
        const { store } = await fresh();
        const [a, b, c] = [taskOf(0), taskOf(1), taskOf(2)];
        const value = await store.transaction(async (tx) => {
          await save(tx, a);
          const inner = await tx.transaction(async (nested) => {
            // The outer's write, not committed yet.
            expect((await nested.task(a.id))?.id).toBe(a.id);
            await save(nested, b);
            return "inner";
          });
          expect((await tx.task(b.id))?.id).toBe(b.id);
          return inner;
        });
        expect(value).toBe("inner");
        expect((await store.task(a.id))?.id).toBe(a.id);
        expect((await store.task(b.id))?.id).toBe(b.id);

        // Joined, not committed on its own: the outer's failure takes it along.
        await expect(
          store.transaction(async (tx) => {
            await tx.transaction(async (nested) => {
              await save(nested, c);
            });
            throw new Error("the outer fails");
          }),
        ).rejects.toThrow("the outer fails");
        expect(await store.task(c.id)).toBeUndefined();
      });

      // The service seals evidence inside the change's transaction and, when sealing fails,
      // records why and goes on (TaskService: "evidence could not be sealed").
      it("commits the rest of a transaction whose work caught a refused statement", async () => {
        const { store } = await fresh();
        const task = taskOf(0);
        await store.addEvidence(evidencePackage(task.id, 1), NOW);
        await store.transaction(async (tx) => {
          await save(tx, task);
          await expect(tx.addEvidence(evidencePackage(task.id, 1), NOW)).rejects.toThrow();
        });
        expect(await store.task(task.id)).toStrictEqual(task);
      });

      it("goes on after a refused statement the work caught", async () => {
        const { store } = await fresh();
        const task = taskOf(0);
        await store.addEvidence(evidencePackage(task.id, 1), NOW);
        await store.transaction(async (tx) => {
          await expect(tx.addEvidence(evidencePackage(task.id, 1), NOW)).rejects.toThrow();
          await tx.appendAudit(audit(task.id, "evidence_attached"));
          await save(tx, task);
        });
        expect(await store.task(task.id)).toStrictEqual(task);
        expect(await store.audit(task.id)).toHaveLength(1);
      });

      it("answers a refusal inside a transaction with a rejected promise, as outside one", async () => {
        const { store } = await fresh();
        await store.transaction(async (tx) => {
          let refused: Promise<unknown> | undefined;
          expect(() => {
            refused = tx.filedTasks(NOW, NOW);
          }).not.toThrow();
          await expect(refused).rejects.toThrow(RangeError);
        });
      });
    });
  });
}

suite("SQLite", openSqlite);

describe("the embedded task store behind the asynchronous interface", () => {
  it("refuses a call on the store itself from inside its transaction's work, instead of hanging", async () => {
    const backend = await openSqlite();
    try {
      const { store } = backend;
      const task = taskOf(0);
      const outcome = store.transaction(async (tx) => {
        await save(tx, task);
        // The store itself waits for this transaction to end: it would never answer.
        await store.task(task.id);
      });
      await expect(outcome).rejects.toThrow(/use the transaction's view \(tx\)/);
      expect(await store.task(task.id)).toBeUndefined();
      // Calls from outside, begun while the transaction ran, took their turn after it.
      const [before, after] = await Promise.all([
        store.transaction(async (tx) => {
          await save(tx, task);
          return "saved";
        }),
        store.task(task.id),
      ]);
      expect(before).toBe("saved");
      expect(after).toStrictEqual(task);
    } finally {
      await backend.close();
    }
  });
});

describe.runIf(postgres)("the task store in PostgreSQL", () => {
  suite("PostgreSQL", openPostgres);

  describe("what only the shared database does", () => {
    const opened: Backend[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });
    const fresh = async () => {
      const backend = await openPostgres();
      opened.push(backend);
      return backend;
    };

    it("gives 20 concurrent transactions 20 distinct consecutive ids", async () => {
      const { store } = await fresh();
      const taken = await Promise.all(
        Array.from({ length: 20 }, () => store.transaction((tx) => tx.nextTaskId("enforcement"))),
      );
      expect([...taken].sort()).toEqual(
        Array.from({ length: 20 }, (_, i) => `enf-${String(i + 1).padStart(6, "0")}`),
      );
    });

    it("shows a transaction's uncommitted task to no read outside it", async () => {
      const { store } = await fresh();
      const task = taskOf(0);
      const seen = await store.transaction(async (tx) => {
        await save(tx, task);
        return {
          inside: await tx.task(task.id),
          outside: await within(store.task(task.id), "a read outside the transaction"),
          listed: await within(store.queryTasks({ limit: 10 }), "a list outside the transaction"),
        };
      });
      expect(seen.inside).toStrictEqual(task);
      expect(seen.outside).toBeUndefined();
      expect(seen.listed.tasks).toEqual([]);
      expect(await store.task(task.id)).toStrictEqual(task);
    });

    describe("outbox delivery leases between nodes", () => {
      /** An outbox with rows for events 0 … n - 1 of `target`, oldest first. */
      async function outboxOf(store: AsyncTaskStore, target: string, n: number) {
        for (let i = 0; i < n; i++) {
          const event = await store.appendEvent(eventOf(taskOf(i), NOW + i), NOW + i);
          await store.enqueue(event.id, target, NOW + i);
        }
        const head = await store.outboxHead(target);
        if (head === undefined) throw new Error("no rows");
        return head;
      }

      it("gives one of several holders racing for a target the lease", async () => {
        const { store } = await fresh();
        const holders = ["node-a", "node-b", "node-c", "node-d"];
        for (let round = 0; round < 20; round++) {
          const target = `webhook:${round}`;
          const claims = await Promise.all(
            holders.map((h) => store.claimOutbox(target, h, MINUTE)),
          );
          const won = claims.flatMap((token, i) => (token === undefined ? [] : [i]));
          expect(won).toHaveLength(1);
          const winner = won[0] ?? -1;
          // The winner renews it; the others still do not get it.
          for (const [i, holder] of holders.entries()) {
            expect(await store.claimOutbox(target, holder, MINUTE)).toBe(
              i === winner ? claims[winner] : undefined,
            );
          }
        }
      });

      it("gives an expired lease to another holder under a larger token; the old one's fenced writes then change nothing", async () => {
        const { store } = await fresh();
        const head = await outboxOf(store, "webhook:a", 2);
        const old = await store.claimOutbox("webhook:a", "node-a", 300);
        if (old === undefined) throw new Error("a free lease was not granted");
        expect(await store.claimOutbox("webhook:a", "node-b", MINUTE)).toBeUndefined();
        await new Promise((resolve) => setTimeout(resolve, 400));
        const taken = await store.claimOutbox("webhook:a", "node-b", MINUTE);
        if (taken === undefined) throw new Error("an expired lease was not granted");
        expect(taken).toBeGreaterThan(old);
        // node-a, back from a pause, neither renews nor writes.
        expect(await store.claimOutbox("webhook:a", "node-a", MINUTE)).toBeUndefined();
        const fence = { target: "webhook:a", token: old };
        expect(await store.delivered(head.id, fence)).toBe(false);
        expect(await store.retryLater(head.id, 9, NOW + DAY, "late", fence)).toBe(false);
        expect(await store.bury(head.id, NOW, "max_attempts", fence)).toBe(false);
        expect(await store.releaseOutbox("webhook:a", "node-a", old)).toBe(false);
        expect(await store.outboxHead("webhook:a")).toStrictEqual(head);
        expect(await store.outboxDepths()).toEqual(new Map([["webhook:a", 2]]));
        expect(await store.deadCount()).toBe(0);
        // The new holder's do.
        expect(await store.delivered(head.id, { target: "webhook:a", token: taken })).toBe(true);
      });

      it("refuses the writes of an expired lease even if nobody took it, and gives its holder a new token", async () => {
        const { store } = await fresh();
        const head = await outboxOf(store, "webhook:a", 1);
        const old = await store.claimOutbox("webhook:a", "node-a", 300);
        if (old === undefined) throw new Error("a free lease was not granted");
        await new Promise((resolve) => setTimeout(resolve, 400));
        expect(await store.delivered(head.id, { target: "webhook:a", token: old })).toBe(false);
        const again = await store.claimOutbox("webhook:a", "node-a", MINUTE);
        if (again === undefined) throw new Error("an expired lease was not granted");
        expect(again).toBeGreaterThan(old);
        expect(await store.delivered(head.id, { target: "webhook:a", token: old })).toBe(false);
        expect(await store.delivered(head.id, { target: "webhook:a", token: again })).toBe(true);
      });

      it("lets another holder take a released lease at once, under a larger token", async () => {
        const { store } = await fresh();
        const first = await store.claimOutbox("webhook:a", "node-a", MINUTE);
        if (first === undefined) throw new Error("a free lease was not granted");
        expect(await store.releaseOutbox("webhook:a", "node-a", first)).toBe(true);
        const next = await store.claimOutbox("webhook:a", "node-b", MINUTE);
        expect(next).toBeGreaterThan(first);
        expect(await store.releaseOutbox("webhook:a", "node-a", first)).toBe(false);
        expect(await store.claimOutbox("webhook:a", "node-a", MINUTE)).toBeUndefined();
      });

      it("makes a takeover wait for a fenced write in flight, so the new holder reads the outbox after it", async () => {
        const { store } = await fresh();
        const head = await outboxOf(store, "webhook:a", 2);
        const old = await store.claimOutbox("webhook:a", "node-a", 300);
        if (old === undefined) throw new Error("a free lease was not granted");
        let committedAt = Infinity;
        const write = store.transaction(async (tx) => {
          const done = await tx.delivered(head.id, { target: "webhook:a", token: old });
          // The lease expires while the write's transaction is still open.
          await new Promise((resolve) => setTimeout(resolve, 600));
          committedAt = performance.now();
          return done;
        });
        await new Promise((resolve) => setTimeout(resolve, 400));
        const taken = await within(
          store.claimOutbox("webhook:a", "node-b", MINUTE),
          "a takeover after the write",
        );
        const takenAt = performance.now();
        expect(await write).toBe(true);
        expect(taken).toBeGreaterThan(old);
        expect(takenAt).toBeGreaterThanOrEqual(committedAt);
        expect((await store.outboxHead("webhook:a"))?.id).toBeGreaterThan(head.id);
      });
    });

    it("refuses TRUNCATE of the append-only tables", async () => {
      const { store, raw, table } = await fresh();
      await store.appendAudit(audit("enf-000001", "filed"));
      await store.addEvidence(evidencePackage("enf-000001", 1), NOW);
      await store.addAttachment(attachmentOf("enf-000001", 1, NOW));
      for (const name of ["audit", "evidence", "attachment"]) {
        await expect(raw(`TRUNCATE ${table(name)}`)).rejects.toThrow(/append-only/);
      }
      expect(await store.audit("enf-000001")).toHaveLength(1);
      expect(await store.evidenceCount("enf-000001")).toBe(1);
      expect(await store.attachmentCount("enf-000001")).toBe(1);
    });
  });
});
