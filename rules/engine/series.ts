import { QualityFlag } from "../../contracts/model/quality.js";
import type { Sample } from "./window.js";

/*
 * One device's recent readings of one quantity, in time order, held in columns (typed arrays)
 * rather than one object per reading: the rules driver keeps up to a day of samples per series,
 * and as objects they were the garbage collector's busiest work (every one promoted to the old
 * generation, then dropped). The engine reads a series through `since()`, which builds the
 * `Sample`s of a look-back on demand.
 */

const FLAGS = QualityFlag.options;
const FLAG_INDEX = Object.fromEntries(FLAGS.map((flag, i) => [flag, i])) as Record<
  QualityFlag,
  number
>;
/** meta byte: bits 0-3 the flag's index, then these. */
const REPLAYED = 0x10;
const BOOLEAN = 0x20;
const FLAG_MASK = 0x0f;

/**
 * A series as the engine reads it: samples in time order by index, read in place (no object per
 * sample). `Series` is one; `columnsOf` wraps a plain array of samples (tests, callers with
 * samples at hand).
 */
export interface SampleColumns {
  readonly length: number;
  /**
   * Changes whenever a sample is put anywhere but after the newest (a late reading, a
   * replacement): what was computed over the old samples may be stale.
   */
  readonly epoch: number;
  atOf(i: number): number;
  numberOf(i: number): number;
  /** The i-th sample is a number (not a switch state). */
  isNumber(i: number): boolean;
  qualityOf(i: number): QualityFlag;
  /** Index of the first sample strictly after `at` (`length` when none). */
  firstAfter(at: number): number;
  sample(i: number): Sample;
}

const arrayColumns = new WeakMap<readonly Sample[], SampleColumns>();

/** A plain array of samples (oldest first) read as columns. */
export function columnsOf(samples: readonly Sample[]): SampleColumns {
  let columns = arrayColumns.get(samples);
  if (columns !== undefined) return columns;
  columns = {
    length: samples.length,
    epoch: 0,
    atOf: (i) => (samples[i] as Sample).at,
    numberOf: (i) => Number((samples[i] as Sample).value),
    isNumber: (i) => typeof (samples[i] as Sample).value === "number",
    qualityOf: (i) => (samples[i] as Sample).quality,
    firstAfter(at) {
      let lo = 0;
      let hi = samples.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((samples[mid] as Sample).at <= at) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    },
    sample: (i) => samples[i] as Sample,
  };
  arrayColumns.set(samples, columns);
  return columns;
}

export class Series implements SampleColumns {
  #epoch = 0;
  #at = new Float64Array(8);
  #value = new Float64Array(8);
  #meta = new Uint8Array(8);
  /**
   * Provenance columns (only in a series made with `provenance`: the driver's per-device series of
   * every reading): the uplink seq and receive time of each sample, NaN where not known. Evidence
   * packages cite them; typed arrays, so no object per reading.
   */
  #seq: Float64Array | undefined;
  #received: Float64Array | undefined;
  /** Live samples are [#head, #tail). */
  #head = 0;
  #tail = 0;

  constructor(options: { provenance?: boolean } = {}) {
    if (options.provenance === true) {
      this.#seq = new Float64Array(8);
      this.#received = new Float64Array(8);
    }
  }

  get length(): number {
    return this.#tail - this.#head;
  }

  /** Uplink seq of the i-th sample (undefined: not known, or a series without provenance). */
  seqOf(i: number): number | undefined {
    const v = this.#seq?.[this.#head + i];
    return v === undefined || Number.isNaN(v) ? undefined : v;
  }

  /** Receive time (epoch ms) of the i-th sample (undefined: not known). */
  receivedOf(i: number): number | undefined {
    const v = this.#received?.[this.#head + i];
    return v === undefined || Number.isNaN(v) ? undefined : v;
  }

