import type { TasksConfig } from "../contracts/config/tasks.js";
import { toCsv, type Cell } from "./csv.js";
import type {
  AssessmentGrouping,
  AssessmentNumbers,
  AssessmentPeriod,
  AssessmentReport,
  AssessmentRow,
} from "../contracts/model/assessment.js";
import type { UserScope } from "../contracts/model/people.js";
import type { AuditEntry, Task } from "../contracts/model/tasks.js";
import { inScope } from "./auth/scope.js";
import type { WorkingCalendar } from "./calendar/working-time.js";
import { limitsOf } from "./sla.js";

/*
 * The assessment report of the teams (the reform assesses teams on their SLA performance):
 * per district, street or team, the tasks filed in a period [from, to) of local dates, and what
 * became of them by the period's end. Pure: the tasks and their audit trails come from the store
 * (TaskStore.filedBetween), the limits from `tasks.sla`, office hours from the working calendar.
 *
 * Everything is judged as of the period's end (`to`, the cut-off): audit entries at or after it
 * are not counted, so a report of a past period gives the same numbers whenever it is made (the
 * monthly file and a later API call agree). docs/tasks.md (Assessment) defines each number.
 */

const HOUR_MS = 3_600_000;

/** A task with its audit trail, as the report reads it. */
export interface AssessedTask {
  readonly task: Task;
  readonly audit: readonly AuditEntry[];
}

export interface AssessmentSettings {
  readonly sla: TasksConfig["sla"];
  /** Office hours, holidays and the time zone of the period's local dates. */
  readonly calendar: WorkingCalendar;
}

/** The UTC offset of `timeZone` at `ms`, in ms (local = UTC + offset). */
function offsetMs(ms: number, timeZone: string): number {
  const parts: Record<string, string> = {};
  const format = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  for (const p of format.formatToParts(new Date(ms))) parts[p.type] = p.value;
  const local = Date.UTC(
    Number(parts["year"]),
    Number(parts["month"]) - 1,
    Number(parts["day"]),
    Number(parts["hour"]),
    Number(parts["minute"]),
    Number(parts["second"]),
  );
  return local - (ms - (((ms % 1_000) + 1_000) % 1_000));
}

/** The instant of local midnight starting `date` (YYYY-MM-DD) in `timeZone`. */
export function localMidnight(date: string, timeZone: string): number {
  const [y, m, d] = date.split("-").map(Number) as [number, number, number];
  const asUtc = Date.UTC(y, m - 1, d);
  const first = asUtc - offsetMs(asUtc, timeZone);
  return asUtc - offsetMs(first, timeZone);
}

/** The local date (YYYY-MM-DD) of an instant in `timeZone`. */
export function localDate(ms: number, timeZone: string): string {
  return new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(new Date(ms));
}

/** The instants [fromMs, toMs) a period of local dates stands for. */
export function periodBounds(
  period: Pick<AssessmentPeriod, "from" | "to">,
  timeZone: string,
): { fromMs: number; toMs: number } {
  return { fromMs: localMidnight(period.from, timeZone), toMs: localMidnight(period.to, timeZone) };
}

/** What the report needs of one task, as of the cut-off. */
interface Facts {
  readonly group: string | null;
  readonly dispatched: boolean;
  readonly dispatchedOnTime: boolean;
  readonly handled: boolean;
  readonly handledOnTime: boolean;
  readonly handlingMs?: { calendar: number; working: number } | undefined;
  readonly closed: boolean;
  readonly falsePositive: boolean;
  readonly overdue: boolean;
  readonly reopened: boolean;
  /** The party key when this task is a repeat case. */
  readonly repeatParty?: string | undefined;
}

const groupOf = (task: Task, by: AssessmentGrouping): string | null =>
  by === "team" ? task.routing.team : (task.routing[by] ?? null);

