import {
  type AlarmState,
  calibrationExpired,
  clockWindowEnd,
  columns,
  compare,
  judgedInParts,
  judgeWindow,
  newestUsable,
  raiseLimit,
  resolutionOf,
  stateHolds,
  localMidnight,
  holdFor,
  periodClockOf,
  placeOf,
  qualityHolds,
  readingMs,
  SILENT_FACTOR,
  type SubjectView,
} from "./engine/index.js";
import type { Rule } from "../contracts/index.js";
import { DEFAULT_MIN_COVERAGE } from "../contracts/model/rule-conditions.js";
import { escalationAfter } from "../contracts/model/rule-severity.js";

/*
 * Quiet ticks. A clock tick judges every subject again so that time alone can move an alarm:
 * silence, a window sliding past its readings, a period switching, a timer running out. Between
 * those instants a tick judges the same data the same way. `quietUntil` says, after an
 * evaluation at `at`, an instant before which no tick can make a decision or change the alarm's
 * state, so the driver may skip the ticks until then (a backtest replays months of data time at
 * one tick every few seconds; most subjects are quiet most of the time). Conservative: an
 * instant too early only costs an evaluation; the differential tests compare a driver that skips
 * quiet ticks with the reference evaluator, which judges every subject at every tick.
 *
 * Where a subject's alarm is normal (or cleared), a tick decides something only if the
 * condition holds (it goes pending, or raises). An evaluation that does not
 * hold keeps not holding until one of these, whatever its condition:
 *  - a reading (the driver evaluates the subject then anyway);
 *  - a rolling window's oldest reading leaving it (its value and coverage change);
 *  - the instant that places a rolling window (the middle of the interval it ends on) crossing a
 *    period switch or a permit's start or end (limits, activeDuring, the readings of the period);
 *  - the next clock interval of a clock window, N-of-M or daily count (and local midnight);
 *  - a device's silence passing its deadman limit, or (k_of_n) the silence that stops its vote;
 *  - local midnight, where a calibration may expire.
 * Coverage falling as a window slides past the newest reading cannot make a condition hold: a
 * window judged without holding becomes at most a gap (no decision), and a gap stays one. The
 * exception is a windowed k_of_n that may lower its k (a device out of coverage no longer votes,
 * and fewer votes need fewer violations): it is judged at every tick.
 * Pending, active and recovering alarms have timers (`for`, minActive, clearHold, escalateAfter),
 * and their state moves at a tick when a timer runs out or when the evaluation changes (a
 * condition stops holding, a level rises, a gap). After an evaluation, whatever it said, a tick
 * before the earliest of these decides nothing and changes no state but the value recorded for
 * the record (lastValue, lastLimit: neither reported nor stored): stepAlarm, given the same
 * evaluation again, moves only on the clock. The evaluation stays the same until the instants
 * listed above, as long as no coverage falls: a condition on the newest reading alone (latest,
 * state, quality), a clock-aligned window, N-of-M or daily count (their intervals are fixed until
 * the next one completes), and the deadman (a silence past its limit stays past it; only the
 * limits still ahead count). A rolling window's coverage falls continuously as it slides past
 * its newest reading, and an open alarm's evaluation may turn from holding to a gap, or (on a
 * site of several devices, or a k_of_n) to not holding, where a device's coverage falls below
 * its minimum: such an alarm also wakes where each device's coverage may first fall below it
 * (coverageHeld: no sooner than the coverage it had allows, as a window loses coverage no faster
 * than it slides). Before that its value, its gaps and its parts are those of `at`. Measured over
 * the backtest bench's city, with the skipped readings below: the 5-s tick's evaluations from
 * 85,226 to 52,184. A rate of rise has no coverage: its rise (the newest less the oldest reading
 * of its window) moves only when its oldest reading leaves the window, and its open alarms wake
 * there (and at the other instants above) too.
 * Measured over the backtest bench's city (117,988 readings, the default pack): waking open
 * alarms at their timers took the replay's evaluations from 464,919 to 376,521 on the 5-s tick
 * (335,730 to 328,468 on the 1-m tick), the report the same.
 */

