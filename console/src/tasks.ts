import type { User } from "../../contracts/model/people.js";
import type { ClosureReason, Task, TaskState } from "../../contracts/model/tasks.js";
import { ACTS_ON, EARLY_CLOSURE, NEXT_STATES } from "../../contracts/model/task-rules.js";
import type { TaskKind } from "../../contracts/model/topics.js";
import { api } from "./api.js";

/*
 * Tasks as the console works with them: what a user's roles allow on a task in its state (the
 * server's own tables, contracts/model/task-rules.ts: the server decides, the console only hides
 * what would be refused), the queue's filters, sorting and search, and loading the list.
 */

export { EARLY_CLOSURE };
export const ALL_CLOSURE: readonly ClosureReason[] = ["rectified", ...EARLY_CLOSURE];

export const actsOn = (user: Pick<User, "roles">, kind: TaskKind): boolean =>
  user.roles.some((role) => ACTS_ON[role].includes(kind));

export const mayDispatchInBulk = (user: Pick<User, "roles">): boolean =>
  user.roles.includes("command_centre") || user.roles.includes("admin");

export type TaskAction =
  | {
      readonly type: "transition";
      readonly to: TaskState;
      /** Back to in_progress from handled or verified (the check found the work undone). */
      readonly reopen: boolean;
      /** Closing: the reasons this state allows. */
      readonly reasons?: readonly ClosureReason[];
    }
  | { readonly type: "review"; readonly decision: "approve" | "reject" }
  | { readonly type: "level"; readonly levels: readonly string[] }
  | { readonly type: "assign"; readonly reassign: boolean };

/** What the user may do with the task now; an empty list means read only. */
export function actionsFor(task: Task, user: User): TaskAction[] {
  const actions: TaskAction[] = [];
  const acts = actsOn(user, task.kind);
  const referred = task.graduated?.stage === "referred";
  const reviewer = user.roles.includes("legal_reviewer");
  for (const to of NEXT_STATES[task.state]) {
    if (to === "closed") {
      // A referred case is closed only by a legal reviewer (docs/tasks.md, Duties).
      if (referred ? !reviewer : !acts) continue;
      actions.push({
        type: "transition",
        to,
        reopen: false,
        reasons: task.state === "verified" ? ALL_CLOSURE : EARLY_CLOSURE,
      });
      continue;
    }
    if (!acts) continue;
    // Whoever handled a task may not verify it.
    if (to === "verified" && task.handledBy === user.id) continue;
    actions.push({
      type: "transition",
      to,
      reopen: to === "in_progress" && (task.state === "handled" || task.state === "verified"),
    });
  }
  if (reviewer && task.graduated?.review?.status === "pending") {
    actions.push({ type: "review", decision: "approve" }, { type: "review", decision: "reject" });
  }
  if (acts && task.kind === "emergency" && task.state !== "closed" && task.level !== undefined) {
    const names = task.levelNames ?? [];
    const at = names.indexOf(task.level);
    actions.push({ type: "level", levels: at > 0 ? names.slice(0, at) : [] });
  }
  if (acts && task.state !== "closed" && task.assignee?.userId !== user.id) {
    actions.push({ type: "assign", reassign: task.assignee !== undefined });
  }
  return actions;
}

// ---------------------------------------------------------------------------------------------
// The queue

export type Sort = "-filedAt" | "filedAt" | "slaDue" | "level";

export interface Filters {
  kind: TaskKind | "";
  /** A state, `open` or `` (all). */
  state: TaskState | "open" | "";
  level: string;
  district: string;
  street: string;
  grid: string;
  party: string;
  overdue: boolean;
  q: string;
  sort: Sort;
}

export const NO_FILTERS: Filters = {
  kind: "",
  state: "open",
  level: "",
  district: "",
  street: "",
  grid: "",
  party: "",
  overdue: false,
  q: "",
  sort: "-filedAt",
};

/** When the task must be handled or closed by (ms), if a timer runs. */
export function slaDue(task: Task): number | undefined {
  const due = task.state === "closed" ? undefined : (task.sla.handleBy ?? task.sla.closeBy);
  return due === undefined ? undefined : Date.parse(due);
}

