import { z } from "zod";
import { Identifier } from "./ids.js";
import { QualityFlag } from "./quality.js";
import {
  AcousticZoneClass,
  ConstructionPhase,
  RestaurantSize,
  Site,
  TunnelCompartment,
} from "./registry.js";
import { QUANTITIES, type QuantitySpec, SensorKind } from "./sensors.js";
import { CalendarDate } from "./time.js";
import { TaskKind } from "./topics.js";

/*
 * Rule definitions: what a rule file may say and what each field means. The engine (alarm state,
 * tasks) is built on these types; everything it needs to evaluate a rule is here, with defaults
 * filled in, durations in milliseconds and every cross-field constraint checked at load.
 * docs/rules.md is the user-facing description of the same format.
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

const DAY_MS = 86_400_000;

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

// ---------------------------------------------------------------------------------------------
// Names

/** Identifier of a rule: lower case, `a–z 0–9 _ . -`, e.g. `noise.area.laeq`. Cited in evidence. */
export const RuleId = z
  .string({ error: "rule id must be a string" })
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, {
    error: "rule id must be 1-64 characters of a-z 0-9 _ . - starting with a letter or digit",
  });
export type RuleId = z.infer<typeof RuleId>;

const NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const nameError = (what: string) => ({
  error: `${what} must be 1-32 characters of A-Z a-z 0-9 _ starting with a letter`,
});

/** Name of a value in a rule's limit table (`day`, `night`, `limit`). */
export const LimitName = z.string().regex(NAME, nameError("a limit name"));
/** Name of a schedule period (`day`, `night`, `business`). */
export const PeriodName = z.string().regex(NAME, nameError("a period name"));
/** Key of a regulatory region (`default`, `hebei`, `beijing`). */
export const RegionKey = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, {
  error: "a region key must be 1-32 characters of a-z 0-9 _ - (e.g. default, hebei)",
});
/** Type of a site permit that exempts a rule while valid (`night_works`, `emergency_repair`). */
export const PermitType = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, {
  error: "a permit type must be 1-32 characters of a-z 0-9 _ starting with a letter",
});

/** Every site type of the registry (`Site` in contracts/registry.ts). */
export const SiteTypeName = z.enum(
  Site.options.map((option) => option.shape.type.value) as [Site["type"], ...Array<Site["type"]>],
);

// ---------------------------------------------------------------------------------------------
// Identity

/** The clause a rule enforces: the standard and the place in it. Evidence prints both. */
export const Clause = z.strictObject({
  /** The standard or law, with its year: `GB 3096-2008`, `Noise Pollution Prevention Law 2021`. */
  standard: z.string().min(1, { error: "standard must not be empty" }).max(120),
  /** Where in it: `§5, Table 1`, `Art. 43`, `Table 2`. */
  section: z.string().min(1, { error: "section must not be empty" }).max(200),
});
export type Clause = z.infer<typeof Clause>;

/**
 * `verified`: the numbers were read in the standard or an official notice (STANDARDS.md "V").
 * `placeholder`: not verified (STANDARDS.md "U"); shipped as a marked, configurable default.
 */
export const Confidence = z.enum(["verified", "placeholder"], {
  error: "confidence must be verified or placeholder",
});
export type Confidence = z.infer<typeof Confidence>;

/** One parameter of an otherwise verified rule that is a product default, not from the standard. */
export const UnverifiedParameter = z.strictObject({
  /** Dotted path inside the rule (`condition.window`, `levels`). Must exist. */
  path: z.string().min(1),
  note: z.string().min(1).max(500),
});
export type UnverifiedParameter = z.infer<typeof UnverifiedParameter>;

// ---------------------------------------------------------------------------------------------
// Scope, subject, context

/** Which devices a rule looks at. Every list given must match; an absent list matches all. */
export const RuleScope = z.strictObject({
  kinds: z.array(SensorKind).min(1, { error: "kinds must name at least one sensor kind" }),
  siteTypes: z.array(SiteTypeName).min(1).optional(),
  /** Zone class of the device, or of its site when the device has none (GB 3096-2008 §4). */
  zoneClasses: z.array(AcousticZoneClass).min(1).optional(),
  /** Construction phase of the site; needs `siteTypes: [construction_site]`. */
  phases: z.array(ConstructionPhase).min(1).optional(),
  /** Tunnel compartment of the segment; needs `siteTypes: [tunnel_segment]`. */
  compartments: z.array(TunnelCompartment).min(1).optional(),
  /** Regulatory region of the deployment (see {@link LimitContext}). */
  regions: z.array(RegionKey).min(1).optional(),
  /** Dust region of the construction site (`Site.dustRegion`, `default` when unset). */
  dustRegions: z.array(RegionKey).min(1).optional(),
});
export type RuleScope = z.infer<typeof RuleScope>;

/**
 * What one alarm (and one open task) is about:
 * - `device`: one alarm per (device, rule);
 * - `site`: one alarm per (site, rule); the condition is evaluated per device and the site's
 *   alarm holds while any device's does (severity: the highest); `k_of_n` votes across them;
 * - `segment`: a utility tunnel segment (a `tunnel_segment` site), same as `site`; emergency
 *   levels may name the segment's neighbours as the affected area.
 */
export const RuleSubject = z.enum(["device", "site", "segment"], {
  error: "subject must be device, site or segment",
});
export type RuleSubject = z.infer<typeof RuleSubject>;

/**
 * The context a limit table is keyed by, taken from the registry for the device being evaluated:
 * - `zoneClass`: `device.zoneClass ?? site.zoneClass`;
 * - `phase`: the construction site's `phase`;
 * - `restaurantSize`: the restaurant's `size` (GB 18483-2001 Table 1);
 * - `region`: the deployment's regulatory region (engine configuration; `default` when unset),
 *   e.g. `beijing` where DB11/1488-2018 applies;
 * - `dustRegion`: the construction site's `dustRegion` (`default` when unset).
 */
export const LimitContext = z.strictObject({
  zoneClass: AcousticZoneClass.optional(),
  phase: ConstructionPhase.optional(),
  restaurantSize: RestaurantSize.optional(),
  region: RegionKey.optional(),
  dustRegion: RegionKey.optional(),
});
export type LimitContext = z.infer<typeof LimitContext>;
const CONTEXT_KEYS = ["zoneClass", "phase", "restaurantSize", "region", "dustRegion"] as const;
type ContextKey = (typeof CONTEXT_KEYS)[number];

// ---------------------------------------------------------------------------------------------
// Values and limits

/**
 * A reference a threshold can take its number from:
 * - `limits.<name>`: the rule's limit table, resolved for the subject (see {@link resolveLimits});
 * - `site.levels.warning | guaranteed | historicalMax`: the river station's levels in the registry.
 */
export const ValueRef = z
  .string({ error: "from must be a string" })
  .regex(
    /^(limits\.[A-Za-z][A-Za-z0-9_]{0,31}|site\.levels\.(warning|guaranteed|historicalMax))$/,
    {
      error:
        "from must be limits.<name> or site.levels.warning | site.levels.guaranteed | site.levels.historicalMax",
    },
  );
export type ValueRef = z.infer<typeof ValueRef>;

/** A number taken from a reference, plus an offset (`{ from: limits.night, plus: 15 }`). */
export const ValueFrom = z.strictObject({
  from: ValueRef,
  /** Added to the referenced number, in the quantity's unit; may be negative. */
  plus: z.number({ error: "plus must be a number" }).default(0),
});
export type ValueFrom = z.infer<typeof ValueFrom>;