/** Judge at the next tick. */
const NOW = Number.NEGATIVE_INFINITY;

/**
 * An instant before which ticks need not judge the subject again, after an evaluation at `at`
 * left its alarm in `state` (see above). `permitEdge(after)`: the next instant after `after` at
 * which a permit of the subject's site starts or ends (+Infinity: none).
 */
export function quietUntil(
  rule: Rule,
  view: SubjectView,
  at: number,
  state: AlarmState,
  permitEdge: (after: number) => number,
): number {
  if (state.phase === "normal" || state.phase === "cleared") {
    return changesAfter(rule, view, at, permitEdge, false);
  }
  return Math.min(timerOf(rule, state), changesAfter(rule, view, at, permitEdge, true));
}

/**
 * The first instant at which a timer of a pending, active or recovering alarm can move it, the
 * evaluation unchanged (stepAlarm): `for` held (raise), the clear (minActive and clearHold both
 * run out), the next escalation for want of acknowledgement.
 */
function timerOf(rule: Rule, state: AlarmState): number {
  if (state.phase === "pending") return (state.startedAt ?? state.since) + holdFor(rule);
  let wake = Number.POSITIVE_INFINITY;
  const after = escalationAfter(rule);
  if (after !== undefined && !state.acknowledged && state.raisedAt !== undefined) {
    wake = state.raisedAt + after * (state.unacknowledgedEscalations + 1);
  }
  if (state.phase === "recovering") {
    const minActive = rule.timing.minActive ?? 0;
    const held = state.since + (rule.timing.clearHold ?? 0);
    const clear = state.raisedAt === undefined ? held : Math.max(state.raisedAt + minActive, held);
    if (clear < wake) wake = clear;
  }
  return wake;
}

/**
 * The first instant after `at` at which the subject's evaluation may differ from the one at `at`,
 * no reading coming (see above; for a rolling window, only where coverage falling decides
 * nothing: a subject whose alarm is normal or cleared).
 */
