import type { QualityFlag } from "../../contracts/model/quality.js";
import type { Aggregate, Rule } from "../../contracts/model/rules.js";
import type { DeviceView } from "./conditions.js";
import { columnsOf, type SampleColumns } from "./series.js";
import type { Interval, Sample } from "./window.js";

/*
 * A window's readings reduced in place, over the columns (no object per reading): the aggregate,
 * the coverage of the window by the intervals the readings measured, the newest reading judged
 * alone; complete clock intervals reduced once.
 */

/** One window's readings reduced: the aggregate, the coverage and how many readings were used. */
export interface Judgement {
  readonly value: number | undefined;
  readonly coverage: number;
  readonly count: number;
  /** Quality flag of the newest reading used. */
  readonly newest: QualityFlag | undefined;
}

/**
 * Aggregate of the numeric readings in `(from, to]` that pass the gate and (`inPeriod`) belong
 * to the window's period, with their coverage of the window. Read in place: no sample objects.
 */
export function judge(
  cols: SampleColumns,
  how: Aggregate,
  interval: Interval,
  intervalMs: number,
  suppress: readonly QualityFlag[],
  inPeriod: ((at: number) => boolean) | undefined,
): Judgement {
  const hi = cols.firstAfter(interval.to);
  let count = 0;
  let sum = 0;
  let max = Number.NEGATIVE_INFINITY;
  let min = Number.POSITIVE_INFINITY;
  let last = Number.NaN;
  let covered = 0;
  let until = interval.from;
  let newest: QualityFlag | undefined;
  for (let i = cols.firstAfter(interval.from); i < hi; i++) {
    if (!cols.isNumber(i)) continue;
    if (suppress.length > 0 && suppress.includes(cols.qualityOf(i))) continue;
    const at = cols.atOf(i);
    if (inPeriod !== undefined && !inPeriod(at)) continue;
    const v = cols.numberOf(i);
    count++;
    last = v;
    newest = cols.qualityOf(i);
    if (how === "energy_mean") sum += 10 ** (v / 10);
    else sum += v;
    if (v > max) max = v;
    if (v < min) min = v;
    const start = Math.max(at - intervalMs, until);
    if (at > start) covered += at - start;
    until = Math.max(until, at);
  }
  const length = interval.to - interval.from;
  const cover = length > 0 ? covered / length : count > 0 ? 1 : 0;
  if (count === 0) return { value: undefined, coverage: 0, count, newest };
  const value =
    how === "latest"
      ? last
      : how === "max"
        ? max
        : how === "min"
          ? min
          : how === "energy_mean"
            ? 10 * Math.log10(sum / count)
            : sum / count;
  return { value, coverage: cover, count, newest };
}

/** Completed clock intervals judged once per (rule, series): their readings no longer change. */
type JudgedIntervals = Map<number, { epoch: number; from: number; j: Judgement }>;
const intervalCache = new WeakMap<Rule, WeakMap<SampleColumns, JudgedIntervals>>();

export function judgeCached(
  rule: Rule,
  cols: SampleColumns,
  how: Aggregate,
  interval: Interval,
  intervalMs: number,
  inPeriod: ((at: number) => boolean) | undefined,
): Judgement {
  const suppress = rule.qualityGate.suppressFlags;
  const complete = cols.length > 0 && cols.atOf(cols.length - 1) >= interval.to;
  if (!complete || interval.clock !== true) {
    return judge(cols, how, interval, intervalMs, suppress, inPeriod);
  }
  let bySeries = intervalCache.get(rule);
  if (bySeries === undefined) intervalCache.set(rule, (bySeries = new WeakMap()));
  let byEnd = bySeries.get(cols);
  if (byEnd === undefined) bySeries.set(cols, (byEnd = new Map() as JudgedIntervals));
  const hit = byEnd.get(interval.to);
  if (hit !== undefined && hit.epoch === cols.epoch && hit.from === interval.from) return hit.j;
  const j = judge(cols, how, interval, intervalMs, suppress, inPeriod);
  if (byEnd.size >= 2_048) byEnd.clear();
  byEnd.set(interval.to, { epoch: cols.epoch, from: interval.from, j });
  return j;
}

export const columns = (d: DeviceView, quantity: string): SampleColumns | undefined => {
  const source = d.series[quantity];
  if (source === undefined) return undefined;
  return Array.isArray(source) ? columnsOf(source as readonly Sample[]) : (source as SampleColumns);
};

/**
 * Index of the newest reading at or before `at`, if the gate lets it through (-1: none, or it is
 * suppressed). Never an older one: a value judged alone is the newest, or nothing (a gap), so the
 * verdict cannot depend on how many older readings happen to be held.
 */
export function newestUsable(
  cols: SampleColumns,
  at: number,
  suppress: readonly QualityFlag[],
  numeric: boolean,
): number {
  const i = cols.firstAfter(at) - 1;
  if (i < 0 || (numeric && !cols.isNumber(i))) return -1;
  return suppress.length > 0 && suppress.includes(cols.qualityOf(i)) ? -1 : i;
}