export const isOverdue = (task: Task, now: number): boolean => {
  if (task.state === "closed") return false;
  const due = slaDue(task);
  return task.sla.flags.length > 0 || (due !== undefined && due < now);
};

export const partyOf = (task: Task): { key: string; name: string } | undefined =>
  task.graduated?.party;

const contains = (text: string | undefined, part: string) =>
  text !== undefined && text.toLowerCase().includes(part.toLowerCase());

export function matches(task: Task, f: Filters, now: number): boolean {
  if (f.kind !== "" && task.kind !== f.kind) return false;
  if (f.state === "open" && task.state === "closed") return false;
  if (f.state !== "" && f.state !== "open" && task.state !== f.state) return false;
  if (f.level !== "" && task.level !== f.level) return false;
  if (f.district !== "" && task.routing.district !== f.district) return false;
  if (f.street !== "" && task.routing.street !== f.street) return false;
  if (f.grid !== "" && task.routing.gridCell !== f.grid) return false;
  const party = partyOf(task);
  if (f.party !== "" && !(contains(party?.name, f.party) || contains(party?.key, f.party)))
    return false;
  if (f.overdue && !isOverdue(task, now)) return false;
  const q = f.q.trim();
  if (
    q !== "" &&
    !(
      contains(task.id, q) ||
      contains(party?.name, q) ||
      contains(party?.key, q) ||
      contains(task.siteId, q)
    )
  )
    return false;
  return true;
}

export function sortTasks(tasks: Task[], sort: Sort): Task[] {
  const filed = (t: Task) => Date.parse(t.filedAt);
  const by: Record<Sort, (a: Task, b: Task) => number> = {
    "-filedAt": (a, b) => filed(b) - filed(a),
    filedAt: (a, b) => filed(a) - filed(b),
    slaDue: (a, b) => (slaDue(a) ?? Infinity) - (slaDue(b) ?? Infinity) || filed(b) - filed(a),
    level: (a, b) => b.levelIndex - a.levelIndex || filed(b) - filed(a),
  };
  return tasks.sort(by[sort]);
}

/**
 * Whether the server filters and sorts by every name the queue uses (GET /api/v1/tasks with
 * state lists, level, street, grid, party, overdue, q, sort and a cursor). An older server refuses
 * unknown parameters (400); the console then asks for what it knows and filters the rest itself.
 */
let extended: Promise<boolean> | undefined;
export function serverFilters(): Promise<boolean> {
  extended ??= api("GET", "/api/v1/tasks?limit=1&sort=-filedAt&q=x&overdue=true").then(
    () => true,
    () => false,
  );
  return extended;
}

interface Page {
  tasks: Task[];
  nextCursor?: string | null;
}

/** The most tasks the queue holds (ten pages of the API's largest). */
export const MAX_TASKS = 10_000;

/** The tasks for these filters: the server's part of the filtering, all pages. */
export async function loadTasks(f: Filters): Promise<Task[]> {
  const full = await serverFilters();
  const query = new URLSearchParams({ limit: "1000" });
  if (f.kind !== "") query.set("kind", f.kind);
  if (f.state !== "") query.set("state", f.state);
  if (f.district !== "") query.set("district", f.district);
  if (full) {
    for (const [name, value] of [
      ["level", f.level],
      ["street", f.street],
      ["grid", f.grid],
      ["party", f.party],
      ["q", f.q.trim()],
    ] as const)
      if (value !== "") query.set(name, value);
    if (f.overdue) query.set("overdue", "true");
    query.set("sort", f.sort);
  }
  const tasks: Task[] = [];
  let cursor: string | undefined;
  do {
    if (cursor !== undefined) query.set("cursor", cursor);
    const page = await api<Page>("GET", `/api/v1/tasks?${query.toString()}`);
    tasks.push(...page.tasks);
    cursor = full && typeof page.nextCursor === "string" ? page.nextCursor : undefined;
  } while (cursor !== undefined && tasks.length < MAX_TASKS);
  return tasks;
}
