import type { QualityFlag } from "../../contracts/model/quality.js";
import type { Device, Site } from "../../contracts/model/registry.js";
import type { SensorKind } from "../../contracts/model/sensors.js";
import type { Comparison, PeriodValue, Rule } from "../../contracts/model/rules.js";
import { placeOf, readingMs, type Resolved, resolutionContext } from "./in-force.js";
import { valueForPeriod } from "./periods.js";
import { columns, newestUsable } from "./reduce.js";
import { judgeWindow, NOT_APPLICABLE, pct, situate, type WindowVerdict } from "./verdict.js";
import { resolveEnabled, resolveValue } from "./resolve.js";
import type { SampleColumns } from "./series.js";
import { clockWindows, type Interval, localMidnight, type Sample } from "./window.js";

/*
 * Evaluation of one rule's condition at one instant for one subject. Pure: the subject's devices,
 * their recent samples, the site and the instant come in; an Evaluation comes out.
 */

/** What the engine knows of one device of the subject. */
export interface DeviceView {
  readonly device: Pick<Device, "id" | "expectedIntervalS" | "area"> &
    Partial<Pick<Device, "zoneClass" | "calibrationDueOn" | "enabled">>;
  /**
   * Recent samples per quantity, oldest first (see window.ts): an array, or columns read in place
   * (the rules driver's series, series.ts).
   */
  readonly series: Readonly<Record<string, readonly Sample[] | SampleColumns>>;
  /** Arrival of the device's last message (any quantity), epoch ms; undefined when never heard. */
  readonly lastSeenAt?: number | undefined;
  /** Quality flag of the device's newest reading. */
  readonly lastQuality?: QualityFlag | undefined;
  /** When the engine started watching the device (deadman of a device never heard). */
  readonly watchedSince?: number | undefined;
}

/** The subject of one alarm: a device, or a site and its devices. */
export interface SubjectView {
  readonly site?: Site | undefined;
  readonly devices: readonly DeviceView[];
  /** The deployment's regulatory region; `default` when unset. */
  readonly region?: string | undefined;
  /** Permit types the site holds valid at the instant (permitExemption). */
  readonly permits?: readonly string[] | undefined;
  /**
   * Permit types valid at another instant: a window is exempt when a permit covers the interval
   * it is placed by, not the bare evaluation instant (docs/rules.md, Time). Absent: `permits`.
   */
  readonly permitsAt?: ((at: number) => readonly string[]) | undefined;
}

/** The result of evaluating a condition at an instant. */
export interface Evaluation {
  /** The condition holds (raise side, or not yet back over the clear side when previously active). */
  readonly active: boolean;
  /** The rule could be evaluated (in schedule, limits defined, data present). */
  readonly applicable: boolean;
  /** The deciding number (aggregate, rise, silence in ms, votes) or switch state. */
  readonly value: number | boolean | undefined;
  /** The threshold it was compared with. */
  readonly limit: number | undefined;
  /** Index into `rule.levels` of the highest level reached (0 when the rule has no levels). */
  readonly levelIndex: number;
  /** `rule.levels[levelIndex].level`, when the rule has levels. */
  readonly level: string | undefined;
  /** Device that decided (site subjects: the worst one). */
  readonly deviceId: string | undefined;
  /** Human-readable account, for evidence and logs. */
  readonly detail: string;
  /** Set when not applicable. */
  readonly reason?: NotApplicableReason | undefined;
  /**
   * The window the deciding device's value was computed over, `(from, to]`, and which of its
   * readings the computation used: those of the window's period (`period`, the names of the
   * periods in force, "" for a rule without periods) that the quality gate let through.
   */
  readonly window?: UsedWindow | undefined;
  /** Share of the window covered by the readings used (0..1); undefined without a window. */
  readonly coverage?: number | undefined;
  /** k_of_n judged with fewer voting devices than its k (`degraded: lower_k`). */
  readonly degraded?: { readonly k: number; readonly voting: number } | undefined;
}

/** The readings a window's value was computed from (evidence). */
export interface UsedWindow extends Interval {
  readonly deviceId: string;
  readonly quantity: string;
  /** Period names in force for the window ("" for a rule without periods). */
  readonly period: string;
  /** Whether a reading stamped `at` belongs to the window's period. */
  readonly inPeriod: (at: number) => boolean;
}