const VALUE_HELP =
  "must be a number or { from: limits.<name> | site.levels.<level>, plus?: number }";

/** A threshold value: a literal number in the quantity's unit, or a reference with an offset. */
export const Value = z.unknown().transform((input, ctx): number | ValueFrom => {
  if (typeof input === "number") {
    if (Number.isFinite(input)) return input;
    ctx.addIssue({ code: "custom", input, message: "must be a finite number" });
    return z.NEVER;
  }
  if (typeof input === "object" && input !== null) return reissue(ValueFrom.safeParse(input), ctx);
  ctx.addIssue({ code: "custom", input, message: VALUE_HELP });
  return z.NEVER;
});
export type Value = z.infer<typeof Value>;

/** A value that differs by schedule period: the first period listed that is active at the time applies. */
export const ByPeriod = z.strictObject({
  byPeriod: z
    .record(PeriodName, Value)
    .refine((m) => Object.keys(m).length > 0, { error: "byPeriod must name at least one period" }),
});
export type ByPeriod = z.infer<typeof ByPeriod>;

/** A threshold value, possibly different per period (`"different limits during"`). */
export const PeriodValue = z.unknown().transform((input, ctx): Value | ByPeriod => {
  if (typeof input === "object" && input !== null && "byPeriod" in input) {
    return reissue(ByPeriod.safeParse(input), ctx);
  }
  return reissue(Value.safeParse(input), ctx);
});
export type PeriodValue = z.infer<typeof PeriodValue>;

function reissue<T>(result: z.ZodSafeParseResult<T>, ctx: z.core.$RefinementCtx<unknown>): T {
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
  }
  return z.NEVER;
}

/** Named numbers (`{ day: 60, night: 50 }`), in the unit of the quantity they are compared with. */
export const LimitValues = z
  .record(LimitName, z.number({ error: "a limit value must be a number" }))
  .refine((values) => Object.keys(values).length > 0, {
    error: "values must name at least one limit",
  });
export type LimitValues = z.infer<typeof LimitValues>;

/** A row of a limit table: values that apply where the subject's context matches `when`. */
export const LimitRow = z.strictObject({
  when: LimitContext.refine((w) => Object.keys(w).length > 0, {
    error: "when must name at least one of zoneClass, phase, restaurantSize, region, dustRegion",
  }),
  values: LimitValues,
  /** The clause these values come from, when not the rule's own (a local standard). */
  clause: Clause.optional(),
});
export type LimitRow = z.infer<typeof LimitRow>;

/** A rule's limit table. Precedence: see {@link resolveLimits}. */
export const LimitTable = z.strictObject({
  default: LimitValues.optional(),
  rows: z.array(LimitRow).default([]),
});
export type LimitTable = z.infer<typeof LimitTable>;

// ---------------------------------------------------------------------------------------------
// Schedules

/** Days of the week, for periods that apply only on some. */
export const Weekday = z.enum(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], {
  error: "days must be mon, tue, wed, thu, fri, sat or sun",
});
export type Weekday = z.infer<typeof Weekday>;

/**
 * A daily period `[from, to)` in local time. `to` before `from` runs over midnight and belongs to
 * the day it starts (Friday's night includes Saturday 03:00). `days` and `holidays` apply to that
 * start day: `include` ignores the holiday list, `exclude` skips holidays, `only` runs on holidays only.
 */
export const Period = z
  .strictObject({
    from: ClockTime,
    to: ClockTime,
    days: z.array(Weekday).min(1).optional(),
    holidays: z.enum(["include", "exclude", "only"]).default("include"),
  })
  .refine((p) => p.from !== p.to, {
    error: "from and to must differ (a period of a whole day needs no schedule)",
    path: ["to"],
  });
export type Period = z.infer<typeof Period>;

/**
 * Default periods: day 06:00–22:00, night 22:00–06:00 (GB 12523-2011 §3; Noise Pollution
 * Prevention Law 2021), redefinable per county through a district override.
 */
export const DEFAULT_PERIODS: Readonly<Record<string, Period>> = Object.freeze({
  day: { from: "06:00", to: "22:00", holidays: "include" },
  night: { from: "22:00", to: "06:00", holidays: "include" },
});

/**
 * When a rule applies. `periods` adds to (or replaces by name) {@link DEFAULT_PERIODS}.
 * `activeDuring`: the rule is evaluated only while one of these periods is active; outside them
 * its alarm cannot raise (an open alarm is left to the engine's clear rules).
 */
export const Schedule = z
  .strictObject({
    timeZone: TimeZone.default(DEFAULT_TIME_ZONE),
    periods: z.record(PeriodName, Period).default({}),
    /** Local dates of public holidays (and e.g. college-entrance-exam days), `YYYY-MM-DD`. */
    holidays: z.array(CalendarDate).default([]),
    activeDuring: z.array(PeriodName).min(1).optional(),
  })
  .transform((s) => ({ ...s, periods: { ...DEFAULT_PERIODS, ...s.periods } }))
  .prefault({});
export type Schedule = z.infer<typeof Schedule>;

// ---------------------------------------------------------------------------------------------
// Conditions

/** How the readings of a window are reduced to one number. */
export const Aggregate = z.enum(["latest", "mean", "max", "min", "energy_mean"], {
  error: "aggregate must be latest, mean, max, min or energy_mean",
});
export type Aggregate = z.infer<typeof Aggregate>;

/** Comparison of the aggregate with the threshold; `>`/`>=` raise above it, `<`/`<=` below it. */
export const Comparison = z.enum([">", ">=", "<", "<="], { error: "op must be >, >=, < or <=" });
export type Comparison = z.infer<typeof Comparison>;

/**
 * `rolling`: the window (t − window, t], evaluated on every reading and clock tick.
 * `clock`: complete intervals of length `window` aligned to local midnight in the schedule's time
 * zone (10-min means at :00, :10, …), each evaluated once when it ends.
 */
export const WindowAlign = z.enum(["rolling", "clock"], {
  error: "align must be rolling or clock",
});
export type WindowAlign = z.infer<typeof WindowAlign>;

const QuantityRef = z.string({ error: "quantity must be a string" }).min(1);
const forField = HoldDuration.default(0);

const aggregateFields = {
  quantity: QuantityRef,
  aggregate: Aggregate,
  /** Required except for `latest`. Milliseconds. */
  window: Window.optional(),
  align: WindowAlign.default("rolling"),
  op: Comparison,
  /** The alarm raises when `aggregate op raise` holds. */
  raise: PeriodValue,
  /**
   * The alarm clears when `aggregate op clear` no longer holds. Absent: same as raise (no
   * hysteresis). Must be on the compliant side of raise.
   */
  clear: PeriodValue.optional(),
  /** How long the raise comparison must hold before the alarm is active (pending until then). */
  for: forField,
};

/**
 * A windowed aggregate of one numeric quantity compared with a threshold.
 * `energy_mean` is `10·log10(mean(10^(Li/10)))`, the only correct mean of dB levels (STANDARDS.md Noise).
 */
