import type {
  AuditAction,
  AuditEntry,
  CreditOutcome,
  CreditRecordRow,
  RepeatOffenderStatus,
  Task,
} from "../contracts/model/tasks.js";
import { toCsv } from "./csv.js";

/** What the credit record reads of the task store (tasks.db's store, or any AsyncTaskStore). */
export interface PartyHistory {
  partyCaseHistory(partyKey?: string): Task[] | Promise<Task[]>;
  partyAuditEntries(
    actions: readonly AuditAction[],
    partyKey?: string,
  ): AuditEntry[] | Promise<AuditEntry[]>;
}

/*
 * The credit record of regulated parties (issue #18 item 3; seed point 22): every outcome of every
 * enforcement case per party, computed read-only from the task store. One row per outcome:
 *   warning                    a warning notice was issued (audit `warning_issued`)
 *   penalty_referral_approved  a legal reviewer approved the referral for penalty
 *   referred_to_police         the case was referred to the police (seed point 25)
 *   rectified / false_positive / sensor_fault / exempt   how the case was closed
 * Repeat-offender status counts the party's cases that were violations (not closed as false
 * positive, sensor fault or exempt) filed within the graduated period, across all its sites.
 * The review gate: a referral is approved only after the party was told and heard.
 */

const AUDITED: ReadonlyArray<readonly [AuditAction, CreditOutcome]> = [
  ["warning_issued", "warning"],
  ["legal_review_approved", "penalty_referral_approved"],
  ["referred_to_police", "referred_to_police"],
];

const CREDIT_CODE = /^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/;

/** The sites a case concerns (its own and every attached violation's). */
function sitesOf(task: Task): string[] {
  const sites = new Set<string>();
  if (task.siteId !== undefined) sites.add(task.siteId);
  for (const v of task.violations ?? []) if (v.subject.type === "site") sites.add(v.subject.id);
  return [...sites].sort();
}

function rulesOf(task: Task): string[] {
  return [...new Set([task.rule.id, ...(task.violations ?? []).map((v) => v.ruleId)])].sort();
}

/**
 * The credit record rows of one party (by key) or of all parties, with `at` in [fromMs, toMs),
 * oldest first. `include` keeps a case (a caller's scope); absent: every case.
 */
export async function creditRecord(
  store: PartyHistory,
  options: {
    readonly partyKey?: string | undefined;
    readonly fromMs?: number | undefined;
    readonly toMs?: number | undefined;
    readonly include?: ((task: Task) => boolean) | undefined;
  } = {},
): Promise<CreditRecordRow[]> {
  const cases = new Map((await store.partyCaseHistory(options.partyKey)).map((t) => [t.id, t]));
  const rows: CreditRecordRow[] = [];
  const row = (task: Task, outcome: CreditOutcome, at: string, detail: string) => {
    const party = task.graduated?.party;
    if (party === undefined) return;
    rows.push({
      partyKey: party.key,
      creditCode: CREDIT_CODE.test(party.key) ? party.key : null,
      partyName: party.name,
      outcome,
      at,
      taskId: task.id,
      sites: sitesOf(task),
      rules: rulesOf(task),
      detail,
    });
  };
  const outcomes = new Map(AUDITED);
  for (const entry of await store.partyAuditEntries(
    AUDITED.map(([a]) => a),
    options.partyKey,
  )) {
    const task = cases.get(entry.taskId);
    const outcome = outcomes.get(entry.action);
    if (task === undefined || outcome === undefined) continue;
    row(task, outcome, entry.at, entry.detail);
  }
  for (const task of cases.values()) {
    if (task.closure === undefined || task.closedAt === undefined) continue;
    row(task, task.closure.reason, task.closedAt, task.closure.note ?? "");
  }
  const inRange = (at: string) => {
    const ms = Date.parse(at);
    return (
      (options.fromMs === undefined || ms >= options.fromMs) &&
      (options.toMs === undefined || ms < options.toMs)
    );
  };
  return rows
    .filter((r) => inRange(r.at))
    .filter((r) => {
      const task = cases.get(r.taskId);
      return options.include === undefined || (task !== undefined && options.include(task));
    })
    .sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.taskId.localeCompare(b.taskId));
}

