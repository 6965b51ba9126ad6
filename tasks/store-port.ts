import type {
  Attachment,
  AuditAction,
  AuditEntry,
  EvidencePackage,
  Task,
  TaskEvent,
  TaskKind,
} from "../contracts/index.js";
import { sqliteTurns } from "../infra/sqlite-turns.js";
import type { OutboxStore } from "./notify/outbox.js";
import type { NewAudit, NewComplaint, TaskFilter, TaskPage, TaskStore } from "./store.js";

/*
 * The task service's state behind an asynchronous interface (issue #21): one contract, two
 * implementations, one test suite run against both (tests/integration/tasks/task-store.test.ts).
 *
 * - `TaskStore` (store.ts): the embedded `tasks.db` on better-sqlite3, synchronous; `asyncTaskStore`
 *   below puts it behind this interface unchanged.
 * - `PostgresTaskStore` (store-postgres.ts): the same tables in PostgreSQL, shared by the nodes.
 *
 * The methods mean what TaskStore's mean (see there). A transaction runs `work` with a view of
 * the store whose every call takes part in it: all of it is durable when the promise resolves,
 * or none of it when it rejects. A transaction begun inside another's `work` joins it.
 */
export interface AsyncTaskStore extends OutboxStore {
  transaction<T>(work: (tx: AsyncTaskStore) => Promise<T>): Promise<T>;

  nextTaskId(kind: TaskKind): Promise<string>;
  saveTask(
    task: Task,
    extra: { partyKey?: string | undefined; recheckDueMs?: number | undefined },
  ): Promise<void>;
  task(id: string): Promise<Task | undefined>;
  openTask(subjectType: string, subjectId: string, ruleId: string): Promise<Task | undefined>;
  linkViolation(
    taskId: string,
    subjectType: string,
    subjectId: string,
    ruleId: string,
  ): Promise<void>;
  openIncident(partyKey: string): Promise<Task | undefined>;
  partyCases(partyKey: string, sinceMs: number, exceptId: string): Promise<Task[]>;
  listTasks(filter: TaskFilter): Promise<Task[]>;
  queryTasks(filter: TaskFilter): Promise<TaskPage>;
  openTasks(): Promise<Task[]>;
  openCounts(): Promise<Array<{ kind: string; n: number }>>;
  flaggedTasks(): Promise<Task[]>;
  dueRechecks(nowMs: number): Promise<Task[]>;
  openTasksAtSite(siteId: string): Promise<Task[]>;
  filedTasks(fromMs: number, toMs: number): Promise<Task[]>;
  filedBetween(fromMs: number, toMs: number): Promise<Array<{ task: Task; audit: AuditEntry[] }>>;

  appendAudit(entry: NewAudit): Promise<AuditEntry>;
  audit(taskId: string): Promise<AuditEntry[]>;

  addEvidence(pkg: EvidencePackage, createdMs: number): Promise<void>;
  evidenceCount(taskId: string): Promise<number>;
  evidence(taskId: string, sequence?: number): Promise<EvidencePackage | undefined>;

  appendEvent(event: Omit<TaskEvent, "id">, atMs: number): Promise<TaskEvent>;
  event(id: number): Promise<TaskEvent | undefined>;
  eventsAfter(afterId: number, limit: number): Promise<TaskEvent[]>;

  // The outbox's rows, leases and fenced outcomes: OutboxStore's methods (tasks/notify/outbox.ts).
  deadCount(): Promise<number>;

  complaintTask(platform: string, complaintId: string): Promise<string | undefined>;
  addComplaint(entry: NewComplaint): Promise<void>;
  eraseComplaintContacts(closedBeforeMs: number): Promise<number>;
  complaintContact(platform: string, complaintId: string): Promise<unknown>;

  addAttachment(a: Attachment): Promise<boolean>;
  attachmentCount(taskId: string): Promise<number>;
  attachments(taskId: string): Promise<Attachment[]>;
  attachment(taskId: string, sha256: string): Promise<Attachment | undefined>;

  partyCaseHistory(partyKey?: string): Promise<Task[]>;
  partyAuditEntries(actions: readonly AuditAction[], partyKey?: string): Promise<AuditEntry[]>;

  close(): Promise<void>;
}

/** The methods of AsyncTaskStore other than transaction and close: each is TaskStore's, awaited. */
type Forwarded = Exclude<keyof AsyncTaskStore, "transaction" | "close">;

/**
 * The embedded TaskStore behind the asynchronous interface, its users taking turns
 * (infra/sqlite-turns.ts): a transaction's work runs inside BEGIN IMMEDIATE … COMMIT, and calls
 * from outside it wait until it ends.
 */
export function asyncTaskStore(store: TaskStore): AsyncTaskStore {
  const turns = sqliteTurns(() => store.hold());
  const view = (inTx: boolean): AsyncTaskStore => {
    const methods = turns.forward(store, FORWARDED, inTx) as unknown as Pick<
      AsyncTaskStore,
      Forwarded
    >;
    const self: AsyncTaskStore = {
      ...methods,
      transaction: <T>(work: (tx: AsyncTaskStore) => Promise<T>): Promise<T> =>
        inTx ? work(self) : turns.transaction(inside, work),
      close: () => turns.run(false)(() => store.close()),
    };
    return self;
  };
  const inside = view(true);
  return view(false);
}

/** Every forwarded method, checked against the interface by the compiler (none missing or extra). */
const FORWARDED_METHODS = {
  nextTaskId: true,
  saveTask: true,
  task: true,
  openTask: true,
  linkViolation: true,
  openIncident: true,
  partyCases: true,
  listTasks: true,
  queryTasks: true,
  openTasks: true,
  openCounts: true,
  flaggedTasks: true,
  dueRechecks: true,
  openTasksAtSite: true,
  filedTasks: true,
  filedBetween: true,
  appendAudit: true,
  audit: true,
  addEvidence: true,
  evidenceCount: true,
  evidence: true,
  appendEvent: true,
  event: true,
  eventsAfter: true,
  enqueue: true,
  outboxDepths: true,
  outboxHead: true,
  claimOutbox: true,
  releaseOutbox: true,
  delivered: true,
  retryLater: true,
  bury: true,
  deadCount: true,
  complaintTask: true,
  addComplaint: true,
  eraseComplaintContacts: true,
  complaintContact: true,
  addAttachment: true,
  attachmentCount: true,
  attachments: true,
  attachment: true,
  partyCaseHistory: true,
  partyAuditEntries: true,
} satisfies Record<Forwarded, true>;
const FORWARDED = Object.keys(FORWARDED_METHODS) as Forwarded[];
