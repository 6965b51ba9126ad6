import { z } from "zod";
import {
  AcousticZoneClass,
  ConstructionPhase,
  RestaurantSize,
  Site,
  TunnelCompartment,
} from "./registry.js";
import { SensorKind } from "./sensors.js";
import { CalendarDate } from "./time.js";

import { ClockTime, DEFAULT_TIME_ZONE, TimeZone } from "./rule-time.js";

/*
 * The parts of a rule that say who and what it judges: names, the clause it enforces, scope,
 * subject and context, threshold values and limit tables (with their precedence), schedules.
 */

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

/** Every site type of the registry (`Site` in contracts/model/registry.ts). */
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
 * `verified`: the numbers were read in the standard or an official notice (docs/standards.md: "Verified").
 * `placeholder`: not verified, or set by no standard (docs/standards.md: "Placeholder"); shipped as a marked, configurable default.
 */
export const Confidence = z.enum(["verified", "placeholder"], {
  error: "confidence must be verified or placeholder",
});
export type Confidence = z.infer<typeof Confidence>;

/**
 * A law's article the penalty or duty of a rule rests on, as opposed to the clause of the limit
 * standard (`clause`). Evidence packages print it (contracts/model/evidence.ts, LegalBasis).
 * `placeholder`: a configurable default that docs/standards.md does not verify in the law's text;
 * its summary must say so.
 */
export const RuleLegalBasis = z
  .strictObject({
    /** The law or regulation with its year, e.g. `Noise Pollution Prevention and Control Law 2021`. */
    law: z.string().min(1, { error: "law must not be empty" }).max(200),
    /** e.g. `Art. 43`. */
    article: z.string().min(1, { error: "article must not be empty" }).max(100),
    /** One line on what the article provides. */
    summary: z.string().min(1, { error: "summary must not be empty" }).max(500),
    confidence: Confidence,
  })
  .refine((b) => b.confidence !== "placeholder" || /placeholder|not verified/i.test(b.summary), {
    error:
      "a placeholder legal basis must say in its summary that it is a placeholder (not verified)",
    path: ["summary"],
  });
export type RuleLegalBasis = z.infer<typeof RuleLegalBasis>;

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
export const CONTEXT_KEYS = [
  "zoneClass",
  "phase",
  "restaurantSize",
  "region",
  "dustRegion",
] as const;
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

export function matches(when: LimitContext, ctx: LimitContext): boolean {
  return CONTEXT_KEYS.every((k: ContextKey) => when[k] === undefined || when[k] === ctx[k]);
}

export const specificity = (when: LimitContext | undefined): number =>
  when === undefined ? 0 : CONTEXT_KEYS.filter((k) => when[k] !== undefined).length;

export function resolveTable(
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

/** A period-dependent value, as opposed to one value for all periods. */
export const isByPeriod = (v: PeriodValue): v is ByPeriod =>
  typeof v === "object" && "byPeriod" in v;
/** A reference to another number (a limit or a station level) plus an offset. */
export const isRef = (v: Value): v is ValueFrom => typeof v === "object";