export const ThresholdCondition = z.strictObject({
  type: z.literal("threshold"),
  ...aggregateFields,
  /**
   * N-of-M: the condition holds when at least `n` of the last `m` complete clock intervals violate
   * (`{ n: 3, m: 3 }` = three consecutive 10-min means). Needs `align: clock`.
   */
  nOfM: z
    .strictObject({
      n: z.number().int().min(1, { error: "n must be >= 1" }),
      m: z.number().int().min(1, { error: "m must be >= 1" }).max(1_440),
    })
    .refine((x) => x.n <= x.m, { error: "n must not exceed m", path: ["n"] })
    .optional(),
  /**
   * Allowed violating intervals per local day (DB13/2934-2019: compliant with ≤ 2 exceedances).
   * The alarm raises on violating interval `allowedPerDay + 1` and clears when the day ends.
   * Needs `align: clock`.
   */
  exceedances: z
    .strictObject({
      allowedPerDay: z.number().int().min(0, { error: "allowedPerDay must be >= 0" }),
    })
    .optional(),
});
export type ThresholdCondition = z.infer<typeof ThresholdCondition>;

/**
 * Rise of a quantity within a window: newest reading minus the oldest reading in (t − window, t],
 * in the quantity's unit. Raises when the rise is `>= raise`; clears when it is below `clear`.
 */
export const RateOfRiseCondition = z.strictObject({
  type: z.literal("rate_of_rise"),
  quantity: QuantityRef,
  window: Window,
  raise: Value,
  clear: Value.optional(),
  for: forField,
});
export type RateOfRiseCondition = z.infer<typeof RateOfRiseCondition>;

/** One term of a state condition: the latest reported value of a switch quantity. */
export const StateTerm = z.strictObject({
  quantity: QuantityRef,
  is: z.boolean({ error: "is must be true or false" }),
});
export type StateTerm = z.infer<typeof StateTerm>;

/**
 * Switch states: `all` terms hold (AND) or `any` holds (OR), each on the latest reported value of
 * its quantity. A quantity never reported makes its term false.
 */
export const StateCondition = z.strictObject({
  type: z.literal("state"),
  match: z.enum(["all", "any"], { error: "match must be all or any" }).default("all"),
  terms: z.array(StateTerm).min(1, { error: "terms must hold at least one term" }),
  for: forField,
});
export type StateCondition = z.infer<typeof StateCondition>;

/**
 * No data: the device sent no reading for longer than `factor` × its `expectedIntervalS`.
 * Evaluated on the clock tick. Clears on the next reading.
 */
export const DeadmanCondition = z.strictObject({
  type: z.literal("deadman"),
  factor: z
    .number({ error: "factor must be a number" })
    .min(1, { error: "factor must be >= 1" })
    .max(1_000),
});
export type DeadmanCondition = z.infer<typeof DeadmanCondition>;

/**
 * The device's own state: the newest reading carries one of `flags`, or (`calibrationExpired`)
 * the local date is after the device's `calibrationDueOn`. Opens maintenance tasks only.
 */
export const QualityCondition = z.strictObject({
  type: z.literal("quality"),
  flags: z.array(QualityFlag).default([]),
  calibrationExpired: z.boolean().default(false),
  for: forField,
});
export type QualityCondition = z.infer<typeof QualityCondition>;

/**
 * Voting across the subject's devices: the condition holds when at least `k` of the `n` voting
 * devices have `aggregate op raise`. Voting devices are the subject's enabled devices of the
 * scope's kinds that are neither silent (deadman) nor suppressed by the quality gate.
 * `degraded`: when fewer than `k` vote, `lower_k` votes with k = n (n ≥ 1), `keep_k` cannot raise.
 */
export const KOfNCondition = z.strictObject({
  type: z.literal("k_of_n"),
  k: z.number().int().min(1, { error: "k must be >= 1" }).max(64),
  ...aggregateFields,
  degraded: z
    .enum(["lower_k", "keep_k"], { error: "degraded must be lower_k or keep_k" })
    .default("lower_k"),
});
export type KOfNCondition = z.infer<typeof KOfNCondition>;

const CONDITION_TYPES = ["threshold", "rate_of_rise", "state", "deadman", "quality", "k_of_n"];

/** What must hold for the alarm to raise. Discriminated by `type`. */
export const Condition = z.discriminatedUnion(
  "type",
  [
    ThresholdCondition,
    RateOfRiseCondition,
    StateCondition,
    DeadmanCondition,
    QualityCondition,
    KOfNCondition,
  ],
  {
    error: (issue) => {
      const code: string = issue.code;
      if (code !== "invalid_union") return undefined;
      const type = (issue.input as { type?: unknown } | undefined)?.type;
      const expected = `expected one of ${CONDITION_TYPES.join(", ")}`;
      return type === undefined
        ? `condition type is required; ${expected}`
        : `unknown condition type ${JSON.stringify(type)}; ${expected}`;
    },
  },
);
export type Condition = z.infer<typeof Condition>;

// ---------------------------------------------------------------------------------------------
// Severity, actions, timing, quality gate, overrides

/** Emergency levels, least to most severe (National emergency plan; Emergency Response Law). */
export const EmergencyLevel = z.enum(["IV", "III", "II", "I"]);
export type EmergencyLevel = z.infer<typeof EmergencyLevel>;

/** Colour of each emergency level: IV 一般 blue · III 较大 yellow · II 重大 orange · I 特别重大 red. */
export const EMERGENCY_LEVEL_COLOUR = {
  IV: "blue",
  III: "yellow",
  II: "orange",
  I: "red",
} as const satisfies Record<EmergencyLevel, string>;

/**
 * Enforcement levels: `warning` notifies the regulated party (no case); `case` files the
 * enforcement case. A rule without levels is at `case` as soon as it raises.
 */
export const EnforcementLevel = z.enum(["warning", "case"]);
export type EnforcementLevel = z.infer<typeof EnforcementLevel>;

const SEVERITY_ORDER: Readonly<Record<string, number>> = {
  IV: 0,
  III: 1,
  II: 2,
  I: 3,
  warning: 0,
  case: 1,
};

/** Who an emergency level's actions concern: the subject, or a tunnel segment and its neighbours. */
export const AffectedArea = z.enum(["subject", "subject_and_neighbours"], {
  error: "area must be subject or subject_and_neighbours",
});
export type AffectedArea = z.infer<typeof AffectedArea>;

const ActionText = z.string().min(1).max(300);

/**
 * One severity level. The first level raises at `condition.raise` (omit `raise` here); each
 * further level has its own, strictly more severe `raise`, so severity can rise within one alarm.
 */
export const SeverityLevel = z.strictObject({
  level: z.enum([...EmergencyLevel.options, ...EnforcementLevel.options], {
    error: "level must be IV, III, II, I (emergency) or warning, case (enforcement)",
  }),
  raise: Value.optional(),
  /** Recommended actions, in order ("accident ventilation in the segment and its neighbours"). */
  actions: z.array(ActionText).default([]),
  area: AffectedArea.default("subject"),
});
export type SeverityLevel = z.infer<typeof SeverityLevel>;

/** Flap suppression and escalation. No defaults: STANDARDS.md gives none. Milliseconds. */
export const RuleTiming = z
  .strictObject({
    /** An active alarm stays active at least this long before it may clear. */
    minActive: HoldDuration.optional(),
    /** The clear comparison must hold this long before the alarm clears (recovering until then). */
    clearHold: HoldDuration.optional(),
    /** Emergency rules: escalate when the task is not acknowledged within this time. */
    escalateAfter: Delay.optional(),
  })
  .prefault({});
export type RuleTiming = z.infer<typeof RuleTiming>;

/**
 * Which readings a rule ignores. Readings flagged with one of `suppressFlags` are left out of
 * every aggregate, state and vote, and never become evidence; a device whose calibration has
 * expired contributes nothing while `suppressOnExpiredCalibration`. Defaults by task kind:
 * enforcement — every flag except `normal`, and expired calibration (HJ 212-2017 data flags;
 * Administrative Penalty Law 2021 Art. 41); emergency — `maintenance` and `calibration` only
 * (test gas must not evacuate a tunnel; a faulty or over-range gas reading still alarms);
 * maintenance — nothing.
 */
