import type { QualityFlag } from "../../contracts/model/quality.js";
import type { Aggregate, Condition, Rule } from "../../contracts/model/rules.js";

/*
 * Windowed aggregates over one device's recent readings of one quantity. Pure: the caller keeps
 * the samples (a plain array, oldest first) and passes the instant; nothing here reads a clock.
 */

/** One reading of one quantity. Switch quantities carry booleans. */
export interface Sample {
  /** Measurement instant, epoch milliseconds. */
  readonly at: number;
  readonly value: number | boolean;
  readonly quality: QualityFlag;
  /** Historical data sent late (store-and-forward replay). */
  readonly replayed?: boolean;
}

/**
 * An interval of instants, epoch milliseconds, `(from, to]`: readings are stamped at the end of
 * what they measured, so a reading stamped 22:00:00 closes the 21:00-22:00 hour (docs/rules.md,
 * Time). Rolling windows and clock intervals alike.
 */
export interface Interval {
  readonly from: number;
  readonly to: number;
  readonly clock?: boolean;
}

/** Insert a sample in time order (a duplicate instant replaces the earlier sample). */
export function insertSample(samples: readonly Sample[], sample: Sample): Sample[] {
  const out = [...samples];
  let i = out.length;
  while (i > 0 && (out[i - 1]?.at ?? 0) > sample.at) i -= 1;
  if (i > 0 && out[i - 1]?.at === sample.at) out[i - 1] = sample;
  else out.splice(i, 0, sample);
  return out;
}

/**
 * Bounded memory: drop samples older than `keepMs` before `now` (or before the newest sample,
 * when that is later), always keeping the newest sample (`latest`, state and quality need it).
 */
export function pruneSamples(samples: readonly Sample[], keepMs: number, now: number): Sample[] {
  const newest = samples[samples.length - 1];
  if (newest === undefined) return [];
  const horizon = Math.max(now, newest.at) - keepMs;
  const kept = samples.filter((s) => s.at > horizon);
  return kept.length === 0 ? [newest] : kept;
}

/** Add a sample and prune in one step. */
export function addSample(
  samples: readonly Sample[],
  sample: Sample,
  keepMs: number,
  now: number,
): Sample[] {
  return pruneSamples(insertSample(samples, sample), keepMs, now);
}

/** Samples the rule's quality gate lets through. */
export function passGate(
  samples: readonly Sample[],
  gate: { readonly suppressFlags: readonly QualityFlag[] },
): Sample[] {
  return samples.filter((s) => !gate.suppressFlags.includes(s.quality));
}

/** How far back a condition looks, in milliseconds (0: the newest reading only). */
export function conditionRetention(condition: Condition): number {
  switch (condition.type) {
    case "threshold":
      if (condition.exceedances !== undefined) return 86_400_000 + (condition.window ?? 0);
      return (condition.window ?? 0) * (condition.nOfM?.m ?? 1) + (condition.window ?? 0);
    case "k_of_n":
      return (condition.window ?? 0) * 2;
    case "rate_of_rise":
      return condition.window;
    case "state":
    case "quality":
    case "deadman":
      return 0;
  }
}

/**
 * Retention per quantity for the rules in force: the longest window any of them needs (a clock
 * window may need the previous complete interval too, hence the extra window in
 * {@link conditionRetention}). Quantities no rule reads are absent: keep only their newest sample.
 */
export function retentionByQuantity(rules: readonly Rule[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const rule of rules) {
    const c = rule.condition;
    const quantities =
      c.type === "state" ? c.terms.map((t) => t.quantity) : "quantity" in c ? [c.quantity] : [];
    for (const q of quantities) out.set(q, Math.max(out.get(q) ?? 0, conditionRetention(c)));
  }
  return out;
}

/** The rolling window `(at − window, at]`. */
export function rollingWindow(at: number, windowMs: number): Interval {
  return { from: at - windowMs, to: at };
}

const offsetFormatters = new Map<string, Intl.DateTimeFormat>();

/** Offsets by time zone and minute since the epoch: formatting is slow, evaluations many. */
const offsets = new Map<string, Map<number, number>>();

/*
 * The last two minutes asked for, and their time zone: calls in a row ask for the same minute or
 * go back and forth between two (minutes since the epoch and offsets are small integers).
 */
let lastZone = "";
let lastMinute = Number.NaN;
let lastOffset = 0;
let otherMinute = Number.NaN;
let otherOffset = 0;

/** Offset of local time from UTC at an instant in a time zone, in milliseconds (+8 h for Shanghai). */
export function zoneOffsetMs(atMs: number, timeZone: string): number {
  // Every time zone in use is offset by whole minutes and changes offset on a whole minute.
  const minute = Math.floor(atMs / 60_000);
  if (timeZone === lastZone) {
    if (minute === lastMinute) return lastOffset;
    if (minute === otherMinute) return otherOffset;
  } else {
    lastZone = timeZone;
    lastMinute = otherMinute = Number.NaN;
  }
  let minutes = offsets.get(timeZone);
  if (minutes === undefined) offsets.set(timeZone, (minutes = new Map<number, number>()));
  let offset = minutes.get(minute);
  if (offset === undefined) {
    offset = formatOffset(atMs, timeZone);
    if (minutes.size >= 10_000) minutes.clear();
    minutes.set(minute, offset);
  }
  otherMinute = lastMinute;
  otherOffset = lastOffset;
  lastMinute = minute;
  lastOffset = offset;
  return offset;
}

