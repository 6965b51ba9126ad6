import type { Logger } from "pino";
import type { TasksConfig } from "../contracts/config/tasks.js";
import type { Rule, Site } from "../contracts/index.js";
import type {
  ApiRole,
  Attachment,
  AuditAction,
  AuditEntry,
  ClosureReason,
  GraduatedResponse,
  Task,
  TaskEvent,
  TaskState,
  TransitionRequest,
} from "../contracts/model/tasks.js";
import type { AlarmDecision, AlarmNotice, Recheck, TaskSink } from "../contracts/model/alarms.js";
import { unverifiedOf } from "../contracts/model/rule-confidence.js";
import { escalationAfter } from "../contracts/model/rule-severity.js";
import { buildEvidenceBody } from "./evidence.js";
import type { EvidenceSigner } from "./evidence-keys.js";
import { linkTo, sealEvidence } from "./evidence-seal.js";
import { afterRecheck, afterRepeat, firstResponse, partyOf, recheckDueMs } from "./graduated.js";
import { checkTransition } from "./lifecycle.js";
import { reviewGate } from "./credit-record.js";
import type { TaskMetrics } from "./metrics.js";
import { routeTask } from "./routing.js";
import { calendarOf, type WorkingCalendar } from "./calendar/working-time.js";
import { slaState } from "./sla.js";
import type { NewAudit } from "./store.js";
import type { AsyncTaskStore } from "./store-port.js";
import { AlarmQueue, type AlarmQueueOptions } from "./alarm-queue.js";
import type { RegistryLookup } from "./types.js";

/*
 * The task service: turns alarm decisions into tasks (file, attach repeats, raise levels,
 * escalate, record clears), applies people's transitions, runs SLA timers and re-checks. Every
 * change is one SQLite transaction holding the task, its audit entries, its evidence, its event
 * and the event's outbox rows; listeners (the live stream, the outbox pump) hear of it after the
 * commit. A `clear` does not close the task: the condition stopping is not the case being dealt
 * with, so it is recorded and people close the task.
 *
 * Flap damping: a condition that comes and goes (quality flags alternating fault/normal) must not
 * turn into thousands of events and sealed packages. Per task, at most `damping.maxEventsPerHour`
 * events are published and `damping.maxEvidencePerHour` packages sealed in a sliding hour.
 * Beyond, a repeat, a clear or an unacknowledged escalation is still recorded (task row, audit
 * trail) but publishes no event of its own (`task.damping.suppressedEvents`, pending) and seals no
 * package (`suppressedEvidence`); the tick publishes one `events_coalesced` event with the task as
 * it is once the hour has room. Filing, level rises and people's transitions are never held back.
 */

export interface TaskServiceDeps {
  readonly log: Logger;
  readonly config: TasksConfig;
  readonly store: AsyncTaskStore;
  readonly registry: RegistryLookup;
  readonly metrics: TaskMetrics;
  readonly now: () => number;
  /** Re-check of a warned party at the rectification deadline; absent: every re-check finds no data. */
  readonly recheck?: Recheck | undefined;
  /** Called inside each change's transaction with its event (the outbox writes its rows here). */
  readonly enqueue?: ((event: TaskEvent, tx: AsyncTaskStore) => Promise<void>) | undefined;
  /** The alarm queue's bound and retries (handleAlarm); absent: the defaults. */
  readonly alarmQueue?: Partial<AlarmQueueOptions> | undefined;
  /** Signs evidence packages (the deployment's keyring, tasks/evidence-keys.ts). */
  readonly keyring: EvidenceSigner;
}

/** The person (or `system`) behind a change. */
export interface Actor {
  /** How the audit trail names them. */
  readonly name: string;
  /**
   * Who they are for separation of duties (a user id, or `token:<name>` for a service account's
   * token); absent: the name.
   */
  readonly id?: string | undefined;
  /** Their roles (legal review, closing referred cases); absent: none of those duties. */
  readonly roles?: readonly ApiRole[] | undefined;
}

export type TransitionResult =
  | { readonly ok: true; readonly task: Task; readonly event: TaskEvent }
  | {
      readonly ok: false;
      readonly error: "not_found" | "conflict" | "forbidden";
      readonly message: string;
    };

const identityOf = (actor: Actor) => actor.id ?? actor.name;

const SYSTEM = "system";
const iso = (ms: number) => new Date(ms).toISOString();
const HOUR_MS = 3_600_000;
/** Tasks whose damping windows are held at most (older windows are forgotten first). */
const DAMPING_TASKS_MAX = 50_000;

/** What a task published and sealed in the last hour (flap damping). */
interface DampingWindow {
  readonly events: number[];
  readonly evidence: number[];
}

/** Actions of a level and the levels below it, in order, once each: a higher level adds to the lower ones' work. */
function actionsUpTo(rule: Rule, levelIndex: number): string[] {
  if (rule.levels === undefined) return [...rule.actions];
  return [...new Set(rule.levels.slice(0, levelIndex + 1).flatMap((l) => l.actions))];
}

/** The sites a task concerns: a tunnel segment and its neighbours when a reached level says so. */
function affectedSites(rule: Rule, levelIndex: number, site: Site | undefined): string[] {
  if (site === undefined) return [];
  const wide = (rule.levels ?? [])
    .slice(0, levelIndex + 1)
    .some((l) => l.area === "subject_and_neighbours");
  return wide && site.type === "tunnel_segment" ? [site.id, ...site.neighbours] : [site.id];
}

/** Level name and index a decision carries (raise, escalate-level). */
function levelOf(
  decision: AlarmDecision,
): { level: string | undefined; levelIndex: number } | undefined {
  return decision.type === "raise" || decision.type === "escalate-level"
    ? { level: decision.level, levelIndex: decision.levelIndex }
    : undefined;
}

/**
 * When the data show a decision's violation: a raise from when its condition started to hold,
 * anything else at its own instant. Graduated response judges deadlines on this clock.
 */
function dataTimeOf(decision: AlarmDecision): number {
  return decision.type === "raise" ? decision.startedAt : decision.at;
}

/** One violation of an enforcement case, as the case lists it. */
function violationOf(notice: AlarmNotice): NonNullable<Task["violations"]>[number] {
  const { rule, decision: d } = notice;
  return {
    ruleId: rule.id,
    ruleVersion: rule.version,
    clause: rule.clause,
    subject: { type: notice.subjectType, id: notice.subjectId },
    alarmSeq: d.alarmSeq,
    startedAt: iso(dataTimeOf(d)),
    detail: "detail" in d ? d.detail : d.type,
    ...("value" in d && d.value !== undefined ? { value: d.value } : {}),
    ...("limit" in d && d.limit !== undefined ? { limit: d.limit } : {}),
  };
}

/**
 * Why an actor may not make a transition (separation of duties), or undefined: whoever handled a
 * task does not verify it; a case referred for penalty is closed by a legal reviewer only.
 */
function dutyProblem(task: Task, request: TransitionRequest, actor: Actor): string | undefined {
  if (request.to === "verified" && task.handledBy !== undefined) {
    if (task.handledBy === identityOf(actor)) {
      return "separation of duties: whoever handled a task does not verify it; another person must";
    }
  }
  if (
    request.to === "closed" &&
    task.graduated?.stage === "referred" &&
    !(actor.roles ?? []).includes("legal_reviewer")
  ) {
    return "a case referred for penalty is closed (as rectified, false positive or otherwise) only by a legal reviewer (legal_reviewer role), who records the review";
  }
  return undefined;
}