export const QualityGate = z.strictObject({
  suppressFlags: z.array(QualityFlag).optional(),
  suppressOnExpiredCalibration: z.boolean().optional(),
});

/** Where a file-level or in-rule override applies: the whole city, a district, a site, a device. */
export const OverrideLevel = z.enum(["city", "district", "site", "device"], {
  error: "at must be city, district, site or device",
});
export type OverrideLevel = z.infer<typeof OverrideLevel>;
export const OVERRIDE_LEVELS = OverrideLevel.options;

const overrideFields = {
  at: OverrideLevel,
  /** District name (`area.district`), site id or device id; absent for `city`. */
  id: z.string().min(1).max(64).optional(),
  /** Only where the subject's context matches (e.g. one zone class). */
  when: LimitContext.optional(),
  /** Replacement limit values; every name must exist in the rule's limit table. */
  values: LimitValues.optional(),
  /** Replacement schedule periods (night 23:00–07:00 in one county). */
  periods: z.record(PeriodName, Period).optional(),
  /** Switch the rule on or off here (a city turning a pack rule off, a site exempted). */
  enabled: z.boolean({ error: "enabled must be true or false" }).optional(),
  /** The local notice or decision that sets these numbers; evidence cites it. */
  clause: Clause.optional(),
  /** Set by the loader: the file the override was read from. */
  source: z.string().optional(),
};

function checkOverrideShape(
  o: {
    at: OverrideLevel;
    id?: string | undefined;
    values?: unknown;
    periods?: unknown;
    enabled?: boolean | undefined;
  },
  ctx: z.core.$RefinementCtx,
): void {
  if (o.at === "city" && o.id !== undefined) {
    ctx.addIssue({ code: "custom", path: ["id"], message: "a city override names no id" });
  }
  if (o.at !== "city" && o.id === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["id"],
      message: `a ${o.at} override needs the ${o.at}'s id`,
    });
  }
  if (
    (o.at === "site" || o.at === "device") &&
    o.id !== undefined &&
    !Identifier.safeParse(o.id).success
  ) {
    ctx.addIssue({
      code: "custom",
      path: ["id"],
      message: `${o.at} id ${JSON.stringify(o.id)} is not a valid id`,
    });
  }
  if (o.values === undefined && o.periods === undefined && o.enabled === undefined) {
    ctx.addIssue({
      code: "custom",
      path: [],
      message: "an override must set values, periods or enabled",
    });
  }
}

/** A number or period replaced for the city, a district, a site or a device. */
export const RuleOverride = z.strictObject(overrideFields).superRefine(checkOverrideShape);
export type RuleOverride = z.infer<typeof RuleOverride>;

/** An override in a rule file's `overrides:` list, aimed at a rule by id (usually a pack rule). */
export const FileOverride = z
  .strictObject({ rule: RuleId, ...overrideFields })
  .superRefine(checkOverrideShape);
export type FileOverride = z.infer<typeof FileOverride>;

// ---------------------------------------------------------------------------------------------
// The rule

const RuleFields = z.strictObject({
  id: RuleId,
  /** Raised on every change of meaning; evidence cites id and version. */
  version: z
    .number({ error: "version must be a whole number >= 1" })
    .int({ error: "version must be a whole number >= 1" })
    .min(1, { error: "version must be a whole number >= 1" }),
  title: z.string().min(1, { error: "title must not be empty" }).max(200),
  description: z.string().max(2_000).optional(),
  clause: Clause,
  confidence: Confidence,
  /** Required for placeholders: what is unverified and where the real number would come from. */
  note: z.string().min(1).max(1_000).optional(),
  unverified: z.array(UnverifiedParameter).default([]),
  taskKind: TaskKind,
  enabled: z.boolean({ error: "enabled must be true or false" }).default(true),
  scope: RuleScope,
  subject: RuleSubject,
  condition: Condition,
  limits: LimitTable.optional(),
  overrides: z.array(RuleOverride).default([]),
  schedule: Schedule,
  /** The rule does not raise for a site holding a valid permit of one of these types (time-bound exemption). */
  permitExemption: z.strictObject({ types: z.array(PermitType).min(1) }).optional(),
  /** Emergency: required (IV … I). Enforcement: optional (warning, case). Maintenance: none. */
  levels: z.array(SeverityLevel).min(1).optional(),
  /** Recommended actions of enforcement and maintenance rules (emergency rules put them on levels). */
  actions: z.array(ActionText).default([]),
  evidence: z
    .strictObject({
      /** Raw readings from this long before the raise to the clear go into the evidence package. */
      window: HoldDuration.optional(),
      /** Printed in the evidence package (e.g. "an online exceedance is a lead for inspection"). */
      statement: z.string().min(1).max(1_000).optional(),
    })
    .optional(),
  timing: RuleTiming,
  qualityGate: QualityGate.optional(),
});
type RuleFields = z.infer<typeof RuleFields>;

/**
 * A rule: identity and clause, scope and subject, condition, context-dependent limits and their
 * overrides, schedule, severity levels and actions, timing, quality gate. Durations are in
 * milliseconds; `schedule`, `timing`, `qualityGate` and `evidence` are always present after parsing.
 */
export const Rule = RuleFields.superRefine((rule, ctx) => {
  for (const problem of ruleProblems(rule)) {
    ctx.addIssue({ code: "custom", path: problem.path, message: problem.message });
  }
}).transform((rule) => ({
  ...rule,
  qualityGate: {
    suppressFlags: rule.qualityGate?.suppressFlags ?? defaultSuppressFlags(rule.taskKind),
    suppressOnExpiredCalibration:
      rule.qualityGate?.suppressOnExpiredCalibration ?? rule.taskKind === "enforcement",
  },
  evidence: {
    window: rule.evidence?.window ?? conditionSpan(rule.condition),
    ...(rule.evidence?.statement === undefined ? {} : { statement: rule.evidence.statement }),
  },
}));
export type Rule = z.infer<typeof Rule>;
/** A rule as written in a file. */
export type RuleInput = z.input<typeof Rule>;

/** A rule file: rules, and overrides of rules defined here or in other files (the pack). */
export const RuleFile = z.strictObject({
  rules: z.array(Rule).default([]),
  overrides: z.array(FileOverride).default([]),
});
export type RuleFile = z.infer<typeof RuleFile>;

function defaultSuppressFlags(kind: TaskKind): QualityFlag[] {
  switch (kind) {
    case "enforcement":
      return QualityFlag.options.filter((f) => f !== "normal");
    case "emergency":
      return ["maintenance", "calibration"];
    case "maintenance":
      return [];
  }
}