/**
 * Whether a rule looks at a device of `kind` (on `site`): every list of its scope matches, and
 * it is enabled there after overrides. Callers pick the rules of a subject with this.
 */
export function ruleApplies(
  rule: Rule,
  kind: SensorKind,
  view: DeviceView | undefined,
  subject: SubjectView,
): boolean {
  const scope = rule.scope;
  const site = subject.site;
  const place = resolutionContext(view, subject);
  const within = <T>(list: readonly T[] | undefined, value: T | undefined) =>
    list === undefined || (value !== undefined && list.includes(value));
  return (
    scope.kinds.includes(kind) &&
    within(scope.siteTypes, site?.type) &&
    within(scope.zoneClasses, place.zoneClass) &&
    within(scope.phases, place.phase) &&
    within(scope.compartments, site?.type === "tunnel_segment" ? site.compartment : undefined) &&
    within(scope.regions, place.region) &&
    within(scope.dustRegions, place.dustRegion) &&
    resolveEnabled(rule, place)
  );
}

/**
 * k_of_n: a device silent for longer than this many expected intervals does not vote (the
 * default pack's device.deadman factor). Devices never heard vote on no data, i.e. not at all.
 */
export const SILENT_FACTOR = 3;

/** Whether a device is silent at `at` (no message for more than `factor` expected intervals). */
export function isSilent(view: DeviceView, at: number, factor = SILENT_FACTOR): boolean {
  return (
    view.lastSeenAt !== undefined &&
    at - view.lastSeenAt > factor * view.device.expectedIntervalS * 1000
  );
}

/** `value op limit`. */
export function compare(value: number, op: Comparison, limit: number): boolean {
  switch (op) {
    case ">":
      return value > limit;
    case ">=":
      return value >= limit;
    case "<":
      return value < limit;
    case "<=":
      return value <= limit;
  }
}

const dateFormats = new Map<string, Intl.DateTimeFormat>();
/** Local dates by time zone and minute since the epoch: formatting is slow, evaluations many. */
const localDates = new Map<string, Map<number, string>>();

/*
 * The last two minutes asked for, and their time zone: evaluations in a row ask for the same
 * minute, or go back and forth between two (the instants of a batch and the data clock).
 */
let dateZone = "";
let dateMinute = Number.NaN;
let dateValue = "";
let otherDateMinute = Number.NaN;
let otherDateValue = "";

/** Local calendar date `YYYY-MM-DD` of an instant. */
function localDate(atMs: number, timeZone: string): string {
  // Every time zone in use is offset by whole minutes: the minute decides the date.
  const minute = Math.floor(atMs / 60_000);
  if (timeZone === dateZone) {
    if (minute === dateMinute) return dateValue;
    if (minute === otherDateMinute) return otherDateValue;
  } else {
    dateZone = timeZone;
    dateMinute = otherDateMinute = Number.NaN;
  }
  const date = minuteDate(minute, atMs, timeZone);
  otherDateMinute = dateMinute;
  otherDateValue = dateValue;
  dateMinute = minute;
  dateValue = date;
  return date;
}

function minuteDate(minute: number, atMs: number, timeZone: string): string {
  let dates = localDates.get(timeZone);
  if (dates === undefined) localDates.set(timeZone, (dates = new Map<number, string>()));
  let date = dates.get(minute);
  if (date === undefined) {
    let format = dateFormats.get(timeZone);
    if (format === undefined) {
      format = new Intl.DateTimeFormat("en-CA", { timeZone });
      dateFormats.set(timeZone, format);
    }
    date = format.format(atMs);
    if (dates.size >= 10_000) dates.clear();
    dates.set(minute, date);
  }
  return date;
}

/** Whether the device's calibration expired at `at` (the local date is after `calibrationDueOn`). */
export function calibrationExpired(view: DeviceView, at: number, timeZone: string): boolean {
  const due = view.device.calibrationDueOn;
  return due !== undefined && localDate(at, timeZone) > due;
}

/**
 * Why an evaluation is not applicable; the alarm holds its state on `no_data` and `coverage`
 * (a gap: too little data to judge).
 */
export type NotApplicableReason =
  "no_data" | "coverage" | "flagged" | "no_limit" | "schedule" | "exempt" | "other";

/**
 * Whether a not-applicable evaluation is a gap (the alarm holds its state): no data, too little
 * of it, or only readings that cannot decide alone.
 */