/** Closures that say there was no violation. */
const NOT_A_VIOLATION = new Set(["false_positive", "sensor_fault", "exempt"]);

/**
 * Repeat-offender status of a party across its sites: `threshold` (default 2) or more cases that
 * were violations filed within `periodMs` before `nowMs`. `partyKey` may list several keys the
 * task store knows the party by (its credit code, `site:<id>` of its sites without a code).
 */
export async function repeatOffender(
  store: Pick<PartyHistory, "partyCaseHistory">,
  partyKey: string | readonly string[],
  options: { readonly periodMs: number; readonly nowMs: number; readonly threshold?: number },
): Promise<RepeatOffenderStatus> {
  const since = options.nowMs - options.periodMs;
  const keys = typeof partyKey === "string" ? [partyKey] : [...new Set(partyKey)];
  const histories: Task[][] = [];
  for (const key of keys) histories.push(await store.partyCaseHistory(key));
  const violations = histories
    .flat()
    .sort((a, b) => Date.parse(a.filedAt) - Date.parse(b.filedAt) || a.id.localeCompare(b.id))
    .filter((t) => Date.parse(t.filedAt) >= since && Date.parse(t.filedAt) <= options.nowMs)
    .filter((t) => t.closure === undefined || !NOT_A_VIOLATION.has(t.closure.reason));
  return {
    repeatOffender: violations.length >= (options.threshold ?? 2),
    violations: violations.length,
    periodDays: options.periodMs / 86_400_000,
    caseIds: violations.map((t) => t.id),
    sites: [...new Set(violations.flatMap(sitesOf))].sort(),
  };
}

const CSV_COLUMNS = [
  "partyKey",
  "creditCode",
  "partyName",
  "outcome",
  "at",
  "taskId",
  "sites",
  "rules",
  "detail",
] as const;

/**
 * The credit record as RFC 4180 CSV (tasks/csv.ts: formulas defused): a header line, one line per
 * row, CRLF line ends; lists joined by `;`.
 */
export function creditRecordCsv(rows: readonly CreditRecordRow[]): string {
  return toCsv([
    [...CSV_COLUMNS],
    ...rows.map((r) =>
      CSV_COLUMNS.map((c) => {
        const v = r[c];
        return v === null ? "" : Array.isArray(v) ? v.join(";") : String(v);
      }),
    ),
  ]);
}

/**
 * Why a legal reviewer may not approve a referral for penalty yet, or undefined: the party must
 * have been told (the notice served) and heard (Administrative Penalty Law 2021, informing and
 * hearing the party): the statement-and-defence window has ended or the party's statement (or
 * a request for a hearing) is recorded. Rejections are never held back.
 */
export function noticeGateProblem(task: Task, nowMs: number): string | undefined {
  if (task.graduated?.stage !== "referred") return undefined;
  const notice = task.notice;
  if (notice === undefined) {
    return `the party of task ${task.id} has not been served a notice (告知): serve it (POST /api/v1/tasks/${task.id}/notice) and hear the party before approving the referral`;
  }
  if (notice.statement !== undefined) return undefined;
  if (nowMs < Date.parse(notice.windowEndsAt)) {
    return `the party may state their case (陈述、申辩) until ${notice.windowEndsAt}: approve the referral after that, or once their statement is recorded`;
  }
  return undefined;
}

/** The review gate as review() answers it: a conflict for an approval noticeGateProblem refuses. */
export function reviewGate(
  task: Task,
  decision: "approve" | "reject",
  nowMs: number,
): { readonly ok: false; readonly error: "conflict"; readonly message: string } | undefined {
  if (decision !== "approve") return undefined;
  const problem = noticeGateProblem(task, nowMs);
  return problem === undefined ? undefined : { ok: false, error: "conflict", message: problem };
}