/** The span of readings a condition decides on; the default evidence window. 0 = the triggering readings. */
function conditionSpan(c: Condition): number {
  switch (c.type) {
    case "threshold":
      if (c.exceedances !== undefined) return DAY_MS;
      return (c.window ?? 0) * (c.nOfM?.m ?? 1) + c.for;
    case "k_of_n":
      return (c.window ?? 0) + c.for;
    case "rate_of_rise":
      return c.window + c.for;
    case "state":
    case "quality":
      return c.for;
    case "deadman":
      return 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-field checks

interface RuleProblem {
  readonly path: PropertyKey[];
  readonly message: string;
}

type Direction = "up" | "down";
const directionOf = (op: Comparison): Direction => (op === ">" || op === ">=" ? "up" : "down");

function ruleProblems(rule: RuleFields): RuleProblem[] {
  const out: RuleProblem[] = [];
  const add = (path: PropertyKey[], message: string) => out.push({ path, message });
  const c = rule.condition;

  if (rule.confidence === "placeholder" && rule.note === undefined) {
    add(["note"], "a placeholder rule must say in note what is unverified (STANDARDS.md U items)");
  }
  rule.unverified.forEach((u, i) => {
    if (!hasPath(rule, u.path))
      add(["unverified", i, "path"], `${u.path} is not a field of this rule`);
  });

  checkScope(rule, add);
  checkQuantities(rule, add);
  checkWindow(rule, add);
  checkSchedule(rule, add);
  checkReferences(rule, add);
  checkLevels(rule, add);
  checkSides(rule, add);

  // Task-kind specific fields.
  if (rule.taskKind === "emergency" && rule.levels === undefined) {
    add(["levels"], "an emergency rule needs levels (IV, III, II, I) with their actions");
  }
  if (rule.taskKind !== "emergency" && rule.timing.escalateAfter !== undefined) {
    add(
      ["timing", "escalateAfter"],
      "escalation on no acknowledgement applies to emergency rules only",
    );
  }
  if (rule.taskKind === "emergency" && rule.actions.length > 0) {
    add(["actions"], "an emergency rule lists its actions per level (levels.N.actions)");
  }
  if (c.type === "quality" && rule.taskKind !== "maintenance") {
    add(
      ["taskKind"],
      "a quality condition is about the device itself and opens maintenance tasks only",
    );
  }
  if (c.type === "quality" && c.flags.length === 0 && !c.calibrationExpired) {
    add(["condition"], "a quality condition needs flags, calibrationExpired: true, or both");
  }
  if (c.type === "quality" && c.flags.includes("normal")) {
    add(["condition", "flags"], "normal is good data, not a quality problem");
  }
  if (rule.qualityGate?.suppressFlags?.includes("normal") === true) {
    add(["qualityGate", "suppressFlags"], "suppressing normal readings would suppress everything");
  }
  return out;
}

type Add = (path: PropertyKey[], message: string) => void;

function onlySiteType(rule: RuleFields, type: Site["type"]): boolean {
  return rule.scope.siteTypes?.length === 1 && rule.scope.siteTypes[0] === type;
}

function checkScope(rule: RuleFields, add: Add): void {
  const kinds = rule.scope.kinds;
  const seen = new Set<string>();
  kinds.forEach((k, i) => {
    if (seen.has(k)) add(["scope", "kinds", i], `sensor kind ${k} is listed twice`);
    seen.add(k);
  });
  if (rule.subject === "segment" && !onlySiteType(rule, "tunnel_segment")) {
    add(["subject"], "subject segment needs scope.siteTypes: [tunnel_segment]");
  }
  if (rule.scope.compartments !== undefined && !onlySiteType(rule, "tunnel_segment")) {
    add(["scope", "compartments"], "compartments need scope.siteTypes: [tunnel_segment]");
  }
  for (const key of ["phases", "dustRegions"] as const) {
    if (rule.scope[key] !== undefined && !onlySiteType(rule, "construction_site")) {
      add(["scope", key], `${key} need scope.siteTypes: [construction_site]`);
    }
  }
  if (rule.condition.type === "k_of_n" && rule.subject === "device") {
    add(
      ["subject"],
      "k_of_n votes across the devices of a site or segment; subject must be site or segment",
    );
  }
}

function quantitySpec(kind: SensorKind, name: string): QuantitySpec | undefined {
  const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[kind];
  return Object.hasOwn(specs, name) ? specs[name] : undefined;
}

/** The spec of a quantity in every kind of the scope, or a problem message. */
function lookupQuantity(kinds: readonly SensorKind[], name: string): QuantitySpec | string {
  let found: QuantitySpec | undefined;
  for (const kind of kinds) {
    const spec = quantitySpec(kind, name);
    if (spec === undefined) {
      const known = Object.keys(QUANTITIES[kind]).join(", ");
      return `unknown quantity ${JSON.stringify(name)} for kind ${kind}; known: ${known}`;
    }
    if (found !== undefined && (found.type !== spec.type || unitOf(found) !== unitOf(spec))) {
      return `quantity ${name} has different units across the scope's kinds; scope one kind`;
    }
    found = spec;
  }
  return found ?? `unknown quantity ${JSON.stringify(name)}`;
}

const unitOf = (spec: QuantitySpec): string => (spec.type === "number" ? spec.unit : "switch");

function numericQuantity(
  rule: RuleFields,
): { name: string; spec: QuantitySpec & { type: "number" } } | undefined {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return undefined;
  const spec = lookupQuantity(rule.scope.kinds, c.quantity);
  return typeof spec === "string" || spec.type !== "number"
    ? undefined
    : { name: c.quantity, spec };
}

function checkQuantities(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  const kinds = rule.scope.kinds;
  if (c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise") {
    const spec = lookupQuantity(kinds, c.quantity);
    if (typeof spec === "string") {
      add(["condition", "quantity"], spec);
      return;
    }
    if (spec.type === "boolean") {
      add(
        ["condition", "quantity"],
        `${c.quantity} is a switch (true/false); use a state condition`,
      );
      return;
    }
    if (c.type !== "rate_of_rise") {
      if (c.aggregate === "energy_mean" && spec.unit !== "dB(A)") {
        add(
          ["condition", "aggregate"],
          `energy_mean applies to levels in dB(A); ${c.quantity} is in ${spec.unit}`,
        );
      }
      if (c.aggregate === "mean" && spec.unit === "dB(A)") {
        add(
          ["condition", "aggregate"],
          `the arithmetic mean of dB(A) levels is not an equivalent level; use energy_mean for ${c.quantity} (STANDARDS.md Noise)`,
        );
      }
    }
  }
  if (c.type === "state") {
    c.terms.forEach((term, i) => {
      const spec = lookupQuantity(kinds, term.quantity);
      if (typeof spec === "string") add(["condition", "terms", i, "quantity"], spec);
      else if (spec.type !== "boolean") {
        add(
          ["condition", "terms", i, "quantity"],
          `${term.quantity} is a measured quantity, not a switch; use a threshold condition`,
        );
      }
    });
  }
}

function checkWindow(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n") return;
  if (c.aggregate === "latest" && c.window !== undefined) {
    add(["condition", "window"], "aggregate latest uses the newest reading; remove window");
  }
  if (c.aggregate !== "latest" && c.window === undefined) {
    add(["condition", "window"], `aggregate ${c.aggregate} needs a window, e.g. "10m"`);
  }
  if (c.align === "clock") {
    if (c.window === undefined) add(["condition", "align"], "align: clock needs a window");
    else if (DAY_MS % c.window !== 0) {
      add(
        ["condition", "window"],
        `a clock-aligned window must divide the day evenly; ${formatDuration(c.window)} does not`,
      );
    }
  }
  if (c.type === "threshold") {
    if (c.nOfM !== undefined && c.align !== "clock") {
      add(["condition", "nOfM"], "nOfM counts complete clock intervals; set align: clock");
    }
    if (c.exceedances !== undefined && c.align !== "clock") {
      add(
        ["condition", "exceedances"],
        "exceedances count complete clock intervals per day; set align: clock",
      );
    }
    if (c.nOfM !== undefined && c.exceedances !== undefined) {
      add(["condition", "exceedances"], "use nOfM or exceedances, not both");
    }
  }
}

/** The rule's periods; the defaults too when a sibling's problem kept the schedule's transform from running. */
const periodsOf = (rule: Pick<RuleFields, "schedule">): Record<string, Period> => ({
  ...DEFAULT_PERIODS,
  ...rule.schedule.periods,
});

function checkSchedule(rule: RuleFields, add: Add): void {
  const periods = periodsOf(rule);
  const known = () => Object.keys(periods).join(", ");
  rule.schedule.activeDuring?.forEach((name, i) => {
    if (!Object.hasOwn(periods, name))
      add(["schedule", "activeDuring", i], `unknown period ${name}; defined: ${known()}`);
  });
  const c = rule.condition;
  if (c.type === "threshold" || c.type === "k_of_n") {
    for (const field of ["raise", "clear"] as const) {
      const v = c[field];
      if (v === undefined || !isByPeriod(v)) continue;
      for (const name of Object.keys(v.byPeriod)) {
        if (!Object.hasOwn(periods, name)) {
          add(
            ["condition", field, "byPeriod", name],
            `unknown period ${name}; defined: ${known()}`,
          );
        }
      }
    }
    const raise = c.raise;
    const clear = c.clear;
    if (clear !== undefined && isByPeriod(clear)) {
      const raiseKeys = isByPeriod(raise) ? Object.keys(raise.byPeriod).join(",") : "";
      if (Object.keys(clear.byPeriod).join(",") !== raiseKeys) {
        add(
          ["condition", "clear", "byPeriod"],
          "clear.byPeriod must name the same periods, in the same order, as raise.byPeriod",
        );
      }
    }
  }
  rule.overrides.forEach((o, i) => {
    for (const name of Object.keys(o.periods ?? {})) {
      if (!Object.hasOwn(periods, name))
        add(["overrides", i, "periods", name], `unknown period ${name}; defined: ${known()}`);
    }
  });
}

const isByPeriod = (v: PeriodValue): v is ByPeriod => typeof v === "object" && "byPeriod" in v;
const isRef = (v: Value): v is ValueFrom => typeof v === "object";

/** Every Value of the rule with its path. */
function valuesOf(rule: RuleFields): Array<{ path: PropertyKey[]; value: Value }> {
  const out: Array<{ path: PropertyKey[]; value: Value }> = [];
  const c = rule.condition;
  const push = (path: PropertyKey[], v: PeriodValue | undefined) => {
    if (v === undefined) return;
    if (isByPeriod(v))
      for (const [k, x] of Object.entries(v.byPeriod))
        out.push({ path: [...path, "byPeriod", k], value: x });
    else out.push({ path, value: v });
  };
  if (c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise") {
    push(["condition", "raise"], c.raise);
    push(["condition", "clear"], c.clear);
  }
  rule.levels?.forEach((l, i) => push(["levels", i, "raise"], l.raise));
  return out;
}

function tableNames(limits: LimitTable | undefined): Set<string> {
  const names = new Set<string>(Object.keys(limits?.default ?? {}));
  for (const row of limits?.rows ?? []) for (const n of Object.keys(row.values)) names.add(n);
  return names;
}

function checkReferences(rule: RuleFields, add: Add): void {
  const names = tableNames(rule.limits);
  const known = () => (names.size === 0 ? "none" : [...names].join(", "));
  for (const { path, value } of valuesOf(rule)) {
    if (!isRef(value)) continue;
    if (value.from.startsWith("limits.")) {
      const name = value.from.slice("limits.".length);
      if (rule.limits === undefined)
        add([...path, "from"], `${value.from}: this rule has no limits table`);
      else if (!names.has(name))
        add([...path, "from"], `${value.from} is not in the limits table (defined: ${known()})`);
    } else if (!onlySiteType(rule, "river_station")) {
      add(
        [...path, "from"],
        `${value.from} exists on river stations only; set scope.siteTypes: [river_station]`,
      );
    }
  }
  rule.limits?.rows.forEach((row, i) => {
    rule.limits?.rows.slice(0, i).forEach((earlier, j) => {
      if (sameContext(earlier.when, row.when))
        add(["limits", "rows", i, "when"], `same when as limits.rows.${j}`);
    });
  });
  rule.overrides.forEach((o, i) => {
    for (const name of Object.keys(o.values ?? {})) {
      if (!names.has(name))
        add(
          ["overrides", i, "values", name],
          `${name} is not in the limits table (defined: ${known()})`,
        );
    }
  });
  // Literal thresholds must be plausible readings of the quantity.
  const q = numericQuantity(rule);
  if (q !== undefined && rule.condition.type !== "rate_of_rise") {
    const { min, max, unit } = q.spec;
    for (const { path, value } of valuesOf(rule)) {
      if (typeof value === "number" && (value < min || value > max)) {
        add(path, `${value} is outside the plausible range ${min}..${max} ${unit} of ${q.name}`);
      }
    }
  }
  if (q !== undefined && rule.condition.type === "rate_of_rise") {
    for (const { path, value } of valuesOf(rule)) {
      if (typeof value === "number" && value <= 0)
        add(path, `a rise must be > 0 ${q.spec.unit} per window`);
    }
  }
}

function sameContext(a: LimitContext, b: LimitContext): boolean {
  return CONTEXT_KEYS.every((k) => a[k] === b[k]);
}

// Comparing two thresholds that may be references. Limits are compared in every context the
// limit table distinguishes; river-station levels by their registry order
// (warning <= guaranteed <= historicalMax, enforced by the registry schema).

const SITE_LEVEL_RANK: Readonly<Record<string, number>> = {
  "site.levels.warning": 0,
  "site.levels.guaranteed": 1,
  "site.levels.historicalMax": 2,
};

type Order = "lt" | "eq" | "gt" | "le" | "ge" | "unknown";

interface LimitEnvironment {
  readonly label: string;
  readonly values: Readonly<Record<string, number>>;
}

function staticNumber(v: Value, env: LimitEnvironment): number | undefined {
  if (!isRef(v)) return v;
  if (!v.from.startsWith("limits.")) return undefined;
  const base = env.values[v.from.slice("limits.".length)];
  return base === undefined ? undefined : base + v.plus;
}

function compare(a: Value, b: Value, env: LimitEnvironment): Order | "skip" {
  const x = staticNumber(a, env);
  const y = staticNumber(b, env);
  if (x !== undefined && y !== undefined) return x < y ? "lt" : x > y ? "gt" : "eq";
  if (
    (isRef(a) && a.from.startsWith("limits.") && x === undefined) ||
    (isRef(b) && b.from.startsWith("limits.") && y === undefined)
  ) {
    return "skip"; // the limit is not defined in this context: the rule does not apply there
  }
  if (isRef(a) && isRef(b)) {
    const ra = SITE_LEVEL_RANK[a.from];
    const rb = SITE_LEVEL_RANK[b.from];
    if (ra !== undefined && rb !== undefined) {
      if (ra === rb) return a.plus < b.plus ? "lt" : a.plus > b.plus ? "gt" : "eq";
      if (ra < rb && a.plus <= b.plus) return "le";
      if (ra > rb && a.plus >= b.plus) return "ge";
    }
  }
  return "unknown";
}

function describe(v: Value): string {
  if (!isRef(v)) return String(v);
  return v.plus === 0 ? v.from : `${v.from} ${v.plus > 0 ? "+" : "-"} ${Math.abs(v.plus)}`;
}

function contextLabel(ctx: LimitContext): string {
  const parts = CONTEXT_KEYS.filter((k) => ctx[k] !== undefined).map((k) => `${k} ${ctx[k]}`);
  return parts.length === 0 ? "" : ` for ${parts.join(", ")}`;
}

/** The distinct limit environments a rule can see: each context of its table, each override on top. */
function limitEnvironments(rule: Pick<RuleFields, "limits" | "overrides">): LimitEnvironment[] {
  if (rule.limits === undefined) return [{ label: "", values: {} }];
  const whens = [
    ...rule.limits.rows.map((r) => r.when),
    ...rule.overrides.flatMap((o) => (o.when ? [o.when] : [])),
  ];
  const axes = CONTEXT_KEYS.map((key) => {
    const options = new Set<string | undefined>([undefined]);
    for (const w of whens) if (w[key] !== undefined) options.add(w[key]);
    return { key, options: [...options] };
  });
  let contexts: LimitContext[] = [{}];
  for (const axis of axes) {
    const next: LimitContext[] = [];
    for (const ctx of contexts)
      for (const option of axis.options)
        next.push(option === undefined ? ctx : { ...ctx, [axis.key]: option });
    contexts = next;
    if (contexts.length > 2_000) return [{ label: "", values: rule.limits.default ?? {} }];
  }
  const out: LimitEnvironment[] = [];
  const seen = new Set<string>();
  const push = (label: string, values: Record<string, number>) => {
    const key = JSON.stringify(values);
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ label, values });
  };
  for (const ctx of contexts) {
    const base = resolveTable(rule.limits, ctx).values;
    push(contextLabel(ctx), base);
    rule.overrides.forEach((o, i) => {
      if (o.values !== undefined && matches(o.when ?? {}, ctx)) {
        push(
          `${contextLabel(ctx)} with the ${o.at}${o.id === undefined ? "" : ` ${o.id}`} override${o.source === undefined ? ` (overrides.${i})` : ` from ${o.source}`}`,
          { ...base, ...o.values },
        );
      }
    });
  }
  return out;
}

