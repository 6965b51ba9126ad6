import type {
  Comparison,
  Device,
  LimitContext,
  Period,
  PeriodValue,
  QualityFlag,
  Rule,
  Site,
  Value,
} from "../../contracts/index.js";
import {
  isByPeriod,
  isRef,
  matches,
  minutesOfDay,
  OVERRIDE_LEVELS,
  resolveTable,
  specificity,
} from "../../contracts/index.js";

/*
 * A reference evaluator of rules: docs/rules.md restated as plainly as possible, for the
 * differential tests that compare the production engine (rules/driver.ts around rules/engine/)
 * with it. It imports nothing of the engine: only the rule schema's types and the contracts'
 * limit-table helpers (resolveTable, matches, specificity).
 *
 * Deliberately simple and slow. It is given the complete raw series of every device and the
 * clock ticks, and at every evaluation instant of every subject, in time order, it recomputes the
 * rule from the raw readings at or before that instant (no windows kept, no pruning, no batches),
 * then runs its own alarm state machine. The sections of docs/rules.md it restates:
 *
 * - Time: readings, periods and windows (all nine points):
 *   - a reading stamped t by a device of expected interval d measured (t − d, t];
 *   - its periods (day, night, activeDuring, a permit's validity) are those at t − d/2;
 *   - rolling windows are (T − W, T]; clock intervals (from, to], aligned to local midnight;
 *   - `latest` is placed by its reading's interval, a rolling window by (T − d, T], a clock
 *     interval by its midpoint; limits (byPeriod), activeDuring and permits are judged there;
 *   - a window holds only the readings of the period it is placed in;
 *   - coverage: the union of the held readings' intervals, clipped to the window, over the
 *     window's length; below minCoverage (default 0.75) the window is a gap and the alarm holds;
 *   - every reading instant and every tick is judged, in time order;
 *   - deadman is judged on ticks only; a device never heard counts from `watchedFrom`.
 * - Conditions (threshold, rate_of_rise, state, deadman, quality, k_of_n), Values and limit
 *   tables, Overrides, Schedules and time zones, Severity levels, Timing, quality gate, permits.
 *
 * Where the text leaves a choice open, the choice made here is written where it is made and
 * listed in INTERPRETATIONS (the differential tests' report names them).
 */

/** One raw reading of a device, as measured. */
export interface RefReading {
  readonly deviceId: string;
  /** The stamp: the end of the interval the reading measured, epoch ms. */
  readonly t: number;
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number | boolean>>;
}

export interface ReferenceInput {
  readonly rules: readonly Rule[];
  readonly devices: readonly Device[];
  readonly sites: readonly Site[];
  /** The deployment's regulatory region; `default` when unset. */
  readonly region?: string | undefined;
  /** The complete raw series of every device (any order). */
  readonly readings: readonly RefReading[];
  /** The clock ticks (data instants). */
  readonly ticks: readonly number[];
  /** When the engine started watching the devices (deadman of a device never heard). */
  readonly watchedFrom: number;
}

export type RefDecisionType = "raise" | "escalate-level" | "attach-repeat" | "clear";

export interface RefDecision {
  readonly ruleId: string;
  /** `device:<id>`, `site:<id>` or `segment:<id>`. */
  readonly subject: string;
  readonly type: RefDecisionType;
  /** The level raised or escalated to (undefined for rules without levels, and for clear). */
  readonly level: string | undefined;
  /** The data instant of the decision. */
  readonly at: number;
}

/** What one evaluation says. */
export type Verdict =
  /** Not judged: no data, too little coverage. The alarm holds its state. */
  | { readonly kind: "gap"; readonly why: string }
  /** Not applicable (outside activeDuring, exempt by a permit, no limit): cannot raise, may clear. */
  | { readonly kind: "off"; readonly why: string }
  | {
      readonly kind: "judged";
      readonly holds: boolean;
      readonly levelIndex: number;
      readonly value: number | boolean;
      readonly why: string;
      /** Emergency rules: the newest reading judged is flagged fault, maintenance or calibration. */
      readonly flagged?: boolean;
    };