function changesAfter(
  rule: Rule,
  view: SubjectView,
  at: number,
  permitEdge: (after: number) => number,
  /** The alarm is pending, active or recovering. */
  open: boolean,
): number {
  const c = rule.condition;
  // The earliest of the instants found (no closure: this runs at every wake of every subject).
  let wake = Number.POSITIVE_INFINITY;
  const tz = rule.schedule.timeZone;
  const calibrates =
    rule.qualityGate.suppressOnExpiredCalibration || (c.type === "quality" && c.calibrationExpired);
  if (calibrates && view.devices.some((d) => d.device.calibrationDueOn !== undefined)) {
    // Not yet expired at `at`: the next local midnight may be the day after it is due.
    if (view.devices.some((d) => !calibrationExpired(d, at, tz))) {
      wake = Math.min(wake, localMidnight(localMidnight(at, tz) + 36 * 3_600_000, tz));
    }
  }
  switch (c.type) {
    case "deadman":
      for (const d of view.devices) {
        if (d.device.enabled === false) continue;
        const since = d.lastSeenAt ?? d.watchedSince;
        if (since === undefined) continue; // never heard and not watched: never judged
        // Open: silent past its limit already, it stays so until a reading.
        const limit = since + c.factor * d.device.expectedIntervalS * 1000;
        if (!open || limit >= at) wake = Math.min(wake, limit);
      }
      return wake;
    case "quality":
    case "state":
      // The newest reading decides: only a reading moves it (and midnight, above).
      return wake;
    case "threshold":
    case "k_of_n":
    case "rate_of_rise":
      break;
  }
  const windowMs = c.window;
  // A k_of_n that may lower its k: a device whose window falls below coverage stops voting, and
  // fewer votes may need fewer violations. Coverage falls continuously: judge at every tick.
  if (c.type === "k_of_n" && c.degraded === "lower_k" && windowMs !== undefined) return NOW;
  const counted = c.type === "threshold" && (c.nOfM !== undefined || c.exceedances !== undefined);
  const clock = counted || (c.type !== "rate_of_rise" && c.align === "clock");
  for (const d of view.devices) {
    if (c.type === "k_of_n" && d.lastSeenAt !== undefined) {
      // A device falls silent (and stops voting) after this; it votes again only on a reading.
      const silent = d.lastSeenAt + SILENT_FACTOR * d.device.expectedIntervalS * 1000;
      if (silent >= at) wake = Math.min(wake, silent);
    }
    if (windowMs === undefined) continue; // the newest reading alone, placed where it lies
    if (clock) continue; // below, once for the subject
    // A rolling window (at − window, at]: its oldest reading leaves it at t + window.
    const cols = columns(d, c.quantity);
    if (cols !== undefined) {
      const oldest = cols.firstAfter(at - windowMs);
      if (oldest < cols.length) wake = Math.min(wake, cols.atOf(oldest) + windowMs);
    }
    // An open alarm's window may become a gap as it slides past its newest reading (and on a
    // site of several devices, or a k_of_n, the device's part no longer counts): no earlier
    // than its coverage allows.
    if (open && c.type !== "rate_of_rise") {
      const w = judgeWindow(rule, c, d, view, at);
      if (w.ok && w.coverage !== undefined) {
        const min = c.minCoverage ?? DEFAULT_MIN_COVERAGE;
        wake = Math.min(wake, coverageHeld(at, w.coverage, min, windowMs));
      }
    }
    // It is placed at the middle of the interval it ends on, which crosses period switches
    // and permits' edges as time goes on.
    const half = readingMs(d) / 2;
    const place = placeOf(at, readingMs(d));
    const periods = periodClockOf(rule, d, view);
    if (periods !== undefined) wake = Math.min(wake, periods.nextChange(place) + half);
    if (rule.permitExemption !== undefined) wake = Math.min(wake, permitEdge(place) + half);
  }
  if (clock && windowMs !== undefined) {
    // The next clock interval completes (intervals are counted from local midnight, the last
    // one of a day cut there).
    const midnight = localMidnight(at, tz);
    const next = midnight + (Math.floor((at - midnight) / windowMs) + 1) * windowMs;
    wake = Math.min(wake, next, localMidnight(midnight + 36 * 3_600_000, tz));
  }
  return wake;
}

/**
 * The last instant at which a rolling window of `windowMs` covered `coverage` at `at` still
 * covers at least `min`, no reading coming (minus a millisecond against rounding): as it slides,
 * its start uncovers at most as much as it moves, until its oldest reading leaves it (a wake of
 * its own), and its length stays the same, so its coverage falls by at most the time slid over
 * `windowMs`. A window already below `min` stays below it until a reading comes.
 */
export function coverageHeld(at: number, coverage: number, min: number, windowMs: number): number {
  const slack = Math.floor((coverage - min) * windowMs) - 1;
  return slack < 0 ? at : at + slack;
}

/**
 * Whether {@link mayHold} can tell of the rule's condition: a state; a threshold or k_of_n on the
 * newest reading alone (judgedInParts) or over a rolling window; a rate of rise.
 */
export function holdCheck(rule: Rule): boolean {
  const c = rule.condition;
  switch (c.type) {
    case "state":
    case "rate_of_rise":
      return true;
    case "threshold":
      return (
        c.nOfM === undefined &&
        c.exceedances === undefined &&
        (c.window === undefined || c.align === "rolling")
      );
    case "k_of_n":
      return c.window === undefined || c.align === "rolling";
    default:
      return false;
  }
}

/**
 * Whether the rule's condition may hold for the subject at `at`, on its raise side (the alarm is
 * not open): false only where it surely does not (newestMayHold, windowMayHold; a state condition
 * holds on no device, usable or not). True for a condition {@link holdCheck} cannot tell of.
 * Only the devices' series and registry entries, and the subject's site and region, are read:
 * a view of any instant at or after `at` serves.
 */
