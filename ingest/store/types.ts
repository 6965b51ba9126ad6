import type { QualityFlag, SensorKind } from "../../contracts/index.js";

/**
 * One stored reading: a point in the time-series store. See docs/data-model.md.
 * - measurement: the sensor kind;
 * - tags: device, site, district, grid_cell, zone (when the device has one), quality;
 * - fields: one per quantity present in the reading (numbers as floats, on/off as booleans)
 *   plus `seq` (integer), the uplink message the reading came in, for evidence;
 * - time: the device's timestamp in milliseconds, so a re-sent reading overwrites itself.
 */
export interface Point {
  readonly measurement: SensorKind;
  readonly tags: PointTags;
  readonly fields: Readonly<Record<string, number | boolean>>;
  /** The `seq` field, written as an integer. */
  readonly seq: number;
  readonly timeMs: number;
}

export interface PointTags {
  readonly device: string;
  readonly site: string;
  readonly district: string;
  readonly grid_cell: string;
  readonly zone?: string;
  readonly quality: QualityFlag;
}

/** Points the store refused (e.g. a 400/422 from InfluxDB for some lines); the rest were stored. */
export interface WriteOutcome {
  readonly rejected: ReadonlyArray<{ readonly index: number; readonly reason: string }>;
}

/** The store could not take the write now (network, 5xx, 429, timeout); the whole batch must be retried. */
export class StoreUnavailableError extends Error {
  readonly code = "INGEST_STORE_UNAVAILABLE";
  constructor(
    message: string,
    /** The store's own hint (Retry-After), when it gave one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

export interface ReadingsQuery {
  readonly deviceId: string;
  readonly kind: SensorKind;
  /** Inclusive start and exclusive end, epoch milliseconds. */
  readonly fromMs: number;
  readonly toMs: number;
  readonly limit: number;
}

export interface StoredReading {
  readonly timeMs: number;
  readonly quality: QualityFlag;
  readonly seq: number;
  readonly values: Readonly<Record<string, number | boolean>>;
}

/**
 * `mean` and `max` are plain; `energy_mean` is the energy average of levels in dB,
 * `10·log10(mean(10^(L/10)))` (GB 3096-2008; docs/standards.md, Noise), never the mean of dB values.
 */
export type Aggregation = "mean" | "max" | "energy_mean";

export interface AggregateQuery {
  readonly deviceId: string;
  readonly kind: SensorKind;
  readonly quantity: string;
  readonly fromMs: number;
  readonly toMs: number;
  /** Bucket width; buckets start at multiples of it since the epoch (InfluxQL GROUP BY time). */
  readonly intervalMs: number;
  readonly fn: Aggregation;
}

export interface AggregateBucket {
  /** Bucket start, epoch milliseconds. */
  readonly timeMs: number;
  /** null when the bucket holds no reading of the quantity. */
  readonly value: number | null;
}

/**
 * Points added one at a time and written together. The store takes what it needs of each point
 * as it is added (InfluxDB: its line), so the caller can let the points go at once instead of
 * holding them until the write. Rejections in the outcome are indexed by the order of `add`.
 */
export interface WriteBatch {
  add(point: Point): void;
  /** Points added so far. */
  readonly size: number;
  /** As TimeSeriesStore.write, once; the batch is spent afterwards. */
  write(): Promise<WriteOutcome>;
}

/**
 * A time-series store behind one interface: InfluxDB (line protocol over HTTP, InfluxQL) or the
 * embedded SQLite store. `write` resolves only once the store has the points durably.
 */
export interface TimeSeriesStore {
  readonly name: "influxdb" | "sqlite";
  /** Create the database/table if needed and check the store answers. */
  open(): Promise<void>;
  /**
   * Write a batch. Resolves when stored, with the points the store refused as invalid; throws
   * StoreUnavailableError when the store cannot take it now (after the store's own short retries).
   */
  write(points: readonly Point[]): Promise<WriteOutcome>;
  /** A batch to fill point by point (see WriteBatch); without it, the caller collects points for `write`. */
  batch?(): WriteBatch;
  readings(query: ReadingsQuery): Promise<StoredReading[]>;
  aggregate(query: AggregateQuery): Promise<AggregateBucket[]>;
  /** The newest reading of a device, or undefined. */
  latest(deviceId: string, kind: SensorKind): Promise<StoredReading | undefined>;
  /**
   * The newest reading of each of these devices of one kind (a device with none is absent), in
   * one query where the store has one (InfluxDB: one per measurement instead of one per device).
   * Absent: the caller asks `latest` per device.
   */
  latestOf?(kind: SensorKind, deviceIds: readonly string[]): Promise<Map<string, StoredReading>>;
  /** Does the store answer now? */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