  /** Whether the i-th sample was replayed from an edge agent's log. */
  replayedOf(i: number): boolean {
    return ((this.#meta[this.#head + i] as number) & REPLAYED) !== 0;
  }

  get epoch(): number {
    return this.#epoch;
  }

  isNumber(i: number): boolean {
    return ((this.#meta[this.#head + i] as number) & BOOLEAN) === 0;
  }

  /** Instant of the i-th sample (0 = oldest). */
  atOf(i: number): number {
    return this.#at[this.#head + i] as number;
  }

  /** Value of the i-th sample; switch states as booleans. */
  valueOf(i: number): number | boolean {
    const j = this.#head + i;
    const value = this.#value[j] as number;
    return ((this.#meta[j] as number) & BOOLEAN) !== 0 ? value !== 0 : value;
  }

  /** The i-th sample's value as a number (switch on = 1). */
  numberOf(i: number): number {
    return this.#value[this.#head + i] as number;
  }

  qualityOf(i: number): QualityFlag {
    return FLAGS[(this.#meta[this.#head + i] as number) & FLAG_MASK] as QualityFlag;
  }

  /** The i-th sample as an object. */
  sample(i: number): Sample {
    const j = this.#head + i;
    const meta = this.#meta[j] as number;
    const value = this.#value[j] as number;
    return {
      at: this.#at[j] as number,
      value: (meta & BOOLEAN) !== 0 ? value !== 0 : value,
      quality: FLAGS[meta & FLAG_MASK] as QualityFlag,
      replayed: (meta & REPLAYED) !== 0,
    };
  }

  /** Index of the first sample at or after `at` (binary search; `length` when none). */
  firstAtOrAfter(at: number): number {
    let lo = this.#head;
    let hi = this.#tail;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#at[mid] as number) < at) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.#head;
  }

  /** Index of the first sample strictly after `at` (`length` when none). */
  firstAfter(at: number): number {
    let lo = this.#head;
    let hi = this.#tail;
    // The usual question: at or after the newest sample.
    if (hi > lo && (this.#at[hi - 1] as number) <= at) return hi - lo;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#at[mid] as number) <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.#head;
  }

  since(from: number): Sample[] {
    const start = Math.max(0, this.firstAtOrAfter(from) - 1);
    const out: Sample[] = [];
    for (let i = start; i < this.length; i++) out.push(this.sample(i));
    return out;
  }

  /** Every sample, oldest first. */
  all(): Sample[] {
    return this.since(Number.NEGATIVE_INFINITY);
  }

  /**
   * Insert in time order; the usual case (newest last) is an append. A sample at an instant
   * already held replaces it. `seq` and `received` are kept only by a series with provenance.
   */
  insert(
    at: number,
    value: number | boolean,
    quality: QualityFlag,
    replayed: boolean,
    seq = Number.NaN,
    received = Number.NaN,
  ): void {
    const meta =
      (FLAG_INDEX[quality] ?? 0) |
      (replayed ? REPLAYED : 0) |
      (typeof value === "boolean" ? BOOLEAN : 0);
    const v = typeof value === "boolean" ? (value ? 1 : 0) : value;
    const last = this.#tail - 1;
    let j: number;
    if (this.#tail === this.#head || (this.#at[last] as number) < at) {
      this.#room();
      j = this.#tail++;
    } else {
      this.#epoch++;
      const index = this.firstAtOrAfter(at);
      if (index < this.length && this.#at[this.#head + index] === at) {
        j = this.#head + index;
      } else {
        // Room first: it may move the samples to the start of new columns.
        this.#room();
        const i = this.#head + index;
        // Shift the newer samples up by one.
        this.#at.copyWithin(i + 1, i, this.#tail);
        this.#value.copyWithin(i + 1, i, this.#tail);
        this.#meta.copyWithin(i + 1, i, this.#tail);
        this.#seq?.copyWithin(i + 1, i, this.#tail);
        this.#received?.copyWithin(i + 1, i, this.#tail);
        this.#tail++;
        j = i;
      }
    }
    this.#at[j] = at;
    this.#value[j] = v;
    this.#meta[j] = meta;
    if (this.#seq !== undefined && this.#received !== undefined) {
      this.#seq[j] = seq;
      this.#received[j] = received;
    }
  }

  /** Room in the columns (samples held without growing). */
  get capacity(): number {
    return this.#at.length;
  }

  /**
   * Drop the `count` oldest samples. A series far smaller than its columns gets smaller ones, but
   * only if it was that small before the drop too: a series filled by each stored batch and
   * pruned back after it (a backlog of readings, a window that keeps the newest only) keeps its
   * room rather than growing it again by doubling every batch.
   */
  dropOldest(count: number): void {
    const before = this.#tail - this.#head;
    this.#head = Math.min(this.#tail, this.#head + count);
    if (this.#head === this.#tail) this.#head = this.#tail = 0;
    const live = this.#tail - this.#head;
    // Both under an eighth of the columns (no closure here: this runs after every batch).
    const eighth = this.#at.length / 8;
    if (this.#at.length > 64 && live < eighth && before < eighth) {
      this.#resize(Math.max(8, live * 2));
    }
  }

  /** Room for one more at the tail: compact when the dropped head is most of it, else grow. */
  #room(): void {
    if (this.#tail < this.#at.length) return;
    const live = this.#tail - this.#head;
    if (this.#head >= live) {
      this.#at.copyWithin(0, this.#head, this.#tail);
      this.#value.copyWithin(0, this.#head, this.#tail);
      this.#meta.copyWithin(0, this.#head, this.#tail);
      this.#seq?.copyWithin(0, this.#head, this.#tail);
      this.#received?.copyWithin(0, this.#head, this.#tail);
      this.#head = 0;
      this.#tail = live;
    } else this.#resize(this.#at.length * 2);
  }

  /** New columns of `size` holding the live samples from index 0. */
  #resize(size: number): void {
    const live = this.#tail - this.#head;
    const at = new Float64Array(size);
    const value = new Float64Array(size);
    const meta = new Uint8Array(size);
    at.set(this.#at.subarray(this.#head, this.#tail));
    value.set(this.#value.subarray(this.#head, this.#tail));
    meta.set(this.#meta.subarray(this.#head, this.#tail));
    if (this.#seq !== undefined && this.#received !== undefined) {
      const seq = new Float64Array(size);
      const received = new Float64Array(size);
      seq.set(this.#seq.subarray(this.#head, this.#tail));
      received.set(this.#received.subarray(this.#head, this.#tail));
      this.#seq = seq;
      this.#received = received;
    }
    this.#at = at;
    this.#value = value;
    this.#meta = meta;
    this.#head = 0;
    this.#tail = live;
  }
}