function formatOffset(atMs: number, timeZone: string): number {
  let f = offsetFormatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    offsetFormatters.set(timeZone, f);
  }
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(atMs)) p[part.type] = Number(part.value);
  const wall = Date.UTC(
    p.year ?? 1970,
    (p.month ?? 1) - 1,
    p.day ?? 1,
    p.hour ?? 0,
    p.minute ?? 0,
    p.second ?? 0,
  );
  return wall - (atMs - (((atMs % 1000) + 1000) % 1000));
}

/** Start of the local day containing `atMs` (epoch ms). */
export function localMidnight(atMs: number, timeZone: string): number {
  const offset = zoneOffsetMs(atMs, timeZone);
  const local = atMs + offset;
  return local - (((local % 86_400_000) + 86_400_000) % 86_400_000) - offset;
}

/**
 * The newest complete clock-aligned interval ending at or before `at`: intervals of `windowMs`
 * counted from local midnight in `timeZone` (10-min means at :00, :10, …). The last interval of
 * a day is cut at midnight when the window does not divide the day.
 */
export function clockWindow(at: number, windowMs: number, timeZone: string): Interval {
  const midnight = localMidnight(at, timeZone);
  const index = Math.floor((at - midnight) / windowMs);
  const end = midnight + index * windowMs;
  if (index === 0) {
    const prevMidnight = localMidnight(midnight - 1, timeZone);
    const n = Math.floor((midnight - prevMidnight - 1) / windowMs);
    return { from: prevMidnight + n * windowMs, to: midnight, clock: true };
  }
  return { from: end - windowMs, to: end, clock: true };
}

/** `clockWindow(at, windowMs, timeZone).to`, with no object made. */
export function clockWindowEnd(at: number, windowMs: number, timeZone: string): number {
  const midnight = localMidnight(at, timeZone);
  return midnight + Math.floor((at - midnight) / windowMs) * windowMs;
}

/** The `count` newest complete clock intervals ending at or before `at`, oldest first. */
export function clockWindows(
  at: number,
  windowMs: number,
  timeZone: string,
  count: number,
): Interval[] {
  const out: Interval[] = [];
  let t = at;
  for (let i = 0; i < count; i += 1) {
    const w = clockWindow(t, windowMs, timeZone);
    out.unshift(w);
    t = w.from;
  }
  return out;
}

/** Samples in the interval `(from, to]`. */
export function inInterval(samples: readonly Sample[], interval: Interval): Sample[] {
  return samples.filter((s) => s.at > interval.from && s.at <= interval.to);
}

/**
 * Share of `interval` covered by the readings stamped `at` that measured `(at − readingMs, at]`,
 * each clipped to the interval (overlaps counted once). Instants in time order.
 */
export function coverage(
  instants: readonly number[],
  interval: Interval,
  readingMs: number,
): number {
  const length = interval.to - interval.from;
  if (length <= 0) return instants.length > 0 ? 1 : 0;
  let covered = 0;
  let until = interval.from;
  for (const at of instants) {
    const end = Math.min(at, interval.to);
    const start = Math.max(at - readingMs, until);
    if (end > start) covered += end - start;
    until = Math.max(until, end);
  }
  return covered / length;
}

const numbers = (samples: readonly Sample[]): number[] =>
  samples.flatMap((s) => (typeof s.value === "number" ? [s.value] : []));

/**
 * Reduce samples to one number; undefined when there is none. `energy_mean` is
 * `10·log10(mean(10^(L/10)))`, the mean of sound levels in dB.
 */
export function aggregate(samples: readonly Sample[], how: Aggregate): number | undefined {
  const values = numbers(samples);
  if (values.length === 0) return undefined;
  switch (how) {
    case "latest":
      return values[values.length - 1];
    case "mean":
      return values.reduce((a, b) => a + b, 0) / values.length;
    case "max":
      return Math.max(...values);
    case "min":
      return Math.min(...values);
    case "energy_mean":
      return 10 * Math.log10(values.reduce((a, l) => a + 10 ** (l / 10), 0) / values.length);
  }
}

/** The newest sample at or before `at`, numeric or boolean. */
export function latestSample(samples: readonly Sample[], at: number): Sample | undefined {
  for (let i = samples.length - 1; i >= 0; i -= 1) {
    const s = samples[i];
    if (s !== undefined && s.at <= at) return s;
  }
  return undefined;
}

/** Aggregate of a condition's window at `at`: `latest` uses the newest sample at or before `at`. */
export function windowValue(
  samples: readonly Sample[],
  how: Aggregate,
  at: number,
  window: { readonly windowMs?: number | undefined; readonly align: "rolling" | "clock" },
  timeZone: string,
): { value: number | undefined; interval: Interval | undefined } {
  if (how === "latest" && window.windowMs === undefined) {
    const s = latestSample(
      samples.filter((x) => typeof x.value === "number"),
      at,
    );
    return { value: s === undefined ? undefined : aggregate([s], "latest"), interval: undefined };
  }
  const ms = window.windowMs ?? 0;
  const interval = window.align === "clock" ? clockWindow(at, ms, timeZone) : rollingWindow(at, ms);
  return { value: aggregate(inInterval(samples, interval), how), interval };
}