export const isGap = (e: Evaluation): boolean =>
  !e.applicable && (e.reason === "no_data" || e.reason === "coverage" || e.reason === "flagged");

function numberOf(value: PeriodValue | undefined, r: Resolved): number | undefined {
  if (value === undefined) return undefined;
  const v = valueForPeriod(value, r.periods);
  return v === undefined ? undefined : resolveValue(v, r.limits, r.station);
}

/** Highest level index whose raise holds (level 0 raises at condition.raise). */
function levelFor(rule: Rule, value: number, op: Comparison, r: Resolved): number {
  let index = 0;
  (rule.levels ?? []).forEach((l, i) => {
    if (i === 0 || l.raise === undefined) return;
    const limit = resolveValue(l.raise, r.limits, r.station);
    if (limit !== undefined && compare(value, op, limit)) index = i;
  });
  return index;
}

/** The threshold a level stands on (undefined for the first level: the condition's own). */
function levelLimit(rule: Rule, index: number, r: Resolved): number | undefined {
  const raise = index === 0 ? undefined : rule.levels?.[index]?.raise;
  return raise === undefined ? undefined : resolveValue(raise, r.limits, r.station);
}

/**
 * The level an active value reached and the threshold that level stands on: a level III
 * methane alarm cites 25 %LEL, not the 20 of level IV (its evidence and task say so).
 */
function reached(
  rule: Rule,
  value: number,
  op: Comparison,
  r: Resolved,
  active: boolean,
  limit: number,
): { levelIndex: number; limit: number } {
  const levelIndex = levelFor(rule, value, op, r);
  return { levelIndex, limit: (active ? levelLimit(rule, levelIndex, r) : undefined) ?? limit };
}

function result(
  rule: Rule,
  fields: Omit<Evaluation, "level" | "applicable"> & { applicable?: boolean },
): Evaluation {
  return {
    applicable: true,
    ...fields,
    level: rule.levels?.[fields.levelIndex]?.level,
  };
}

/** Devices that take part: enabled, and not suppressed by expired calibration. */
export function usableDevices(rule: Rule, subject: SubjectView, at: number): DeviceView[] {
  return subject.devices.filter((d) => usable(rule, d, at));
}

/** Whether a device takes part (see usableDevices). */
export function usable(rule: Rule, d: DeviceView, at: number): boolean {
  return (
    d.device.enabled !== false &&
    !(
      rule.qualityGate.suppressOnExpiredCalibration &&
      calibrationExpired(d, at, rule.schedule.timeZone)
    )
  );
}

/**
 * Evaluate a rule's condition for a subject at `at`. `previouslyActive` selects the clear side
 * (hysteresis): an active alarm stays active until `aggregate op clear` no longer holds.
 * A window is placed in time by the interval it ends on (docs/rules.md, Time): outside
 * `schedule.activeDuring` there, or while a listed permit covers it, the result is inactive and
 * not applicable.
 */
export function evaluateCondition(
  rule: Rule,
  subject: SubjectView,
  at: number,
  previouslyActive = false,
): Evaluation {
  const c = rule.condition;
  if (c.type === "deadman" || c.type === "quality") {
    return worstOf(
      subject.devices
        .filter((d) => d.device.enabled !== false)
        .map((d) => deviceCondition(rule, d, at, previouslyActive)),
    );
  }
  const devices = usableDevices(rule, subject, at);
  const voting = c.type === "k_of_n" ? devices.filter((d) => !isSilent(d, at)) : devices;
  return combineParts(
    rule,
    voting.map((d) => partOf(rule, d, subject, at, previouslyActive)),
  );
}

/** Site subjects: active when any device is; the highest level and the worst value decide. */
function worstOf(evaluations: readonly Evaluation[]): Evaluation {
  const applicable = evaluations.filter((e) => e.applicable);
  if (applicable.length === 0) {
    // A device off by schedule or permit says more than one with no data.
    return (
      evaluations.find((e) => !isGap(e)) ??
      evaluations[0] ??
      NOT_APPLICABLE("no device of the subject reports")
    );
  }
  const active = applicable.filter((e) => e.active);
  if (active.length === 0) return applicable[0] ?? NOT_APPLICABLE("no data");
  return active.reduce((a, b) => (b.levelIndex > a.levelIndex ? b : a));
}

