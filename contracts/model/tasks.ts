import { z } from "zod";
import { QueryInstant } from "./api.js";
import { ApiError } from "./errors.js";
import { TaskSource } from "./complaints.js";
import { QualityFlag } from "./quality.js";
import { AdministrativeArea, GeoPoint, RegulatedParty } from "./registry.js";
import { Clause, Confidence, RuleSubject } from "./rules.js";
import { TaskKind } from "./topics.js";

/*
 * Tasks: enforcement cases, emergency tasks and maintenance tasks, their audit trail, the events
 * published about them (SSE, MQTT task topics, webhooks), evidence packages and the task API.
 * docs/tasks.md describes the lifecycle and every format.
 */

/** Lifecycle states, in order. Only `closed` is terminal. */
export const TaskState = z.enum(
  ["filed", "dispatched", "acknowledged", "in_progress", "handled", "verified", "closed"],
  {
    error:
      "state must be filed, dispatched, acknowledged, in_progress, handled, verified or closed",
  },
);
export type TaskState = z.infer<typeof TaskState>;

/**
 * Why a task was closed. `rectified` needs a verified task; the others may close a task that was
 * never handled (nothing to handle: a false alarm, a broken sensor, an exempt party).
 */
export const ClosureReason = z.enum(["rectified", "false_positive", "sensor_fault", "exempt"], {
  error: "reason must be rectified, false_positive, sensor_fault or exempt",
});
export type ClosureReason = z.infer<typeof ClosureReason>;

/** Roles of API tokens. See docs/tasks.md for what each may do. */
export const ApiRole = z.enum(
  ["admin", "command_centre", "operator", "emergency", "enforcement", "legal_reviewer", "viewer"],
  {
    error:
      "role must be admin, command_centre, operator, emergency, enforcement, legal_reviewer or viewer",
  },
);
export type ApiRole = z.infer<typeof ApiRole>;

/** What an audit entry records. */
export const AuditAction = z.enum([
  "filed",
  "routed",
  "transition",
  "repeat_attached",
  "level_raised",
  "escalated_unacknowledged",
  "condition_cleared",
  "evidence_attached",
  "warning_issued",
  "referred_for_penalty",
  "recheck_compliant",
  "recheck_violating",
  "recheck_no_data",
  "inspection_needed",
  "sla_flagged",
  /** Flap damping: changes recorded without their own event, published together (docs/tasks.md). */
  "events_coalesced",
  /** Another rule's or site's violation in the same episode, added to the incident's case. */
  "violation_attached",
  "level_lowered",
  "level_lifted",
  "legal_review_approved",
  "legal_review_rejected",
  "assigned",
  "notice_served",
  "statement_recorded",
  "referred_to_police",
  /** A field photo or document uploaded to the task (its SHA-256, name, type, size). */
  "attachment_added",
]);
export type AuditAction = z.infer<typeof AuditAction>;