function checkSides(rule: RuleFields, add: Add): void {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return;
  if (c.clear === undefined) return;
  const direction = c.type === "rate_of_rise" ? "up" : directionOf(c.op);
  const pairs: Array<{ path: PropertyKey[]; raise: Value; clear: Value }> = [];
  const raise = c.raise;
  const clear = c.clear;
  if (isByPeriod(raise)) {
    for (const [name, r] of Object.entries(raise.byPeriod)) {
      const cl = isByPeriod(clear) ? clear.byPeriod[name] : clear;
      if (cl !== undefined)
        pairs.push({
          path: isByPeriod(clear)
            ? ["condition", "clear", "byPeriod", name]
            : ["condition", "clear"],
          raise: r,
          clear: cl,
        });
    }
  } else if (!isByPeriod(clear)) {
    pairs.push({ path: ["condition", "clear"], raise, clear });
  } else {
    add(["condition", "clear"], "clear.byPeriod needs raise.byPeriod");
    return;
  }
  const envs = limitEnvironments(rule);
  for (const pair of pairs) {
    for (const env of envs) {
      const order = compare(pair.clear, pair.raise, env);
      if (order === "skip") continue;
      const wrongSide =
        direction === "up" ? order === "gt" || order === "ge" : order === "lt" || order === "le";
      if (order === "unknown") {
        add(
          pair.path,
          `clear (${describe(pair.clear)}) cannot be compared with raise (${describe(pair.raise)}) at load; use the same reference with a different plus`,
        );
        break;
      }
      if (wrongSide) {
        const should = direction === "up" ? "at or below" : "at or above";
        const x = staticNumber(pair.clear, env);
        const y = staticNumber(pair.raise, env);
        const numbers =
          x !== undefined && y !== undefined && (isRef(pair.clear) || isRef(pair.raise))
            ? ` (${x} vs ${y}${env.label})`
            : "";
        add(
          pair.path,
          `clear ${describe(pair.clear)} must be ${should} raise ${describe(pair.raise)}${numbers}: op ${c.type === "rate_of_rise" ? ">=" : c.op} clears on the compliant side`,
        );
        break;
      }
    }
  }
}