/** A quality condition on one device at `at`: its newest reading flagged, its calibration expired. */
function qualityOf(
  c: Extract<Rule["condition"], { type: "quality" }>,
  d: DeviceView,
  at: number,
  timeZone: string,
): { flagged: boolean; expired: boolean } {
  const flagged = d.lastQuality !== undefined && c.flags.includes(d.lastQuality);
  const expired = c.calibrationExpired && calibrationExpired(d, at, timeZone);
  return { flagged, expired };
}

/**
 * Whether a quality condition holds for a device at `at` (what {@link evaluateCondition} makes
 * `active` of it); false for a disabled device, which takes no part, and for other conditions.
 */
export function qualityHolds(rule: Rule, d: DeviceView, at: number): boolean {
  const c = rule.condition;
  if (c.type !== "quality" || d.device.enabled === false) return false;
  const { flagged, expired } = qualityOf(c, d, at, rule.schedule.timeZone);
  return flagged || expired;
}

function deviceCondition(rule: Rule, d: DeviceView, at: number, open: boolean): Evaluation {
  const c = rule.condition;
  const id = d.device.id;
  if (c.type === "deadman") {
    const since = d.lastSeenAt ?? d.watchedSince;
    if (since === undefined) return NOT_APPLICABLE(`${id}: never heard and not watched`);
    const silence = at - since;
    const limit = c.factor * d.device.expectedIntervalS * 1000;
    // A device never heard from is not "back": only a reading clears its deadman.
    if (d.lastSeenAt === undefined && open && silence <= limit) {
      return NOT_APPLICABLE(`${id}: never heard; its deadman clears on its first reading`);
    }
    return result(rule, {
      active: silence > limit,
      value: silence,
      limit,
      levelIndex: 0,
      deviceId: id,
      detail: `${id}: silent for ${silence} ms (limit ${limit} ms = ${c.factor} × ${d.device.expectedIntervalS} s)`,
    });
  }
  if (c.type === "quality") {
    const { flagged, expired } = qualityOf(c, d, at, rule.schedule.timeZone);
    return result(rule, {
      active: flagged || expired,
      value: flagged || expired,
      limit: undefined,
      levelIndex: 0,
      deviceId: id,
      detail: expired
        ? `${id}: calibration expired (due ${d.device.calibrationDueOn ?? "?"})`
        : `${id}: newest reading flagged ${d.lastQuality ?? "none"}`,
    });
  }
  return NOT_APPLICABLE(`${c.type} is not a device condition`, "other");
}

type StateCondition = Extract<Rule["condition"], { type: "state" }>;

/** Each term of a state condition on the device's newest usable reading at or before `at`. */
function stateTerms(
  c: StateCondition,
  d: DeviceView,
  at: number,
  suppress: readonly QualityFlag[],
): Array<{
  t: StateCondition["terms"][number];
  value: number | boolean | undefined;
  holds: boolean;
}> {
  return c.terms.map((t) => {
    const cols = columns(d, t.quantity);
    const i = cols === undefined ? -1 : newestUsable(cols, at, suppress, false);
    const value = cols === undefined || i < 0 ? undefined : cols.sample(i).value;
    return { t, value, holds: value === t.is };
  });
}

/**
 * Whether a state condition holds for a device at `at` (what {@link evaluateCondition} makes
 * `active` of the device's part); false for other conditions. The device's usability is not
 * looked at.
 */
export function stateHolds(rule: Rule, d: DeviceView, at: number): boolean {
  const c = rule.condition;
  if (c.type !== "state") return false;
  const states = stateTerms(c, d, at, rule.qualityGate.suppressFlags);
  return c.match === "all" ? states.every((s) => s.holds) : states.some((s) => s.holds);
}

