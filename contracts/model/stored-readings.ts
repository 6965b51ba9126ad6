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
  /** The uplink message (per-device `seq`) that carried it, where known (evidence). */
  readonly seq?: number | undefined;
  /** When the ingest received that message, epoch ms, where known (evidence). */
  readonly receivedMs?: number | undefined;
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
  /** The per-device `seq` of the uplink message that carried it (undefined: not known). */
  seq(i: number): number | undefined;
  /** When the ingest received that message, epoch ms (undefined: not known, e.g. read back). */
  receivedMs(i: number): number | undefined;
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
    seq: (i) => at(i).seq,
    receivedMs: (i) => at(i).receivedMs,
    value: (i, quantity) =>
      (at(i).values as Readonly<Record<string, number | boolean | undefined>>)[quantity],
  };
}