export function mayHold(rule: Rule, view: SubjectView, at: number): boolean {
  const c = rule.condition;
  if (c.type === "state") {
    for (const d of view.devices) if (stateHolds(rule, d, at)) return true;
    return false;
  }
  if (!holdCheck(rule)) return true;
  if (judgedInParts(rule)) return newestMayHold(rule, view, at);
  return windowMayHold(rule, view, at);
}

/**
 * After `at`, where the rule's condition cannot hold (mayHold false), the first instant at which
 * it may, no reading coming. On the newest readings alone (and a state), never: they stay the
 * newest, placed where they lie, and a device falling silent or out of use only takes a vote or
 * a part away. A rolling window or a rate of rise only loses readings as it slides, which lowers
 * the greatest and raises the least; its limit may change where the instant that places it
 * crosses a period switch or a permit's start or end. Instants as in changesAfter.
 */
export function nextMayHold(
  rule: Rule,
  view: SubjectView,
  at: number,
  permitEdge: (after: number) => number,
): number {
  const c = rule.condition;
  if (c.type === "state" || judgedInParts(rule)) return Number.POSITIVE_INFINITY;
  if (!holdCheck(rule)) return NOW;
  let wake = Number.POSITIVE_INFINITY;
  for (const d of view.devices) {
    const half = readingMs(d) / 2;
    const place = placeOf(at, readingMs(d));
    const periods = periodClockOf(rule, d, view);
    if (periods !== undefined) wake = Math.min(wake, periods.nextChange(place) + half);
    if (rule.permitExemption !== undefined) wake = Math.min(wake, permitEdge(place) + half);
  }
  return wake;
}

/**
 * Whether a rolling window's aggregate, or a rate of rise, may pass its raise limit at `at` on
 * some device of the subject. Every aggregate (latest, mean, energy mean, min, max) of the
 * readings a window uses lies between the least and the greatest of them, and a rise (last −
 * first) is at most the greatest less the least; taken over every numeric reading of the window
 * `(at − window, at]`, whatever the quality gate and the periods let through, these bound what
 * the evaluation computes. The limit is the one in force where the window is placed (the middle
 * of the interval it ends on). A bound within a billionth of the limit counts as passing it
 * (rounding in the aggregate). When no device's bound passes, no part is active (a threshold),
 * no vote violates (a k_of_n, k >= 1), no rise reaches its limit: the evaluation does not hold.
 */
function windowMayHold(rule: Rule, view: SubjectView, at: number): boolean {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return true;
  const windowMs = c.window;
  if (windowMs === undefined) return true;
  for (const d of view.devices) {
    const cols = columns(d, c.quantity);
    if (cols === undefined) continue;
    const hi = cols.firstAfter(at);
    let max = Number.NEGATIVE_INFINITY;
    let min = Number.POSITIVE_INFINITY;
    for (let i = cols.firstAfter(at - windowMs); i < hi; i++) {
      if (!cols.isNumber(i)) continue;
      const v = cols.numberOf(i);
      if (v > max) max = v;
      if (v < min) min = v;
    }
    if (max < min) continue; // no number in the window
    const limit = raiseLimit(rule, resolutionOf(rule, d, view).at(placeOf(at, readingMs(d))));
    if (limit === undefined) continue;
    const margin = 1e-9 * Math.max(1, Math.abs(limit));
    if (c.type === "rate_of_rise") {
      if (max - min >= limit - margin) return true;
    } else if (c.op === ">" || c.op === ">=" ? max >= limit - margin : min <= limit + margin) {
      return true;
    }
  }
  return false;
}

/**
 * Whether a condition judged on each device's newest reading alone (judgedInParts) may hold at
 * `at` on its raise side: some device of the subject has a newest reading at or before `at` that
 * the quality gate lets through, a number, and past the raise limit in force where that reading
 * lies. When none has, no part violates: a threshold's parts are all inactive or not applicable,
 * and a k_of_n counts no violating vote (k >= 1), so the evaluation does not hold, whatever the
 * devices' usability, schedule, permits, flags, silence or k. Conservative: every device of the
 * subject is looked at, usable or not.
 */