/** The choices this evaluator makes where docs/rules.md leaves one open. */
export const INTERPRETATIONS: readonly string[] = [
  "latest: the newest reading of the quantity at or before T, however old; none, or suppressed by the quality gate, is a gap",
  "emergency rules: a threshold window (or latest reading) whose newest held reading is flagged fault, maintenance or calibration is a gap; such a k_of_n vote counts only beside a trusted violating vote, and the level is at most the trusted votes' highest",
  "a window holds only the readings whose own place selects the same byPeriod entries and the same activeDuring membership as the window's place",
  "permits exempt by place: a permit valid at the place of the window (or of the latest reading) makes the evaluation not applicable (it cannot raise, an open alarm may clear)",
  "not applicable (outside activeDuring, exempt, no limit) is inactive: an open alarm moves to clear; only a gap holds",
  "site subjects (not k_of_n): active when any device is (highest level); else inactive when any device is judged or not applicable; a gap only when every device is",
  "k_of_n: a device votes when it has a judged window (its place in schedule, not exempt, a limit, enough coverage) and is not silent: it has a reading at or before T, the newest no more than 3 × expectedIntervalS before T; none voting is a gap (off when a device was not applicable); keep_k with fewer than k voting is a gap",
  "k_of_n levels: the highest level whose raise at least k (the effective k) violating devices pass",
  "levels: the highest level whose raise the value passes (level 0 at condition.raise); severity never falls within an alarm",
  "deadman: silence = T − newest reading of any quality at or before T, or T − watchedFrom for a device never heard; holds when silence > factor × expectedIntervalS; judged on ticks, and on reading instants only to end a silence (a verdict that holds there is a gap: it cannot raise)",
  "quality: the newest reading (any flag) at or before T carries one of the flags, or the local date of T is after calibrationDueOn",
  "state: each term's newest reading at or before T (never reported: the term is false; suppressed: a gap); placed by the newest of them",
  "nOfM: the m newest complete clock intervals ending at or before T; the newest one places the evaluation and a gap there holds; the others violate only when judged and over the limit",
  "exceedances: the violating intervals of the local day of the newest complete interval (by its place), up to T; never a gap",
  "rate_of_rise: newest minus oldest gated reading of the window's period in (T − W, T], fewer than two is a gap",
  "aggregates are rounded to 1e-9 before they are compared (an energy mean of equal levels is that level)",
  "a reading at the same instant as a tick is judged first, then the tick",
];

// ---------------------------------------------------------------------------------------------
// Local time

interface LocalClock {
  /** `YYYY-MM-DD` in the zone. */
  readonly date: string;
  /** Seconds since local midnight, with the fraction of the second. */
  readonly seconds: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const offsets = new Map<string, Map<number, number>>();
const QUARTER_HOUR = 900_000;

/**
 * Offset of local time from UTC at an instant, ms: read from Intl once per quarter of an hour
 * (every time zone changes its offset on a quarter hour).
 */
function offsetAt(ms: number, timeZone: string): number {
  let byQuarter = offsets.get(timeZone);
  if (byQuarter === undefined) offsets.set(timeZone, (byQuarter = new Map<number, number>()));
  const quarter = Math.floor(ms / QUARTER_HOUR);
  let offset = byQuarter.get(quarter);
  if (offset === undefined) {
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
        second: "2-digit",
      });
      formatters.set(timeZone, f);
    }
    const at = quarter * QUARTER_HOUR;
    const p: Record<string, number> = {};
    for (const part of f.formatToParts(at)) p[part.type] = Number(part.value);
    const wall = Date.UTC(p.year ?? 0, (p.month ?? 1) - 1, p.day, p.hour, p.minute, p.second);
    offset = wall - at;
    if (byQuarter.size > 100_000) byQuarter.clear();
    byQuarter.set(quarter, offset);
  }
  return offset;
}

/** The local date and time of an instant in a time zone. */
export function localClock(ms: number, timeZone: string): LocalClock {
  const wall = ms + offsetAt(ms, timeZone);
  const day = Math.floor(wall / 86_400_000);
  return {
    date: new Date(day * 86_400_000).toISOString().slice(0, 10),
    seconds: (wall - day * 86_400_000) / 1000,
  };
}

function dayBefore(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
}

const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;

/**
 * The periods in force at an instant: `[from, to)` in local time; a period over midnight belongs
 * to the day it starts, and its `days` and holidays are checked against that day.
 */
function periodsAt(
  periods: Readonly<Record<string, Period>>,
  schedule: Rule["schedule"],
  ms: number,
): string[] {
  const { date, seconds } = localClock(ms, schedule.timeZone);
  const active: string[] = [];
  for (const [name, period] of Object.entries(periods)) {
    const from = minutesOfDay(period.from) * 60;
    const to = minutesOfDay(period.to) * 60;
    let startDay: string | undefined;
    if (from < to) startDay = seconds >= from && seconds < to ? date : undefined;
    else if (seconds >= from) startDay = date;
    else if (seconds < to) startDay = dayBefore(date);
    if (startDay === undefined) continue;
    const weekday = WEEKDAYS[new Date(`${startDay}T00:00:00Z`).getUTCDay()] ?? "mon";
    if (period.days !== undefined && !period.days.includes(weekday)) continue;
    const holiday = schedule.holidays.includes(startDay);
    if (period.holidays === "exclude" && holiday) continue;
    if (period.holidays === "only" && !holiday) continue;
    active.push(name);
  }
  return active;
}

/** Start of the local day holding `ms` (zones without daylight saving). */
function localMidnight(ms: number, timeZone: string): number {
  return ms - Math.round(localClock(ms, timeZone).seconds * 1000);
}

// ---------------------------------------------------------------------------------------------
// Context, scope, limits (Values and limit tables; Overrides)

interface Place extends LimitContext {
  readonly region: string;
  readonly district: string | undefined;
  readonly siteId: string | undefined;
  readonly deviceId: string;
}