function checkLevels(rule: RuleFields, add: Add): void {
  const levels = rule.levels;
  if (levels === undefined) return;
  if (rule.taskKind === "maintenance") {
    add(["levels"], "maintenance rules have no severity levels");
    return;
  }
  const allowed = rule.taskKind === "emergency" ? EmergencyLevel.options : EnforcementLevel.options;
  const c = rule.condition;
  const numeric = c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise";
  levels.forEach((l, i) => {
    if (!(allowed as readonly string[]).includes(l.level)) {
      add(
        ["levels", i, "level"],
        `${rule.taskKind} levels are ${allowed.join(", ")}; ${l.level} is not one`,
      );
    }
    if (i > 0) {
      const prev = levels[i - 1];
      if (
        prev !== undefined &&
        (SEVERITY_ORDER[l.level] ?? 0) <= (SEVERITY_ORDER[prev.level] ?? 0)
      ) {
        add(
          ["levels", i, "level"],
          `levels must rise in severity (${allowed.join(" < ")}); ${l.level} does not follow ${prev.level}`,
        );
      }
    }
    if (rule.taskKind === "emergency" && l.actions.length === 0) {
      add(["levels", i, "actions"], "an emergency level needs at least one recommended action");
    }
    if (l.area === "subject_and_neighbours" && rule.subject !== "segment") {
      add(
        ["levels", i, "area"],
        "subject_and_neighbours needs subject: segment (tunnel neighbours)",
      );
    }
    if (i === 0 && l.raise !== undefined) {
      add(["levels", 0, "raise"], "the first level raises at condition.raise; omit raise here");
    }
    if (i > 0 && numeric && l.raise === undefined)
      add(["levels", i, "raise"], "a level above the first needs its own raise");
    if (!numeric && l.raise !== undefined)
      add(["levels", i, "raise"], `a ${c.type} condition has no threshold; remove raise`);
  });
  if (!numeric && levels.length > 1) add(["levels"], `a ${c.type} condition raises one level only`);
  if (
    rule.taskKind === "enforcement" &&
    levels.length > 0 &&
    levels[levels.length - 1]?.level !== "case"
  ) {
    add(["levels"], "the last enforcement level must be case (a warning alone files nothing)");
  }
  if (!numeric || levels.length < 2) return;
  if (isByPeriod(c.raise)) {
    add(
      ["condition", "raise"],
      "levels above the first need condition.raise to be one value, not byPeriod",
    );
    return;
  }
  const direction = c.type === "rate_of_rise" ? "up" : directionOf(c.op);
  const envs = limitEnvironments(rule);
  let previous: Value = c.raise;
  levels.forEach((l, i) => {
    if (i === 0 || l.raise === undefined) return;
    for (const env of envs) {
      const order = compare(previous, l.raise, env);
      if (order === "skip") continue;
      const ok =
        direction === "up" ? order === "lt" || order === "le" : order === "gt" || order === "ge";
      if (!ok) {
        const x = staticNumber(previous, env);
        const y = staticNumber(l.raise, env);
        const numbers =
          x !== undefined && y !== undefined && (isRef(previous) || isRef(l.raise))
            ? ` (${y} vs ${x}${env.label})`
            : "";
        add(
          ["levels", i, "raise"],
          order === "unknown"
            ? `raise ${describe(l.raise)} cannot be compared with the level below (${describe(previous)}) at load`
            : `levels not monotonic: raise ${describe(l.raise)} must be ${direction === "up" ? "above" : "below"} the level below (${describe(previous)})${numbers}`,
        );
        break;
      }
    }
    previous = l.raise;
  });
}

