import type { QualityFlag } from "./quality.js";
import type { SensorKind } from "./sensors.js";

/*
 * Readings the time-series store has acknowledged, as the ingest hands them to the rules. The
 * ingest passes its typed columns (ingest/reading-columns.ts) as a StoredBatch, with no object per
 * reading; `batchOf` wraps an array for callers that have one.
 */

/** A reading the store has acknowledged, as the driver takes it. */
export interface StoredReading {
  readonly deviceId: string;
  readonly kind: SensorKind;
  readonly timeMs: number;
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number | boolean>>;
  /** Sent late from an edge's log after an outage: evaluated, and marked historical. */
  readonly replay: boolean;
}

/**
 * Stored readings as the driver walks them, by index, with no object per reading: the pipeline
 * hands over its typed columns (ingest/reading-columns.ts); `batchOf` wraps an array.
 */
export interface StoredBatch {
  /** Indexes run from 0 to length - 1. */
  readonly length: number;
  /** False for a reading the store refused: the driver skips it. */
  isStored(i: number): boolean;
  deviceId(i: number): string;
  timeMs(i: number): number;
  quality(i: number): QualityFlag;
  replay(i: number): boolean;
  /** The reading's value of `quantity`, if it has one. */
  value(i: number, quantity: string): number | boolean | undefined;
}

/** An array of readings as a StoredBatch. */
export function batchOf(readings: readonly StoredReading[]): StoredBatch {
  const at = (i: number) => readings[i] as StoredReading;
  return {
    length: readings.length,
    isStored: () => true,
    deviceId: (i) => at(i).deviceId,
    timeMs: (i) => at(i).timeMs,
    quality: (i) => at(i).quality,
    replay: (i) => at(i).replay,
    value: (i, quantity) =>
      (at(i).values as Readonly<Record<string, number | boolean | undefined>>)[quantity],
  };
}