export function newestMayHold(rule: Rule, view: SubjectView, at: number): boolean {
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n") return true;
  const suppress = rule.qualityGate.suppressFlags;
  for (const d of view.devices) {
    const cols = columns(d, c.quantity);
    if (cols === undefined) continue;
    const i = newestUsable(cols, at, suppress, true);
    if (i < 0) continue;
    const r = resolutionOf(rule, d, view).at(placeOf(cols.atOf(i), readingMs(d)));
    const limit = raiseLimit(rule, r);
    if (limit !== undefined && compare(cols.numberOf(i), c.op, limit)) return true;
  }
  return false;
}

/**
 * Whether the evaluation at a reading's instant `at` may be skipped, the subject's wake kept
 * (`devices`: the subject's devices as of `at`). Only where the evaluation would decide nothing
 * and leave the alarm's state as it is, and where the reading can only move the subject's wake
 * later (an earlier wake only costs a tick's evaluation):
 *  - deadman: a reading is never judged (silence is judged on the clock); while the alarm is
 *    normal or cleared it only ends a silence, so its deadline moves later;
 *  - quality: while the alarm is normal or cleared and the last evaluation recorded `false`, a
 *    reading neither flagged nor from a device past its calibration leaves it so; its wake (the
 *    next local midnight, for calibration) does not depend on readings;
 *  - a state condition, a threshold or k_of_n on the newest reading alone (judgedInParts) or
 *    over a rolling window, a rate of rise: while the alarm is normal or cleared and the
 *    condition cannot hold (mayHold: no device's newest usable readings make it hold or pass the
 *    raise limit in force where they lie; no window's readings reach it), the evaluation decides
 *    nothing (stepAlarm only records the value, which nothing reads). Its wake (a k_of_n device
 *    falling silent, local midnight for calibration, a window's oldest reading leaving it, its
 *    place crossing a period switch or a permit's edge) only moves later with a reading.
 * Every other condition is evaluated at every reading.
 */
export function quietReading(
  rule: Rule,
  state: AlarmState,
  /**
   * The subject's view at an instant (called with `at`), or with everything held (no instant:
   * mayHold reads only the devices' series and registry entries, which serve any instant).
   */
  view: (at?: number) => SubjectView,
  at: number,
  /** The instant of the reading, and of the subject's last evaluation (undefined: none). */
  reading: number,
  judgedAt: number | undefined,
): boolean {
  if (state.phase !== "normal" && state.phase !== "cleared") return false;
  const c = rule.condition;
  switch (c.type) {
    case "deadman":
      return true;
    case "quality":
      // What stepAlarm leaves alone: nothing holds, and the same value and limit as recorded.
      if (state.lastValue !== false || state.lastLimit !== undefined) return false;
      for (const d of view(at).devices) if (qualityHolds(rule, d, at)) return false;
      return true;
    case "state":
    case "k_of_n":
    case "rate_of_rise":
      return holdCheck(rule) && !mayHold(rule, view(), at);
    case "threshold": {
      if (holdCheck(rule)) return !mayHold(rule, view(), at);
      // A clock window judges the newest complete interval: a reading after it, while it is
      // still the newest, leaves the evaluation as it was (the same readings, the same place
      // and local date), so it decides nothing. Measured over the backtest bench's city: the
      // 5-s tick's evaluations from 376,521 to 354,143 (1-m tick: 328,468 to 306,090).
      // N-of-M too: its m intervals are the newest complete ones, fixed by the newest.
      if (c.align !== "clock" || c.window === undefined || judgedAt === undefined) return false;
      if (c.exceedances !== undefined) return false;
      const judged = clockWindowEnd(judgedAt, c.window, rule.schedule.timeZone);
      return reading > judged && clockWindowEnd(at, c.window, rule.schedule.timeZone) === judged;
    }
    default:
      return false;
  }
}