function placeOfDevice(device: Device, site: Site | undefined, region: string): Place {
  const zoneClass = device.zoneClass ?? site?.zoneClass;
  return {
    ...(zoneClass === undefined ? {} : { zoneClass }),
    ...(site?.type === "construction_site"
      ? { phase: site.phase, dustRegion: site.dustRegion ?? "default" }
      : {}),
    ...(site?.type === "restaurant" ? { restaurantSize: site.size } : {}),
    region,
    district: device.area.district,
    siteId: site?.id,
    deviceId: device.id,
  };
}

/** The rule's overrides that apply at a place, in the order they take effect. */
function overridesAt(rule: Rule, place: Place) {
  return rule.overrides
    .map((o, index) => ({ o, index }))
    .filter(({ o }) => {
      if (!matches(o.when ?? {}, place)) return false;
      if (o.at === "city") return true;
      if (o.at === "district") return o.id === place.district;
      if (o.at === "site") return o.id === place.siteId;
      return o.id === place.deviceId;
    })
    .sort(
      (a, b) =>
        OVERRIDE_LEVELS.indexOf(a.o.at) - OVERRIDE_LEVELS.indexOf(b.o.at) ||
        specificity(a.o.when) - specificity(b.o.when) ||
        a.index - b.index,
    )
    .map(({ o }) => o);
}

function applies(rule: Rule, device: Device, site: Site | undefined, region: string): boolean {
  const place = placeOfDevice(device, site, region);
  const within = <T>(list: readonly T[] | undefined, value: T | undefined) =>
    list === undefined || (value !== undefined && list.includes(value));
  const s = rule.scope;
  let enabled = rule.enabled;
  for (const o of overridesAt(rule, place)) enabled = o.enabled ?? enabled;
  return (
    device.enabled &&
    device.standby !== true && // registered, not in service: left out of the rules
    enabled &&
    s.kinds.includes(device.kind) &&
    within(s.siteTypes, site?.type) &&
    within(s.zoneClasses, place.zoneClass) &&
    within(s.phases, place.phase) &&
    within(s.compartments, site?.type === "tunnel_segment" ? site.compartment : undefined) &&
    within(s.regions, place.region) &&
    within(s.dustRegions, place.dustRegion)
  );
}

/** One device as one rule sees it: its limits, periods and readings. */
interface Seen {
  readonly rule: Rule;
  readonly device: Device;
  readonly site: Site | undefined;
  /** The device's expected interval, ms: each reading measured (t − d, t]. */
  readonly d: number;
  readonly limits: Readonly<Record<string, number>>;
  readonly periods: Readonly<Record<string, Period>>;
  /** The device's readings, in time order. */
  readonly readings: readonly RefReading[];
  /** `placed` by instant, computed once (it depends on nothing else). */
  readonly places: Map<number, Placed>;
}

function seeing(
  rule: Rule,
  device: Device,
  site: Site | undefined,
  region: string,
  readings: readonly RefReading[],
): Seen {
  const place = placeOfDevice(device, site, region);
  const limits = { ...resolveTable(rule.limits, place).values };
  const periods: Record<string, Period> = { ...rule.schedule.periods };
  for (const o of overridesAt(rule, place)) {
    Object.assign(limits, o.values ?? {});
    Object.assign(periods, o.periods ?? {});
  }
  const d = device.expectedIntervalS * 1000;
  return { rule, device, site, d, limits, periods, readings, places: new Map() };
}

/** The number a Value stands for; undefined when its reference has no value here. */
function numberOf(value: Value, seen: Seen): number | undefined {
  if (!isRef(value)) return value;
  if (value.from.startsWith("limits.")) {
    const base = seen.limits[value.from.slice("limits.".length)];
    return base === undefined ? undefined : base + value.plus;
  }
  const site = seen.site;
  if (site?.type !== "river_station" || site.levels === undefined) return undefined;
  const key = value.from.slice("site.levels.".length) as keyof typeof site.levels;
  return site.levels[key] + value.plus;
}

/** The byPeriod entry in force: the first period listed that is active (undefined: none). */
function periodEntry(value: PeriodValue, active: readonly string[]): string | undefined {
  if (!isByPeriod(value)) return "";
  return Object.keys(value.byPeriod).find((name) => active.includes(name));
}

function periodNumber(value: PeriodValue, active: readonly string[], seen: Seen) {
  if (!isByPeriod(value)) return numberOf(value, seen);
  const entry = periodEntry(value, active);
  const v = entry === undefined ? undefined : value.byPeriod[entry];
  return v === undefined ? undefined : numberOf(v, seen);
}

// ---------------------------------------------------------------------------------------------
// Where an evaluation is placed (Time, points 2 and 4)

interface Placed {
  readonly exempt: boolean;
  readonly inSchedule: boolean;
  /** The period a window placed here holds the readings of (see `periodKey`). */
  readonly key: string;
  readonly raise: number | undefined;
  readonly clear: number | undefined;
}