/** One entry of a task's append-only audit trail. */
export const AuditEntry = z.object({
  /** Position in the whole audit trail (increasing across tasks). */
  id: z.number().int(),
  taskId: z.string(),
  at: z.string(),
  /** A person (`token name (role)`) or `system` (rules engine, timers). */
  actor: z.string(),
  action: AuditAction,
  from: TaskState.optional(),
  to: TaskState.optional(),
  detail: z.string(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

/** Where a task was routed. */
export const TaskRouting = z.object({
  department: z.string(),
  team: z.string(),
  district: z.string().optional(),
  /** The site's street (街道), where the registry records one. */
  street: z.string().optional(),
  gridCell: z.string().optional(),
  /** The responsibility line that matched (index in `tasks.responsibilities`), or null for the default. */
  rule: z.number().int().nullable(),
});
export type TaskRouting = z.infer<typeof TaskRouting>;

/** Graduated response of an enforcement case: education first, penalty for repeats. */
export const GraduatedResponse = z.object({
  stage: z.enum(["warning", "referred", "inspection"]),
  /**
   * The legal review (法制审核) of a referral for penalty: pending until a legal reviewer approves
   * or rejects it. Absent on warnings and on referrals made before reviews were recorded.
   */
  review: z
    .object({
      status: z.enum(["pending", "approved", "rejected"]),
      by: z.string().optional(),
      at: z.string().optional(),
      note: z.string().optional(),
    })
    .optional(),
  /** The earlier case whose rectification deadline this repeat came after. */
  repeatOf: z.string().optional(),
  /** A repeat: referred because the data showed a violation after a rectification deadline. */
  repeat: z.boolean().optional(),
  /** Who the case is addressed to; the key is the credit code, or the site when there is none. */
  party: z.object({ key: z.string(), name: z.string() }),
  /** Why this stage: first violation, repeat of case X, failed re-check. */
  reason: z.string(),
  /** Rectification deadline of the warning notice. */
  deadline: z.string().optional(),
  recheck: z
    .object({
      dueAt: z.string(),
      attempts: z.number().int(),
      outcome: z.enum(["compliant", "violating", "no_data"]).optional(),
      at: z.string().optional(),
    })
    .optional(),
});
export type GraduatedResponse = z.infer<typeof GraduatedResponse>;

/** SLA flags of a task (filed but not handled, handled but not closed, past their limits). */
export const SlaFlag = z.enum(["not_handled", "not_closed"]);
export type SlaFlag = z.infer<typeof SlaFlag>;

/**
 * A part of a rule nobody verified: a path inside the rule (`condition.window`, `limits`) and a
 * note on what is missing (the rule's `unverified`; for a placeholder, what it stands in for).
 */
export const UnverifiedPart = z.object({ path: z.string(), note: z.string() });
export type UnverifiedPart = z.infer<typeof UnverifiedPart>;

/** A task as the API, the stream and the notifications show it. */
export const Task = z.object({
  id: z.string(),
  kind: TaskKind,
  state: TaskState,
  title: z.string(),
  rule: z.object({
    id: z.string(),
    version: z.number().int(),
    clause: Clause,
    /**
     * `placeholder`: the rule's numbers are not verified (docs/standards.md); `verified` may still
     * list unverified parts. Absent on tasks filed before citywatch recorded it.
     */
    confidence: Confidence.optional().describe(
      "placeholder: the rule's numbers are not verified (docs/standards.md); absent on tasks filed before it was recorded",
    ),
    /** The rule's unverified parts (empty when none); absent where `confidence` is. */
    unverified: z
      .array(UnverifiedPart)
      .optional()
      .describe("The rule's unverified parts, each a path in the rule and a note (empty: none)"),
  }),
  subject: z.object({ type: RuleSubject, id: z.string() }),
  siteId: z.string().optional(),
  deviceIds: z.array(z.string()),
  routing: TaskRouting,
  /** Severity: IV … I (emergency), warning / case (enforcement); absent for maintenance. */
  level: z.string().optional(),
  levelIndex: z.number().int(),
  /** Sites the task concerns: the subject's site, or a tunnel segment and its neighbours. */
  affectedSites: z.array(z.string()),
  actions: z.array(z.string()),
  /** The alarm (per subject and rule) the task was opened for, and later alarms attached. */
  alarmSeq: z.number().int(),
  detail: z.string(),
  value: z.union([z.number(), z.boolean()]).optional(),
  limit: z.number().optional(),
  /** Raised from replayed (historical) data. */
  replayed: z.boolean(),
  filedAt: z.string(),
  /** When the condition started to hold (start of pending). */
  startedAt: z.string(),
  updatedAt: z.string(),
  repeats: z.number().int(),
  escalations: z.number().int(),
  /** When the condition last cleared; the task stays open until people close it. */
  conditionClearedAt: z.string().optional(),
  /**
   * Every violation the case is about (enforcement incidents): the rule and subject that raised
   * it first, and each other rule or site of the same party in the same episode.
   */
  violations: z
    .array(
      z.object({
        ruleId: z.string(),
        ruleVersion: z.number().int(),
        clause: Clause,
        subject: z.object({ type: RuleSubject, id: z.string() }),
        alarmSeq: z.number().int(),
        /** When the data show it started (the readings' own time). */
        startedAt: z.string(),
        detail: z.string(),
        value: z.union([z.number(), z.boolean()]).optional(),
        limit: z.number().optional(),
      }),
    )
    .optional(),
  /**
   * Emergency tasks: how long the rule waits for an acknowledgement before each escalation
   * (timing.escalateAfter, 15 min by default); the next is due at filedAt + escalateAfterMs ×
   * (escalations + 1) while the task is not acknowledged. Absent on tasks filed before.
   */
  escalateAfterMs: z.number().int().optional(),
  /** The rule's emergency levels in rising order (IV … I), for lowering a level by name. */
  levelNames: z.array(z.string()).optional(),
  /** Every level the task has had: raised by the rules, lowered or lifted by a person. */
  levelHistory: z
    .array(
      z.object({
        /** null: the level was lifted (the emergency response ended; the task stays open). */
        level: z.string().nullable(),
        at: z.string(),
        by: z.string(),
        reason: z.string(),
      }),
    )
    .optional(),
  /** The person the task is assigned to. */
  assignee: z.object({ userId: z.string(), name: z.string(), at: z.string() }).optional(),
  /** Who moved the task to handled (a user id or `token:<name>`): they may not verify it. */
  handledBy: z.string().optional(),
  /** The notice to the party (告知) and its statement-and-defence window (陈述、申辩): PartyNotice. */
  notice: z.lazy(() => PartyNotice).optional(),
  /** Where a task came from when not from the rules: a hotline complaint or a manual filing. */
  source: TaskSource.optional(),
  /** When the task was first dispatched to a team (the SLA may start there). */
  dispatchedAt: z.string().optional(),
  acknowledgedAt: z.string().optional(),
  handledAt: z.string().optional(),
  closedAt: z.string().optional(),
  closure: z.object({ reason: ClosureReason, note: z.string().optional() }).optional(),
  graduated: GraduatedResponse.optional(),
  sla: z.object({
    flags: z.array(SlaFlag),
    /** When the task must be handled by (while its handle timer runs). */
    handleBy: z.string().optional(),
    /** When the task must be closed by (once handled). */
    closeBy: z.string().optional(),
    /** The team lead the task was escalated to when it went past a limit. */
    escalatedTo: z.string().optional(),
  }),
  /** Evidence packages attached (raise, level rises); the newest is exported by default. */
  evidenceCount: z.number().int(),
  /**
   * Flap damping (docs/tasks.md): changes recorded without their own event, and evidence packages
   * not sealed, because the task reached its hourly bound. Absent while nothing was suppressed.
   */
  damping: z
    .object({
      suppressedEvents: z.number().int(),
      suppressedEvidence: z.number().int(),
      /** A change not yet published (the next event carries it). */
      pending: z.boolean(),
    })
    .optional()
    .describe("Flap damping: events and evidence suppressed at the task's hourly bounds"),
});
export type Task = z.infer<typeof Task>;

/**
 * An event about a task: published on the live stream, the MQTT task topic and to webhooks.
 * `id` is unique and increasing; webhooks carry it as the idempotency key.
 */
export const TaskEvent = z.object({
  id: z.number().int(),
  /** The main change (`filed`, `transition`, `level_raised`, …): the first entry's action. */
  type: AuditAction,
  at: z.string(),
  task: Task,
  /** The audit entries of this change. */
  entries: z.array(AuditEntry),
});
export type TaskEvent = z.infer<typeof TaskEvent>;

/** Body of `POST /api/v1/tasks/{id}/transitions`. */
export const TransitionRequest = z.strictObject({
  to: TaskState,
  /** Required when `to` is `closed`. */
  reason: ClosureReason.optional(),
  note: z.string().min(1).max(2_000).optional(),
});
export type TransitionRequest = z.infer<typeof TransitionRequest>;

/** Body of `POST /api/v1/tasks/{id}/review`: a legal reviewer's decision on a referral. */
export const ReviewRequest = z
  .strictObject({
    decision: z.enum(["approve", "reject"], { error: "decision is approve or reject" }),
    note: z.string().min(1).max(2_000).optional(),
  })
  .refine((r) => r.decision === "approve" || r.note !== undefined, {
    error: "a rejection needs a note saying why",
    path: ["note"],
  });
export type ReviewRequest = z.infer<typeof ReviewRequest>;

/** Body of `POST /api/v1/tasks/{id}/level`: lower an emergency level, or lift it, and why. */
export const LevelRequest = z.strictObject({
  /** A lower level of the task's rule (e.g. `IV`), or `lifted`. */
  to: z.string().min(1).max(16),
  reason: z.string().min(1, { error: "a level change needs a reason" }).max(2_000),
});
export type LevelRequest = z.infer<typeof LevelRequest>;

/** Body of `POST /api/v1/tasks/{id}/assign`: the person, and why when reassigning. */
export const AssignRequest = z.strictObject({
  userId: z.string().min(1).max(64),
  reason: z.string().min(1).max(2_000).optional(),
});
export type AssignRequest = z.infer<typeof AssignRequest>;

const Flag = z.enum(["true", "false"], { error: "must be true or false" });

/** Orders of the task list: newest filed first (default), oldest first, SLA due soonest, highest level first. */
export const TaskSort = z.enum(["-filedAt", "filedAt", "slaDue", "level"], {
  error: "sort must be -filedAt, filedAt, slaDue or level",
});
export type TaskSort = z.infer<typeof TaskSort>;

/**
 * Where a page of the task list ended (keyset pagination): the sort, the last task's sort keys
 * (-filedAt, filedAt: [filed ms]; slaDue: [due ms]; level: [level index, filed ms]) and its id.
 * On the wire it is opaque: base64url of its JSON (`encodeTaskCursor`).
 */
export interface TaskCursor {
  readonly sort: TaskSort;
  readonly keys: readonly number[];
  readonly id: string;
}

const KEY_COUNT: Readonly<Record<TaskSort, number>> = {
  "-filedAt": 1,
  filedAt: 1,
  slaDue: 1,
  level: 2,
};

/** The opaque cursor string of a position (base64url, no padding). */
export function encodeTaskCursor(cursor: TaskCursor): string {
  return btoa(JSON.stringify({ s: cursor.sort, k: cursor.keys, i: cursor.id }))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** A cursor string back to its position, or undefined when it is not one this API wrote. */
export function decodeTaskCursor(text: string): TaskCursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(text)) return undefined;
  try {
    const raw = JSON.parse(atob(text.replace(/-/g, "+").replace(/_/g, "/"))) as unknown;
    if (typeof raw !== "object" || raw === null) return undefined;
    const { s, k, i } = raw as { s?: unknown; k?: unknown; i?: unknown };
    const sort = TaskSort.safeParse(s);
    if (!sort.success || typeof i !== "string" || !/^[A-Za-z0-9_.:-]{1,64}$/.test(i)) {
      return undefined;
    }
    if (!Array.isArray(k) || k.length !== KEY_COUNT[sort.data]) return undefined;
    if (!k.every((n) => Number.isSafeInteger(n))) return undefined;
    return { sort: sort.data, keys: k as number[], id: i };
  } catch {
    return undefined;
  }
}

/**
 * A comma-separated list of query values (`filed,dispatched`), each checked by `item`; empty
 * items, duplicates and more than `max` items are refused, the bad value named.
 */
function commaList<T extends string>(item: z.ZodType<T>, what: string, max = 16) {
  return z
    .string()
    .max(1_000)
    .transform((text, ctx) => {
      const parts = text.split(",").map((p) => p.trim());
      const out: T[] = [];
      for (const part of parts) {
        const parsed = item.safeParse(part);
        if (part === "" || !parsed.success) {
          ctx.addIssue({
            code: "custom",
            message:
              part === ""
                ? `an empty ${what} in the list`
                : `${JSON.stringify(part.slice(0, 40))}: ${parsed.error?.issues[0]?.message ?? "invalid"}`,
          });
          return z.NEVER;
        }
        if (!out.includes(parsed.data)) out.push(parsed.data);
      }
      if (out.length > max) {
        ctx.addIssue({ code: "custom", message: `at most ${max} ${what}s` });
        return z.NEVER;
      }
      return out;
    });
}

const LevelName = z.string().regex(/^[A-Za-z0-9_-]{1,16}$/, {
  error: "a level is a name such as I, II, III, IV, warning or case",
});

/** Query of `GET /api/v1/tasks`. */
export const TaskListQuery = z
  .strictObject({
    kind: TaskKind.optional(),
    state: commaList(z.union([TaskState, z.literal("open")]), "state")
      .optional()
      .describe(
        "states, comma-separated (filed,dispatched); open: every state but closed; default every state",
      ),
    site: z.string().min(1).optional(),
    district: z.string().min(1).optional(),
    street: z
      .string()
      .min(1)
      .max(120)
      .optional()
      .describe("the street (街道) the task is routed to"),
    grid: z.string().min(1).max(64).optional().describe("the grid cell the task is routed to"),
    level: commaList(LevelName, "level")
      .optional()
      .describe("levels, comma-separated (I,II): emergency levels, or warning / case"),
    party: z
      .string()
      .min(1)
      .max(120)
      .optional()
      .describe("the party's key: its unified social credit code, or the site without one"),
    rule: z.string().min(1).optional(),
    flagged: Flag.transform((v) => v === "true").optional(),
    overdue: Flag.transform((v) => v === "true")
      .optional()
      .describe("true: open and past its SLA due now; false: not past it"),
    q: z
      .string()
      .trim()
      .min(1, { error: "must not be empty" })
      .max(100, { error: "must be at most 100 characters" })
      .optional()
      .describe(
        "search: task id (case number) or party credit code prefix, or part of the party's name; case-insensitive",
      ),
    sort: TaskSort.optional().describe(
      "-filedAt (default), filedAt, slaDue (soonest first, none last) or level (highest first)",
    ),
    /** Filed at or after. */
    from: QueryInstant.optional(),
    /** Filed before. */
    to: QueryInstant.optional(),
    limit: z
      .string()
      .regex(/^\d+$/, { error: "must be a whole number" })
      .transform(Number)
      .pipe(z.number().int().min(1).max(1_000, { error: "must be <= 1000" }))
      .optional()
      .describe("1..1000, default 100"),
    cursor: z
      .string()
      .transform((text, ctx) => {
        const cursor = decodeTaskCursor(text);
        if (cursor === undefined) {
          ctx.addIssue({
            code: "custom",
            message: "not a cursor of this list: pass nextCursor of the previous page as it was",
          });
          return z.NEVER;
        }
        return cursor;
      })
      .optional()
      .describe("the previous page's nextCursor: the page after it, same filters and sort"),
  })
  .refine((q) => q.to === undefined || q.from === undefined || q.to > q.from, {
    error: "to must be after from",
    path: ["to"],
  })
  .refine((q) => q.cursor === undefined || q.cursor.sort === (q.sort ?? "-filedAt"), {
    error: "the cursor was made for another sort: keep the sort of the walk",
    path: ["cursor"],
  });
export type TaskListQuery = z.infer<typeof TaskListQuery>;

export const TaskListResponse = z.object({
  tasks: z.array(Task),
  /** Present when more tasks match: pass it as `cursor` for the next page. */
  nextCursor: z
    .string()
    .optional()
    .describe("present when more tasks match: pass it as cursor for the next page"),
});
export const TaskDetailResponse = z.object({ task: Task, audit: z.array(AuditEntry) });

// ---------------------------------------------------------------------------------------------
// Attachments: field photos and documents an officer uploads to a task

/** The types an attachment may have, told by its first bytes (magic numbers). */
export const AttachmentType = z.enum([
  "image/jpeg",
  "image/png",
  "image/webp",
  "image/heic",
  "application/pdf",
]);
export type AttachmentType = z.infer<typeof AttachmentType>;

/** One attachment of a task: the file's SHA-256 (its name on disk), who uploaded it, when. */
export const Attachment = z.object({
  taskId: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  filename: z.string(),
  type: AttachmentType,
  size: z.number().int(),
  by: z.string(),
  at: z.string(),
});
export type Attachment = z.infer<typeof Attachment>;

/** Query of `POST /api/v1/tasks/{id}/attachments`: the file's name (the body is the file). */
export const AttachmentUploadQuery = z.strictObject({
  filename: z
    .string()
    .trim()
    .min(1, { error: "the file needs a name" })
    .max(200, { error: "a file name is at most 200 characters" })
    .refine(
      (name) =>
        name !== "." &&
        name !== ".." &&
        ![...name].some((c) => c === "/" || c === "\\" || c.charCodeAt(0) < 0x20 || c === "\u007f"),
      {
        error: "a file name without / \\ or control characters",
      },
    )
    .describe("the file's name as the officer's device gave it (no path)"),
});

export const AttachmentParams = z.object({
  id: z.string().describe("task id"),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, { error: "must be a SHA-256 in lowercase hex" })
    .describe("the attachment's SHA-256"),
});

export const AttachmentResponse = z.object({ attachment: Attachment });
export const AttachmentListResponse = z.object({ attachments: z.array(Attachment) });

/** Body of every 4xx/5xx answer of the task API: the one error catalogue (errors.ts). */
export const TaskApiError = ApiError;
export type TaskApiError = ApiError;

// ---------------------------------------------------------------------------------------------
// Evidence

/** One raw reading in an evidence package, with its quality flag and whether the rule used it. */
export const EvidenceReadingRecord = z.object({
  deviceId: z.string(),
  ts: z.string(),
  quality: QualityFlag,
  /** false: the rule's quality gate left it out (flagged maintenance, calibration, fault…). */
  usable: z.boolean(),
  values: z.record(z.string(), z.number()),
});

/** A device as evidence cites it: identity, calibration, place. */
export const EvidenceDevice = z.object({
  id: z.string(),
  kind: z.string(),
  model: z.string(),
  serial: z.string(),
  calibratedOn: z.string().nullable(),
  calibrationDueOn: z.string().nullable(),
  location: GeoPoint,
  area: AdministrativeArea,
  zoneClass: z.string().nullable(),
});

/**
 * An evidence package of format `citywatch-evidence/1`, sealed before packages were signed (kept
 * readable and hash-checkable; new packages are format 2, contracts/model/evidence.ts). `hash.value` is the SHA-256 of
 * the canonical JSON (RFC 8785) of the package without its `hash` member; docs/tasks.md shows how
 * to verify it.
 */
export const EvidencePackageV1 = z.object({
  format: z.literal("citywatch-evidence/1"),
  taskId: z.string(),
  /** Position of this package among the task's packages, from 1. */
  sequence: z.number().int(),
  createdAt: z.string(),
  kind: TaskKind,
  rule: z.object({
    id: z.string(),
    version: z.number().int(),
    title: z.string(),
    clause: Clause,
    confidence: z.string(),
    note: z.string().nullable(),
    /** The rule's unverified parts, sealed with it; absent in packages sealed before they were recorded. */
    unverified: z
      .array(UnverifiedPart)
      .optional()
      .describe("The rule's unverified parts; absent in packages sealed before they were recorded"),
    statement: z.string().nullable(),
  }),
  decision: z.object({
    type: z.string(),
    alarmSeq: z.number().int(),
    level: z.string().nullable(),
    at: z.string(),
    startedAt: z.string().nullable(),
    detail: z.string(),
    replayed: z.boolean(),
  }),
  computation: z.object({
    method: z.string(),
    windowStart: z.string(),
    windowEnd: z.string(),
    value: z.union([z.number(), z.boolean()]).nullable(),
    limit: z.number().nullable(),
  }),
  subject: z.object({ type: RuleSubject, id: z.string() }),
  site: z
    .object({
      id: z.string(),
      name: z.string(),
      type: z.string(),
      area: AdministrativeArea,
      location: GeoPoint,
      zoneClass: z.string().nullable(),
      regulatedParty: RegulatedParty.nullable(),
    })
    .nullable(),
  devices: z.array(EvidenceDevice),
  readings: z.array(EvidenceReadingRecord),
  hash: z.object({
    algorithm: z.literal("sha256"),
    canonicalization: z.literal("RFC 8785"),
    value: z.string().regex(/^[0-9a-f]{64}$/),
  }),
});
export type EvidencePackageV1 = z.infer<typeof EvidencePackageV1>;

// ---------------------------------------------------------------------------------------------
// The notice to the party (告知), statement and defence (陈述、申辩), referral to the police

/** How the notice reached the party. */
export const NoticeChannel = z.enum(
  ["in_person", "registered_mail", "sms", "electronic", "posted"],
  { error: "channel must be in_person, registered_mail, sms, electronic or posted" },
);
export type NoticeChannel = z.infer<typeof NoticeChannel>;

/** What the party did in the statement-and-defence window. */
export const StatementOutcome = z.enum(
  ["no_statement", "statement_received", "hearing_requested"],
  {
    error: "outcome must be no_statement, statement_received or hearing_requested",
  },
);
export type StatementOutcome = z.infer<typeof StatementOutcome>;

/**
 * The notice to the party of an enforcement case and its statement-and-defence window
 * (Administrative Penalty Law 2021: informing and hearing the party), on `Task.notice`.
 */
export const PartyNotice = z.object({
  servedAt: z.string(),
  channel: NoticeChannel,
  /** Who served it (the officer's name and badge, as they gave it). */
  servedBy: z.string(),
  /** Who recorded it (the audit trail's name of the caller). */
  recordedBy: z.string(),
  note: z.string().optional(),
  /** Working days the party has to state their case, counted from `servedAt`. */
  windowWorkingDays: z.number().int(),
  /** When the window ends (working time on the task calendar). */
  windowEndsAt: z.string(),
  statement: z
    .object({
      outcome: StatementOutcome,
      summary: z.string().optional(),
      at: z.string(),
      recordedBy: z.string(),
    })
    .optional(),
});
export type PartyNotice = z.infer<typeof PartyNotice>;

/** Body of `POST /api/v1/tasks/{id}/notice`. */
export const NoticeRequest = z.strictObject({
  /** When the notice was served (default: now); not in the future. */
  servedAt: z.iso
    .datetime({ offset: true, error: "servedAt must be an ISO 8601 time with a zone" })
    .optional(),
  channel: NoticeChannel,
  servedBy: z.string().trim().min(1, { error: "servedBy names who served the notice" }).max(200),
  /** Working days of the statement-and-defence window (default: tasks' product default, 3). */
  windowWorkingDays: z.number().int().min(1).max(60).optional(),
  note: z.string().min(1).max(2_000).optional(),
});
export type NoticeRequest = z.infer<typeof NoticeRequest>;

/** Body of `POST /api/v1/tasks/{id}/statement`. */
export const StatementRequest = z
  .strictObject({
    outcome: StatementOutcome,
    summary: z.string().trim().min(1).max(4_000).optional(),
  })
  .refine((r) => r.outcome !== "statement_received" || r.summary !== undefined, {
    error: "a received statement needs a summary of what the party said",
    path: ["summary"],
  });
export type StatementRequest = z.infer<typeof StatementRequest>;

/** Body of `POST /api/v1/tasks/{id}/police-referral` (seed point 25). */
export const PoliceReferralRequest = z.strictObject({
  note: z.string().trim().min(1, { error: "a referral to the police needs a note" }).max(2_000),
});
export type PoliceReferralRequest = z.infer<typeof PoliceReferralRequest>;

/** One outcome of a case in a party's credit record. */
export const CreditOutcome = z.enum([
  "warning",
  "rectified",
  "penalty_referral_approved",
  "referred_to_police",
  "false_positive",
  "sensor_fault",
  "exempt",
]);
export type CreditOutcome = z.infer<typeof CreditOutcome>;

/** One row of the credit record: one outcome of one case of one party. */
export const CreditRecordRow = z.object({
  partyKey: z.string(),
  /** The credit code, or null for a party without one (keyed by site or a generated key). */
  creditCode: z.string().nullable(),
  partyName: z.string(),
  outcome: CreditOutcome,
  at: z.string(),
  taskId: z.string(),
  sites: z.array(z.string()),
  rules: z.array(z.string()),
  detail: z.string(),
});
export type CreditRecordRow = z.infer<typeof CreditRecordRow>;

/** Query of `GET /api/v1/credit-records`. */
export const CreditRecordQuery = z
  .strictObject({
    from: QueryInstant.optional(),
    to: QueryInstant.optional(),
    format: z.enum(["json", "csv"], { error: "format is json or csv" }).optional(),
  })
  .refine((q) => q.to === undefined || q.from === undefined || q.to > q.from, {
    error: "to must be after from",
    path: ["to"],
  });
export type CreditRecordQuery = z.infer<typeof CreditRecordQuery>;

/** Repeat-offender status of a party, computed from its record across its sites. */
export const RepeatOffenderStatus = z.object({
  repeatOffender: z.boolean(),
  /** Cases that were violations (not false positive, sensor fault or exempt) within the period. */
  violations: z.number().int(),
  periodDays: z.number(),
  caseIds: z.array(z.string()),
  sites: z.array(z.string()),
});
export type RepeatOffenderStatus = z.infer<typeof RepeatOffenderStatus>;
