import type { QualityFlag } from "../../contracts/model/quality.js";
import { DEFAULT_MIN_COVERAGE } from "../../contracts/model/rule-conditions.js";
import type { Aggregate, Rule } from "../../contracts/model/rules.js";
import type {
  DeviceView,
  Evaluation,
  NotApplicableReason,
  SubjectView,
  UsedWindow,
} from "./conditions.js";
import { type PeriodClock, placeOf, readingMs, type Resolved, resolutionOf } from "./in-force.js";
import { columns, judgeCached, newestUsable } from "./reduce.js";
import type { SampleColumns } from "./series.js";
import { clockWindow, type Interval } from "./window.js";

/*
 * A device's window judged in place (docs/rules.md, Time): placed by the interval it ends on,
 * off where the schedule or a permit says so, reduced over its period's readings, covered enough
 * or a gap, and flagged when its newest reading cannot decide an emergency alone. A verdict on
 * one reading is kept until another reading is the newest.
 */

/**
 * An evaluation that is not applicable; its account is written when first read (given as a
 * function): a cooking-fume rule is off all night, and a date formatted at every evaluation of it
 * costs more than the evaluation.
 */
class NotApplicable implements Evaluation {
  readonly active = false;
  readonly applicable = false;
  readonly limit = undefined;
  readonly levelIndex = 0;
  readonly level = undefined;
  readonly deviceId = undefined;
  readonly value: number | undefined;
  readonly coverage: number | undefined;
  readonly window: UsedWindow | undefined;
  #detail: string | (() => string);

  constructor(
    detail: string | (() => string),
    readonly reason: NotApplicableReason,
    extra: { value?: number; coverage?: number; window?: UsedWindow },
  ) {
    this.#detail = detail;
    this.value = extra.value;
    this.coverage = extra.coverage;
    this.window = extra.window;
  }

