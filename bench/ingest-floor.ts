/**
 * The bare per-reading floor of the ingest: what turning uplink bytes into line protocol costs at
 * the least, with nothing around it. JSON.parse, Uplink.safeParse (zod) and toLine (with the point
 * built as ingest/decode.ts builds it, Date.parse included) over the bench's own payloads, in a
 * tight loop, timed in CPU time like the process under test.
 */
import { Uplink } from "../contracts/index.js";
import { toLine } from "../ingest/store/line-protocol.js";
import type { Point } from "../ingest/store/types.js";
import { benchDevices, DeviceStream, firstReadingMs } from "./ingest-payloads.js";
import { median } from "./table.js";

/**
 * The floor's input: `messages` messages of 50 readings from the bench's `devices` devices, as
 * the publishers send them (the same generator, so the same sizes and values).
 */
export function floorPayloads(devices: number, messages: number): Buffer[] {
  const start = firstReadingMs(Date.now());
  const streams = benchDevices(devices).map((d, i) => new DeviceStream(d.id, d.kind, i, start));
  return Array.from({ length: messages }, (_, i) =>
    (streams[i % streams.length] as DeviceStream).next(50),
  );
}

/** µs of CPU per reading. */
export interface FloorFigure {
  /** JSON.parse alone. */
  readonly parse: number;
  /** Uplink.safeParse on top of it. */
  readonly validate: number;
  /** Points and toLine on top of that. */
  readonly serialize: number;
  /** All three: the floor (median of the repetitions). */
  readonly total: number;
  /** The least of the repetitions of all three. */
  readonly best: number;
  readonly repetitions: number;
  readonly readingsPerMessage: number;
}

type Step = "parse" | "validate" | "full";

const WARMUP_CPU_MICROS = 300_000;
const REPETITION_CPU_MICROS = 150_000;
const REPETITIONS = 7;

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** One message through `step`; returns its readings, and adds to `sink` so no work is dropped. */
function handle(payload: Buffer, step: Step, sink: { n: number }): number {
  const json: unknown = JSON.parse(payload.toString("utf8"));
  if (step === "parse") return (json as { readings: unknown[] }).readings.length;
  const parsed = Uplink.safeParse(json);
  if (!parsed.success) throw new Error("a bench payload failed Uplink validation");
  const uplink = parsed.data;
  if (step === "validate") return uplink.readings.length;
  // Tags built once per message and quality, as ingest/decode.ts builds them (the serializer
  // caches a tags object's series key): the floor gets the same shortcut as the product.
  const tagsByQuality = new Map<string, Point["tags"]>();
  for (const reading of uplink.readings) {
    let tags = tagsByQuality.get(reading.quality);
    if (tags === undefined) {
      tags = {
        device: uplink.deviceId,
        site: "bench-site",
        district: "Bench",
        grid_cell: "BENCH-001",
        quality: reading.quality,
      };
      tagsByQuality.set(reading.quality, tags);
    }
    const point: Point = {
      measurement: uplink.kind,
      tags,
      fields: reading.values as Record<string, number | boolean>,
      seq: uplink.seq,
      timeMs: Date.parse(reading.ts),
    };
    sink.n += toLine(point).length;
  }
  return uplink.readings.length;
}

/** One pass over `payloads`; returns readings handled. */
function pass(payloads: readonly Buffer[], step: Step, sink: { n: number }): number {
  let readings = 0;
  for (const payload of payloads) readings += handle(payload, step, sink);
  return readings;
}

/** Run `step` over the payloads until `budget` µs of CPU are spent; µs per reading. */
function timed(payloads: readonly Buffer[], step: Step, budget: number, sink: { n: number }) {
  const start = cpuMicros();
  let readings = 0;
  let used = 0;
  do {
    readings += pass(payloads, step, sink);
    used = cpuMicros() - start;
  } while (used < budget);
  return used / readings;
}

/** The floor over `payloads` (the bench's 50-readings messages). */
export function measureFloor(payloads: readonly Buffer[], readingsPerMessage: number): FloorFigure {
  const sink = { n: 0 };
  for (const step of ["parse", "validate", "full"] as const) {
    timed(payloads, step, WARMUP_CPU_MICROS, sink);
  }
  const samples: Record<Step, number[]> = { parse: [], validate: [], full: [] };
  // Interleaved, so a burst of other load on the machine lands on each step alike.
  for (let r = 0; r < REPETITIONS; r++) {
    for (const step of ["parse", "validate", "full"] as const) {
      samples[step].push(timed(payloads, step, REPETITION_CPU_MICROS, sink));
    }
  }
  if (sink.n === 0) throw new Error("the floor loop produced no lines");
  const parse = median(samples.parse);
  const validate = median(samples.validate);
  const total = median(samples.full);
  return {
    parse,
    validate: validate - parse,
    serialize: total - validate,
    total,
    best: Math.min(...samples.full),
    repetitions: REPETITIONS,
    readingsPerMessage,
  };
}

const SAMPLE_WARMUP_CPU_MICROS = 30_000;
const SAMPLE_REPETITION_CPU_MICROS = 60_000;
const SAMPLE_REPETITIONS = 5;

/**
 * A short sample of the floor (all three steps together, µs per reading, the median of a few
 * repetitions), taken next to each timed round: this machine's speed drifts by a fifth within a
 * minute, and a round is best held against the floor of its own moment.
 */
export function sampleFloor(payloads: readonly Buffer[]): number {
  const sink = { n: 0 };
  timed(payloads, "full", SAMPLE_WARMUP_CPU_MICROS, sink);
  const samples: number[] = [];
  for (let r = 0; r < SAMPLE_REPETITIONS; r++) {
    samples.push(timed(payloads, "full", SAMPLE_REPETITION_CPU_MICROS, sink));
  }
  if (sink.n === 0) throw new Error("the floor loop produced no lines");
  return median(samples);
}

/** Where a run of bursts is in the payloads, and the sink of their output. */
export interface BurstCursor {
  next: number;
  readonly sink: { n: number };
}

/**
 * The whole floor (parse, validate, line protocol), message by message from `cursor` on, until
 * `budgetMicros` of CPU are spent: a short burst (bench/floor-sampler.ts runs them alongside a
 * round). Returns the CPU it took and the readings it handled.
 */
export function floorBurst(
  payloads: readonly Buffer[],
  budgetMicros: number,
  cursor: BurstCursor,
): { cpuMicros: number; readings: number } {
  const start = cpuMicros();
  let readings = 0;
  let used = 0;
  do {
    readings += handle(payloads[cursor.next] as Buffer, "full", cursor.sink);
    cursor.next = (cursor.next + 1) % payloads.length;
    used = cpuMicros() - start;
  } while (used < budgetMicros);
  return { cpuMicros: used, readings };
}