/** Raise and clear of a condition (clear: raise when absent). */
function thresholds(rule: Rule): { raise: PeriodValue; clear: PeriodValue } | undefined {
  const c = rule.condition;
  if (c.type === "threshold" || c.type === "k_of_n" || c.type === "rate_of_rise") {
    return { raise: c.raise, clear: c.clear ?? c.raise };
  }
  return undefined;
}

/**
 * The period of a place, as far as the rule can tell periods apart: the byPeriod entries its
 * raise and clear select there and whether it is within activeDuring. A window holds only the
 * readings whose own place has the same key (Time, point 5).
 */
function periodKey(seen: Seen, active: readonly string[]): string {
  const parts: string[] = [];
  const t = thresholds(seen.rule);
  if (t !== undefined) {
    for (const v of [t.raise, t.clear])
      if (isByPeriod(v)) parts.push(periodEntry(v, active) ?? "-");
  }
  const during = seen.rule.schedule.activeDuring;
  if (during !== undefined) parts.push(during.some((p) => active.includes(p)) ? "in" : "out");
  return parts.join("|");
}

function placed(seen: Seen, at: number): Placed {
  let known = seen.places.get(at);
  if (known === undefined) seen.places.set(at, (known = placeAt(seen, at)));
  return known;
}

function placeAt(seen: Seen, at: number): Placed {
  const active = periodsAt(seen.periods, seen.rule.schedule, at);
  const during = seen.rule.schedule.activeDuring;
  const t = thresholds(seen.rule);
  return {
    exempt: permitHeld(seen, at),
    inSchedule: during === undefined || during.some((p) => active.includes(p)),
    key: periodKey(seen, active),
    raise: t === undefined ? undefined : periodNumber(t.raise, active, seen),
    clear: t === undefined ? undefined : periodNumber(t.clear, active, seen),
  };
}

/** The site holds a valid permit of a type the rule lists, at `at` ([validFrom, validTo)). */
function permitHeld(seen: Seen, at: number): boolean {
  const types = seen.rule.permitExemption?.types;
  if (types === undefined) return false;
  return (seen.site?.permits ?? []).some(
    (p) => types.includes(p.type) && Date.parse(p.validFrom) <= at && at < Date.parse(p.validTo),
  );
}

/** The place of a reading: the midpoint of the interval it measured. */
const midpointOf = (seen: Seen, r: RefReading): number => r.t - seen.d / 2;

// ---------------------------------------------------------------------------------------------
// Values: the quality gate, windows, coverage, aggregates

const suppressed = (rule: Rule, r: RefReading): boolean =>
  rule.qualityGate.suppressFlags.includes(r.quality);

/** Flags that cannot decide an emergency alone (docs/rules.md, k_of_n: trusted readings). */
const UNTRUSTED: readonly QualityFlag[] = ["fault", "maintenance", "calibration"];

const untrusted = (rule: Rule, r: RefReading): boolean =>
  rule.taskKind === "emergency" && UNTRUSTED.includes(r.quality);

/** The local date of `at` is after the device's calibrationDueOn. */
function calibrationExpired(device: Device, at: number, timeZone: string): boolean {
  const due = device.calibrationDueOn;
  return due !== undefined && localClock(at, timeZone).date > due;
}

/** The device's gated numeric readings of `quantity` stamped in (from, to]. */
function gatedIn(seen: Seen, quantity: string, from: number, to: number): RefReading[] {
  return seen.readings.filter(
    (r) =>
      r.t > from &&
      r.t <= to &&
      !suppressed(seen.rule, r) &&
      typeof r.values[quantity] === "number",
  );
}

