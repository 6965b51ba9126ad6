import {
  QUANTITIES,
  type QualityFlag,
  type QuantitySpec,
  type Reading,
  type SensorKind,
} from "../../contracts/index.js";

/**
 * Local aggregation: samples of one device → one reading per interval, the interval's end as
 * `ts` (docs/protocol.md 4.4). Intervals are aligned to the wall clock: with 60 s they end on
 * the minute, so readings of different devices line up. A sample at `ts` belongs to the interval
 * (end − length, end]: a 1-s noise sample stamped 22:01:00 measured 22:00:59–22:01:00.
 *
 * - Noise (GB 3096-2008, definition of LAeq; docs/standards.md): LAeq is the energy mean 10·log10(mean(10^(L/10)))
 *   of the samples' LAeq, never the mean of dB values; LAmax / LAmin the extremes (of the samples'
 *   own LAmax / LAmin where they carry them); L10, L50, L90 the levels exceeded by 10, 50, 90 % of
 *   the samples, by nearest rank (L10 of 60 samples is the 6th highest). Percentiles come from a
 *   0.1 dB histogram, the resolution meters report, so memory stays fixed however long the
 *   interval is.
 * - Other numbers: the arithmetic mean; wind direction the vector mean of the angles (the mean
 *   of 350° and 10° is 0°, not 180°).
 * - Switches: `fanOn` is on if the fan ran at any time in the interval, `purifierOn` only if the
 *   purifier ran all of it. The enforcement rule looks for "fan on, purifier off"; a purifier off
 *   for part of an interval with the fan running must not be averaged away.
 * - Quality: the most severe flag among the samples (order in `SEVERITY`). An interval that holds
 *   one calibration or fault sample is not clean evidence, so a majority vote would overstate it.
 *
 * Pure: no clock, no I/O; the agent calls `add` for each sample and `close` when the wall clock
 * passes an interval's end.
 */

/** Most severe first. A fault outranks calibration: a faulty interval is not even a check. */
export const SEVERITY: readonly QualityFlag[] = [
  "fault",
  "comm_fault",
  "stopped",
  "over_range",
  "calibration",
  "maintenance",
  "manual",
  "normal",
];

/** The end of the interval that holds a sample at `ts` (epoch ms), for intervals of `intervalMs`. */
export function intervalEnd(ts: number, intervalMs: number): number {
  return Math.ceil(ts / intervalMs) * intervalMs;
}

/** Histogram bins: 0.0 … 150.0 dB(A) in 0.1 dB steps (contracts/model/sensors.ts, noise range). */
const BINS = 1_501;

class LevelStats {
  private energy = 0;
  private count = 0;
  private max = Number.NEGATIVE_INFINITY;
  private min = Number.POSITIVE_INFINITY;
  private readonly bins = new Uint32Array(BINS);

  add(level: number, max: number, min: number): void {
    this.energy += 10 ** (level / 10);
    this.count++;
    this.max = Math.max(this.max, max);
    this.min = Math.min(this.min, min);
    const bin = Math.min(BINS - 1, Math.max(0, Math.round(level * 10)));
    this.bins[bin] = (this.bins[bin] ?? 0) + 1;
  }

  values(): Record<string, number> | undefined {
    if (this.count === 0) return undefined;
    return {
      LAeq: round1(10 * Math.log10(this.energy / this.count)),
      LAmax: round1(this.max),
      LAmin: round1(this.min),
      L10: this.exceeded(10),
      L50: this.exceeded(50),
      L90: this.exceeded(90),
    };
  }

  /** The level exceeded `percent` % of the time: the ceil(p·n)-th highest sample (nearest rank). */
  private exceeded(percent: number): number {
    const rank = Math.max(1, Math.ceil((percent / 100) * this.count));
    let seen = 0;
    for (let bin = BINS - 1; bin >= 0; bin--) {
      seen += this.bins[bin] ?? 0;
      if (seen >= rank) return bin / 10;
    }
    return 0;
  }
}

const round1 = (v: number) => Math.round(v * 10) / 10;
const round3 = (v: number) => Math.round(v * 1000) / 1000;

type Rule = "mean" | "angle" | "any" | "all";

/** How each non-noise quantity is aggregated (see the module comment). */
function ruleOf(quantity: string, spec: QuantitySpec): Rule {
  if (spec.type === "boolean") return quantity === "purifierOn" ? "all" : "any";
  return quantity === "windDirection" ? "angle" : "mean";
}

interface Accumulator {
  rule: Rule;
  sum: number;
  sin: number;
  cos: number;
  count: number;
  on: number;
}

/** One interval in progress for one device. */
class OpenInterval {
  private worst = SEVERITY.length - 1;
  private readonly levels = new LevelStats();
  private readonly quantities = new Map<string, Accumulator>();
  samples = 0;