function factsOf(
  { task, audit }: AssessedTask,
  by: AssessmentGrouping,
  cutoffMs: number,
  settings: AssessmentSettings,
): Facts {
  const entries = audit.filter((e) => Date.parse(e.at) < cutoffMs);
  const firstAt = (test: (e: AuditEntry) => boolean): number | undefined => {
    const entry = entries.find((e) => e.action === "transition" && test(e));
    return entry === undefined ? undefined : Date.parse(entry.at);
  };
  const filedMs = Date.parse(task.filedAt);
  // Reached a team: dispatched, or acknowledged straight from filed (no dispatch step).
  const dispatchedMs = firstAt(
    (e) => e.from === "filed" && (e.to === "dispatched" || e.to === "acknowledged"),
  );
  const acknowledgedMs = firstAt((e) => e.to === "acknowledged");
  const handledMs = firstAt((e) => e.to === "handled");
  const closedEntry = entries.find((e) => e.action === "transition" && e.to === "closed");

  const limits = limitsOf(settings.sla, task);
  const clock = limits.clock ?? (task.kind === "emergency" ? "calendar" : "working");
  const due = (startMs: number) =>
    clock === "working"
      ? settings.calendar.add(startMs, limits.handleWithinMs)
      : startMs + limits.handleWithinMs;
  const handleStart =
    limits.from === "filed"
      ? filedMs
      : limits.from === "dispatched"
        ? dispatchedMs
        : acknowledgedMs;
  const handleDue = handleStart === undefined ? undefined : due(handleStart);

  const graduated = task.graduated;
  // A repeat case: filed as one (repeatOf), or referred when the data showed a new violation
  // after its warning's deadline (graduated.repeat).
  const repeat =
    graduated !== undefined && (graduated.repeatOf !== undefined || graduated.repeat === true);
  return {
    group: groupOf(task, by),
    dispatched: dispatchedMs !== undefined,
    dispatchedOnTime: dispatchedMs !== undefined && dispatchedMs <= due(filedMs),
    handled: handledMs !== undefined,
    handledOnTime: handledMs !== undefined && handleDue !== undefined && handledMs <= handleDue,
    handlingMs:
      handledMs === undefined
        ? undefined
        : {
            calendar: handledMs - filedMs,
            working: settings.calendar.between(filedMs, handledMs),
          },
    closed: closedEntry !== undefined,
    falsePositive: closedEntry !== undefined && task.closure?.reason === "false_positive",
    overdue: entries.some((e) => e.action === "sla_flagged"),
    reopened: entries.some(
      (e) =>
        e.action === "transition" &&
        (e.from === "handled" || e.from === "verified") &&
        e.to === "in_progress",
    ),
    repeatParty: repeat ? graduated.party.key : undefined,
  };
}

const round = (value: number, places: number) => {
  const f = 10 ** places;
  return Math.round(value * f) / f;
};

/** The numbers of a set of tasks' facts. */
function numbersOf(facts: readonly Facts[]): AssessmentNumbers {
  const count = (test: (f: Facts) => boolean) => facts.filter(test).length;
  const handled = facts.flatMap((f) => (f.handlingMs === undefined ? [] : [f.handlingMs]));
  const mean = (pick: (h: { calendar: number; working: number }) => number) =>
    handled.length === 0
      ? null
      : round(handled.reduce((sum, h) => sum + pick(h), 0) / handled.length / HOUR_MS, 2);
  const closed = count((f) => f.closed);
  const falsePositive = count((f) => f.falsePositive);
  return {
    received: facts.length,
    dispatched: count((f) => f.dispatched),
    dispatchedOnTime: count((f) => f.dispatchedOnTime),
    handled: count((f) => f.handled),
    handledOnTime: count((f) => f.handledOnTime),
    closed,
    closedFalsePositive: falsePositive,
    falsePositiveRate: closed === 0 ? null : round(falsePositive / closed, 4),
    overdue: count((f) => f.overdue),
    reopened: count((f) => f.reopened),
    averageHandlingHours: { calendar: mean((h) => h.calendar), working: mean((h) => h.working) },
    repeatOffenders: new Set(
      facts.flatMap((f) => (f.repeatParty === undefined ? [] : [f.repeatParty])),
    ).size,
  };
}

/** Groups by name, tasks routed to none (null) last. */
const byGroup = (a: string | null, b: string | null) =>
  a === b ? 0 : a === null ? 1 : b === null ? -1 : a < b ? -1 : 1;

