import { activePeriods } from "./periods.js";
import { DAY_MS, minutesOfDay } from "../../contracts/model/rule-time.js";
import { localMidnight } from "./window.js";

const HOUR_MS = 3_600_000;
import type { Rule } from "../../contracts/model/rules.js";
import {
  type ResolutionContext,
  type ResolvedLimits,
  resolveLimits,
  resolvePeriods,
  type StationLevels,
} from "./resolve.js";
import type { DeviceView, SubjectView } from "./conditions.js";

/*
 * What a rule resolves to for one device of a subject, and where in time a reading lies: the
 * limits, station levels and periods in force (resolved once per rule, device and site), the
 * interval a reading measured and the instant that places it in a period (docs/rules.md, Time).
 */

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

/** The limits and the periods in force at one instant. */
export interface Resolved {
  readonly limits: ResolvedLimits;
  readonly periods: readonly string[];
  readonly station: StationLevels | undefined;
}

/** What a device's reading stamped `t` measured: `(t − readingMs, t]`, ms. */
export const readingMs = (d: DeviceView): number => d.device.expectedIntervalS * 1_000;

/** The instant whose periods a reading stamped `t` belongs to: the middle of what it measured. */
export const placeOf = (t: number, intervalMs: number): number => t - intervalMs / 2;

const periodicRules = new WeakMap<Rule, boolean>();

/** Whether a rule's verdict depends on the schedule's periods (limits by period, activeDuring). */
export function periodic(rule: Rule): boolean {
  let known = periodicRules.get(rule);
  if (known === undefined) {
    known =
      rule.schedule.activeDuring !== undefined ||
      JSON.stringify([rule.condition, rule.levels ?? null, rule.overrides ?? null]).includes(
        '"byPeriod"',
      );
    periodicRules.set(rule, known);
  }
  return known;
}

/** The periods in force for one (rule, device), by local minute (periods switch on whole minutes). */
export class PeriodClock {
  readonly #byMinute = new Map<number, string>();
  #lastMinute = Number.NaN;
  #lastKey = "";
  /** Local minutes of the day at which a period starts or ends: the only switches there are. */
  readonly #switches: readonly number[];
  /** The last answer of nextChange: the key holds from `from` until `to`. */
  #span: { from: number; to: number } | undefined;

  constructor(
    private readonly periods: ReturnType<typeof resolvePeriods>,
    private readonly schedule: Rule["schedule"],
  ) {
    const minutes = new Set<number>([0]);
    for (const p of Object.values(periods)) {
      minutes.add(minutesOfDay(p.from));
      minutes.add(minutesOfDay(p.to));
    }
    this.#switches = [...minutes].sort((a, b) => a - b);
  }

  /**
   * An instant after `at`, at or before the first at which the periods in force differ from
   * those at `at` (ticks need not judge a window again before it: rules/quiet.ts). Periods switch
   * at their own from and to (days and holidays at a period's start), so only those local
   * minutes are tried, each also an hour either side (a daylight-saving day), over the next two days;
   * past them, two days on.
   */
  nextChange(at: number): number {
    const span = this.#span;
    if (span !== undefined && at >= span.from && at < span.to) return span.to;
    const key = this.keyAt(at);
    const midnight = localMidnight(at, this.schedule.timeZone);
    let next = at + 2 * DAY_MS;
    for (let day = 0; day <= 2; day++) {
      for (const minute of this.#switches) {
        const exact = midnight + day * DAY_MS + minute * 60_000;
        for (const t of [exact - HOUR_MS, exact, exact + HOUR_MS]) {
          if (t > at && t < next && this.keyAt(t) !== key) next = t;
        }
      }
    }
    // The key holds from the start of at's minute (keys are by the minute).
    this.#span = { from: Math.floor(at / 60_000) * 60_000, to: next };
    return next;
  }

  /** The names of the periods in force at an instant, joined ("" when none). */
  keyAt(at: number): string {
    const minute = Math.floor(at / 60_000);
    if (minute === this.#lastMinute) return this.#lastKey;
    let key = this.#byMinute.get(minute);
    if (key === undefined) {
      key = activePeriods(this.periods, this.schedule, minute * 60_000).join(",");
      if (this.#byMinute.size >= 4_096) this.#byMinute.clear();
      this.#byMinute.set(minute, key);
    }
    this.#lastMinute = minute;
    this.#lastKey = key;
    return key;
  }
}

/**
 * Period clocks by what they are made of (the periods, the time zone, the holidays): the rules and
 * devices with the same periods (day and night, say) share one, and the periods of each minute
 * are worked out once for all of them. A clock's answers depend on nothing else.
 */
const clocks = new Map<string, PeriodClock>();

function periodClock(
  periods: ReturnType<typeof resolvePeriods>,
  schedule: Rule["schedule"],
): PeriodClock {
  const key = JSON.stringify([periods, schedule.timeZone, schedule.holidays]);
  let clock = clocks.get(key);
  if (clock === undefined) {
    if (clocks.size >= 1_024) clocks.clear();
    clock = new PeriodClock(periods, schedule);
    clocks.set(key, clock);
  }
  return clock;
}

/**
 * What a rule resolves to for one device of a subject, whatever the instant: its limits, its
 * station levels and (for a rule with periods) its period clock; then the periods at an instant
 * come from the clock, by the minute. Resolved once per (rule, device, site), not per judgement.
 */
export class Resolution {
  readonly clock: PeriodClock | undefined;
  readonly #byPeriods = new Map<string, Resolved>();
  readonly #timeless: Resolved;

  constructor(
    rule: Rule,
    d: DeviceView,
    subject: SubjectView,
    readonly site: object | undefined,
    readonly region: string | undefined,
  ) {
    const place = resolutionContext(d, subject);
    const station = subject.site?.type === "river_station" ? subject.site.levels : undefined;
    const limits = resolveLimits(rule, place);
    this.#timeless = { limits, periods: [], station };
    this.clock = periodic(rule)
      ? periodClock(resolvePeriods(rule, place), rule.schedule)
      : undefined;
  }

  /** The limits and the periods in force at an instant. */
  at(instant: number): Resolved {
    if (this.clock === undefined) return this.#timeless;
    const key = this.clock.keyAt(instant);
    let r = this.#byPeriods.get(key);
    if (r === undefined) {
      r = { ...this.#timeless, periods: key === "" ? [] : key.split(",") };
      this.#byPeriods.set(key, r);
    }
    return r;
  }
}

const resolutions = new WeakMap<Rule, WeakMap<object, Resolution>>();

export function resolutionOf(rule: Rule, d: DeviceView, subject: SubjectView): Resolution {
  let byDevice = resolutions.get(rule);
  if (byDevice === undefined) resolutions.set(rule, (byDevice = new WeakMap()));
  let res = byDevice.get(d.device);
  if (res === undefined || res.site !== subject.site || res.region !== subject.region) {
    res = new Resolution(rule, d, subject, subject.site, subject.region);
    byDevice.set(d.device, res);
  }
  return res;
}

/** The period clock of a (rule, device) on a subject; undefined for a rule without periods. */
export function periodClockOf(
  rule: Rule,
  d: DeviceView,
  subject: SubjectView,
): PeriodClock | undefined {
  return resolutionOf(rule, d, subject).clock;
}