  get detail(): string {
    if (typeof this.#detail !== "string") this.#detail = this.#detail();
    return this.#detail;
  }
}

const NO_EXTRA = {};

export const NOT_APPLICABLE = (
  detail: string | (() => string),
  reason: NotApplicableReason = "no_data",
  extra: { value?: number; coverage?: number; window?: UsedWindow } = NO_EXTRA,
): Evaluation => new NotApplicable(detail, reason, extra);

/**
 * Flags that make a reading unable to raise or escalate an emergency by itself: a faulty, a
 * maintained or a calibrating detector (test gas) must not cut a city's gas supply alone.
 */
export const UNCORROBORATED_FLAGS: readonly QualityFlag[] = ["fault", "maintenance", "calibration"];

/** The window a windowed condition judges at `at`, and the instant that places it in time. */
interface Placed {
  readonly interval: Interval;
  readonly place: number;
  /** `latest` without a window: the one reading judged. */
  readonly reading?: number | undefined;
}

function placeWindow(
  c: { aggregate: Aggregate; window?: number | undefined; align: "rolling" | "clock" },
  cols: SampleColumns,
  d: DeviceView,
  at: number,
  rule: Rule,
): Placed | undefined {
  const d_ = readingMs(d);
  if (c.window === undefined) {
    const i = newestUsable(cols, at, rule.qualityGate.suppressFlags, true);
    if (i < 0) return undefined;
    const t = cols.atOf(i);
    return { interval: { from: t - d_, to: t }, place: placeOf(t, d_), reading: i };
  }
  if (c.align === "clock") {
    const interval = clockWindow(at, c.window, rule.schedule.timeZone);
    return { interval, place: (interval.from + interval.to) / 2 };
  }
  return { interval: { from: at - c.window, to: at }, place: placeOf(at, d_) };
}

/** Whether the site holds, at `place`, a permit that exempts it from the rule. */
function exemptAt(rule: Rule, subject: SubjectView, place: number): boolean {
  const types = rule.permitExemption?.types;
  if (types === undefined) return false;
  const held = subject.permitsAt?.(place) ?? subject.permits ?? [];
  return types.some((t) => held.includes(t));
}

/**
 * The place of a window in time: the periods in force there, the limits they select, and
 * whether the rule is off there (outside activeDuring, exempt by a permit). Undefined: it judges.
 */
export function situate(
  rule: Rule,
  d: DeviceView,
  subject: SubjectView,
  place: number,
): { r: Resolved; off: Evaluation | undefined } {
  const r = resolutionOf(rule, d, subject).at(place);
  const during = rule.schedule.activeDuring;
  if (during !== undefined && !during.some((p) => r.periods.includes(p))) {
    return {
      r,
      off: NOT_APPLICABLE(
        () => `${d.device.id}: outside ${during.join(", ")} (${iso(place)})`,
        "schedule",
      ),
    };
  }
  if (exemptAt(rule, subject, place)) {
    return { r, off: NOT_APPLICABLE("exempt: the site holds a valid permit", "exempt") };
  }
  return { r, off: undefined };
}

const iso = (t: number): string => new Date(t).toISOString();
const ANY_PERIOD = (): boolean => true;

interface VerdictMemo {
  raiseSide?: Evaluation;
  clearSide?: Evaluation;
  vote?: { raise: number | undefined; clear: number | undefined; level: number };
}

/** What a threshold or k_of_n condition says of its window. */
export type WindowedCondition = Pick<
  Extract<Rule["condition"], { type: "threshold" | "k_of_n" }>,
  "quantity" | "aggregate" | "window" | "align" | "minCoverage"
>;

/** A window's value judged in place, or why it is not judged. */
export type WindowVerdict =
  | {
      readonly ok: true;
      readonly value: number;
      readonly r: Resolved;
      readonly coverage: number | undefined;
      readonly used: UsedWindow;
      /** The newest reading used carries a flag that cannot decide an emergency alone. */
      readonly flagged: QualityFlag | undefined;
      /** What was computed from the verdict (a kept verdict is evaluated once). */
      memo?: VerdictMemo;
    }
  | { readonly ok: false; readonly evaluation: Evaluation };

/** Judge a device's window for a threshold or k_of_n condition at `at`. */
export function judgeWindow(
  rule: Rule,
  c: WindowedCondition,
  d: DeviceView,
  subject: SubjectView,
  at: number,
): WindowVerdict {
  const id = d.device.id;
  const cols = columns(d, c.quantity);
  const placed = cols === undefined ? undefined : placeWindow(c, cols, d, at, rule);
  if (cols === undefined || placed === undefined) {
    return { ok: false, evaluation: NOT_APPLICABLE(() => `${id}: no ${c.quantity} data`) };
  }
  if (placed.reading === undefined) return judgePlaced(rule, c, d, subject, cols, placed);
  // One reading judged (`latest`): the verdict depends on that reading alone, so it is kept
  // until another reading is the newest (a site of fifty detectors is judged at every instant
  // of every batch, and all but one of them have not moved).
  let byColumns = readingVerdicts.get(rule);
  if (byColumns === undefined) readingVerdicts.set(rule, (byColumns = new WeakMap()));
  const t = cols.atOf(placed.reading);
  const kept = byColumns.get(cols);
  if (
    kept !== undefined &&
    kept.t === t &&
    kept.epoch === cols.epoch &&
    kept.device === d.device &&
    kept.site === subject.site &&
    kept.permitsAt === subject.permitsAt
  ) {
    return kept.verdict;
  }
  const verdict = judgePlaced(rule, c, d, subject, cols, placed);
  byColumns.set(cols, {
    t,
    epoch: cols.epoch,
    device: d.device,
    site: subject.site,
    permitsAt: subject.permitsAt,
    verdict,
  });
  return verdict;
}

/** Verdicts on one reading, by rule and series: valid while the same reading is the newest. */
const readingVerdicts = new WeakMap<
  Rule,
  WeakMap<
    SampleColumns,
    {
      t: number;
      epoch: number;
      device: object;
      site: object | undefined;
      permitsAt: unknown;
      verdict: WindowVerdict;
    }
  >
>();

function judgePlaced(
  rule: Rule,
  c: WindowedCondition,
  d: DeviceView,
  subject: SubjectView,
  cols: SampleColumns,
  placed: Placed,
): WindowVerdict {
  const id = d.device.id;
  const { r, off } = situate(rule, d, subject, placed.place);
  if (off !== undefined) return { ok: false, evaluation: off };
  const clock = resolutionOf(rule, d, subject).clock;
  const period = clock === undefined ? "" : r.periods.join(",");
  const intervalMs = readingMs(d);
  const inPeriod =
    clock === undefined ? undefined : (t: number) => clock.keyAt(placeOf(t, intervalMs)) === period;
  const used: UsedWindow = {
    from: placed.interval.from,
    to: placed.interval.to,
    deviceId: id,
    quantity: c.quantity,
    period,
    inPeriod: inPeriod ?? ANY_PERIOD,
  };
  if (placed.reading !== undefined) {
    return {
      ok: true,
      value: cols.numberOf(placed.reading),
      r,
      coverage: undefined,
      used,
      flagged: flaggedFor(rule, cols.qualityOf(placed.reading)),
    };
  }
  // A window that no period switch crosses holds only its period's readings: none to sort out.
  const sort = clock !== undefined && !withinPeriod(clock, period, placed.interval, intervalMs);
  const j = judgeCached(
    rule,
    cols,
    c.aggregate,
    placed.interval,
    intervalMs,
    sort ? inPeriod : undefined,
  );
  if (j.value === undefined) {
    return {
      ok: false,
      evaluation: NOT_APPLICABLE(() => `${id}: no ${c.quantity} data in the window`),
    };
  }
  const min = c.minCoverage ?? DEFAULT_MIN_COVERAGE;
  if (j.coverage < min) {
    return {
      ok: false,
      evaluation: NOT_APPLICABLE(
        () =>
          `${id}: ${c.quantity} window ${iso(placed.interval.from)}–${iso(placed.interval.to)} covered ${pct(j.coverage)} (${j.count} readings${period === "" ? "" : `, ${period}`}), below the ${pct(min)} needed`,
        "coverage",
        { coverage: j.coverage, window: used },
      ),
    };
  }
  return {
    ok: true,
    value: j.value,
    r,
    coverage: j.coverage,
    used,
    flagged: flaggedFor(rule, j.newest),
  };
}

/**
 * Whether every reading a window `(from, to]` can hold lies in the period `key`: their places
 * (the middles of their intervals) are in `(place(from), place(to)]`, and no switch is among them.
 */
function withinPeriod(clock: PeriodClock, key: string, window: Interval, intervalMs: number) {
  const first = placeOf(window.from, intervalMs);
  return clock.keyAt(first) === key && clock.nextChange(first) > placeOf(window.to, intervalMs);
}

const flaggedFor = (rule: Rule, quality: QualityFlag | undefined): QualityFlag | undefined =>
  quality !== undefined && rule.taskKind === "emergency" && UNCORROBORATED_FLAGS.includes(quality)
    ? quality
    : undefined;

export const pct = (x: number): string => `${Math.round(x * 1000) / 10} %`;