/** Milliseconds of (from, to] covered by the readings' intervals (t − d, t]. */
function covered(readings: readonly RefReading[], d: number, from: number, to: number): number {
  const spans = readings
    .map((r) => [Math.max(r.t - d, from), Math.min(r.t, to)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of spans) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

const round9 = (x: number): number => Math.round(x * 1e9) / 1e9;

function aggregateOf(values: readonly number[], how: string): number {
  let v: number;
  switch (how) {
    case "mean":
      v = values.reduce((a, b) => a + b, 0) / values.length;
      break;
    case "max":
      v = Math.max(...values);
      break;
    case "min":
      v = Math.min(...values);
      break;
    case "energy_mean":
      v = 10 * Math.log10(values.reduce((a, l) => a + 10 ** (l / 10), 0) / values.length);
      break;
    default:
      v = values[values.length - 1] as number;
  }
  return round9(v);
}

function compare(value: number, op: Comparison, limit: number): boolean {
  if (op === ">") return value > limit;
  if (op === ">=") return value >= limit;
  if (op === "<") return value < limit;
  return value <= limit;
}

/** The highest level whose raise the value passes; level 0 is the condition's own raise. */
function levelOf(seen: Seen, value: number, op: Comparison): number {
  let index = 0;
  (seen.rule.levels ?? []).forEach((level, i) => {
    if (i === 0 || level.raise === undefined) return;
    const limit = numberOf(level.raise, seen);
    if (limit !== undefined && compare(value, op, limit)) index = i;
  });
  return index;
}

const gap = (why: string): Verdict => ({ kind: "gap", why });
const off = (why: string): Verdict => ({ kind: "off", why });

function minCoverage(rule: Rule): number {
  const c = rule.condition as { minCoverage?: number };
  return c.minCoverage ?? 0.75;
}

/** The limit on the alarm's side at a place, or why the rule does not apply there. */
function limitAt(at: Placed, open: boolean): number | Verdict {
  if (at.exempt) return off("exempt by a permit");
  if (!at.inSchedule) return off("outside activeDuring");
  const limit = open ? at.clear : at.raise;
  return limit === undefined ? off("no limit") : limit;
}

/** `value op limit`, with the level reached; `newest`: the newest reading judged. */
function verdictOf(
  seen: Seen,
  value: number,
  op: Comparison,
  limit: number,
  newest: RefReading,
  what: string,
): Verdict {
  const holds = compare(value, op, limit);
  return {
    kind: "judged",
    holds,
    levelIndex: levelOf(seen, value, op),
    value,
    why: `${what} ${value} ${op} ${limit}: ${holds}`,
    flagged: untrusted(seen.rule, newest),
  };
}

/**
 * A window (from, to] of one device judged at its place: not applicable when the place is
 * exempt, outside activeDuring or without a limit; a gap without enough coverage by the readings
 * of the place's period; else the aggregate compared with the limit (clear side when open).
 */
function judgeWindow(
  seen: Seen,
  quantity: string,
  aggregate: string,
  op: Comparison,
  window: { from: number; to: number; placeAt: number },
  open: boolean,
): Verdict {
  const at = placed(seen, window.placeAt);
  const limit = limitAt(at, open);
  if (typeof limit !== "number") return limit;
  const held = gatedIn(seen, quantity, window.from, window.to).filter(
    (r) => placed(seen, midpointOf(seen, r)).key === at.key,
  );
  const length = window.to - window.from;
  const cover = covered(held, seen.d, window.from, window.to);
  if (held.length === 0 || cover < minCoverage(seen.rule) * length) {
    return gap(`coverage ${cover}/${length} ms`);
  }
  const value = aggregateOf(
    held.map((r) => r.values[quantity] as number),
    aggregate,
  );
  const what = `${aggregate} over (${window.from}, ${window.to}]`;
  return verdictOf(seen, value, op, limit, held.at(-1) as RefReading, what);
}

/** The newest complete clock interval ending at or before T, shifted back `back` intervals. */
function clockInterval(T: number, windowMs: number, timeZone: string, back = 0) {
  const midnight = localMidnight(T, timeZone);
  const to = midnight + Math.floor((T - midnight) / windowMs) * windowMs - back * windowMs;
  return { from: to - windowMs, to, placeAt: to - windowMs / 2 };
}

/** `latest`: the newest gated reading at or before T, placed by its own interval. */
function judgeLatest(
  seen: Seen,
  quantity: string,
  op: Comparison,
  T: number,
  open: boolean,
): Verdict {
  const newest = seen.readings
    .filter((r) => r.t <= T && typeof r.values[quantity] === "number")
    .at(-1);
  if (newest === undefined) return gap(`no ${quantity} reading`);
  if (suppressed(seen.rule, newest)) return gap(`newest ${quantity} reading ${newest.quality}`);
  const limit = limitAt(placed(seen, midpointOf(seen, newest)), open);
  if (typeof limit !== "number") return limit;
  const value = round9(newest.values[quantity] as number);
  return verdictOf(seen, value, op, limit, newest, `latest (at ${newest.t})`);
}

/** A threshold-like condition (threshold, one device's part of k_of_n) at T. */
function judgeAggregate(seen: Seen, T: number, open: boolean): Verdict {
  const c = seen.rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n") return off("not a threshold");
  const tz = seen.rule.schedule.timeZone;
  if (c.type === "threshold" && c.nOfM !== undefined) {
    const { n, m } = c.nOfM;
    const intervals = Array.from({ length: m }, (_, i) => clockInterval(T, c.window ?? 0, tz, i));
    const verdicts = intervals.map((w) =>
      judgeWindow(seen, c.quantity, c.aggregate, c.op, w, open),
    );
    const newest = verdicts[0] as Verdict;
    if (newest.kind !== "judged") return newest;
    const violating = verdicts.filter((v) => v.kind === "judged" && v.holds).length;
    return {
      kind: "judged",
      holds: violating >= n,
      levelIndex: newest.levelIndex,
      value: newest.value,
      why: `${violating} of ${m} intervals violate (need ${n})`,
    };
  }
  if (c.type === "threshold" && c.exceedances !== undefined) {
    const windowMs = c.window ?? 0;
    const day = localClock(clockInterval(T, windowMs, tz).placeAt, tz).date;
    let violating = 0;
    let newest: Verdict | undefined;
    for (let back = 0; ; back++) {
      const w = clockInterval(T, windowMs, tz, back);
      if (localClock(w.placeAt, tz).date !== day) break;
      const v = judgeWindow(seen, c.quantity, c.aggregate, c.op, w, open);
      newest ??= v;
      if (v.kind === "judged" && v.holds) violating++;
    }
    const needed = c.exceedances.allowedPerDay + 1;
    return {
      kind: "judged",
      holds: violating >= needed,
      levelIndex: newest?.kind === "judged" ? newest.levelIndex : 0,
      value: violating,
      why: `${violating} violating intervals on ${day} (raise at ${needed})`,
    };
  }
  if (c.aggregate === "latest" && c.window === undefined) {
    return judgeLatest(seen, c.quantity, c.op, T, open);
  }
  const windowMs = c.window ?? 0;
  const w =
    c.align === "clock"
      ? clockInterval(T, windowMs, tz)
      : { from: T - windowMs, to: T, placeAt: T - seen.d / 2 };
  return judgeWindow(seen, c.quantity, c.aggregate, c.op, w, open);
}

function judgeRateOfRise(seen: Seen, T: number, open: boolean): Verdict {
  const c = seen.rule.condition;
  if (c.type !== "rate_of_rise") return off("not a rate of rise");
  const at = placed(seen, T - seen.d / 2);
  const limit = limitAt(at, open);
  if (typeof limit !== "number") return limit;
  const held = gatedIn(seen, c.quantity, T - c.window, T).filter(
    (r) => placed(seen, midpointOf(seen, r)).key === at.key,
  );
  const first = held[0];
  const last = held.at(-1);
  if (first === undefined || last === undefined || held.length < 2) {
    return gap("fewer than two readings");
  }
  const rise = round9((last.values[c.quantity] as number) - (first.values[c.quantity] as number));
  return {
    kind: "judged",
    holds: rise >= limit,
    levelIndex: levelOf(seen, rise, ">="),
    value: rise,
    why: `rise ${rise} >= ${limit}`,
  };
}

function judgeState(seen: Seen, T: number): Verdict {
  const c = seen.rule.condition;
  if (c.type !== "state") return off("not a state condition");
  const newest = c.terms.map((term) =>
    seen.readings.filter((r) => r.t <= T && typeof r.values[term.quantity] === "boolean").at(-1),
  );
  if (newest.some((r) => r !== undefined && suppressed(seen.rule, r))) {
    return gap("a term's newest reading is suppressed");
  }
  const times = newest.flatMap((r) => (r === undefined ? [] : [r.t]));
  if (times.length > 0) {
    const at = placed(seen, Math.max(...times) - seen.d / 2);
    if (at.exempt) return off("exempt by a permit");
    if (!at.inSchedule) return off("outside activeDuring");
  }
  const each = c.terms.map((term, i) => newest[i]?.values[term.quantity] === term.is);
  const holds = c.match === "all" ? each.every(Boolean) : each.some(Boolean);
  return { kind: "judged", holds, levelIndex: 0, value: holds, why: `terms ${each.join(",")}` };
}

function judgeQuality(seen: Seen, T: number): Verdict {
  const c = seen.rule.condition;
  if (c.type !== "quality") return off("not a quality condition");
  const newest = seen.readings.filter((r) => r.t <= T).at(-1);
  const flagged = newest !== undefined && c.flags.includes(newest.quality);
  const expired =
    c.calibrationExpired && calibrationExpired(seen.device, T, seen.rule.schedule.timeZone);
  const holds = flagged || expired;
  return { kind: "judged", holds, levelIndex: 0, value: holds, why: `flag ${newest?.quality}` };
}

function judgeDeadman(seen: Seen, T: number, watchedFrom: number): Verdict {
  const c = seen.rule.condition;
  if (c.type !== "deadman") return off("not a deadman");
  const newest = seen.readings.filter((r) => r.t <= T).at(-1);
  const silence = T - (newest?.t ?? watchedFrom);
  const limit = c.factor * seen.d;
  return {
    kind: "judged",
    holds: silence > limit,
    levelIndex: 0,
    value: silence,
    why: `silent ${silence} ms (limit ${limit})`,
  };
}

/** The device takes part: enabled and, under the rule's gate, calibrated. */
function usable(seen: Seen, T: number): boolean {
  return !(
    seen.rule.qualityGate.suppressOnExpiredCalibration &&
    calibrationExpired(seen.device, T, seen.rule.schedule.timeZone)
  );
}

/** One device's verdict for a per-device condition. */
function judgeDevice(seen: Seen, T: number, open: boolean, watchedFrom: number): Verdict {
  const c = seen.rule.condition;
  switch (c.type) {
    case "deadman":
      return judgeDeadman(seen, T, watchedFrom);
    case "quality":
      return judgeQuality(seen, T);
    case "state":
      return usable(seen, T) ? judgeState(seen, T) : gap("calibration expired");
    case "rate_of_rise":
      return usable(seen, T) ? judgeRateOfRise(seen, T, open) : gap("calibration expired");
    default: {
      if (!usable(seen, T)) return gap("calibration expired");
      const v = judgeAggregate(seen, T, open);
      // An emergency is not decided by a flagged reading alone: the alarm holds.
      return v.kind === "judged" && v.flagged === true ? gap(`flagged: ${v.why}`) : v;
    }
  }
}

/** A subject of several devices (not k_of_n): active when any device is, at the highest level. */
function anyOf(verdicts: readonly Verdict[]): Verdict {
  const judged = verdicts.filter((v) => v.kind === "judged");
  const active = judged.filter((v) => v.holds);
  if (active.length > 0) return active.reduce((a, b) => (b.levelIndex > a.levelIndex ? b : a));
  if (judged.length > 0) return judged[0] as Verdict;
  return verdicts.find((v) => v.kind === "off") ?? verdicts[0] ?? gap("no device");
}

/** k_of_n: at least k of the voting devices violate. */
function kOfN(seen: readonly Seen[], T: number, open: boolean): Verdict {
  const c = seen[0]?.rule.condition;
  if (c?.type !== "k_of_n") return off("not k_of_n");
  const votes: Array<{ violates: boolean; level: number; flagged: boolean }> = [];
  let anyOff = false;
  for (const s of seen) {
    const newest = s.readings.filter((r) => r.t <= T).at(-1);
    if (newest === undefined || T - newest.t > 3 * s.d) continue; // never heard, or silent
    if (!usable(s, T)) continue;
    const v = judgeAggregate(s, T, open);
    if (v.kind === "off") anyOff = true;
    if (v.kind !== "judged") continue;
    votes.push({ violates: v.holds, level: v.levelIndex, flagged: v.flagged === true });
  }
  const n = votes.length;
  if (n === 0) return anyOff ? off("no device votes (not applicable)") : gap("no device votes");
  let k = c.k;
  if (n < k) {
    if (c.degraded === "keep_k") return gap(`${n} of ${k} needed devices vote`);
    k = n;
  }
  const violating = votes.filter((v) => v.violates);
  // A flagged vote counts only beside a trusted violating one; the level is at most theirs.
  const trusted = violating.filter((v) => !v.flagged);
  const holds = trusted.length > 0 && violating.length >= k;
  const levels = violating.map((v) => v.level).sort((a, b) => b - a);
  const trustedLevel = Math.max(...trusted.map((v) => v.level), 0);
  return {
    kind: "judged",
    holds,
    levelIndex: holds ? Math.min(levels[k - 1] ?? 0, trustedLevel) : 0,
    value: violating.length,
    why: `${violating.length} of ${n} vote over (k = ${k})`,
  };
}

// ---------------------------------------------------------------------------------------------
// Subjects and the alarm state machine

interface RefSubject {
  readonly rule: Rule;
  readonly key: string;
  readonly seen: readonly Seen[];
}

function subjectsOf(input: ReferenceInput): RefSubject[] {
  const region = input.region ?? "default";
  const sites = new Map(input.sites.map((s) => [s.id as string, s]));
  const byDevice = new Map<string, RefReading[]>();
  for (const r of [...input.readings].sort((a, b) => a.t - b.t)) {
    const list = byDevice.get(r.deviceId);
    if (list === undefined) byDevice.set(r.deviceId, [r]);
    else list.push(r);
  }
  const out: RefSubject[] = [];
  for (const rule of input.rules) {
    const groups = new Map<string, Seen[]>();
    for (const device of input.devices) {
      const site = sites.get(device.siteId);
      if (!applies(rule, device, site, region)) continue;
      const key =
        rule.subject === "device" ? `device:${device.id}` : `${rule.subject}:${device.siteId}`;
      const seen = seeing(rule, device, site, region, byDevice.get(device.id) ?? []);
      groups.set(key, [...(groups.get(key) ?? []), seen]);
    }
    for (const [key, seen] of groups) out.push({ rule, key, seen });
  }
  return out;
}

/** One evaluation of a subject at T; `tick` for a clock tick. */
function judgeSubject(subject: RefSubject, T: number, open: boolean, watchedFrom: number): Verdict {
  if (subject.rule.condition.type === "k_of_n") return kOfN(subject.seen, T, open);
  return anyOf(subject.seen.map((s) => judgeDevice(s, T, open, watchedFrom)));
}

/**
 * One evaluation at an instant. Deadman is judged on the clock: at a reading instant it can only
 * end a silence (a verdict that holds there cannot raise: a gap).
 */
function judgeAt(
  subject: RefSubject,
  T: number,
  tick: boolean,
  open: boolean,
  watchedFrom: number,
): Verdict {
  const v = judgeSubject(subject, T, open, watchedFrom);
  if (subject.rule.condition.type === "deadman" && !tick && v.kind === "judged" && v.holds) {
    return gap("deadman holds at a reading instant: judged on the clock only");
  }
  return v;
}

type Phase = "normal" | "pending" | "active" | "recovering";

/**
 * The alarm of one (subject, rule): normal → pending (the raise holds) → active after `for` →
 * recovering (it stops holding) → cleared after clearHold, and not before minActive since the
 * raise; a gap changes nothing; severity only rises within one alarm.
 */
class RefAlarm {
  phase: Phase = "normal";
  startedAt = 0;
  raisedAt = 0;
  since = 0;
  levelIndex = 0;

  constructor(
    private readonly rule: Rule,
    private readonly subject: string,
    private readonly out: RefDecision[],
  ) {}

  get open(): boolean {
    return this.phase === "active" || this.phase === "recovering";
  }

  step(v: Verdict, T: number): void {
    if (v.kind === "gap") return;
    const holds = v.kind === "judged" && v.holds;
    const level = v.kind === "judged" ? v.levelIndex : 0;
    const hold = this.rule.condition.type === "deadman" ? 0 : this.rule.condition.for;
    const minActive = this.rule.timing.minActive ?? 0;
    const clearHold = this.rule.timing.clearHold ?? 0;
    switch (this.phase) {
      case "normal":
        if (!holds) return;
        this.phase = "pending";
        this.startedAt = T;
        if (T - this.startedAt >= hold) this.raise(T, level);
        return;
      case "pending":
        if (!holds) this.phase = "normal";
        else if (T - this.startedAt >= hold) this.raise(T, level);
        return;
      case "active":
        if (holds) this.escalate(T, level);
        else {
          this.phase = "recovering";
          this.since = T;
          this.clearIfDue(T, minActive, clearHold);
        }
        return;
      case "recovering":
        if (holds) {
          this.phase = "active";
          this.since = T;
          this.emit("attach-repeat", T, undefined);
          this.escalate(T, level);
        } else this.clearIfDue(T, minActive, clearHold);
        return;
    }
  }

  private raise(T: number, level: number): void {
    this.phase = "active";
    this.raisedAt = T;
    this.since = T;
    this.levelIndex = level;
    this.emit("raise", T, this.levelName(level));
  }

  private escalate(T: number, level: number): void {
    if (level <= this.levelIndex) return;
    this.levelIndex = level;
    this.emit("escalate-level", T, this.levelName(level));
  }

  private clearIfDue(T: number, minActive: number, clearHold: number): void {
    if (T - this.raisedAt < minActive || T - this.since < clearHold) return;
    this.phase = "normal";
    this.emit("clear", T, undefined);
  }

  private levelName(index: number): string | undefined {
    return this.rule.levels?.[index]?.level;
  }

  private emit(type: RefDecisionType, at: number, level: string | undefined): void {
    this.out.push({ ruleId: this.rule.id, subject: this.subject, type, level, at });
  }
}

/** Evaluation instants of a subject: its devices' reading instants, then ticks, in time order. */
function instantsOf(subject: RefSubject, ticks: readonly number[]) {
  const readings = new Set<number>();
  for (const s of subject.seen) for (const r of s.readings) readings.add(r.t);
  return [
    ...[...readings].map((t) => ({ t, tick: false })),
    ...[...new Set(ticks)].map((t) => ({ t, tick: true })),
  ].sort((a, b) => a.t - b.t || Number(a.tick) - Number(b.tick));
}

/** One evaluation as the reference made it. */
export interface TraceEntry {
  readonly ruleId: string;
  readonly subject: string;
  readonly at: number;
  readonly tick: boolean;
  /** The alarm was open before it: the clear side was judged. */
  readonly open: boolean;
  readonly verdict: Verdict;
}

/**
 * Every (subject, rule) judged at its instants, in time order, through its alarm: the decisions,
 * and each evaluation with its verdict. Deadman is judged on the clock (see judgeAt).
 */
function run(
  input: ReferenceInput,
  ruleId?: string,
): { decisions: RefDecision[]; trace: TraceEntry[] } {
  const decisions: RefDecision[] = [];
  const trace: TraceEntry[] = [];
  for (const subject of subjectsOf(input)) {
    if (ruleId !== undefined && subject.rule.id !== ruleId) continue;
    const alarm = new RefAlarm(subject.rule, subject.key, decisions);
    for (const { t, tick } of instantsOf(subject, input.ticks)) {
      const verdict = judgeAt(subject, t, tick, alarm.open, input.watchedFrom);
      const entry = {
        ruleId: subject.rule.id,
        subject: subject.key,
        at: t,
        tick,
        open: alarm.open,
      };
      trace.push({ ...entry, verdict });
      alarm.step(verdict, t);
    }
  }
  return { decisions: sortDecisions(decisions), trace };
}

/** Every decision of every (subject, rule), in time order. */
export function referenceDecisions(input: ReferenceInput): RefDecision[] {
  return run(input).decisions;
}

/** Each evaluation of one rule's subjects, for reading what the reference decided and why. */
export function referenceTrace(input: ReferenceInput, ruleId: string): TraceEntry[] {
  return run(input, ruleId).trace;
}

/** Decisions in time order; at one instant by rule and subject, each alarm's in its own order. */
export function sortDecisions<T extends { at: number; ruleId: string; subject: string }>(
  decisions: readonly T[],
): T[] {
  return [...decisions].sort(
    (a, b) =>
      a.at - b.at ||
      (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0) ||
      (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0),
  );
}
