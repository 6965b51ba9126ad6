import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/*
 * Working time for SLA deadlines. City digital urban-management practice sets case deadlines in
 * working hours (CJ/T 315-2009 work time limits per event type; docs/tasks.md, SLA), so a case
 * filed on Friday evening before a holiday is not overdue on Monday morning. A calendar says:
 * the office hours of a working day, in a time zone; the statutory holidays (days off that would
 * be working days); and the make-up working days (调休上班, weekend days that are worked).
 *
 * Pure and synchronous: the SLA tick asks for many tasks at once. Days are walked one at a time,
 * at most `MAX_DAYS` (a deadline years away is not a working-time question).
 */

const Day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, { error: "a date is YYYY-MM-DD" });
const Span = z
  .string()
  .regex(/^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$/, {
    error: "office hours are HH:MM-HH:MM, e.g. 09:00-12:00",
  })
  .refine(
    (s) => {
      const [from, to] = s.split("-") as [string, string];
      return minutes(from) < minutes(to);
    },
    { error: "office hours must end after they start" },
  );

/** A working-time calendar file (YAML). */
export const CalendarFile = z.strictObject({
  /** Where the office hours are kept (IANA zone). */
  timeZone: z.string().default("Asia/Shanghai"),
  /** Office hours of a working day, in order, not overlapping. */
  hours: z.array(Span).min(1).max(8).default(["09:00-12:00", "13:00-18:00"]),
  /** Days off that would be working days: statutory holidays and their bridging days. */
  holidays: z.array(Day).default([]),
  /** Weekend days that are worked (make-up working days). */
  workdays: z.array(Day).default([]),
  /** Where the dates come from, e.g. the State Council notice; printed by `citywatch` tools. */
  source: z.string().optional(),
});
export type CalendarFile = z.infer<typeof CalendarFile>;

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number) as [number, number];
  return h * 60 + m;
}

const MAX_DAYS = 3_660;
const DAY_MS = 86_400_000;

export class CalendarError extends Error {
  readonly code = "CALENDAR_INVALID";
}

/** Read and check a calendar file; every problem is named with its path. */
export function loadCalendarFile(path: string): WorkingCalendar {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, "utf8"));
  } catch (error) {
    throw new CalendarError(
      `calendar ${path}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const parsed = CalendarFile.safeParse(raw ?? {});
  if (!parsed.success) {
    throw new CalendarError(
      `calendar ${path}: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
    );
  }
  return new WorkingCalendar(parsed.data);
}

export class WorkingCalendar {
  private readonly holidays: ReadonlySet<string>;
  private readonly workdays: ReadonlySet<string>;
  /** Office hours as [from, to) minutes after local midnight. */
  private readonly spans: ReadonlyArray<readonly [number, number]>;
  private readonly parts: Intl.DateTimeFormat;

  constructor(readonly file: CalendarFile) {
    this.holidays = new Set(file.holidays);
    this.workdays = new Set(file.workdays);
    this.spans = file.hours
      .map((s) => s.split("-").map(minutes) as [number, number])
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < this.spans.length; i++) {
      if ((this.spans[i]?.[0] ?? 0) < (this.spans[i - 1]?.[1] ?? 0)) {
        throw new CalendarError("office hours must not overlap");
      }
    }
    for (const d of file.holidays) {
      if (this.workdays.has(d)) throw new CalendarError(`${d} is both a holiday and a workday`);
    }
    try {
      this.parts = new Intl.DateTimeFormat("en-CA", {
        timeZone: file.timeZone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        weekday: "short",
        hourCycle: "h23",
      });
    } catch {
      throw new CalendarError(`unknown time zone ${file.timeZone}`);
    }
  }

  /** Whether a local date (YYYY-MM-DD) is a working day. */
  isWorkingDay(date: string, weekday?: number): boolean {
    if (this.workdays.has(date)) return true;
    if (this.holidays.has(date)) return false;
    const wd = weekday ?? new Date(`${date}T12:00:00Z`).getUTCDay();
    return wd !== 0 && wd !== 6;
  }

  /** Working milliseconds in [fromMs, toMs) (0 when toMs <= fromMs). */
  between(fromMs: number, toMs: number): number {
    if (!(toMs > fromMs)) return 0;
    let total = 0;
    this.walk(fromMs, (start, end) => {
      if (start >= toMs) return true;
      total += Math.min(end, toMs) - start;
      return end >= toMs;
    });
    return total;
  }

  /** The instant `workingMs` of working time after `fromMs` (fromMs itself for 0). */
  add(fromMs: number, workingMs: number): number {
    if (workingMs <= 0) return fromMs;
    let left = workingMs;
    let at = fromMs;
    this.walk(fromMs, (start, end) => {
      if (end - start >= left) {
        at = start + left;
        return true;
      }
      left -= end - start;
      return false;
    });
    return at;
  }

  /**
   * Visit the office-hour intervals from `fromMs` on, clipped to start at `fromMs`, in order,
   * until `visit` returns true (or MAX_DAYS days were walked).
   */
  private walk(fromMs: number, visit: (startMs: number, endMs: number) => boolean): void {
    const local = this.local(fromMs);
    // Local midnight of the first day, as an instant: the offset is taken per day (DST-safe).
    let dayStart = fromMs - local.minuteOfDay * 60_000 - local.ms;
    for (let i = 0; i < MAX_DAYS; i++) {
      const day = this.local(dayStart + 12 * 3_600_000);
      const midnight = dayStart + 12 * 3_600_000 - day.minuteOfDay * 60_000 - day.ms;
      if (this.isWorkingDay(day.date, day.weekday)) {
        for (const [from, to] of this.spans) {
          const start = Math.max(midnight + from * 60_000, fromMs);
          const end = midnight + to * 60_000;
          if (end <= start) continue;
          if (visit(start, end)) return;
        }
      }
      dayStart = midnight + DAY_MS;
    }
  }

  private local(ms: number): { date: string; minuteOfDay: number; ms: number; weekday: number } {
    const p: Record<string, string> = {};
    for (const part of this.parts.formatToParts(new Date(ms))) p[part.type] = part.value;
    const weekday = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].indexOf(p["weekday"] ?? "");
    return {
      date: `${p["year"]}-${p["month"]}-${p["day"]}`,
      minuteOfDay: Number(p["hour"]) * 60 + Number(p["minute"]),
      ms: Number(p["second"]) * 1_000 + (((ms % 1_000) + 1_000) % 1_000),
      weekday,
    };
  }
}

/** The shipped example calendar (2026, mainland China). */
export const SHIPPED_CALENDAR = fileURLToPath(new URL("./cn-2026.yaml", import.meta.url));

/** The calendar a configuration names, or the shipped example. */
export function calendarOf(config: { readonly file?: string | undefined }): WorkingCalendar {
  return loadCalendarFile(config.file ?? SHIPPED_CALENDAR);
}