interface Draft {
  task: Task;
  readonly entries: Array<Omit<NewAudit, "taskId" | "atMs">>;
  evidence: boolean;
}

export class TaskService implements TaskSink {
  private readonly ackListeners = new Set<(ruleId: string, subjectId: string) => void>();
  private readonly eventListeners = new Set<(event: TaskEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  /** The tick running now, if any: a slow one is not overlapped by the next. */
  private ticking: Promise<void> | undefined;
  /** Alarm decisions handed over by the rules driver, applied in order (alarm-queue.ts). */
  private readonly alarms: AlarmQueue<AlarmNotice>;
  /** Flap damping: per task, what it published and sealed in the last hour (in memory). */
  private readonly damping = new Map<string, DampingWindow>();

  /** Office hours and holidays of `working` SLA clocks (tasks.calendar). */
  private readonly calendar: WorkingCalendar;

  constructor(private readonly deps: TaskServiceDeps) {
    this.calendar = calendarOf(deps.config.calendar);
    this.alarms = new AlarmQueue<AlarmNotice>({
      apply: (notice) => this.applyAlarm(notice),
      describe: (n) => ({ rule: n.rule.id, subject: n.subjectId, decision: n.decision.type }),
      log: deps.log,
      dropped: (reason) => deps.metrics.alarmsDropped.inc({ reason }),
      options: deps.alarmQueue,
    });
    deps.metrics.observe({
      open: () => deps.store.openCounts(),
      flagged: () => this.countFlagged(),
      alarmQueue: () => this.alarms.depth(),
    });
  }

  /** Run SLA timers and re-checks every `tickMs` (a tick still running is not overlapped). */
  start(): void {
    this.timer = setInterval(() => {
      if (this.ticking !== undefined) return;
      this.ticking = this.tick()
        .catch((error: unknown) => {
          this.deps.log.error(
            { err: (error as Error).message },
            "task tick failed; next tick retries",
          );
        })
        .finally(() => {
          this.ticking = undefined;
        });
    }, this.deps.config.tickMs);
    this.timer.unref();
  }

  /** Stop the timers; the alarm decisions handed over are applied first. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.alarms.stop();
    await this.ticking;
  }

  /** Resolves once every alarm decision handed over so far is applied (or given up). */
  settled(): Promise<void> {
    return this.alarms.settled();
  }

  onAcknowledged(listener: (ruleId: string, subjectId: string) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Hear of every committed task event (live stream, outbox pump). */
  onEvent(listener: (event: TaskEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  task(id: string): Promise<Task | undefined> {
    return this.deps.store.task(id);
  }

  audit(id: string): Promise<AuditEntry[]> {
    return this.deps.store.audit(id);
  }

  /**
   * The rules driver's hand-over (TaskSink): the decision joins the ordered, bounded queue and
   * is applied after the ones before it (`applyAlarm`); `settled()` says when.
   */
  handleAlarm(notice: AlarmNotice): void {
    this.alarms.push(notice);
  }

  /** Every decision handed over before the call applied or given up (TaskSink.handled). */
  handled(): Promise<void> {
    return this.alarms.handled();
  }

  /** Apply one alarm decision: file, attach, raise, escalate or record a clear, in one transaction. */
  async applyAlarm(notice: AlarmNotice): Promise<void> {
    const { store, log } = this.deps;
    const now = this.deps.now();
    const d = notice.decision;
    const event = await store.transaction(
      async (tx): Promise<TaskEvent | "suppressed" | undefined> => {
        const open = await tx.openTask(notice.subjectType, notice.subjectId, notice.rule.id);
        switch (d.type) {
          case "raise":
          case "attach-repeat": {
            if (open !== undefined) return this.repeat(tx, open, notice, now);
            const incident = await this.incidentOf(tx, notice);
            return incident === undefined
              ? this.file(tx, notice, now)
              : this.attachViolation(tx, incident, notice, now);
          }
          case "escalate-level":
            return open === undefined
              ? this.file(tx, notice, now)
              : this.raiseLevel(tx, open, notice, now);
          case "escalate-unacknowledged":
            if (open === undefined) return undefined;
            return this.commit(
              tx,
              {
                task: { ...open, escalations: d.count },
                entries: [
                  {
                    actor: SYSTEM,
                    action: "escalated_unacknowledged",
                    detail: `not acknowledged in time: escalation ${d.count}${open.acknowledgedAt === undefined ? "" : " (acknowledged meanwhile)"}`,
                  },
                ],
                evidence: false,
              },
              now,
              undefined,
              true,
            );
          case "clear": {
            if (open === undefined) return undefined;
            // A violation an incident holds besides its own clears alone: the case's own
            // condition (its first violation) may still hold.
            const own =
              open.subject.type === notice.subjectType &&
              open.subject.id === notice.subjectId &&
              open.rule.id === notice.rule.id;
            return this.commit(
              tx,
              {
                task: own ? { ...open, conditionClearedAt: iso(d.at) } : open,
                entries: [
                  {
                    actor: SYSTEM,
                    action: "condition_cleared",
                    detail: own
                      ? `condition cleared at ${iso(d.at)}; the task stays open until closed`
                      : `${notice.rule.id} on ${notice.subjectType} ${notice.subjectId} cleared at ${iso(d.at)}; the case stays open until closed`,
                  },
                ],
                evidence: false,
              },
              now,
              undefined,
              true,
            );
          }
        }
      },
    );
    if (event === "suppressed") {
      log.debug(
        { rule: notice.rule.id, subject: notice.subjectId, decision: d.type },
        "recorded without an event: the task is at its hourly event bound (flap damping)",
      );
      return;
    }
    if (event === undefined) {
      log.info(
        { rule: notice.rule.id, subject: notice.subjectId, decision: d.type },
        "no open task for this decision; nothing to record",
      );
      return;
    }
    this.published(event);
  }

  /** Apply a person's transition. */
  async transition(
    id: string,
    request: TransitionRequest,
    actor: Actor,
  ): Promise<TransitionResult> {
    const now = this.deps.now();
    const result = await this.deps.store.transaction(async (tx): Promise<TransitionResult> => {
      const task = await tx.task(id);
      if (task === undefined) return { ok: false, error: "not_found", message: `no task ${id}` };
      const check = checkTransition(task.state, request.to, request.reason);
      if (!check.ok) return { ok: false, error: "conflict", message: check.reason };
      const duty = dutyProblem(task, request, actor);
      if (duty !== undefined) return { ok: false, error: "forbidden", message: duty };
      const moved = this.moved(task, request.to, request.reason, request.note, now);
      const next = request.to === "handled" ? { ...moved, handledBy: identityOf(actor) } : moved;
      const event = await this.record(tx, next, now, [
        {
          actor: actor.name,
          action: "transition",
          from: task.state,
          to: request.to,
          detail: [
            request.reason === undefined ? "" : `reason ${request.reason}`,
            request.note ?? "",
          ]
            .filter((s) => s !== "")
            .join("; "),
        },
      ]);
      return { ok: true, task: event.task, event };
    });
    if (result.ok) {
      this.published(result.event);
      if (request.to === "acknowledged") this.acknowledged(result.task);
    }
    return result;
  }

  /**
   * A legal reviewer's decision on a referral for penalty (法制审核): approved, or rejected with a
   * note (the case goes back to a warning with its deadline).
   */
  review(
    id: string,
    request: { readonly decision: "approve" | "reject"; readonly note?: string | undefined },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      if (!(actor.roles ?? []).includes("legal_reviewer")) {
        return {
          ok: false,
          error: "forbidden",
          message: "a legal review needs the legal_reviewer role",
        };
      }
      const graduated = task.graduated;
      if (graduated?.stage !== "referred" || graduated.review?.status !== "pending") {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} has no referral awaiting legal review`,
        };
      }
      // The party must have been told and heard (notice served, window passed or statement).
      const gate = reviewGate(task, request.decision, now);
      if (gate !== undefined) return gate;
      if (request.decision === "reject" && (request.note ?? "").trim() === "") {
        return {
          ok: false,
          error: "conflict",
          message: "a rejected referral needs a note saying why",
        };
      }
      const review = {
        status: request.decision === "approve" ? ("approved" as const) : ("rejected" as const),
        by: actor.name,
        at: iso(now),
        ...(request.note === undefined ? {} : { note: request.note }),
      };
      const next: GraduatedResponse =
        request.decision === "approve"
          ? { ...graduated, review }
          : {
              ...graduated,
              stage: "warning",
              review,
              reason: `legal review rejected the referral: ${request.note ?? ""}`,
            };
      const event = await this.record(tx, { ...task, graduated: next }, now, [
        {
          actor: actor.name,
          action:
            request.decision === "approve" ? "legal_review_approved" : "legal_review_rejected",
          detail:
            request.decision === "approve"
              ? `referral for penalty of ${graduated.party.name} approved${request.note === undefined ? "" : `: ${request.note}`}`
              : `referral rejected, back to the warning: ${request.note ?? ""}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /**
   * An authorised person lowers an emergency task's level, or lifts it (the emergency response
   * ends; the task stays open until closed), with a reason. A later decision of the rules at a
   * higher level raises it again.
   */
  changeLevel(
    id: string,
    request: { readonly to: string; readonly reason: string },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      if (task.kind !== "emergency" || task.state === "closed") {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} is not an open emergency task`,
        };
      }
      if (task.level === undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} has no level to lower or lift`,
        };
      }
      const names = task.levelNames ?? [];
      const lifted = request.to === "lifted";
      const index = lifted ? -1 : names.indexOf(request.to);
      if (!lifted && (index < 0 || index >= task.levelIndex)) {
        const lower = names.slice(0, task.levelIndex);
        return {
          ok: false,
          error: "conflict",
          message: `${request.to} is not below the task's level ${task.level}; lower to ${[...lower, "lifted"].join(", ")}`,
        };
      }
      const { level: _old, ...rest } = task;
      const next: Task = {
        ...rest,
        ...(lifted ? {} : { level: request.to }),
        levelIndex: lifted ? -1 : index,
        levelHistory: [
          ...(task.levelHistory ?? []),
          {
            level: lifted ? null : request.to,
            at: iso(now),
            by: actor.name,
            reason: request.reason,
          },
        ],
      };
      const event = await this.record(tx, next, now, [
        {
          actor: actor.name,
          action: lifted ? "level_lifted" : "level_lowered",
          detail: `level ${task.level} → ${lifted ? "lifted" : request.to}: ${request.reason}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /** Assign a task to a person (a reassignment needs a reason). */
  assign(
    id: string,
    request: {
      readonly userId: string;
      readonly name: string;
      readonly reason?: string | undefined;
    },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      if (task.state === "closed") {
        return { ok: false, error: "conflict", message: `task ${id} is closed` };
      }
      const previous = task.assignee;
      if (previous !== undefined && (request.reason ?? "").trim() === "") {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} is assigned to ${previous.name}; a reassignment needs a reason`,
        };
      }
      const assignee = { userId: request.userId, name: request.name, at: iso(now) };
      const event = await this.record(tx, { ...task, assignee }, now, [
        {
          actor: actor.name,
          action: "assigned",
          detail: `${previous === undefined ? "assigned" : `reassigned from ${previous.name} [${previous.userId}]`} to ${request.name} [${request.userId}]${request.reason === undefined ? "" : `: ${request.reason}`}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /**
   * A person's change of one task (review, level, assignment, notice, statement, referral): the
   * task read and changed in one transaction, its event published once committed.
   */
  private async change(
    id: string,
    apply: (task: Task, now: number, tx: AsyncTaskStore) => Promise<TransitionResult>,
  ): Promise<TransitionResult> {
    const now = this.deps.now();
    const result = await this.deps.store.transaction(async (tx): Promise<TransitionResult> => {
      const task = await tx.task(id);
      if (task === undefined) return { ok: false, error: "not_found", message: `no task ${id}` };
      return apply(task, now, tx);
    });
    if (result.ok) this.published(result.event);
    return result;
  }

  /** SLA flags, due re-checks and coalesced (damped) changes at the clock's now. */
  async tick(): Promise<void> {
    const now = this.deps.now();
    const { store } = this.deps;
    const events: TaskEvent[] = [];
    // Each change reads its task again inside its transaction (locked there on PostgreSQL): the
    // lists are read before, and a repeat or a person's move may land in between; writing the
    // task as listed would undo it.
    const changeOf = async (
      id: string,
      change: (tx: AsyncTaskStore, task: Task) => Promise<TaskEvent | undefined>,
    ) => {
      const event = await store.transaction(async (tx) => {
        const task = await tx.task(id);
        return task === undefined ? undefined : change(tx, task);
      });
      if (event !== undefined) events.push(event);
    };
    for (const due of await store.dueRechecks(now)) {
      await changeOf(due.id, (tx, task) => {
        const dueMs = recheckDueMs(task.graduated);
        return dueMs === undefined || dueMs > now
          ? Promise.resolve(undefined)
          : this.recheck(tx, task, now);
      });
    }
    const { maxEventsPerHour, maxEvidencePerHour } = this.deps.config.damping;
    for (const listed of await store.openTasks()) {
      if (listed.damping?.pending !== true) continue;
      if (this.windowOf(listed.id, now).events.length >= maxEventsPerHour) continue;
      await changeOf(listed.id, (tx, task) => {
        const damping = task.damping;
        if (damping?.pending !== true) return Promise.resolve(undefined);
        return this.record(tx, task, now, [
          {
            actor: SYSTEM,
            action: "events_coalesced",
            detail: `flap damping: ${damping.suppressedEvents} changes recorded without their own event and ${damping.suppressedEvidence} evidence packages not sealed so far (at most ${maxEventsPerHour} events and ${maxEvidencePerHour} packages per task and hour); this event carries the task as it is now`,
          },
        ]);
      });
    }
    for (const listed of await store.openTasks()) {
      if (this.slaChange(listed, now) === undefined) continue;
      await changeOf(listed.id, (tx, task) => {
        const change = this.slaChange(task, now);
        return change === undefined
          ? Promise.resolve(undefined)
          : this.record(tx, change.task, now, change.entries);
      });
    }
    for (const event of events) this.published(event);
  }

  /**
   * The task with its SLA state at `now` and the audit entries of the limits newly passed
   * (flagged, and escalated to the lead of the team it is routed to), or undefined when its SLA
   * state is as recorded.
   */
  private slaChange(
    task: Task,
    now: number,
  ): { task: Task; entries: Draft["entries"] } | undefined {
    if (task.state === "closed") return undefined;
    const sla = slaState(this.deps.config.sla, task, now, this.calendar);
    const flags = sla.flags;
    const added = flags.filter((f) => !task.sla.flags.includes(f));
    if (added.length === 0 && flags.length === task.sla.flags.length) return undefined;
    const lead =
      this.deps.config.teamLeads[task.routing.team] ?? `the lead of ${task.routing.team}`;
    const escalated = added.length > 0 ? { escalatedTo: lead } : {};
    return {
      task: { ...task, sla: { ...sla, ...escalated } },
      entries: added.map((flag) => ({
        actor: SYSTEM,
        action: "sla_flagged" as const,
        detail: `${
          flag === "not_handled"
            ? `not handled by ${sla.handleBy ?? "?"} (${task.kind} SLA)`
            : `handled ${task.handledAt ?? "?"} and not closed by ${sla.closeBy ?? "?"} (${task.kind} SLA)`
        }; escalated to ${lead}`,
      })),
    };
  }

  // -------------------------------------------------------------------------------------------

  private async file(tx: AsyncTaskStore, notice: AlarmNotice, now: number): Promise<TaskEvent> {
    const { rule, decision: d } = notice;
    const { registry, config } = this.deps;
    const id = await tx.nextTaskId(rule.taskKind);
    const siteId =
      notice.siteId ??
      (notice.subjectType === "device"
        ? registry.device(notice.subjectId)?.siteId
        : notice.subjectId);
    const site = siteId === undefined ? undefined : registry.site(siteId);
    const level = levelOf(d) ?? { level: undefined, levelIndex: 0 };
    const routing = routeTask(config, { kind: rule.taskKind, ruleId: rule.id, site });
    const values = "value" in d ? d : undefined;
    const task: Task = {
      id,
      kind: rule.taskKind,
      state: "filed",
      title: rule.title,
      rule: {
        id: rule.id,
        version: rule.version,
        clause: rule.clause,
        confidence: rule.confidence,
        unverified: unverifiedOf(rule),
      },
      subject: { type: notice.subjectType, id: notice.subjectId },
      ...(siteId === undefined ? {} : { siteId }),
      deviceIds: [...notice.deviceIds],
      routing,
      ...(level.level === undefined ? {} : { level: level.level }),
      levelIndex: level.levelIndex,
      affectedSites: affectedSites(rule, level.levelIndex, site),
      actions: actionsUpTo(rule, level.levelIndex),
      alarmSeq: d.alarmSeq,
      detail: "detail" in d ? d.detail : d.type,
      ...(values?.value === undefined ? {} : { value: values.value }),
      ...(values?.limit === undefined ? {} : { limit: values.limit }),
      replayed: "replayed" in d ? d.replayed : false,
      filedAt: iso(now),
      startedAt: iso(d.type === "raise" ? d.startedAt : d.at),
      updatedAt: iso(now),
      repeats: 0,
      escalations: 0,
      sla: { flags: [] },
      evidenceCount: 0,
      ...(rule.taskKind === "enforcement" ? { violations: [violationOf(notice)] } : {}),
      ...(rule.taskKind === "emergency" && rule.levels !== undefined
        ? {
            levelNames: rule.levels.map((l) => l.level),
            ...(escalationAfter(rule) === undefined
              ? {}
              : { escalateAfterMs: escalationAfter(rule) }),
            levelHistory: [
              {
                level: level.level ?? null,
                at: iso(now),
                by: SYSTEM,
                reason: `filed by ${rule.id}: ${"detail" in d ? d.detail : d.type}`,
              },
            ],
          }
        : {}),
    };
    task.sla = { ...slaState(this.deps.config.sla, task, now, this.calendar) };
    const entries: Draft["entries"] = [
      {
        actor: SYSTEM,
        action: "filed",
        detail: `${rule.id} v${rule.version} ${d.type}${task.level === undefined ? "" : ` at level ${task.level}`}: ${task.detail}${task.replayed ? " (from replayed, historical data)" : ""}`,
      },
      {
        actor: SYSTEM,
        action: "routed",
        detail: `to ${routing.department}, team ${routing.team}${routing.rule === null ? " (default department)" : ` (responsibility ${routing.rule})`}`,
      },
    ];
    const draft: Draft = {
      task,
      entries,
      evidence: notice.evidence !== undefined || rule.taskKind === "enforcement",
    };
    if (rule.taskKind === "enforcement") {
      const party = partyOf(site);
      if (party === undefined) {
        entries.push({
          actor: SYSTEM,
          action: "routed",
          detail: "no regulated party registered for the site: graduated response not applied",
        });
      } else {
        const earlier = (await tx.partyCases(party.key, now - config.graduated.periodMs, id)).map(
          (c) => ({ id: c.id, stage: c.graduated?.stage, deadline: c.graduated?.deadline }),
        );
        const graduated = firstResponse(config.graduated, {
          party,
          ruleId: rule.id,
          earlier,
          dataAtMs: dataTimeOf(d),
          nowMs: now,
        });
        draft.task = { ...draft.task, graduated };
        entries.push({
          actor: SYSTEM,
          action: graduated.stage === "warning" ? "warning_issued" : "referred_for_penalty",
          detail:
            graduated.stage === "warning"
              ? `${graduated.reason} to ${party.name}; rectify by ${graduated.deadline ?? "?"}, automatic re-check then`
              : `${graduated.reason}; ${party.name} referred for penalty, pending legal review`,
        });
      }
    }
    this.deps.metrics.opened.inc({ kind: rule.taskKind });
    return this.commit(tx, draft, now, notice);
  }

  /** A raise while the task is open, or a repeat of its alarm (damped unless the level rose). */
  private repeat(
    tx: AsyncTaskStore,
    open: Task,
    notice: AlarmNotice,
    now: number,
  ): Promise<TaskEvent | "suppressed"> {
    const d = notice.decision;
    const draft: Draft = {
      task: { ...open, repeats: open.repeats + 1 },
      entries: [
        {
          actor: SYSTEM,
          action: "repeat_attached",
          detail: `${d.type === "raise" ? `alarm ${d.alarmSeq} raised again` : `alarm ${d.alarmSeq} held again`} while the task is open${"detail" in d ? `: ${d.detail}` : ""}`,
        },
      ],
      evidence: notice.evidence !== undefined,
    };
    this.levelUp(draft, notice);
    this.escalateRepeat(draft, open, d);
    const newsworthy =
      draft.task.levelIndex > open.levelIndex ||
      draft.task.graduated?.stage !== open.graduated?.stage;
    return this.commit(tx, draft, now, notice, !newsworthy);
  }

  /** A warned party referred when the data show another violation after the deadline. */
  private escalateRepeat(draft: Draft, open: Task, d: AlarmDecision): void {
    const graduated =
      open.graduated === undefined ? undefined : afterRepeat(open.graduated, dataTimeOf(d));
    if (graduated === undefined) return;
    draft.task = { ...draft.task, graduated };
    draft.entries.push({
      actor: SYSTEM,
      action: "referred_for_penalty",
      detail: `${graduated.reason}; ${graduated.party.name} referred for penalty, pending legal review`,
    });
  }

  /**
   * The open case of the party an enforcement violation is about: one incident per party (or
   * site, when it has no registered party) holds every rule's and site's violation of an episode.
   */
  private async incidentOf(tx: AsyncTaskStore, notice: AlarmNotice): Promise<Task | undefined> {
    if (notice.rule.taskKind !== "enforcement") return undefined;
    const party = partyOf(this.siteOf(notice));
    return party === undefined ? undefined : tx.openIncident(party.key);
  }

  private siteOf(notice: AlarmNotice): Site | undefined {
    const siteId =
      notice.siteId ??
      (notice.subjectType === "device"
        ? this.deps.registry.device(notice.subjectId)?.siteId
        : notice.subjectId);
    return siteId === undefined ? undefined : this.deps.registry.site(siteId);
  }

  /** Another rule's or site's violation joins the party's open case (its own evidence sealed). */
  private async attachViolation(
    tx: AsyncTaskStore,
    incident: Task,
    notice: AlarmNotice,
    now: number,
  ): Promise<TaskEvent> {
    const { rule, decision: d } = notice;
    await tx.linkViolation(incident.id, notice.subjectType, notice.subjectId, rule.id);
    const violation = violationOf(notice);
    const draft: Draft = {
      task: {
        ...incident,
        violations: [...(incident.violations ?? []), violation],
        deviceIds: [...new Set([...incident.deviceIds, ...notice.deviceIds])],
      },
      entries: [
        {
          actor: SYSTEM,
          action: "violation_attached",
          detail: `${rule.id} v${rule.version} on ${notice.subjectType} ${notice.subjectId} (${rule.clause.standard} ${rule.clause.section}), started ${violation.startedAt}: ${violation.detail}; the same incident`,
        },
      ],
      evidence: true,
    };
    this.escalateRepeat(draft, incident, d);
    return this.commit(tx, draft, now, notice);
  }

  private raiseLevel(
    tx: AsyncTaskStore,
    open: Task,
    notice: AlarmNotice,
    now: number,
  ): Promise<TaskEvent> {
    const draft: Draft = { task: open, entries: [], evidence: notice.evidence !== undefined };
    this.levelUp(draft, notice);
    return this.commit(tx, draft, now, notice);
  }

  /** Severity only rises: a lower or equal level is ignored (never silently falls). */
  private levelUp(draft: Draft, notice: AlarmNotice): void {
    const level = levelOf(notice.decision);
    if (level === undefined || level.levelIndex <= draft.task.levelIndex) return;
    const site =
      draft.task.siteId === undefined ? undefined : this.deps.registry.site(draft.task.siteId);
    const from = draft.task.level;
    draft.task = {
      ...draft.task,
      ...(level.level === undefined ? {} : { level: level.level }),
      levelIndex: level.levelIndex,
      actions: actionsUpTo(notice.rule, level.levelIndex),
      affectedSites: affectedSites(notice.rule, level.levelIndex, site),
    };
    if (draft.task.levelHistory !== undefined) {
      draft.task.levelHistory = [
        ...draft.task.levelHistory,
        {
          level: level.level ?? null,
          at: iso(this.deps.now()),
          by: SYSTEM,
          reason: `raised by ${notice.rule.id}: ${"detail" in notice.decision ? notice.decision.detail : notice.decision.type}`,
        },
      ];
    }
    draft.entries.push({
      actor: SYSTEM,
      action: "level_raised",
      detail: `level ${from ?? "-"} → ${level.level ?? "-"}`,
    });
  }

  private async recheck(
    tx: AsyncTaskStore,
    task: Task,
    now: number,
  ): Promise<TaskEvent | undefined> {
    const graduated = task.graduated;
    if (graduated === undefined) return undefined;
    if (task.closure !== undefined && task.closure.reason !== "rectified") {
      // Closed as false positive, sensor fault or exempt: there is nothing to re-check.
      await tx.saveTask(task, { partyKey: graduated.party.key, recheckDueMs: undefined });
      return undefined;
    }
    let outcome: ReturnType<Recheck> = "no_data";
    let why = "";
    try {
      outcome = this.deps.recheck?.(task) ?? "no_data";
      if (this.deps.recheck === undefined) why = " (no re-check wired)";
    } catch (error) {
      why = ` (re-check failed: ${(error as Error).message})`;
      this.deps.log.error({ task: task.id, err: (error as Error).message }, "re-check failed");
    }
    const next = afterRecheck(this.deps.config.graduated, graduated, outcome, now);
    const action: AuditAction =
      outcome === "compliant"
        ? "recheck_compliant"
        : outcome === "violating"
          ? "recheck_violating"
          : "recheck_no_data";
    const retry =
      next.stage === "warning" && outcome === "no_data"
        ? `; tried again at ${next.recheck?.dueAt ?? "?"}`
        : "";
    const entries: Draft["entries"] = [
      {
        actor: SYSTEM,
        action,
        detail: `re-check at the rectification deadline: ${outcome}${why}${retry}`,
      },
    ];
    if (next.stage === "referred" && graduated.stage !== "referred") {
      entries.push({
        actor: SYSTEM,
        action: "referred_for_penalty",
        detail: `${next.reason}; ${next.party.name} referred for penalty`,
      });
    }
    if (next.stage === "inspection")
      entries.push({ actor: SYSTEM, action: "inspection_needed", detail: next.reason });
    return this.record(tx, { ...task, graduated: next }, now, entries);
  }

  private moved(
    task: Task,
    to: TaskState,
    reason: ClosureReason | undefined,
    note: string | undefined,
    now: number,
  ): Task {
    const at = iso(now);
    const next: Task = {
      ...task,
      state: to,
      ...(to === "dispatched" && task.dispatchedAt === undefined ? { dispatchedAt: at } : {}),
      ...(to === "acknowledged" ? { acknowledgedAt: at } : {}),
      ...(to === "handled" ? { handledAt: at } : {}),
      ...(to === "closed"
        ? {
            closedAt: at,
            closure: { reason: reason ?? "rectified", ...(note === undefined ? {} : { note }) },
          }
        : {}),
    };
    return { ...next, sla: { ...slaState(this.deps.config.sla, next, now, this.calendar) } };
  }

  /** Write a change without evidence. */
  private record(
    tx: AsyncTaskStore,
    task: Task,
    now: number,
    entries: Draft["entries"],
  ): Promise<TaskEvent> {
    return this.commit(tx, { task, entries, evidence: false }, now);
  }

  /** The task's damping window, its entries older than an hour dropped. */
  private windowOf(taskId: string, now: number): DampingWindow {
    let window = this.damping.get(taskId);
    if (window === undefined) {
      if (this.damping.size >= DAMPING_TASKS_MAX) {
        for (const [id, w] of this.damping)
          if ((w.events.at(-1) ?? 0) <= now - HOUR_MS && (w.evidence.at(-1) ?? 0) <= now - HOUR_MS)
            this.damping.delete(id);
        // Still full: forget the oldest windows (a forgotten task starts a fresh hour).
        for (const id of this.damping.keys()) {
          if (this.damping.size < DAMPING_TASKS_MAX) break;
          this.damping.delete(id);
        }
      }
      window = { events: [], evidence: [] };
      this.damping.set(taskId, window);
    }
    for (const list of [window.events, window.evidence])
      while (list.length > 0 && (list[0] ?? 0) <= now - HOUR_MS) list.shift();
    return window;
  }

  /** The task with one more suppression of `what` counted (and a change pending for `event`). */
  private suppressed(task: Task, what: "event" | "evidence"): Task {
    this.deps.metrics.suppressed.inc({ what });
    const d = task.damping ?? { suppressedEvents: 0, suppressedEvidence: 0, pending: false };
    return {
      ...task,
      damping:
        what === "event"
          ? { ...d, suppressedEvents: d.suppressedEvents + 1, pending: true }
          : { ...d, suppressedEvidence: d.suppressedEvidence + 1 },
    };
  }

  /**
   * Write one change: task row, audit entries, evidence, event, outbox rows. Inside a transaction.
   * A `dampable` change of a task at its hourly event bound is written without its event
   * ("suppressed"); evidence beyond the hourly bound is not sealed (flap damping).
   */
  private commit(
    tx: AsyncTaskStore,
    draft: Draft,
    now: number,
    notice?: AlarmNotice,
  ): Promise<TaskEvent>;
  private commit(
    tx: AsyncTaskStore,
    draft: Draft,
    now: number,
    notice: AlarmNotice | undefined,
    dampable: boolean,
  ): Promise<TaskEvent | "suppressed">;
  private async commit(
    tx: AsyncTaskStore,
    draft: Draft,
    now: number,
    notice?: AlarmNotice,
    dampable = false,
  ): Promise<TaskEvent | "suppressed"> {
    const { maxEventsPerHour, maxEvidencePerHour } = this.deps.config.damping;
    const window = this.windowOf(draft.task.id, now);
    let task: Task = { ...draft.task, updatedAt: iso(now) };
    const written: AuditEntry[] = [];
    const write = async (entries: Draft["entries"]) => {
      for (const e of entries)
        written.push(await tx.appendAudit({ ...e, taskId: task.id, atMs: now }));
    };
    if (draft.evidence && notice !== undefined && window.evidence.length >= maxEvidencePerHour) {
      task = this.suppressed(task, "evidence");
      await write(draft.entries);
    } else if (draft.evidence && notice !== undefined) {
      window.evidence.push(now);
      // This change's entries first: the package carries the audit trail as it is at sealing.
      await write(draft.entries);
      await write([await this.seal(tx, task, notice, now)]);
      task = { ...task, evidenceCount: await tx.evidenceCount(task.id) };
    } else {
      await write(draft.entries);
    }
    const held = dampable && window.events.length >= maxEventsPerHour;
    if (held) task = this.suppressed(task, "event");
    else if (task.damping?.pending === true)
      task = { ...task, damping: { ...task.damping, pending: false } };
    await tx.saveTask(task, {
      partyKey: task.graduated?.party.key,
      recheckDueMs: recheckDueMs(task.graduated),
    });
    if (held) return "suppressed";
    window.events.push(now);
    const event = await tx.appendEvent(
      { type: written[0]?.action ?? "transition", at: iso(now), task, entries: written },
      now,
    );
    await this.deps.enqueue?.(event, tx);
    return event;
  }

  /**
   * Seal the next evidence package of a task: the body (tasks/evidence.ts) with the task's audit
   * trail as written so far, linked to the task's previous package, hashed and signed with the
   * deployment's current key (tasks/evidence-seal.ts). Returns the audit entry that records it,
   * or why it could not be sealed: a value JSON cannot carry (NaN, Infinity) or a key file that
   * cannot be read must not cost the task, so it is filed and the record says why it has no package.
   */
  private async seal(
    tx: AsyncTaskStore,
    task: Task,
    notice: AlarmNotice,
    now: number,
  ): Promise<Draft["entries"][number]> {
    try {
      const sequence = task.evidenceCount + 1;
      const body = buildEvidenceBody({
        taskId: task.id,
        sequence,
        createdAt: iso(now),
        notice,
        registry: this.deps.registry,
        audit: await tx.audit(task.id),
        attachments: await tx.attachments(task.id),
      });
      const previous = sequence === 1 ? null : linkTo(await tx.evidence(task.id, sequence - 1));
      const pkg = sealEvidence(body, previous, this.deps.keyring, now);
      await tx.addEvidence(pkg, now);
      return {
        actor: SYSTEM,
        action: "evidence_attached",
        detail: `evidence package ${pkg.sequence}, sha256 ${pkg.hash.value}, signed by key ${pkg.signature.keyId}, ${pkg.readings.length} readings${previous === null ? "" : `, follows package ${previous.sequence}`}`,
      };
    } catch (error) {
      const message = (error as Error).message;
      this.deps.log.error({ task: task.id, err: message }, "evidence package not sealed");
      return {
        actor: SYSTEM,
        action: "evidence_attached",
        detail: `evidence could not be sealed: ${message}`,
      };
    }
  }

  private published(event: TaskEvent): void {
    for (const listener of this.eventListeners) {
      try {
        listener(event);
      } catch (error) {
        this.deps.log.error(
          { err: (error as Error).message, event: event.id },
          "task event listener failed",
        );
      }
    }
  }

  private acknowledged(task: Task): void {
    for (const listener of this.ackListeners) {
      try {
        listener(task.rule.id, task.subject.id);
      } catch (error) {
        this.deps.log.error(
          { err: (error as Error).message, task: task.id },
          "acknowledge listener failed",
        );
      }
    }
  }

  private async countFlagged(): Promise<Array<{ kind: string; flag: string; n: number }>> {
    const counts = new Map<string, { kind: string; flag: string; n: number }>();
    for (const t of await this.deps.store.flaggedTasks()) {
      for (const flag of t.sla.flags) {
        const key = `${t.kind}/${flag}`;
        const c = counts.get(key) ?? { kind: t.kind, flag, n: 0 };
        c.n++;
        counts.set(key, c);
      }
    }
    return [...counts.values()];
  }

  // -------------------------------------------------------------------------------------------
  // Inbound work: hotline complaints and manual filing (docs/tasks.md, Complaints and manual filing)

  /** A complaint platform's configuration by name (tasks.complaints.platforms), if any. */
  complaintPlatform(name: string): TasksConfig["complaints"]["platforms"][number] | undefined {
    return this.deps.config.complaints.platforms.find((p) => p.name === name);
  }

  /** Where complaints are corroborated: radius, window, allowed clock skew of a post. */
  complaintSettings(): Omit<TasksConfig["complaints"], "platforms"> {
    const { platforms: _p, ...rest } = this.deps.config.complaints;
    return rest;
  }

  /**
   * File a hotline complaint as a task, once per (platform, complaint id): a repeat returns the
   * task the first post made and changes nothing. The task, its audit entries, the complaint
   * record (with the complainant's contact, which the task never carries), the link to the site's
   * open case (an audit entry there too) and the events are one transaction.
   */
  async fileComplaint(input: {
    readonly platform: string;
    readonly complaintId: string;
    readonly receivedAt: string;
    readonly kind: Task["kind"];
    readonly category: string;
    /** The synthetic rule id: `<domain>.complaint/<platform>/<complaint id>` (routing by domain). */
    readonly ruleId: string;
    readonly siteId: string | undefined;
    readonly source: Extract<NonNullable<Task["source"]>, { type: "complaint" }>;
    readonly contact: unknown;
    readonly actor: string;
  }): Promise<{ readonly created: boolean; readonly task: Task }> {
    const { store, registry, config } = this.deps;
    const now = this.deps.now();
    const result = await store.transaction(async (tx) => {
      const existing = await tx.complaintTask(input.platform, input.complaintId);
      if (existing !== undefined) {
        const task = await tx.task(existing);
        if (task !== undefined) return { created: false, task, events: [] as TaskEvent[] };
      }
      const site = input.siteId === undefined ? undefined : registry.site(input.siteId);
      const id = await tx.nextTaskId(input.kind);
      const ruleId = input.ruleId;
      const routing = routeTask(config, { kind: input.kind, ruleId, site });
      const linked =
        input.source.linkedTaskId === undefined
          ? undefined
          : await tx.task(input.source.linkedTaskId);
      const { linkedTaskId: _asked, ...unlinked } = input.source;
      const source: typeof input.source =
        linked === undefined || linked.state === "closed" ? unlinked : input.source;
      const task: Task = {
        id,
        kind: input.kind,
        state: "filed",
        title: `Hotline complaint (${input.platform} ${input.complaintId}): ${input.category}`,
        rule: {
          id: ruleId,
          version: 1,
          clause: { standard: "hotline complaint", section: input.platform },
        },
        subject: { type: "site", id: input.siteId ?? "unlocated" },
        ...(input.siteId === undefined ? {} : { siteId: input.siteId }),
        deviceIds: source.corroboration.devices.map((d) => d.deviceId),
        routing,
        levelIndex: 0,
        affectedSites: input.siteId === undefined ? [] : [input.siteId],
        actions: [],
        alarmSeq: 0,
        detail: source.corroboration.statement,
        replayed: false,
        filedAt: iso(now),
        startedAt: input.receivedAt,
        updatedAt: iso(now),
        repeats: 0,
        escalations: 0,
        sla: { flags: [] },
        evidenceCount: 0,
        source,
      };
      task.sla = { ...slaState(config.sla, task, now, this.calendar) };
      const entries: Draft["entries"] = [
        {
          actor: input.actor,
          action: "filed",
          detail: `complaint ${input.complaintId} from ${input.platform} (${input.category}), received ${input.receivedAt}${source.nearestSite === undefined ? ", no site found" : `, nearest site ${source.nearestSite.id}`}; corroboration: ${source.corroboration.statement}`,
        },
        {
          actor: SYSTEM,
          action: "routed",
          detail: `to ${routing.department}, team ${routing.team}${routing.rule === null ? " (default department)" : ` (responsibility ${routing.rule})`}`,
        },
      ];
      const events: TaskEvent[] = [];
      if (source.linkedTaskId !== undefined && linked !== undefined) {
        entries.push({
          actor: SYSTEM,
          action: "routed",
          detail: `linked to open case ${linked.id} at the same site`,
        });
        events.push(
          await this.record(tx, linked, now, [
            {
              actor: SYSTEM,
              action: "routed",
              detail: `complaint ${input.complaintId} from ${input.platform} about this site filed as ${id} and linked here`,
            },
          ]),
        );
      }
      await tx.addComplaint({
        platform: input.platform,
        complaintId: input.complaintId,
        taskId: id,
        receivedMs: Date.parse(input.receivedAt),
        contact: input.contact,
        createdMs: now,
      });
      this.deps.metrics.opened.inc({ kind: input.kind });
      events.unshift(await this.commit(tx, { task, entries, evidence: false }, now));
      return { created: true, task: events[0]?.task ?? task, events };
    });
    for (const event of result.events) this.published(event);
    return { created: result.created, task: result.task };
  }

  /**
   * An officer files a task by hand at a site: a rule of the pack (by id and clause) or a free
   * observation, a note and optional attached readings. Conflict when the site already has an
   * open task of that rule or observation (its id named).
   */
  async fileManual(
    input: {
      readonly kind: Task["kind"];
      readonly siteId: string;
      readonly rule: {
        readonly id: string;
        readonly clause: { standard: string; section: string };
      };
      readonly observation?: string | undefined;
      readonly note: string;
      readonly readings?: NonNullable<
        Extract<NonNullable<Task["source"]>, { type: "manual" }>["readings"]
      >;
    },
    actor: Actor,
  ): Promise<TransitionResult> {
    const { store, registry, config } = this.deps;
    const now = this.deps.now();
    const site = registry.site(input.siteId);
    if (site === undefined) {
      return { ok: false, error: "not_found", message: `no site ${input.siteId}` };
    }
    const result = await store.transaction(async (tx): Promise<TransitionResult> => {
      const open = await tx.openTask("site", input.siteId, input.rule.id);
      if (open !== undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `site ${input.siteId} already has open task ${open.id} for ${input.rule.id}`,
        };
      }
      const id = await tx.nextTaskId(input.kind);
      const routing = routeTask(config, { kind: input.kind, ruleId: input.rule.id, site });
      const readings = input.readings ?? [];
      const count = readings.reduce((n, r) => n + r.readings.length, 0);
      const task: Task = {
        id,
        kind: input.kind,
        state: "filed",
        title:
          input.observation === undefined
            ? `Filed by hand: ${input.rule.id}`
            : `Filed by hand: ${input.observation}`,
        rule: { id: input.rule.id, version: 1, clause: input.rule.clause },
        subject: { type: "site", id: input.siteId },
        siteId: input.siteId,
        deviceIds: [...new Set(readings.map((r) => r.deviceId))],
        routing,
        levelIndex: 0,
        affectedSites: [input.siteId],
        actions: [],
        alarmSeq: 0,
        detail: input.note,
        replayed: false,
        filedAt: iso(now),
        startedAt: iso(now),
        updatedAt: iso(now),
        repeats: 0,
        escalations: 0,
        sla: { flags: [] },
        evidenceCount: 0,
        source: {
          type: "manual",
          by: actor.name,
          ...(input.observation === undefined ? {} : { observation: input.observation }),
          note: input.note,
          ...(readings.length === 0 ? {} : { readings: [...readings] }),
        },
      };
      task.sla = { ...slaState(config.sla, task, now, this.calendar) };
      this.deps.metrics.opened.inc({ kind: input.kind });
      const event = await this.commit(
        tx,
        {
          task,
          entries: [
            {
              actor: actor.name,
              action: "filed",
              detail: `filed by hand at ${input.siteId}: ${input.rule.id} (${input.rule.clause.standard} ${input.rule.clause.section}): ${input.note}${count === 0 ? "" : `; ${count} readings of ${task.deviceIds.join(", ")} attached`}`,
            },
            {
              actor: SYSTEM,
              action: "routed",
              detail: `to ${routing.department}, team ${routing.team}${routing.rule === null ? " (default department)" : ` (responsibility ${routing.rule})`}`,
            },
          ],
          evidence: false,
        },
        now,
      );
      return { ok: true, task: event.task, event };
    });
    if (result.ok) this.published(result.event);
    return result;
  }

  // -------------------------------------------------------------------------------------------
  // The notice to the party, statement and defence, referral to the police (issue #18 item 3)

  /**
   * Record that the party of an enforcement case was told (告知): when, by which channel, by whom,
   * and the statement-and-defence window (陈述、申辩) that starts then, in working days on the
   * task calendar (default 3, a product default). One notice per case.
   */
  serveNotice(
    id: string,
    request: {
      readonly servedAt?: string | undefined;
      readonly channel: NonNullable<Task["notice"]>["channel"];
      readonly servedBy: string;
      readonly windowWorkingDays?: number | undefined;
      readonly note?: string | undefined;
    },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      const party = task.graduated?.party;
      if (task.kind !== "enforcement" || party === undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} is not an enforcement case addressed to a party: there is nobody to serve a notice on`,
        };
      }
      if (task.state === "closed") {
        return { ok: false, error: "conflict", message: `task ${id} is closed` };
      }
      if (task.notice !== undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `the notice of task ${id} was served at ${task.notice.servedAt} (${task.notice.channel})`,
        };
      }
      const servedMs = request.servedAt === undefined ? now : Date.parse(request.servedAt);
      if (servedMs > now) {
        return {
          ok: false,
          error: "conflict",
          message: `servedAt ${request.servedAt ?? ""} is in the future: record a notice once it was served`,
        };
      }
      if (servedMs < Date.parse(task.filedAt)) {
        return {
          ok: false,
          error: "conflict",
          message: `servedAt ${request.servedAt ?? ""} is before the case was filed (${task.filedAt})`,
        };
      }
      const days = request.windowWorkingDays ?? 3;
      const dayMs = this.calendar.file.hours.reduce((sum, span) => {
        const [from, to] = span.split("-").map((hhmm) => {
          const [h, m] = hhmm.split(":").map(Number) as [number, number];
          return h * 60 + m;
        }) as [number, number];
        return sum + (to - from) * 60_000;
      }, 0);
      const windowEndsAt = iso(this.calendar.add(servedMs, days * dayMs));
      const notice: NonNullable<Task["notice"]> = {
        servedAt: iso(servedMs),
        channel: request.channel,
        servedBy: request.servedBy,
        recordedBy: actor.name,
        ...(request.note === undefined ? {} : { note: request.note }),
        windowWorkingDays: days,
        windowEndsAt,
      };
      const event = await this.record(tx, { ...task, notice }, now, [
        {
          actor: actor.name,
          action: "notice_served",
          detail: `notice served on ${party.name} at ${notice.servedAt} by ${request.servedBy} (${request.channel}); statement and defence until ${windowEndsAt} (${days} working days)${request.note === undefined ? "" : `: ${request.note}`}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /**
   * Record what the party did in the statement-and-defence window: a statement (with its
   * summary), a request for a hearing, or no statement (only once the window has ended).
   */
  recordStatement(
    id: string,
    request: {
      readonly outcome: NonNullable<NonNullable<Task["notice"]>["statement"]>["outcome"];
      readonly summary?: string | undefined;
    },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      const notice = task.notice;
      if (notice === undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `no notice was served on the party of task ${id}: serve it first (POST /api/v1/tasks/${id}/notice)`,
        };
      }
      if (notice.statement !== undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `the party's statement of task ${id} was recorded at ${notice.statement.at}: ${notice.statement.outcome}`,
        };
      }
      if (request.outcome === "no_statement" && now < Date.parse(notice.windowEndsAt)) {
        return {
          ok: false,
          error: "conflict",
          message: `the party may state their case until ${notice.windowEndsAt}: "no statement" is recorded after that`,
        };
      }
      if (request.outcome === "statement_received" && (request.summary ?? "").trim() === "") {
        return {
          ok: false,
          error: "conflict",
          message: "a received statement needs a summary of what the party said",
        };
      }
      const statement = {
        outcome: request.outcome,
        ...(request.summary === undefined ? {} : { summary: request.summary }),
        at: iso(now),
        recordedBy: actor.name,
      };
      const event = await this.record(tx, { ...task, notice: { ...notice, statement } }, now, [
        {
          actor: actor.name,
          action: "statement_recorded",
          detail: `${request.outcome.replace("_", " ")}${request.summary === undefined ? "" : `: ${request.summary}`}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /**
   * Record that an enforcement case was referred to the police (public security organs, seed
   * point 25) with a note; once per case. The credit record lists it.
   */
  referToPolice(
    id: string,
    request: { readonly note: string },
    actor: Actor,
  ): Promise<TransitionResult> {
    return this.change(id, async (task, now, tx) => {
      if (task.kind !== "enforcement" || task.graduated === undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} is not an enforcement case addressed to a party`,
        };
      }
      const earlier = (await tx.audit(id)).find((e) => e.action === "referred_to_police");
      if (earlier !== undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `task ${id} was referred to the police at ${earlier.at}`,
        };
      }
      const event = await this.record(tx, task, now, [
        {
          actor: actor.name,
          action: "referred_to_police",
          detail: `${task.graduated.party.name} referred to the police: ${request.note}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
  }

  /**
   * Record an attachment (a file already stored by its SHA-256) on a task: the attachment row
   * and an `attachment_added` audit entry naming the hash, file name, type and size, in one
   * transaction. A closed task takes none (409); the same file twice on a task is recorded once.
   */
  /**
   * Why a task takes no more attachments (closed, or holding tasks.attachments.maxPerTask files),
   * or undefined; the API asks before it stores any byte, the upload's transaction again.
   */
  async attachmentRefusal(
    task: Pick<Task, "id" | "state">,
    store: AsyncTaskStore = this.deps.store,
  ): Promise<string | undefined> {
    if (task.state === "closed") return `task ${task.id} is closed: it takes no attachments`;
    const most = this.deps.config.attachments.maxPerTask;
    if ((await store.attachmentCount(task.id)) < most) return undefined;
    this.deps.metrics.attachments.inc({ outcome: "refused_full" });
    return `task ${task.id} holds ${most} attachments already (tasks.attachments.maxPerTask)`;
  }

  async addAttachment(
    id: string,
    file: {
      readonly sha256: string;
      readonly filename: string;
      readonly type: Attachment["type"];
      readonly size: number;
    },
    actor: Actor,
  ): Promise<TransitionResult & { attachment?: Attachment }> {
    let attachment: Attachment | undefined;
    const result = await this.change(id, async (task, now, tx) => {
      const refusal = await this.attachmentRefusal(task, tx);
      if (refusal !== undefined) return { ok: false, error: "conflict", message: refusal };
      const earlier = await tx.attachment(id, file.sha256);
      if (earlier !== undefined) {
        return {
          ok: false,
          error: "conflict",
          message: `this file (sha256 ${file.sha256}) was attached to task ${id} at ${earlier.at} as ${earlier.filename}`,
        };
      }
      attachment = { taskId: id, ...file, by: actor.name, at: iso(now) };
      await tx.addAttachment(attachment);
      this.deps.metrics.attachments.inc({ outcome: "stored" });
      this.deps.metrics.attachmentBytes.inc(file.size);
      const event = await this.record(tx, task, now, [
        {
          actor: actor.name,
          action: "attachment_added",
          detail: `attachment ${JSON.stringify(file.filename)}, ${file.type}, ${file.size} bytes, sha256 ${file.sha256}`,
        },
      ]);
      return { ok: true, task: event.task, event };
    });
    return attachment === undefined || !result.ok ? result : { ...result, attachment };
  }

  /** The graduated period (tasks.graduated.periodMs): repeat-offender status counts cases within it. */
  graduatedPeriodMs(): number {
    return this.deps.config.graduated.periodMs;
  }
}