/** Does `path` (dotted) name a field present in `value`? */
function hasPath(value: unknown, path: string): boolean {
  let node: unknown = value;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null || !Object.hasOwn(node, key)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  return node !== undefined;
}

/** Override problems against the rule they target (used by the loader for file-level overrides). */
export function overrideProblems(
  rule: Pick<Rule, "limits" | "schedule">,
  override: Pick<RuleOverride, "values" | "periods">,
): Array<{ path: string[]; message: string }> {
  const out: Array<{ path: string[]; message: string }> = [];
  const names = tableNames(rule.limits);
  const known = names.size === 0 ? "none" : [...names].join(", ");
  for (const name of Object.keys(override.values ?? {})) {
    if (!names.has(name))
      out.push({
        path: ["values", name],
        message: `${name} is not in the rule's limits table (defined: ${known})`,
      });
  }
  for (const name of Object.keys(override.periods ?? {})) {
    if (!Object.hasOwn(rule.schedule.periods, name)) {
      out.push({
        path: ["periods", name],
        message: `unknown period ${name}; the rule defines ${Object.keys(rule.schedule.periods).join(", ")}`,
      });
    }
  }
  return out;
}

/**
 * Problems of a rule after overrides were added to it (the same side and monotony checks as at
 * parse time, now including the added overrides), as `path: message` relative to the rule.
 */
export function resolvedRuleProblems(rule: Rule): Array<{ path: PropertyKey[]; message: string }> {
  const out: RuleProblem[] = [];
  const add = (path: PropertyKey[], message: string) => out.push({ path, message });
  checkSides(rule, add);
  checkLevels(rule, add);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Limit resolution: the precedence, as a function

/** Where the subject is, for overrides: its district, site and (when evaluating one) device. */
export interface SubjectPlace {
  readonly district?: string | undefined;
  readonly siteId?: string | undefined;
  readonly deviceId?: string | undefined;
}

/** The context and place of one evaluation. */
export type ResolutionContext = LimitContext & SubjectPlace;

/** Limit values in force for a subject, each with where it came from (for evidence). */
export interface ResolvedLimits {
  readonly values: Readonly<Record<string, number>>;
  /** Per name: `limits.default`, `limits.rows.3`, `overrides.1` (+ the clause or source file). */
  readonly origins: Readonly<Record<string, string>>;
}

function matches(when: LimitContext, ctx: LimitContext): boolean {
  return CONTEXT_KEYS.every((k: ContextKey) => when[k] === undefined || when[k] === ctx[k]);
}

const specificity = (when: LimitContext | undefined): number =>
  when === undefined ? 0 : CONTEXT_KEYS.filter((k) => when[k] !== undefined).length;

function resolveTable(
  limits: LimitTable | undefined,
  ctx: LimitContext,
): { values: Record<string, number>; origins: Record<string, string> } {
  const values: Record<string, number> = {};
  const origins: Record<string, string> = {};
  for (const [name, v] of Object.entries(limits?.default ?? {})) {
    values[name] = v;
    origins[name] = "limits.default";
  }
  const rows = (limits?.rows ?? [])
    .map((row, index) => ({ row, index }))
    .filter(({ row }) => matches(row.when, ctx))
    .sort((a, b) => specificity(a.row.when) - specificity(b.row.when) || a.index - b.index);
  for (const { row, index } of rows) {
    for (const [name, v] of Object.entries(row.values)) {
      values[name] = v;
      origins[name] =
        `limits.rows.${index}${row.clause ? ` (${row.clause.standard} ${row.clause.section})` : ""}`;
    }
  }
  return { values, origins };
}

function overrideApplies(o: RuleOverride, place: ResolutionContext): boolean {
  if (!matches(o.when ?? {}, place)) return false;
  switch (o.at) {
    case "city":
      return true;
    case "district":
      return place.district !== undefined && o.id === place.district;
    case "site":
      return place.siteId !== undefined && o.id === place.siteId;
    case "device":
      return place.deviceId !== undefined && o.id === place.deviceId;
  }
}

/** Overrides that apply to `place`, in the order they take effect (later wins). */
function applicableOverrides(rule: Pick<Rule, "overrides">, place: ResolutionContext) {
  return rule.overrides
    .map((o, index) => ({ o, index }))
    .filter(({ o }) => overrideApplies(o, place))
    .sort(
      (a, b) =>
        OVERRIDE_LEVELS.indexOf(a.o.at) - OVERRIDE_LEVELS.indexOf(b.o.at) ||
        specificity(a.o.when) - specificity(b.o.when) ||
        a.index - b.index,
    );
}

/**
 * The limit values in force for a subject. Later steps win, name by name:
 * 1. `limits.default`;
 * 2. `limits.rows` whose `when` matches the context, less specific first (fewer `when` keys),
 *    then in file order;
 * 3. overrides, by level: city, then district, then site, then device; within a level less
 *    specific `when` first, then in order (the rule's own overrides, then file-level overrides
 *    in load order: the default pack first, then each directory's files sorted by name).
 * A name with no value after all steps is undefined: a rule that needs it does not apply to
 * the subject.
 */
export function resolveLimits(
  rule: Pick<Rule, "limits" | "overrides">,
  place: ResolutionContext,
): ResolvedLimits {
  const { values, origins } = resolveTable(rule.limits, place);
  for (const { o, index } of applicableOverrides(rule, place)) {
    for (const [name, v] of Object.entries(o.values ?? {})) {
      values[name] = v;
      const why = o.clause ? `${o.clause.standard} ${o.clause.section}` : (o.source ?? "");
      origins[name] =
        `overrides.${index} (${o.at}${o.id === undefined ? "" : ` ${o.id}`}${why === "" ? "" : `; ${why}`})`;
    }
  }
  return { values, origins };
}

/** The schedule periods in force for a subject: the rule's, replaced by overrides in the same precedence as limits. */
export function resolvePeriods(
  rule: Pick<Rule, "schedule" | "overrides">,
  place: ResolutionContext,
): Readonly<Record<string, Period>> {
  const periods: Record<string, Period> = { ...rule.schedule.periods };
  for (const { o } of applicableOverrides(rule, place)) Object.assign(periods, o.periods ?? {});
  return periods;
}

/** Whether the rule applies to a subject: `enabled`, then overrides in the same precedence as limits. */
export function resolveEnabled(
  rule: Pick<Rule, "enabled" | "overrides">,
  place: ResolutionContext,
): boolean {
  let enabled = rule.enabled;
  for (const { o } of applicableOverrides(rule, place)) enabled = o.enabled ?? enabled;
  return enabled;
}

/** River station levels from the registry, for `site.levels.*` references. */
export interface StationLevels {
  readonly warning: number;
  readonly guaranteed: number;
  readonly historicalMax: number;
}

/** The number a Value stands for, or undefined when its reference is not defined for the subject. */
export function resolveValue(
  value: Value,
  limits: ResolvedLimits,
  levels?: StationLevels,
): number | undefined {
  if (!isRef(value)) return value;
  if (value.from.startsWith("limits.")) {
    const base = limits.values[value.from.slice("limits.".length)];
    return base === undefined ? undefined : base + value.plus;
  }
  if (levels === undefined) return undefined;
  const key = value.from.slice("site.levels.".length) as keyof StationLevels;
  return levels[key] + value.plus;
}

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
