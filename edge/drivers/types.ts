import type { QualityFlag, SensorKind } from "../../contracts/index.js";

/*
 * The seam between field drivers (simulated, HJ 212 TCP, Modbus) and the agent. A driver turns
 * what a monitor says into samples of citywatch devices; the agent aggregates `sample`s into
 * interval readings, passes `interval` values through, writes every reading to the device's
 * write-ahead log before it is sent, and evaluates local alarms on both.
 */

/** One set of values measured by a field device, already mapped to a citywatch device. */
export interface FieldSample {
  /** The citywatch device id (after MN / unit-id mapping). */
  readonly deviceId: string;
  readonly kind: SensorKind;
  /** When it was measured, epoch ms; for an interval value, the end of the interval. */
  readonly ts: number;
  readonly quality: QualityFlag;
  /** Quantities of `kind` (contracts/model/sensors.ts, QUANTITIES) in their citywatch units. */
  readonly values: Readonly<Record<string, number>>;
  /**
   * `sample`: an instantaneous or short sample (1-s noise, a Modbus poll) that the agent
   * aggregates into interval readings. `interval`: already an interval value (HJ 212 minute,
   * hourly or daily data) that goes to the log as it is.
   */
  readonly form: "sample" | "interval";
}

/**
 * Where a driver hands its samples. Synchronous: when it returns, an `interval` sample is in the
 * device's log (durable) and a `sample` is in the aggregator, so a driver that must acknowledge
 * its peer (HJ 212 9014) may do so after the call. It throws when the sample is refused (unknown
 * device, wrong kind, values out of range); the driver counts that and keeps serving.
 */
export type DriverSink = (sample: FieldSample) => void;

export interface Driver {
  /** For logs and metrics, e.g. `hj212:0.0.0.0:9212`. */
  readonly name: string;
  start(sink: DriverSink): Promise<void>;
  /** Stops taking input; pending work is finished or dropped as the driver documents. */
  stop(): Promise<void>;
  /** Counters for the agent's status and logs (frames, bad CRC, polls, errors...). */
  stats(): Readonly<Record<string, number>>;
}

/**
 * One refusal of a driver (a frame, a factor, a connection), for the edge's dead-letter log
 * (edge/agent/dead-letters.ts): what was refused, why, and enough of it to look at later.
 */
export interface EdgeDeadLetter {
  /** The driver, e.g. `hj212:0.0.0.0:9212`. */
  readonly driver: string;
  /** Whose input it was: the HJ 212 MN when known, else the peer's address. */
  readonly source: string;
  /** Stable problem code (`HJ212_BAD_VALUE`, `HJ212_CRC_MISMATCH`…). */
  readonly code: string;
  readonly reason: string;
  /** The peer (`ip:port`), when there is one. */
  readonly remote?: string;
  /** The refused input as text (segment, factor, preview of bytes), cut to a bounded length. */
  readonly payload?: string;
}

/** Records a refusal; never throws (a log that cannot write counts the loss). */
export type DeadLetterSink = (letter: EdgeDeadLetter) => void;
