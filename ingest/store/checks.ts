import { QUANTITIES } from "../../contracts/index.js";
import type { AggregateQuery, Point, ReadingsQuery } from "./types.js";

/*
 * What every TimeSeriesStore refuses, in the same words, so the stores are interchangeable:
 * points that cannot be stored as they are (reported per point in WriteOutcome.rejected, the rest
 * of the batch is written), and queries that make no sense (thrown as RangeError). The embedded
 * store could hold more (SQLite has no int64-nanosecond clock), but a point that InfluxDB would
 * refuse must not be taken by the store the quick start runs on and refused in production.
 */

/**
 * The largest |time| in ms InfluxDB accepts: it stores nanoseconds in an int64 and answers
 * "time outside range -9223372036854775806 - 9223372036854775806" beyond it.
 */
export const MAX_TIME_MS = 9_223_372_036_854;

/** The most buckets one aggregate query may ask for. */
export const MAX_BUCKETS = 100_000;

/** Why no store takes `point` (its kind, time or seq), or undefined. Fields: fieldValueProblem. */
export function pointHeaderProblem(point: Point): string | undefined {
  if (!Object.hasOwn(QUANTITIES, point.measurement)) {
    return `unknown measurement ${JSON.stringify(point.measurement)}`;
  }
  const { timeMs } = point;
  if (!Number.isSafeInteger(timeMs) || Math.abs(timeMs) > MAX_TIME_MS) {
    return `time ${String(timeMs)} is not a whole number of ms within ±${MAX_TIME_MS}`;
  }
  if (!Number.isSafeInteger(point.seq)) return `seq ${String(point.seq)} is not a safe integer`;
  return undefined;
}

/** Why a field's value cannot be stored (only finite numbers and booleans can), or undefined. */
export function fieldValueProblem(key: string, value: unknown): string | undefined {
  if (typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) {
    return undefined;
  }
  return `field ${key} is ${String(value)}; InfluxDB stores only finite numbers and booleans`;
}

export const SEQ_IN_FIELDS = "fields must not hold seq; it is written from point.seq";

/** Every rule at once, for a store that checks a point as a whole; undefined when it may be stored. */
export function pointProblem(point: Point): string | undefined {
  const header = pointHeaderProblem(point);
  if (header !== undefined) return header;
  const fields = point.fields as Readonly<Record<string, unknown>>;
  if (Object.hasOwn(fields, "seq")) return SEQ_IN_FIELDS;
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined) continue;
    const problem = fieldValueProblem(key, value);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * Why an instant cannot bound a query on every store (InfluxDB holds ±MAX_TIME_MS; the embedded
 * store answers the same), or undefined.
 */
export function instantProblem(ms: number): string | undefined {
  if (!Number.isSafeInteger(ms)) return "must be whole milliseconds";
  if (Math.abs(ms) > MAX_TIME_MS)
    return `must be within ±${MAX_TIME_MS} ms of 1970 (${new Date(MAX_TIME_MS).toISOString()}), the range every store can hold`;
  return undefined;
}

/** A bad query range, thrown by every store (and answered 400 `bad_range` by the API). */
export class QueryRangeError extends RangeError {
  constructor(
    readonly field: "from" | "to",
    message: string,
  ) {
    super(message);
    this.name = "QueryRangeError";
  }
}

/** A query's range must be whole milliseconds within what every store holds. */
export function checkRange(what: string, fromMs: number, toMs: number): void {
  for (const [field, ms] of [
    ["from", fromMs],
    ["to", toMs],
  ] as const) {
    const problem = instantProblem(ms);
    if (problem !== undefined) throw new QueryRangeError(field, `${what}: ${field} ${problem}`);
  }
}

/** A readings query: whole-ms range and a positive whole limit (a store may read 0 as "all"). */
export function checkReadingsQuery(q: ReadingsQuery): void {
  checkRange("readings", q.fromMs, q.toMs);
  if (!Number.isSafeInteger(q.limit) || q.limit < 1) {
    throw new RangeError(`readings: limit must be a positive whole number, not ${q.limit}`);
  }
}

/**
 * Every bucket an aggregate query covers, each with a null value for the store to fill: buckets
 * start at multiples of `intervalMs` since the epoch (InfluxQL GROUP BY time() without an offset),
 * so the first may start before `fromMs` and holds only readings from `fromMs` on. Throws
 * RangeError for a quantity that is not numeric, a bad interval, or too many buckets.
 */
export function aggregateBuckets(
  q: AggregateQuery,
): Array<{ timeMs: number; value: number | null }> {
  checkRange("aggregate", q.fromMs, q.toMs);
  const spec = (QUANTITIES[q.kind] as Record<string, { type: string } | undefined>)[q.quantity];
  if (!Object.hasOwn(QUANTITIES[q.kind], q.quantity) || spec?.type !== "number") {
    throw new RangeError(`aggregate: ${q.kind} has no numeric quantity ${q.quantity}`);
  }
  if (!Number.isSafeInteger(q.intervalMs) || q.intervalMs < 1) {
    throw new RangeError(`aggregate: intervalMs must be a positive whole number`);
  }
  const first = Math.floor(q.fromMs / q.intervalMs) * q.intervalMs;
  const count = q.toMs > q.fromMs ? Math.ceil((q.toMs - first) / q.intervalMs) : 0;
  if (count > MAX_BUCKETS) {
    throw new RangeError(`aggregate: ${count} buckets asked for, at most ${MAX_BUCKETS}`);
  }
  return Array.from({ length: count }, (_, i) => ({
    timeMs: first + i * q.intervalMs,
    value: null,
  }));
}
