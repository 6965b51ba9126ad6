/**
 * What every simulated instrument shares: the reading it produces, the quality flag (with the
 * occasional fault), slow calibration drift, clamping to the plausible range of contracts/model/sensors.ts,
 * local time in Asia/Shanghai and a series over simulated time.
 */
import type {
  MeasuredQuantity,
  QualityFlag,
  SensorKind,
  Timestamp,
} from "../../contracts/index.js";
import { QUANTITIES } from "../../contracts/index.js";
import { STREAM, rngAt, valueNoise } from "./random.js";

/** One reading as the uplink carries it (contracts/model/uplink.ts), with the model's values type. */
export interface ModelReading<V> {
  readonly ts: Timestamp;
  readonly quality: QualityFlag;
  readonly values: V;
}

/** A signal model: a pure function from simulated time to a reading. */
export interface SignalModel<V> {
  at(ms: number): ModelReading<V>;
}

/** Settings of the instrument itself, common to every kind. */
export interface InstrumentParams {
  /** Start of the simulation (ms since the Unix epoch); drift and stepped processes count from it. */
  readonly epochMs: number;
  /** Probability that a reading carries quality "fault" (HJ 212 flag D). Default 0.001. */
  readonly faultRate?: number;
  /** Calibration drift of the main quantity, as a fraction of reading per day (default 0.002). */
  readonly driftPerDay?: number;
}

/** A span of simulated time, [fromMs, toMs). */
export interface TimeWindow {
  readonly fromMs: number;
  readonly toMs: number;
}

export const MS_PER_MINUTE = 60_000;
export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 86_400_000;

/** China Standard Time, UTC+8 all year (no daylight saving since 1991). */
const SHANGHAI_OFFSET_MS = 8 * MS_PER_HOUR;

/** Hour of the day in Asia/Shanghai as a fraction, 0 ≤ h < 24. */
export function localHour(ms: number): number {
  const dayMs = (((ms + SHANGHAI_OFFSET_MS) % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY;
  return dayMs / MS_PER_HOUR;
}

/** Day of the week in Asia/Shanghai, 0 = Sunday. */
export function localWeekday(ms: number): number {
  return new Date(ms + SHANGHAI_OFFSET_MS).getUTCDay();
}

/** True when `hour` lies in [from, to) on a 24-hour clock (wrapping past midnight when from > to). */
export function inHours(hour: number, from: number, to: number): boolean {
  return from <= to ? hour >= from && hour < to : hour >= from || hour < to;
}

export function inWindows(ms: number, windows: readonly TimeWindow[] | undefined): boolean {
  return (windows ?? []).some((w) => ms >= w.fromMs && ms < w.toMs);
}

/** RFC 3339 in UTC with milliseconds, as the contracts' Timestamp accepts. */
export function timestamp(ms: number): Timestamp {
  return new Date(ms).toISOString();
}

/** The quality flag of the reading at `ms`: "fault" at the configured rate, else "normal". */
export function qualityAt(seed: number, ms: number, params: InstrumentParams): QualityFlag {
  const rate = params.faultRate ?? 0.001;
  return rngAt(seed, STREAM.fault, ms).chance(rate) ? "fault" : "normal";
}

/**
 * Multiplicative calibration error at `ms`: a slow linear drift since the epoch plus a small
 * wander (±0.5 % over days), so a long series does not sit exactly on the truth.
 */
export function driftFactor(seed: number, ms: number, params: InstrumentParams): number {
  const days = Math.max(0, ms - params.epochMs) / MS_PER_DAY;
  const rate = params.driftPerDay ?? 0.002;
  return 1 + rate * days + 0.005 * valueNoise(seed, STREAM.drift, ms, 2 * MS_PER_DAY);
}

/** Clamps to the quantity's plausible range and rounds to `decimals`. */
export function measured<K extends SensorKind>(
  kind: K,
  quantity: keyof (typeof QUANTITIES)[K] & string,
  value: number,
  decimals: number,
): number {
  const spec = (QUANTITIES[kind] as Record<string, MeasuredQuantity>)[quantity];
  const low = spec?.min ?? -Infinity;
  const high = spec?.max ?? Infinity;
  const scale = 10 ** decimals;
  const rounded = Math.round(Math.min(high, Math.max(low, value)) * scale) / scale;
  // Rounding can step just past a bound; the bound itself is in range.
  return Math.min(high, Math.max(low, rounded));
}

/** Readings at `intervalS` from `fromMs` (inclusive) to `toMs` (exclusive). */
export function series<V>(
  model: SignalModel<V>,
  fromMs: number,
  toMs: number,
  intervalS: number,
): ModelReading<V>[] {
  if (!(intervalS > 0)) throw new RangeError(`interval must be positive, got ${intervalS}`);
  const out: ModelReading<V>[] = [];
  for (let ms = fromMs; ms < toMs; ms += intervalS * 1000) out.push(model.at(ms));
  return out;
}

/** A values object with every quantity of the kind present (models always report them all). */
export type FullValues<V> = { [Q in keyof V]-?: Exclude<V[Q], undefined> };
