import {
  QUANTITIES,
  QualityFlag,
  type SensorKind,
  SensorKind as Kinds,
} from "../contracts/index.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import type { Point } from "./store/types.js";

/** Each kind's quantities in a fixed order (a reading's values are a row of that many slots). */
const NAMES = {} as Record<SensorKind, readonly string[]>;
/** Each kind's slot of a quantity. */
const SLOTS = {} as Record<SensorKind, ReadonlyMap<string, number>>;
for (const kind of Kinds.options) {
  NAMES[kind] = Object.keys(QUANTITIES[kind]);
  SLOTS[kind] = new Map(NAMES[kind].map((name, slot) => [name, slot]));
}
/** Slots per row: the most quantities of any kind. */
const ROW = Math.max(...Object.values(NAMES).map((names) => names.length));
// A reading's boolean slots are the bits of one 32-bit word.
if (ROW > 32) throw new Error("ReadingColumns: a kind has more than 32 quantities");
const FLAGS = QualityFlag.options;
const FLAG_INDEX = new Map<string, number>(FLAGS.map((flag, i) => [flag, i]));
/** Marks an empty slot (values are finite numbers or booleans). */
const EMPTY = Number.NaN;
const NONE: ReadonlySet<number> = new Set();

/** What the columns keep of one message (its readings point to it). */
interface Message {
  readonly deviceId: string;
  readonly kind: SensorKind;
  readonly replay: boolean;
  /** The uplink's per-device seq; undefined where the caller did not give it. */
  readonly seq: number | undefined;
  /** When the ingest received the message, epoch ms; undefined where not given. */
  readonly receivedMs: number | undefined;
}

/**
 * The readings of one pipeline round, kept for the rules while the store writes them, in typed
 * columns rather than one object per reading. Objects that wait on the store outlive V8's young
 * generation: they are copied, promoted and collected again, and with the rules on that copying
 * was most of the garbage collector's work. Once the store has the readings the rules walk the
 * columns themselves (a StoredBatch), so no object per reading is made at all.
 */
export class ReadingColumns implements StoredBatch {
  private time = new Float64Array(0);
  private flag = new Uint8Array(0);
  /** ROW slots per reading, in its kind's quantity order; NaN where it has no value. */
  private values = new Float64Array(0);
  /** The slots holding booleans (1 = true), one bit each, per reading. */
  private booleans = new Uint32Array(0);
  /** Per reading, the index of its message in `messages`. */
  private message = new Uint32Array(0);
  /** Per reading, its message's seq and receive time (NaN: not given), read without a lookup. */
  private seqs = new Float64Array(0);
  private received = new Float64Array(0);
  /** One record per message: its device, kind, replay flag, seq and receive time (evidence). */
  private readonly messages: Message[] = [];
  private count = 0;
  /** Indexes of readings the store refused (see markRefused). */
  private refused: ReadonlySet<number> = NONE;

  constructor(capacity = 1_024) {
    this.grow(Math.max(1, capacity));
  }

  get length(): number {
    return this.count;
  }

  /** Readings it holds without growing. */
  get capacity(): number {
    return this.time.length;
  }

  /** Empty again, keeping its memory (for the next round). */
  clear(): void {
    this.count = 0;
    this.messages.length = 0;
    this.refused = NONE;
  }

  /** The readings at these indexes were refused by the store: not stored (isStored false). */
  markRefused(refused: ReadonlySet<number>): this {
    this.refused = refused;
    return this;
  }

  /**
   * Add one message's points (all of one device and kind), in order. Only the kind's quantities
   * are kept: a validated uplink has no others, and no rule can read another. `seq` and
   * `receivedMs` (the message's uplink seq and receive time) go into evidence packages.
   */
  add(
    deviceId: string,
    replay: boolean,
    points: readonly Point[],
    seq?: number,
    receivedMs?: number,
  ): void {
    const first = points[0];
    if (first === undefined) return;
    if (this.count + points.length > this.time.length) {
      this.grow(Math.max(this.time.length * 2, this.count + points.length));
    }
    const kind = first.measurement;
    const names = NAMES[kind];
    const m = this.messages.length;
    this.messages.push({ deviceId, kind, replay, seq, receivedMs });
    const seqValue = seq ?? Number.NaN;
    const receivedValue = receivedMs ?? Number.NaN;
    for (const point of points) {
      const i = this.count++;
      this.time[i] = point.timeMs;
      this.flag[i] = FLAG_INDEX.get(point.tags.quality) ?? 0;
      this.message[i] = m;
      this.seqs[i] = seqValue;
      this.received[i] = receivedValue;
      const row = i * ROW;
      const fields = point.fields as Readonly<Record<string, number | boolean | undefined>>;
      let booleans = 0;
      for (let slot = 0; slot < names.length; slot++) {
        const value = fields[names[slot] as string];
        if (typeof value === "number") this.values[row + slot] = value;
        else if (typeof value === "boolean") {
          booleans |= 1 << slot;
          this.values[row + slot] = value ? 1 : 0;
        } else this.values[row + slot] = EMPTY;
      }
      this.booleans[i] = booleans;
    }
  }

  isStored(i: number): boolean {
    return this.refused.size === 0 || !this.refused.has(i);
  }

  deviceId(i: number): string {
    return this.source(i).deviceId;
  }

  timeMs(i: number): number {
    return this.time[i] as number;
  }

  quality(i: number): QualityFlag {
    return FLAGS[this.flag[i] as number] as QualityFlag;
  }

  replay(i: number): boolean {
    return this.source(i).replay;
  }

  seq(i: number): number | undefined {
    if (i < 0 || i >= this.count) throw new RangeError(`reading ${i} of ${this.count}`);
    const seq = this.seqs[i] as number;
    return Number.isNaN(seq) ? undefined : seq;
  }

  receivedMs(i: number): number | undefined {
    if (i < 0 || i >= this.count) throw new RangeError(`reading ${i} of ${this.count}`);
    const received = this.received[i] as number;
    return Number.isNaN(received) ? undefined : received;
  }

  value(i: number, quantity: string): number | boolean | undefined {
    const source = this.source(i);
    const slot = SLOTS[source.kind].get(quantity);
    if (slot === undefined) return undefined;
    const value = this.values[i * ROW + slot] as number;
    if (Number.isNaN(value)) return undefined;
    return ((this.booleans[i] as number) & (1 << slot)) !== 0 ? value === 1 : value;
  }

  private source(i: number): Message {
    if (i < 0 || i >= this.count) throw new RangeError(`reading ${i} of ${this.count}`);
    return this.messages[this.message[i] as number] as Message;
  }

  private grow(capacity: number): void {
    const time = new Float64Array(capacity);
    const flag = new Uint8Array(capacity);
    const values = new Float64Array(capacity * ROW);
    const booleans = new Uint32Array(capacity);
    const message = new Uint32Array(capacity);
    const seqs = new Float64Array(capacity);
    const received = new Float64Array(capacity);
    time.set(this.time.subarray(0, this.count));
    flag.set(this.flag.subarray(0, this.count));
    values.set(this.values.subarray(0, this.count * ROW));
    booleans.set(this.booleans.subarray(0, this.count));
    message.set(this.message.subarray(0, this.count));
    seqs.set(this.seqs.subarray(0, this.count));
    received.set(this.received.subarray(0, this.count));
    this.time = time;
    this.flag = flag;
    this.values = values;
    this.booleans = booleans;
    this.message = message;
    this.seqs = seqs;
    this.received = received;
  }
}
