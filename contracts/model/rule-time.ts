import { z } from "zod";

/*
 * Time in rule files: durations as written (`"1h30m"`), local clock times and time zones.
 */

// ---------------------------------------------------------------------------------------------
// Durations, clock times, time zones

const DURATION_HELP = 'durations are strings with units d, h, m, s, ms, e.g. "30s", "10m", "1h30m"';
const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNITS_MS = [86_400_000, 3_600_000, 60_000, 1_000, 1] as const;
const UNIT_NAMES = ["d", "h", "m", "s", "ms"] as const;

/** Milliseconds of a duration string (`"1h30m"` → 5 400 000); undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (match === null || text === "") return undefined;
  let ms = 0;
  UNITS_MS.forEach((unit, i) => {
    const digits = match[i + 1];
    if (digits !== undefined) ms += Number(digits) * unit;
  });
  return ms;
}

/** A duration in milliseconds written the way rule files write it (`5400000` → `"1h30m"`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  let rest = ms;
  let out = "";
  UNITS_MS.forEach((unit, i) => {
    const count = Math.floor(rest / unit);
    if (count > 0) {
      out += `${count}${UNIT_NAMES[i]}`;
      rest -= count * unit;
    }
  });
  return out;
}

function duration(bounds: { readonly min: number; readonly max: number }) {
  return z
    .string({ error: `must be a duration string; ${DURATION_HELP} (a bare number is ambiguous)` })
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          input: text,
          message: `${JSON.stringify(text)} is not a duration; ${DURATION_HELP}`,
        });
        return z.NEVER;
      }
      if (ms < bounds.min) {
        ctx.addIssue({
          code: "custom",
          input: text,
          message: `${text} is shorter than the minimum ${formatDuration(bounds.min)}`,
        });
        return z.NEVER;
      }
      if (ms > bounds.max) {
        ctx.addIssue({
          code: "custom",
          input: text,
          message: `${text} is longer than the maximum ${formatDuration(bounds.max)}`,
        });
        return z.NEVER;
      }
      return ms;
    });
}

export const DAY_MS = 86_400_000;

/** An aggregation window: 1 s to 1 d, in milliseconds after parsing. */
export const Window = duration({ min: 1_000, max: DAY_MS });
/** A hold time (`for`, flap suppression): 0 to 7 d, in milliseconds after parsing. */
export const HoldDuration = duration({ min: 0, max: 7 * DAY_MS });
/** A positive delay (escalation): 1 s to 7 d, in milliseconds after parsing. */
export const Delay = duration({ min: 1_000, max: 7 * DAY_MS });

/** A local wall-clock time `HH:MM` (00:00–23:59) in the schedule's time zone. */
export const ClockTime = z
  .string({ error: 'must be a time "HH:MM"' })
  .regex(/^([01]\d|2[0-3]):[0-5]\d$/, {
    error: 'must be a time "HH:MM" between 00:00 and 23:59',
  });
export type ClockTime = z.infer<typeof ClockTime>;

/** Minutes since local midnight of a `HH:MM` time. */
export function minutesOfDay(time: ClockTime): number {
  return Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false; // RangeError: the runtime does not know the zone, which is the answer
  }
}

/** An IANA time zone name known to the runtime, e.g. `Asia/Shanghai`. */
export const TimeZone = z
  .string({ error: "must be an IANA time zone name, e.g. Asia/Shanghai" })
  .refine(isTimeZone, { error: (issue) => `unknown time zone ${JSON.stringify(issue.input)}` });

/** The default time zone of schedules: China Standard Time (no daylight saving). */
export const DEFAULT_TIME_ZONE = "Asia/Shanghai";
