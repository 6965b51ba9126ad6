import type { QualityFlag } from "../../contracts/model/quality.js";
import type { Device, Site } from "../../contracts/model/registry.js";
import type { SensorKind } from "../../contracts/model/sensors.js";
import type { Comparison, PeriodValue, Rule } from "../../contracts/model/rules.js";
import { activePeriods, valueForPeriod } from "./periods.js";
import {
  type ResolutionContext,
  type ResolvedLimits,
  resolveEnabled,
  resolveLimits,
  resolvePeriods,
  resolveValue,
  type StationLevels,
} from "./resolve.js";
import type { SampleSource } from "./series.js";
import {
  aggregate,
  clockWindows,
  conditionRetention,
  inInterval,
  latestSample,
  localMidnight,
  passGate,
  type Sample,
  windowValue,
} from "./window.js";

/*
 * Evaluation of one rule's condition at one instant for one subject. Pure: the subject's devices,
 * their recent samples, the site and the instant come in; an Evaluation comes out.
 */

/** What the engine knows of one device of the subject. */
export interface DeviceView {
  readonly device: Pick<Device, "id" | "expectedIntervalS" | "area"> &
    Partial<Pick<Device, "zoneClass" | "calibrationDueOn" | "enabled">>;
  /**
   * Recent samples per quantity, oldest first (see window.ts): an array, or a source that builds
   * the samples of a look-back on demand (the rules driver's columns, series.ts).
   */
  readonly series: Readonly<Record<string, readonly Sample[] | SampleSource>>;
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
}

/**
 * A device's samples of `quantity` that a condition looking back `lookBackMs` from `at` can
 * need: for a look-back of 0 (a "latest") the newest sample at or before `at` that the quality
 * gate lets through, else the samples from `at - lookBackMs` on (with the newest before it).
 * An array (tests, callers with samples at hand) is returned whole: the callers filter it.
 */
function samplesOf(
  d: DeviceView,
  quantity: string,
  lookBackMs: number,
  at: number,
  gate: { readonly suppressFlags: readonly QualityFlag[] },
): readonly Sample[] {
  const source = d.series[quantity];
  if (source === undefined) return [];
  if (isSampleArray(source)) return source;
  return lookBackMs === 0 ? source.latestAt(at, gate.suppressFlags) : source.since(at - lookBackMs);
}

function isSampleArray(source: readonly Sample[] | SampleSource): source is readonly Sample[] {
  return Array.isArray(source);
}

/** The place and context of a device, for limit resolution. */
export function resolutionContext(
  view: DeviceView | undefined,
  subject: SubjectView,
): ResolutionContext {
  const site = subject.site;
  const zone = view?.device.zoneClass ?? site?.zoneClass;
  return {
    ...(zone === undefined ? {} : { zoneClass: zone }),
    ...(site?.type === "construction_site"
      ? { phase: site.phase, dustRegion: site.dustRegion ?? "default" }
      : {}),
    ...(site?.type === "restaurant" ? { restaurantSize: site.size } : {}),
    region: subject.region ?? "default",
    district: view?.device.area.district ?? site?.area.district,
    siteId: site?.id,
    deviceId: view?.device.id,
  };
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

/** Local calendar date `YYYY-MM-DD` of an instant. */
function localDate(atMs: number, timeZone: string): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone }).format(atMs);
}

/** Whether the device's calibration expired at `at` (the local date is after `calibrationDueOn`). */
export function calibrationExpired(view: DeviceView, at: number, timeZone: string): boolean {
  const due = view.device.calibrationDueOn;
  return due !== undefined && localDate(at, timeZone) > due;
}

/** Why an evaluation is not applicable; the alarm holds its state on `no_data` (a gap). */
export type NotApplicableReason = "no_data" | "no_limit" | "schedule" | "exempt" | "other";

const NOT_APPLICABLE = (detail: string, reason: NotApplicableReason = "no_data"): Evaluation => ({
  active: false,
  applicable: false,
  reason,
  value: undefined,
  limit: undefined,
  levelIndex: 0,
  level: undefined,
  deviceId: undefined,
  detail,
});

interface Resolved {
  readonly limits: ResolvedLimits;
  readonly periods: readonly string[];
  readonly station: StationLevels | undefined;
}

function resolveFor(rule: Rule, view: DeviceView | undefined, subject: SubjectView, at: number) {
  const place = resolutionContext(view, subject);
  const periods = activePeriods(resolvePeriods(rule, place), rule.schedule, at);
  const site = subject.site;
  const station = site?.type === "river_station" ? site.levels : undefined;
  return { limits: resolveLimits(rule, place), periods, station } satisfies Resolved;
}

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
function usableDevices(rule: Rule, subject: SubjectView, at: number): DeviceView[] {
  return subject.devices.filter(
    (d) =>
      d.device.enabled !== false &&
      !(
        rule.qualityGate.suppressOnExpiredCalibration &&
        calibrationExpired(d, at, rule.schedule.timeZone)
      ),
  );
}