function deviceNumeric(
  rule: Rule,
  d: DeviceView,
  subject: SubjectView,
  at: number,
  previouslyActive: boolean,
): Evaluation {
  const c = rule.condition;
  const id = d.device.id;
  const suppress = rule.qualityGate.suppressFlags;
  if (c.type === "state") {
    const states = stateTerms(c, d, at, suppress);
    const holds = c.match === "all" ? states.every((s) => s.holds) : states.some((s) => s.holds);
    return result(rule, {
      active: holds,
      value: holds,
      limit: undefined,
      levelIndex: 0,
      deviceId: id,
      detail: `${id}: ${states.map((s) => `${s.t.quantity}=${String(s.value)} (want ${s.t.is})`).join(c.match === "all" ? " and " : " or ")}`,
    });
  }
  if (c.type === "rate_of_rise") {
    const { r, off } = situate(rule, d, subject, placeOf(at, readingMs(d)));
    if (off !== undefined) return off;
    const cols = columns(d, c.quantity);
    let first: number | undefined;
    let last: number | undefined;
    if (cols !== undefined) {
      const hi = cols.firstAfter(at);
      for (let i = cols.firstAfter(at - c.window); i < hi; i++) {
        if (!cols.isNumber(i) || suppress.includes(cols.qualityOf(i))) continue;
        first ??= cols.numberOf(i);
        last = cols.numberOf(i);
      }
    }
    const raise = numberOf(c.raise, r);
    const clear = numberOf(c.clear ?? c.raise, r);
    if (first === undefined || last === undefined || raise === undefined || clear === undefined) {
      return NOT_APPLICABLE(() => `${id}: no ${c.quantity} data or limit in the window`);
    }
    const rise = last - first;
    const limit = previouslyActive ? clear : raise;
    return result(rule, {
      active: rise >= limit,
      value: rise,
      ...reached(rule, rise, ">=", r, rise >= limit, limit),
      deviceId: id,
      detail: `${id}: ${c.quantity} rose ${round(rise)} in ${c.window} ms (limit ${limit})`,
    });
  }
  if (c.type !== "threshold")
    return NOT_APPLICABLE(`${c.type} is not evaluated per device`, "other");
  if (c.nOfM !== undefined || c.exceedances !== undefined) {
    return countedIntervals(rule, c, d, subject, at, previouslyActive);
  }
  const w = judgeWindow(rule, c, d, subject, at);
  if (!w.ok) return w.evaluation;
  // A kept verdict is evaluated once per side (raise, clear).
  const memo = (w.memo ??= {});
  const side = previouslyActive ? "clearSide" : "raiseSide";
  return (memo[side] ??= thresholdOf(rule, c, w, id, sideOf(c, w.r, previouslyActive)));
}

/** The limit on the side the alarm is on: raise, or clear while it is open (hysteresis). */
function sideOf(
  c: { raise: PeriodValue; clear?: PeriodValue | undefined },
  r: Resolved,
  previouslyActive: boolean,
): number | undefined {
  const raise = numberOf(c.raise, r);
  const clear = numberOf(c.clear ?? c.raise, r);
  if (raise === undefined || clear === undefined) return undefined;
  return previouslyActive ? clear : raise;
}

/**
 * The limit a threshold's or k_of_n's value (`value op limit`) or a rate of rise (`rise >=
 * limit`) must pass to hold while the alarm is not open, where the resolution `r` is in force
 * (undefined: no limit there, it cannot hold).
 */
export function raiseLimit(rule: Rule, r: Resolved): number | undefined {
  const kept = raiseLimits.get(r);
  if (kept !== undefined && kept.rule === rule) return kept.limit;
  const c = rule.condition;
  const limit =
    c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise"
      ? sideOf(c, r, false)
      : undefined;
  raiseLimits.set(r, { rule, limit });
  return limit;
}

/** Raise limits by resolution (one per rule, device and periods in force: in-force.ts). */
const raiseLimits = new WeakMap<Resolved, { rule: Rule; limit: number | undefined }>();

function thresholdOf(
  rule: Rule,
  c: Extract<Rule["condition"], { type: "threshold" }>,
  w: Extract<WindowVerdict, { ok: true }>,
  id: string,
  limit: number | undefined,
): Evaluation {
  if (limit === undefined)
    return NOT_APPLICABLE(() => `${id}: no limit for this context and period`, "no_limit");
  const active = compare(w.value, c.op, limit);
  if (w.flagged !== undefined) {
    // Neither raises nor clears: the alarm holds until a reading that can be trusted.
    return NOT_APPLICABLE(
      () =>
        `${id}: ${c.quantity} ${round(w.value)} flagged ${w.flagged}: a flagged reading cannot decide an emergency alone`,
      "flagged",
      { value: w.value, window: w.used },
    );
  }
  const level = reached(rule, w.value, c.op, w.r, active, limit);
  // The account is written only when read (a decision, evidence): most evaluations decide nothing.
  return new Judged(
    rule,
    active,
    w.value,
    level.limit,
    level.levelIndex,
    id,
    w.used,
    w.coverage,
    () =>
      `${id}: ${c.quantity} ${c.aggregate} ${round(w.value)} ${c.op} ${limit}: ${active}${w.used.period === "" ? "" : ` (${w.used.period})`}${w.coverage === undefined ? "" : `; coverage ${pct(w.coverage)}`}`,
  );
}

