import type {
  Period,
  PeriodValue,
  Schedule,
  Value,
  Weekday,
} from "../../contracts/model/rule-fields.js";
import { DAY_MS, minutesOfDay } from "../../contracts/model/rule-time.js";

import { isByPeriod } from "../../contracts/model/rule-fields.js";
/*
 * Schedule periods in time: which periods are active at an instant in the schedule's time zone.
 */

// ---------------------------------------------------------------------------------------------
// Periods in time

const WEEKDAYS: readonly Weekday[] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Local date and minute by (time zone, minute since the epoch): Intl formatting is slow. */
const localTimes = new Map<string, { date: string; minutes: number }>();

function localTime(atMs: number, timeZone: string): { date: string; minutes: number } {
  // Every time zone in use is offset by whole minutes, so the local minute follows from the UTC one.
  const key = `${timeZone}|${Math.floor(atMs / 60_000)}`;
  const cached = localTimes.get(key);
  if (cached !== undefined) return cached;
  const value = formatLocalTime(atMs, timeZone);
  if (localTimes.size >= 10_000) localTimes.clear();
  localTimes.set(key, value);
  return value;
}

function formatLocalTime(atMs: number, timeZone: string): { date: string; minutes: number } {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
    });
    formatters.set(timeZone, f);
  }
  const parts: Record<string, string> = {};
  for (const p of f.formatToParts(atMs)) parts[p.type] = p.value;
  return {
    date: `${parts.year}-${parts.month}-${parts.day}`,
    minutes: Number(parts.hour) * 60 + Number(parts.minute),
  };
}

function previousDate(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) - DAY_MS).toISOString().slice(0, 10);
}

const weekdayOf = (date: string): Weekday =>
  WEEKDAYS[new Date(`${date}T00:00:00Z`).getUTCDay()] ?? "mon";

/** The local date a period active at `atMs` started on, or undefined when it is not active. */
function periodStart(period: Period, date: string, minutes: number): string | undefined {
  const from = minutesOfDay(period.from);
  const to = minutesOfDay(period.to);
  if (from < to) return minutes >= from && minutes < to ? date : undefined;
  if (minutes >= from) return date;
  if (minutes < to) return previousDate(date);
  return undefined;
}

/**
 * Names of the periods active at an instant, in definition order. Periods are half-open
 * `[from, to)`: at 22:00 exactly `night` is active and `day` is not.
 */
export function activePeriods(
  periods: Readonly<Record<string, Period>>,
  schedule: Pick<Schedule, "timeZone" | "holidays">,
  atMs: number,
): string[] {
  const { date, minutes } = localTime(atMs, schedule.timeZone);
  const holidays = new Set(schedule.holidays);
  return Object.entries(periods)
    .filter(([, period]) => {
      const start = periodStart(period, date, minutes);
      if (start === undefined) return false;
      if (period.days !== undefined && !period.days.includes(weekdayOf(start))) return false;
      if (period.holidays === "exclude" && holidays.has(start)) return false;
      if (period.holidays === "only" && !holidays.has(start)) return false;
      return true;
    })
    .map(([name]) => name);
}

/** The value of a `byPeriod` threshold at an instant: the first listed period that is active, or undefined. */
export function valueForPeriod(value: PeriodValue, active: readonly string[]): Value | undefined {
  if (!isByPeriod(value)) return value;
  for (const [name, v] of Object.entries(value.byPeriod)) if (active.includes(name)) return v;
  return undefined;
}
