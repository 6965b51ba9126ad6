import { z } from "zod";

/*
 * The assessment report of the teams (docs/tasks.md, Assessment): per district, street or team,
 * how the tasks filed in a period were dispatched, handled and closed against their SLA. The
 * period is given as local dates (the working calendar's time zone, Asia/Shanghai by default):
 * [from 00:00, to 00:00). tasks/assessment.ts computes it; the CLI, the API and the monthly run
 * (tasks/assessment-schedule.ts) write it as JSON or CSV.
 */

/** The longest period one report covers (a year and a day: a leap year's report fits). */
export const ASSESSMENT_MAX_DAYS = 366;

export const AssessmentGrouping = z.enum(["district", "street", "team"], {
  error: "by must be district, street or team",
});
export type AssessmentGrouping = z.infer<typeof AssessmentGrouping>;

/** A local date, YYYY-MM-DD, that exists in the calendar. */
export const LocalDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, { error: "must be a date YYYY-MM-DD", abort: true })
  .refine(
    (s) => {
      const [y, m, d] = s.split("-").map(Number) as [number, number, number];
      const t = new Date(Date.UTC(y, m - 1, d));
      return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
    },
    { error: "is not a date of the calendar" },
  );

const dayNumber = (s: string) => Date.parse(`${s}T00:00:00Z`) / 86_400_000;

/** `to` after `from`, at most ASSESSMENT_MAX_DAYS days. */
function periodChecks<T extends z.ZodType<{ from: string; to: string }>>(schema: T) {
  return schema
    .refine((q) => dayNumber(q.to) > dayNumber(q.from), {
      error: "to must be after from (the period is [from, to))",
      path: ["to"],
    })
    .refine((q) => dayNumber(q.to) - dayNumber(q.from) <= ASSESSMENT_MAX_DAYS, {
      error: `a report covers at most ${ASSESSMENT_MAX_DAYS} days`,
      path: ["to"],
    });
}

const periodFields = {
  from: LocalDate.describe("first local day of the period (YYYY-MM-DD, included)"),
  to: LocalDate.describe("local day after the period (YYYY-MM-DD, excluded)"),
  by: AssessmentGrouping.describe("district, street or team"),
};

/** The period and grouping of a report. */
export const AssessmentPeriod = periodChecks(z.strictObject(periodFields));
export type AssessmentPeriod = z.infer<typeof AssessmentPeriod>;

export const AssessmentFormat = z.enum(["json", "csv"], { error: "format must be json or csv" });
export type AssessmentFormat = z.infer<typeof AssessmentFormat>;

/** Query of `GET /api/v1/assessment`. */
export const AssessmentQuery = periodChecks(
  z.strictObject({
    ...periodFields,
    format: AssessmentFormat.default("json").describe("json (default) or csv (a download)"),
  }),
);
export type AssessmentQuery = z.infer<typeof AssessmentQuery>;

/** The numbers of one group (or of all, the totals). docs/tasks.md defines each exactly. */
export const AssessmentNumbers = z.object({
  /** Tasks filed in the period. */
  received: z.number().int(),
  /** Of them, dispatched (or acknowledged straight from filed) before the period's end. */
  dispatched: z.number().int(),
  /** Of them, dispatched by the handle limit counted from filing. */
  dispatchedOnTime: z.number().int(),
  /** First handled before the period's end. */
  handled: z.number().int(),
  /** Of them, first handled by their handle deadline. */
  handledOnTime: z.number().int(),
  /** Closed before the period's end. */
  closed: z.number().int(),
  /** Of them, closed as false_positive. */
  closedFalsePositive: z.number().int(),
  /** closedFalsePositive / closed, null when nothing closed. */
  falsePositiveRate: z.number().nullable(),
  /** Flagged not_handled or not_closed by the SLA tick at least once before the period's end. */
  overdue: z.number().int(),
  /** Sent back from handled or verified to in_progress at least once before the period's end. */
  reopened: z.number().int(),
  /** Mean hours from filing to first handling, of the handled tasks; null when none. */
  averageHandlingHours: z.object({
    /** Every hour counts. */
    calendar: z.number().nullable(),
    /** Office hours of the working calendar only. */
    working: z.number().nullable(),
  }),
  /** Distinct parties with a repeat case among these tasks. */
  repeatOffenders: z.number().int(),
});
export type AssessmentNumbers = z.infer<typeof AssessmentNumbers>;

export const AssessmentRow = AssessmentNumbers.extend({
  /** The district, street or team; null for tasks routed to none (city-wide work, no street). */
  group: z.string().nullable(),
});
export type AssessmentRow = z.infer<typeof AssessmentRow>;

export const AssessmentReport = z.object({
  format: z.literal("citywatch-assessment/1"),
  by: AssessmentGrouping,
  period: z.object({
    /** Local dates as asked. */
    from: z.string(),
    to: z.string(),
    timeZone: z.string(),
    /** The instants they stand for (local midnights). */
    fromAt: z.string(),
    toAt: z.string(),
  }),
  generatedAt: z.string(),
  /** Only the tasks of this scope were counted (a scoped caller); absent: city-wide. */
  scope: z
    .object({
      districts: z.array(z.string()),
      streets: z.array(z.string()),
      gridCells: z.array(z.string()),
    })
    .optional(),
  /** One row per group with at least one task filed in the period, by group name (null last). */
  rows: z.array(AssessmentRow),
  totals: AssessmentNumbers,
});
export type AssessmentReport = z.infer<typeof AssessmentReport>;
