import type { Task, TaskKind, TaskState } from "../../../contracts/index.js";
import type { TaskStore } from "../../../tasks/store.js";

/*
 * A city's task queue written straight into a task store (no rules, no evidence): tasks of every
 * kind spread over districts, streets (街道) and grid cells, with levels, parties, SLA dues on
 * both sides of `nowMs` and some closed. For the queue tests and `npm run bench -- console`.
 * Deterministic: task i is always the same task.
 */

export const QUEUE_DISTRICTS = ["jinjiang", "qingyang", "wuhou", "chenghua"] as const;
/** Streets per district: `{district}-s{0..3}`; grid cells per street: `{street}-g{0..4}`. */
export const STREETS_PER_DISTRICT = 4;
export const GRIDS_PER_STREET = 5;

const KINDS: readonly TaskKind[] = ["enforcement", "emergency", "maintenance", "enforcement"];
const OPEN: readonly TaskState[] = ["filed", "dispatched", "acknowledged", "in_progress"];
/** Ids from 100000 on: the store's own counter (new tasks) starts at 1 and does not meet them. */
export const QUEUE_ID_BASE = 100_000;
const EMERGENCY_LEVELS = ["IV", "III", "II", "I"] as const;

export interface QueueTaskOptions {
  /** The instant filing times count back from and SLA dues spread around. */
  readonly nowMs: number;
  /** Every `closedEvery`-th task is closed (0: none). */
  readonly closedEvery?: number;
}

/** The party of enforcement case i: 50 parties, each with a credit code and a name. */
export function queueParty(i: number): { key: string; name: string } {
  const n = i % 50;
  return {
    key: `91510100MA${String(n).padStart(8, "0")}`,
    name: n % 2 === 0 ? `Chengdu Builders ${n} Co., Ltd.` : `蓉城餐饮${n}号店`,
  };
}

/** Task i of the queue. */
export function queueTask(i: number, options: QueueTaskOptions): Task {
  const kind = KINDS[i % KINDS.length] as TaskKind;
  const district = QUEUE_DISTRICTS[i % QUEUE_DISTRICTS.length] as string;
  const street = `${district}-s${Math.floor(i / 4) % STREETS_PER_DISTRICT}`;
  const gridCell = `${street}-g${Math.floor(i / 16) % GRIDS_PER_STREET}`;
  const closed =
    options.closedEvery !== undefined && options.closedEvery > 0
      ? i % options.closedEvery === options.closedEvery - 1
      : false;
  const state: TaskState = closed ? "closed" : (OPEN[Math.floor(i / 3) % OPEN.length] as TaskState);
  // Filed one per minute back from now, a few in the same millisecond (ties broken by id).
  const filedMs = options.nowMs - Math.floor(i / 3) * 60_000;
  const levelIndex =
    kind === "emergency" ? Math.floor(i / 4) % 4 : kind === "enforcement" ? i % 2 : 0;
  const level =
    kind === "emergency"
      ? EMERGENCY_LEVELS[levelIndex]
      : kind === "enforcement"
        ? levelIndex === 0
          ? "warning"
          : "case"
        : undefined;
  // Due from 9.5 h ago to 29.5 h ahead, never within half an hour of now: a quarter overdue.
  const dueMs = options.nowMs + ((i * 7_919) % 40) * 3_600_000 - 10 * 3_600_000 + 1_800_000;
  const id = `${kind === "enforcement" ? "enf" : kind === "emergency" ? "emg" : "mnt"}-${String(QUEUE_ID_BASE + i)}`;
  const siteId = `site-${district}-${i % 200}`;
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    id,
    kind,
    state,
    title: `${kind} task ${i}`,
    rule: {
      id: `${kind}.rule.${i % 5}`,
      version: 1,
      clause: { standard: "GB 12523-2011", section: "4.1" },
    },
    subject: { type: "device", id: `dev-q${i}` },
    siteId,
    deviceIds: [`dev-${i % 300}`],
    routing: {
      department: `${district}-brigade`,
      team: `${street} team`,
      district,
      street,
      gridCell,
      rule: null,
    },
    ...(level === undefined ? {} : { level }),
    levelIndex,
    affectedSites: [siteId],
    actions: [],
    alarmSeq: 1,
    detail: `reading over the limit at ${siteId}`,
    value: 70 + (i % 20),
    limit: 55,
    replayed: false,
    filedAt: iso(filedMs),
    startedAt: iso(filedMs - 600_000),
    updatedAt: iso(filedMs),
    repeats: 0,
    escalations: 0,
    ...(kind === "enforcement"
      ? {
          graduated: {
            stage: "warning" as const,
            party: queueParty(i),
            reason: "first violation",
          },
        }
      : {}),
    ...(closed
      ? { closedAt: iso(filedMs + 60_000), closure: { reason: "rectified" as const } }
      : {}),
    sla: closed
      ? { flags: [] }
      : { flags: dueMs < options.nowMs ? ["not_handled"] : [], handleBy: iso(dueMs) },
    evidenceCount: 0,
  };
}

/** Write tasks 0 … n-1 into the store in one transaction; returns them. */
export function fillQueue(store: TaskStore, n: number, options: QueueTaskOptions): Task[] {
  const tasks = Array.from({ length: n }, (_, i) => queueTask(i, options));
  store.transaction(() => {
    for (const task of tasks) store.saveTask(task, { partyKey: task.graduated?.party.key });
  });
  return tasks;
}