/** An applicable evaluation whose account is written when first read. */
class Judged implements Evaluation {
  readonly applicable = true;
  readonly level: string | undefined;
  #detail: string | undefined;

  constructor(
    rule: Rule,
    readonly active: boolean,
    readonly value: number | undefined,
    readonly limit: number | undefined,
    readonly levelIndex: number,
    readonly deviceId: string | undefined,
    readonly window: UsedWindow | undefined,
    readonly coverage: number | undefined,
    private readonly write: () => string,
    readonly degraded?: { readonly k: number; readonly voting: number },
  ) {
    this.level = rule.levels?.[levelIndex]?.level;
  }

  get detail(): string {
    return (this.#detail ??= this.write());
  }
}

/**
 * N-of-M and exceedances per day: each complete clock interval judged on its own, with its own
 * period's limit and coverage (an interval below coverage does not violate).
 */
function countedIntervals(
  rule: Rule,
  c: Extract<Rule["condition"], { type: "threshold" }>,
  d: DeviceView,
  subject: SubjectView,
  at: number,
  previouslyActive: boolean,
): Evaluation {
  const id = d.device.id;
  const tz = rule.schedule.timeZone;
  const windowMs = c.window ?? 0;
  const midnight = localMidnight(at, tz);
  const count = c.nOfM?.m ?? Math.max(1, Math.ceil((at - midnight) / windowMs));
  const intervals = clockWindows(at, windowMs, tz, count).filter(
    (w) => c.nOfM !== undefined || w.from >= midnight,
  );
  const judged = intervals.map((w) => {
    const v = judgeWindow(rule, { ...c, align: "clock" }, d, subject, w.to);
    const limit = v.ok ? sideOf(c, v.r, previouslyActive) : undefined;
    return { v, limit, violates: v.ok && limit !== undefined && compare(v.value, c.op, limit) };
  });
  const violating = judged.filter((j) => j.violates).length;
  const needed = c.nOfM?.n ?? (c.exceedances?.allowedPerDay ?? 0) + 1;
  const newest = judged[judged.length - 1];
  if (newest === undefined) return NOT_APPLICABLE(() => `${id}: no complete interval yet today`);
  if (!newest.v.ok) return newest.v.evaluation;
  if (newest.limit === undefined) {
    return NOT_APPLICABLE(() => `${id}: no limit for this context and period`, "no_limit");
  }
  return result(rule, {
    active: violating >= needed,
    value: newest.v.value,
    ...reached(rule, newest.v.value, c.op, newest.v.r, violating >= needed, newest.limit),
    deviceId: id,
    detail: `${id}: ${violating} of ${judged.length} ${c.aggregate} intervals violate (need ${needed}); newest covered ${pct(newest.v.coverage ?? 1)}`,
    window: newest.v.used,
    coverage: newest.v.coverage,
  });
}

/** One device's vote in a k_of_n condition. */
export interface Vote {
  readonly id: string;
  readonly value: number;
  readonly violates: boolean;
  readonly level: number;
  readonly limit: number;
  readonly r: Resolved;
  readonly used: UsedWindow;
  readonly coverage: number | undefined;
  readonly flagged: QualityFlag | undefined;
}

/**
 * One device's part in a site or segment evaluation at `at`: its own evaluation (threshold), or
 * its vote (k_of_n: a Vote, an Evaluation that keeps it out — no data, off by schedule — or
 * undefined without a limit). Parts combine with {@link combineParts}; a driver may keep the parts
 * of devices whose readings have not moved and recompute only the others.
 */
export type Part = Evaluation | Vote | undefined;

/**
 * Whether a rule is judged per device on its newest reading alone, then combined: the parts a
 * driver may keep until a device's newest reading moves. A windowed part moves with time (the
 * window slides, empties, a clock interval completes) and is never kept.
 */
export function judgedInParts(rule: Rule): boolean {
  const c = rule.condition;
  return (
    (c.type === "threshold" || c.type === "k_of_n") &&
    c.window === undefined &&
    !("nOfM" in c && c.nOfM !== undefined) &&
    !("exceedances" in c && c.exceedances !== undefined)
  );
}

/** A device's part at `at` (see {@link Part}); the device must be usable (see usableDevices). */
export function partOf(
  rule: Rule,
  d: DeviceView,
  subject: SubjectView,
  at: number,
  previouslyActive: boolean,
): Part {
  const c = rule.condition;
  if (c.type !== "k_of_n") return deviceNumeric(rule, d, subject, at, previouslyActive);
  const w = judgeWindow(rule, c, d, subject, at);
  if (!w.ok) return w.evaluation;
  const memo = (w.memo ??= {});
  const base = (memo.vote ??= {
    raise: numberOf(c.raise, w.r),
    clear: numberOf(c.clear ?? c.raise, w.r),
    level: levelFor(rule, w.value, c.op, w.r),
  });
  if (base.raise === undefined || base.clear === undefined) return undefined;
  const limit = previouslyActive ? base.clear : base.raise;
  return {
    id: d.device.id,
    value: w.value,
    limit,
    r: w.r,
    violates: compare(w.value, c.op, limit),
    level: base.level,
    used: w.used,
    coverage: w.coverage,
    flagged: w.flagged,
  };
}

const isVote = (part: Part): part is Vote => part !== undefined && "violates" in part;

/** The subject's evaluation from its usable devices' parts (k_of_n: the voting devices'). */
export function combineParts(rule: Rule, parts: readonly Part[]): Evaluation {
  if (rule.condition.type !== "k_of_n") {
    return worstOf(parts.filter((p): p is Evaluation => p !== undefined && !isVote(p)));
  }
  const votes: Vote[] = [];
  let off: Evaluation | undefined;
  for (const part of parts) {
    if (isVote(part)) votes.push(part);
    else if (part !== undefined && !isGap(part)) off ??= part;
  }
  return tally(rule, votes, off);
}

function tally(rule: Rule, votes: readonly Vote[], off: Evaluation | undefined): Evaluation {
  const c = rule.condition;
  if (c.type !== "k_of_n") return NOT_APPLICABLE("not k_of_n", "other");
  const n = votes.length;
  if (n === 0) return off ?? NOT_APPLICABLE("no device votes");
  const ballot = votesText.bind(undefined, votes);
  let k = c.k;
  if (n < k) {
    if (c.degraded === "keep_k") {
      return NOT_APPLICABLE(() => `only ${n} of the ${c.k} devices needed vote: ${ballot()}`);
    }
    k = n;
  }
  const violating = votes.filter((v) => v.violates);
  // A flagged vote counts only beside a trusted one: flagged readings never decide alone.
  const trusted = violating.filter((v) => v.flagged === undefined);
  const uncorroborated = trusted.length === 0 && violating.length > 0;
  const active = !uncorroborated && violating.length >= k;
  // The level reached by at least k devices, and by a trusted one.
  const levels = violating.map((v) => v.level).sort((a, b) => b - a);
  const trustedLevel = Math.max(0, ...trusted.map((v) => v.level));
  const levelIndex = active ? Math.min(levels[k - 1] ?? 0, trustedLevel) : 0;
  const decider =
    [...trusted].sort((a, b) => b.level - a.level || (b.violates ? 1 : 0))[0] ??
    [...votes].sort((a, b) => b.level - a.level)[0];
  const degraded = k < c.k ? `; DEGRADED from k = ${c.k}: only ${n} vote` : "";
  // Every vote in the account, written only when read (a decision, evidence): a segment of fifty
  // detectors is evaluated at every instant and most evaluations decide nothing.
  return new Judged(
    rule,
    active,
    decider?.value,
    active ? (levelLimit(rule, levelIndex, decider!.r) ?? decider?.limit) : decider?.limit,
    levelIndex,
    decider?.id,
    decider?.used,
    decider?.coverage,
    () =>
      `${violating.length} of ${n} devices ${c.aggregate} ${c.quantity} ${c.op} limit (k = ${k}${degraded})${uncorroborated ? "; only flagged readings violate, which cannot decide alone" : ""}: ${ballot()}`,
    k < c.k ? { k: c.k, voting: n } : undefined,
  );
}

/** Every vote: device, value and flag. */
function votesText(
  votes: ReadonlyArray<{ id: string; value: number; flagged: QualityFlag | undefined }>,
): string {
  return votes
    .map((v) => `${v.id}=${round(v.value)}${v.flagged === undefined ? "" : ` (${v.flagged})`}`)
    .join(", ");
}

const round = (x: number): number => Math.round(x * 100) / 100;