/**
 * Evaluate a rule's condition for a subject at `at`. `previouslyActive` selects the clear side
 * (hysteresis): an active alarm stays active until `aggregate op clear` no longer holds.
 * Outside `schedule.activeDuring`, or while a listed permit is held, the result is inactive and
 * not applicable.
 */
export function evaluateCondition(
  rule: Rule,
  subject: SubjectView,
  at: number,
  previouslyActive = false,
): Evaluation {
  if (rule.permitExemption?.types.some((t) => subject.permits?.includes(t)) === true) {
    return NOT_APPLICABLE("exempt: the site holds a valid permit", "exempt");
  }
  const c = rule.condition;
  if (c.type === "deadman" || c.type === "quality") {
    return worstOf(
      subject.devices
        .filter((d) => d.device.enabled !== false)
        .map((d) => deviceCondition(rule, d, at)),
    );
  }
  if (rule.schedule.activeDuring !== undefined) {
    const r = resolveFor(rule, subject.devices[0], subject, at);
    if (!rule.schedule.activeDuring.some((p) => r.periods.includes(p))) {
      return NOT_APPLICABLE(`outside ${rule.schedule.activeDuring.join(", ")}`, "schedule");
    }
  }
  const devices = usableDevices(rule, subject, at);
  if (c.type === "k_of_n") {
    const voting = devices.filter((d) => !isSilent(d, at));
    return kOfN(rule, voting, subject, at, previouslyActive);
  }
  return worstOf(devices.map((d) => deviceNumeric(rule, d, subject, at, previouslyActive)));
}

/** Site subjects: active when any device is; the highest level and the worst value decide. */
function worstOf(evaluations: readonly Evaluation[]): Evaluation {
  const applicable = evaluations.filter((e) => e.applicable);
  if (applicable.length === 0) {
    return evaluations[0] ?? NOT_APPLICABLE("no device of the subject reports");
  }
  const active = applicable.filter((e) => e.active);
  if (active.length === 0) return applicable[0] ?? NOT_APPLICABLE("no data");
  return active.reduce((a, b) => (b.levelIndex > a.levelIndex ? b : a));
}