export interface AssessmentInput {
  readonly period: AssessmentPeriod;
  /** The tasks filed in the period with their audit trails (others are left out). */
  readonly tasks: readonly AssessedTask[];
  readonly settings: AssessmentSettings;
  readonly generatedAtMs: number;
  /** A scoped caller's scope: only tasks in it are counted. Absent or city-wide: all. */
  readonly scope?: UserScope | undefined;
}

/** The assessment report of a period, per group, with the totals. */
export function assess(input: AssessmentInput): AssessmentReport {
  const { period, settings } = input;
  const timeZone = settings.calendar.file.timeZone;
  const { fromMs, toMs } = periodBounds(period, timeZone);
  const scope = input.scope?.cityWide === false ? input.scope : undefined;
  const facts = input.tasks
    .filter(({ task }) => {
      const filed = Date.parse(task.filedAt);
      return filed >= fromMs && filed < toMs && (scope === undefined || inScope(scope, task));
    })
    .map((t) => factsOf(t, period.by, toMs, settings));
  const groups = new Map<string | null, Facts[]>();
  for (const f of facts) {
    const list = groups.get(f.group);
    if (list === undefined) groups.set(f.group, [f]);
    else list.push(f);
  }
  const rows: AssessmentRow[] = [...groups.entries()]
    .sort(([a], [b]) => byGroup(a, b))
    .map(([group, list]) => ({ group, ...numbersOf(list) }));
  return {
    format: "citywatch-assessment/1",
    by: period.by,
    period: {
      from: period.from,
      to: period.to,
      timeZone,
      fromAt: new Date(fromMs).toISOString(),
      toAt: new Date(toMs).toISOString(),
    },
    generatedAt: new Date(input.generatedAtMs).toISOString(),
    ...(scope === undefined
      ? {}
      : {
          scope: {
            districts: [...scope.districts],
            streets: [...scope.streets],
            gridCells: [...scope.gridCells],
          },
        }),
    rows,
    totals: numbersOf(facts),
  };
}

/** Where the report's tasks come from (TaskStore.filedBetween). */
export interface AssessmentSource {
  filedBetween(fromMs: number, toMs: number): AssessedTask[] | Promise<AssessedTask[]>;
}

/** Read the period's tasks from the store and assess them. */
export async function assessFrom(
  store: AssessmentSource,
  period: AssessmentPeriod,
  settings: AssessmentSettings,
  nowMs: number,
  scope?: UserScope,
): Promise<AssessmentReport> {
  const { fromMs, toMs } = periodBounds(period, settings.calendar.file.timeZone);
  return assess({
    period,
    tasks: await store.filedBetween(fromMs, toMs),
    settings,
    generatedAtMs: nowMs,
    scope,
  });
}

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180)

export { csvField, toCsv } from "./csv.js";

export const CSV_HEADER = [
  "row",
  "by",
  "group",
  "received",
  "dispatched",
  "dispatched_on_time",
  "handled",
  "handled_on_time",
  "closed",
  "closed_false_positive",
  "false_positive_rate",
  "overdue",
  "reopened",
  "avg_handling_hours_calendar",
  "avg_handling_hours_working",
  "repeat_offenders",
  "period_from",
  "period_to",
  "time_zone",
] as const;

function csvRecord(
  kind: "group" | "total",
  report: AssessmentReport,
  group: string | null,
  n: AssessmentNumbers,
): Cell[] {
  return [
    kind,
    report.by,
    group,
    n.received,
    n.dispatched,
    n.dispatchedOnTime,
    n.handled,
    n.handledOnTime,
    n.closed,
    n.closedFalsePositive,
    n.falsePositiveRate,
    n.overdue,
    n.reopened,
    n.averageHandlingHours.calendar,
    n.averageHandlingHours.working,
    n.repeatOffenders,
    report.period.from,
    report.period.to,
    report.period.timeZone,
  ];
}

/**
 * Reports as one CSV: a header row, then each report's group rows (`row` = group) and its
 * totals (`row` = total, empty group). Empty cells: no value (no group, nothing to average).
 */
export function reportsCsv(reports: readonly AssessmentReport[]): string {
  return toCsv([
    [...CSV_HEADER],
    ...reports.flatMap((report) => [
      ...report.rows.map((r) => csvRecord("group", report, r.group, r)),
      csvRecord("total", report, null, report.totals),
    ]),
  ]);
}
