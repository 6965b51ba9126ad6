/*
 * Dates relative to the day a registry file is imported. In any string of the file,
 * `{{today}}`, `{{today + 30d}}`, `{{today - 6mo}}` or `{{today + 1y}}` stands for that calendar
 * date (YYYY-MM-DD), resolved before the file is validated: a file can say "calibrated the day it
 * was seeded, due a year later" and stay true whichever day it is imported. An expression may
 * stand inside a string, so a timestamp is a date plus a written time and offset:
 * `validFrom: "{{today + 14d}}T22:00:00+08:00"`. Months and years keep the day of the month,
 * clamped to the month's last day (Jan 31 + 1mo = Feb 28).
 */

/** A problem of the file, where and what (the shape of config/problems.ts's Problem). */
interface DateProblem {
  readonly path: string;
  readonly message: string;
}

const EXPRESSION = /\{\{([^{}]*)\}\}/g;
const TERM = /^today(?:([+-])(\d{1,4})(d|mo|y))?$/;

/** The calendar date (YYYY-MM-DD) of an instant on this machine's clock and time zone. */
export function localDate(nowMs: number): string {
  const d = new Date(nowMs);
  return isoDate(d.getFullYear(), d.getMonth(), d.getDate());
}

function isoDate(year: number, monthIndex: number, day: number): string {
  const shown = new Date(Date.UTC(year, monthIndex, day));
  return shown.toISOString().slice(0, 10);
}

/** `today` moved by `amount` days, months or years. */
function shift(today: string, sign: number, amount: number, unit: string): string {
  const [year = 0, month = 1, day = 1] = today.split("-").map(Number);
  if (unit === "d") return isoDate(year, month - 1, day + sign * amount);
  const months = year * 12 + month - 1 + sign * amount * (unit === "y" ? 12 : 1);
  const [toYear, toMonth] = [Math.floor(months / 12), months % 12];
  const lastDay = new Date(Date.UTC(toYear, toMonth + 1, 0)).getUTCDate();
  return isoDate(toYear, toMonth, Math.min(day, lastDay));
}

/** One `{{…}}` expression's date, or undefined when it is not one this syntax knows. */
function resolveTerm(term: string, today: string): string | undefined {
  const m = TERM.exec(term.replace(/\s+/g, ""));
  if (m === null) return undefined;
  const [, sign, amount, unit] = m;
  return sign === undefined
    ? today
    : shift(today, sign === "-" ? -1 : 1, Number(amount), unit ?? "");
}

/**
 * Every `{{today ± n d|mo|y}}` in the strings of `value` replaced by its date relative to `today`
 * (YYYY-MM-DD). Unknown expressions are problems, named by their path in the file.
 */
export function resolveRelativeDates(
  value: unknown,
  today: string,
): { value: unknown; problems: DateProblem[] } {
  const problems: DateProblem[] = [];
  const walk = (v: unknown, path: string): unknown => {
    if (typeof v === "string") {
      return v.replace(EXPRESSION, (whole, term: string) => {
        const date = resolveTerm(term, today);
        if (date !== undefined) return date;
        problems.push({
          path: path === "" ? "(root)" : path,
          message: `${whole} is not a relative date; write {{today}}, {{today + 30d}}, {{today - 6mo}} or {{today + 1y}}`,
        });
        return whole;
      });
    }
    if (Array.isArray(v))
      return v.map((item, i) => walk(item, path === "" ? `${i}` : `${path}.${i}`));
    if (typeof v === "object" && v !== null) {
      return Object.fromEntries(
        Object.entries(v).map(([k, item]) => [k, walk(item, path === "" ? k : `${path}.${k}`)]),
      );
    }
    return v;
  };
  return { value: walk(value, ""), problems };
}