  constructor(
    readonly kind: SensorKind,
    readonly end: number,
  ) {}

  add(quality: QualityFlag, values: Readonly<Record<string, number | boolean>>): void {
    this.samples++;
    this.worst = Math.min(this.worst, SEVERITY.indexOf(quality));
    if (this.kind === "noise") {
      const level = values["LAeq"];
      if (typeof level !== "number") return;
      const max = values["LAmax"];
      const min = values["LAmin"];
      this.levels.add(
        level,
        typeof max === "number" ? max : level,
        typeof min === "number" ? min : level,
      );
      return;
    }
    const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[this.kind];
    for (const [name, value] of Object.entries(values)) {
      const spec = specs[name];
      if (spec === undefined) continue;
      let acc = this.quantities.get(name);
      if (acc === undefined) {
        acc = { rule: ruleOf(name, spec), sum: 0, sin: 0, cos: 0, count: 0, on: 0 };
        this.quantities.set(name, acc);
      }
      acc.count++;
      if (typeof value === "boolean") {
        if (value) acc.on++;
      } else {
        acc.sum += value;
        const rad = (value * Math.PI) / 180;
        acc.sin += Math.sin(rad);
        acc.cos += Math.cos(rad);
      }
    }
  }

  /** The interval's reading, stamped `end` (earlier than `this.end` when it was cut short). */
  reading(end = this.end): Reading | undefined {
    const values: Record<string, number | boolean> =
      this.kind === "noise" ? (this.levels.values() ?? {}) : {};
    for (const [name, acc] of this.quantities) {
      switch (acc.rule) {
        case "mean":
          values[name] = round3(acc.sum / acc.count);
          break;
        case "angle": {
          const deg = (Math.atan2(acc.sin, acc.cos) * 180) / Math.PI;
          values[name] = round1((deg + 360) % 360);
          break;
        }
        case "any":
          values[name] = acc.on > 0;
          break;
        case "all":
          values[name] = acc.on === acc.count;
          break;
      }
    }
    if (Object.keys(values).length === 0) return undefined;
    return {
      ts: new Date(end).toISOString(),
      quality: SEVERITY[this.worst] ?? "normal",
      values,
    };
  }
}

/** Why a sample was not taken into an interval. */
export class LateSampleError extends Error {
  readonly code = "EDGE_LATE_SAMPLE";
}

/**
 * The aggregator of one device. Holds at most one open interval (fixed memory): a sample for a
 * later interval closes the open one; a sample for an interval already closed is refused
 * (LateSampleError) rather than silently merged into the wrong minute.
 */
export class IntervalAggregator {
  private open: OpenInterval | undefined;
  private closedUpTo = Number.NEGATIVE_INFINITY;

  constructor(
    readonly kind: SensorKind,
    private intervalMs: number,
  ) {}

  get interval(): number {
    return this.intervalMs;
  }

  /**
   * Takes one sample; returns the reading of the interval it closed, if it closed one. An interval
   * with no usable value (e.g. noise samples without LAeq) gives no reading.
   */
  add(
    ts: number,
    quality: QualityFlag,
    values: Readonly<Record<string, number | boolean>>,
  ): Reading[] {
    const end = intervalEnd(ts, this.intervalMs);
    if (end <= this.closedUpTo) {
      throw new LateSampleError(
        `sample at ${new Date(ts).toISOString()} belongs to an interval already sent (ended ${new Date(this.closedUpTo).toISOString()})`,
      );
    }
    const out: Reading[] = [];
    if (this.open !== undefined && this.open.end !== end) out.push(...this.close(end - 1));
    this.open ??= new OpenInterval(this.kind, end);
    this.open.add(quality, values);
    return out;
  }

  /** Closes the open interval if it ended at or before `now`; returns its reading. */
  close(now: number): Reading[] {
    const open = this.open;
    if (open === undefined || open.end > now) return [];
    this.open = undefined;
    this.closedUpTo = open.end;
    const reading = open.reading();
    return reading === undefined ? [] : [reading];
  }

  /**
   * Closes the interval in progress now, cut short and stamped `now` if it had not ended yet (at
   * stop, or when the interval length changes), so no sample is lost and none is stamped in the
   * future. Samples up to `now` are then late.
   */
  cut(now: number): Reading[] {
    const open = this.open;
    if (open === undefined) return [];
    this.open = undefined;
    const end = Math.min(open.end, now);
    this.closedUpTo = end;
    const reading = open.reading(end);
    return reading === undefined ? [] : [reading];
  }

  /** A new interval length (remote configuration) from `now` on; returns the cut interval's reading. */
  setInterval(intervalMs: number, now: number): Reading[] {
    if (intervalMs === this.intervalMs) return [];
    this.intervalMs = intervalMs;
    return this.cut(now);
  }
}