function deviceCondition(rule: Rule, d: DeviceView, at: number): Evaluation {
  const c = rule.condition;
  const id = d.device.id;
  if (c.type === "deadman") {
    const since = d.lastSeenAt ?? d.watchedSince;
    if (since === undefined) return NOT_APPLICABLE(`${id}: never heard and not watched`);
    const silence = at - since;
    const limit = c.factor * d.device.expectedIntervalS * 1000;
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
    const flagged = d.lastQuality !== undefined && c.flags.includes(d.lastQuality);
    const expired = c.calibrationExpired && calibrationExpired(d, at, rule.schedule.timeZone);
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

function deviceNumeric(
  rule: Rule,
  d: DeviceView,
  subject: SubjectView,
  at: number,
  previouslyActive: boolean,
): Evaluation {
  const c = rule.condition;
  const id = d.device.id;
  const gate = rule.qualityGate;
  if (c.type === "state") {
    const states = c.terms.map((t) => {
      const s = latestSample(passGate(samplesOf(d, t.quantity, 0, at, gate), gate), at);
      return { t, value: s?.value, holds: s !== undefined && s.value === t.is };
    });
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
  const r = resolveFor(rule, d, subject, at);
  if (c.type === "rate_of_rise") {
    const samples = passGate(
      inInterval(samplesOf(d, c.quantity, c.window, at, gate), { from: at - c.window, to: at }),
      gate,
    ).filter((s) => typeof s.value === "number");
    const first = samples[0];
    const last = samples[samples.length - 1];
    const raise = numberOf(c.raise, r);
    const clear = numberOf(c.clear ?? c.raise, r);
    if (first === undefined || last === undefined || raise === undefined || clear === undefined) {
      return NOT_APPLICABLE(`${id}: no ${c.quantity} data or limit in the window`);
    }
    const rise = (last.value as number) - (first.value as number);
    const limit = previouslyActive ? clear : raise;
    return result(rule, {
      active: rise >= limit,
      value: rise,
      limit,
      levelIndex: levelFor(rule, rise, ">=", r),
      deviceId: id,
      detail: `${id}: ${c.quantity} rose ${rise} in ${c.window} ms (limit ${limit})`,
    });
  }
  if (c.type !== "threshold")
    return NOT_APPLICABLE(`${c.type} is not evaluated per device`, "other");
  const samples = passGate(samplesOf(d, c.quantity, conditionRetention(c), at, gate), gate);
  const tz = rule.schedule.timeZone;
  // A clock interval is judged by the limits of the period it lies in (the 21:00-22:00 hour
  // against the day limit even when it is evaluated at 22:00).
  const limitAt = (t: number) => {
    const rt = t === at ? r : resolveFor(rule, d, subject, t);
    const raise = numberOf(c.raise, rt);
    const clear = numberOf(c.clear ?? c.raise, rt);
    if (raise === undefined || clear === undefined) return undefined;
    return { limit: previouslyActive ? clear : raise, resolved: rt };
  };
  if (c.nOfM !== undefined || c.exceedances !== undefined) {
    const windowMs = c.window ?? 0;
    const midnight = localMidnight(at, tz);
    const count = c.nOfM?.m ?? Math.max(1, Math.ceil((at - midnight) / windowMs));
    const intervals = clockWindows(at, windowMs, tz, count).filter(
      (w) => c.nOfM !== undefined || w.from >= midnight,
    );
    const judged = intervals.map((w) => {
      const value = aggregate(inInterval(samples, w), c.aggregate);
      const l = limitAt(w.from);
      return {
        value,
        l,
        violates: value !== undefined && l !== undefined && compare(value, c.op, l.limit),
      };
    });
    const violating = judged.filter((j) => j.violates).length;
    const needed = c.nOfM?.n ?? (c.exceedances?.allowedPerDay ?? 0) + 1;
    const newest = judged[judged.length - 1];
    if (newest?.value === undefined || newest.l === undefined) {
      return NOT_APPLICABLE(`${id}: no ${c.quantity} data or limit for the newest interval`);
    }
    return result(rule, {
      active: violating >= needed,
      value: newest.value,
      limit: newest.l.limit,
      levelIndex: levelFor(rule, newest.value, c.op, newest.l.resolved),
      deviceId: id,
      detail: `${id}: ${violating} of ${judged.length} ${c.aggregate} intervals violate (need ${needed})`,
    });
  }
  const { value, interval } = windowValue(
    samples,
    c.aggregate,
    at,
    { windowMs: c.window, align: c.align },
    tz,
  );
  const l = limitAt(interval?.clock === true ? interval.from : at);
  if (l === undefined)
    return NOT_APPLICABLE(`${id}: no limit for this context and period`, "no_limit");
  if (value === undefined) return NOT_APPLICABLE(`${id}: no ${c.quantity} data in the window`);
  const active = compare(value, c.op, l.limit);
  return result(rule, {
    active,
    value,
    limit: l.limit,
    levelIndex: levelFor(rule, value, c.op, l.resolved),
    deviceId: id,
    detail: `${id}: ${c.quantity} ${c.aggregate} ${round(value)} ${c.op} ${l.limit}: ${active}`,
  });
}

function kOfN(
  rule: Rule,
  devices: readonly DeviceView[],
  subject: SubjectView,
  at: number,
  previouslyActive: boolean,
): Evaluation {
  const c = rule.condition;
  if (c.type !== "k_of_n") return NOT_APPLICABLE("not k_of_n", "other");
  const votes: Array<{
    id: string;
    value: number;
    violates: boolean;
    level: number;
    limit: number;
  }> = [];
  for (const d of devices) {
    const r = resolveFor(rule, d, subject, at);
    const raise = numberOf(c.raise, r);
    const clear = numberOf(c.clear ?? c.raise, r);
    if (raise === undefined || clear === undefined) continue;
    const samples = passGate(
      samplesOf(d, c.quantity, conditionRetention(c), at, rule.qualityGate),
      rule.qualityGate,
    );
    const { value } = windowValue(
      samples,
      c.aggregate,
      at,
      { windowMs: c.window, align: c.align },
      rule.schedule.timeZone,
    );
    if (value === undefined) continue;
    const limit = previouslyActive ? clear : raise;
    votes.push({
      id: d.device.id,
      value,
      limit,
      violates: compare(value, c.op, limit),
      level: levelFor(rule, value, c.op, r),
    });
  }
  const n = votes.length;
  if (n === 0) return NOT_APPLICABLE("no device votes");
  let k = c.k;
  if (n < k) {
    if (c.degraded === "keep_k") return NOT_APPLICABLE(`only ${n} of ${c.k} needed devices vote`);
    k = n;
  }
  const violating = votes.filter((v) => v.violates);
  const worst = [...votes].sort(
    (a, b) => b.level - a.level || (b.violates ? 1 : 0) - (a.violates ? 1 : 0),
  )[0];
  const active = violating.length >= k;
  const levels = violating.map((v) => v.level).sort((a, b) => b - a);
  return result(rule, {
    active,
    value: worst?.value,
    limit: worst?.limit,
    // The level reached by at least k devices.
    levelIndex: active ? (levels[k - 1] ?? 0) : 0,
    deviceId: worst?.id,
    detail: `${violating.length} of ${n} devices ${c.aggregate} ${c.quantity} ${c.op} limit (k = ${k})`,
  });
}

const round = (x: number): number => Math.round(x * 100) / 100;
