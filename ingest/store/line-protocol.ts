import { QUANTITIES, type SensorKind } from "../../contracts/index.js";
import { fieldValueProblem, MAX_TIME_MS, pointHeaderProblem, SEQ_IN_FIELDS } from "./checks.js";
import type { Point } from "./types.js";

/**
 * InfluxDB line protocol for `Point`s, written with millisecond timestamps (`precision=ms`).
 *
 * Byte for byte what `@influxdata/influxdb-client`'s `Point.toLineProtocol()` writes (tags and
 * fields sorted by key, the same escapes, floats as `String(n)`), except booleans, written `true` /
 * `false` rather than `T` / `F`; tests/unit/ingest/store/line-protocol.test.ts holds it to that. It is a
 * template: the tag keys are fixed and already sorted, so only values are escaped, and only when
 * they hold a character that needs it.
 */

/** A point that line protocol cannot carry faithfully; it is refused, never sent. */
export class LineProtocolError extends Error {
  readonly code = "INGEST_LINE_PROTOCOL";
  constructor(message: string) {
    super(message);
    this.name = "LineProtocolError";
  }
}

/** The largest |time| in ms InfluxDB accepts (checks.ts). */
export { MAX_TIME_MS };

const MEASUREMENT_SPECIAL = /[, \n\r\t]/;
const TAG_SPECIAL = /[, =\n\r\t]/;
const MEASUREMENT_ESCAPES: Readonly<Record<string, string>> = {
  ",": "\\,",
  " ": "\\ ",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};
const TAG_ESCAPES: Readonly<Record<string, string>> = { ...MEASUREMENT_ESCAPES, "=": "\\=" };

/** Escapes a measurement name: commas, spaces and control characters. */
export function escapeMeasurement(name: string): string {
  return MEASUREMENT_SPECIAL.test(name)
    ? name.replace(/[, \n\r\t]/g, (c) => MEASUREMENT_ESCAPES[c] ?? c)
    : name;
}

/** Escapes a tag key, tag value or field key: commas, spaces, equals signs and control characters. */
export function escapeKey(value: string): string {
  return TAG_SPECIAL.test(value)
    ? value.replace(/[, =\n\r\t]/g, (c) => TAG_ESCAPES[c] ?? c)
    : value;
}

/**
 * A backslash is literal in a tag except before an escaped character, where InfluxDB's scanner
 * takes it as an escape whatever precedes it: `a\` at the end of a key or value, or `a\` before
 * `,`, ` ` or `=`, cannot be written ("invalid tag format" from influxd 1.6.7, also for `a\\`).
 */
const UNWRITABLE_BACKSLASH = /\\(?:[, =]|$)/;
/** Anything that needs a second look: a character to escape or a backslash. */
const NEEDS_CARE = /[, =\n\r\t\\]/;

function keyOrTag(what: string, value: string): string {
  if (!NEEDS_CARE.test(value)) return value;
  if (UNWRITABLE_BACKSLASH.test(value)) {
    throw new LineProtocolError(
      `${what} ${JSON.stringify(value)} has a backslash before "," " " "=" or at its end, which line protocol cannot carry`,
    );
  }
  return escapeKey(value);
}

const MEASUREMENTS: Readonly<Record<SensorKind, string>> = {
  noise: escapeMeasurement("noise"),
  dust: escapeMeasurement("dust"),
  cooking_fume: escapeMeasurement("cooking_fume"),
  water_level: escapeMeasurement("water_level"),
  utility_tunnel: escapeMeasurement("utility_tunnel"),
};

/** The tag keys of a point in the order InfluxDB sorts them (and recommends writing them). */
export const TAG_KEYS = ["device", "district", "grid_cell", "quality", "site", "zone"] as const;

/**
 * Each kind's field keys (its quantities and `seq`), sorted as the reference sorts them
 * (`Array.prototype.sort`, UTF-16 order): the template's field order, so a point's keys need no
 * sorting of their own.
 */
const FIELD_ORDER: Readonly<Record<SensorKind, readonly string[]>> = {
  noise: [...Object.keys(QUANTITIES.noise), "seq"].sort(),
  dust: [...Object.keys(QUANTITIES.dust), "seq"].sort(),
  cooking_fume: [...Object.keys(QUANTITIES.cooking_fume), "seq"].sort(),
  water_level: [...Object.keys(QUANTITIES.water_level), "seq"].sort(),
  utility_tunnel: [...Object.keys(QUANTITIES.utility_tunnel), "seq"].sort(),
};

function fieldValue(key: string, value: number | boolean): string {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new LineProtocolError(fieldValueProblem(key, value) ?? `field ${key} is refused`);
  }
  // Shortest round-trip form, e.g. 60, 0.1, 1e+21; no `i`, so InfluxDB stores a float.
  return String(value);
}

/**
 * One line of line protocol for `point`, timestamp in milliseconds. Throws LineProtocolError when
 * the point cannot be written as it is (NaN or ±Infinity, a seq or time that is not a safe
 * integer, a time InfluxDB cannot hold, a tag with an unwritable backslash).
 */
export function toLine(point: Point): string {
  const { tags, timeMs } = point;
  const problem = pointHeaderProblem(point);
  if (problem !== undefined) throw new LineProtocolError(problem);
  const measurement = MEASUREMENTS[point.measurement];

  return seriesKey(measurement, tags) + fieldSet(point) + " " + String(timeMs);
}

/**
 * Escaped series keys by tags object: the points of one message share one tags object per
 * quality flag (ingest/decode.ts), so a message's key is built once, not once per reading.
 */
const seriesKeys = new WeakMap<Point["tags"], { measurement: string; key: string }>();

function seriesKey(measurement: string, tags: Point["tags"]): string {
  const cached = seriesKeys.get(tags);
  if (cached !== undefined && cached.measurement === measurement) return cached.key;
  // Keys in TAG_KEYS order; empty values are left out, as the reference does (line protocol has
  // no empty tag value).
  let line = measurement;
  if (tags.device !== "") line += ",device=" + keyOrTag("tag device", tags.device);
  if (tags.district !== "") line += ",district=" + keyOrTag("tag district", tags.district);
  if (tags.grid_cell !== "") line += ",grid_cell=" + keyOrTag("tag grid_cell", tags.grid_cell);
  line += ",quality=" + keyOrTag("tag quality", tags.quality);
  if (tags.site !== "") line += ",site=" + keyOrTag("tag site", tags.site);
  if (tags.zone !== undefined && tags.zone !== "") {
    line += ",zone=" + keyOrTag("tag zone", tags.zone);
  }
  seriesKeys.set(tags, { measurement, key: line });
  return line;
}

/** ` k=v,k=v` in sorted key order, `seq` as an integer. */
function fieldSet(point: Point): string {
  const fields = point.fields as Readonly<Record<string, number | boolean | undefined>>;
  let set = "";
  let written = 0;
  for (const key of FIELD_ORDER[point.measurement]) {
    if (key === "seq") {
      set += (set === "" ? " seq=" : ",seq=") + String(point.seq) + "i";
      continue;
    }
    const value = fields[key];
    if (value === undefined) continue;
    set += (set === "" ? " " : ",") + key + "=" + fieldValue(key, value);
    written++;
  }
  let present = 0;
  for (const key in fields) if (fields[key] !== undefined) present++;
  return present === written ? set : anyFieldSet(point);
}

/** The general case: keys that are not the kind's quantities, sorted here. */
function anyFieldSet(point: Point): string {
  const fields = point.fields as Readonly<Record<string, number | boolean | undefined>>;
  if (Object.hasOwn(fields, "seq")) {
    throw new LineProtocolError(SEQ_IN_FIELDS);
  }
  const keys = Object.keys(fields).filter((key) => key !== "" && fields[key] !== undefined);
  keys.push("seq");
  keys.sort();
  let set = "";
  for (const key of keys) {
    const value =
      key === "seq" ? `${point.seq}i` : fieldValue(key, fields[key] as number | boolean);
    set += (set === "" ? " " : ",") + keyOrTag("field key", key) + "=" + value;
  }
  return set;
}

/**
 * A batch of points as the body of one write: their lines joined by newlines, in UTF-8, and the
 * points refused before sending. Line k is the line of point `index(k)`. A line holds no raw
 * newline (line protocol escapes them), so any run of lines is one slice of the body.
 */
export class EncodedBatch {
  constructor(
    /** The lines, newline-separated, no trailing newline. */
    readonly body: Buffer,
    /** Where each line starts in `body`, and one past the end of the body. */
    private readonly starts: Uint32Array,
    /** Each line's point, as an index into the batch. */
    private readonly indexes: Uint32Array,
    readonly refused: ReadonlyArray<{ readonly index: number; readonly reason: string }>,
    /** Hands the body's memory back for another batch (see BodyPool); a no-op when pooled off. */
    private readonly onRelease: () => void = () => undefined,
  ) {}

  /**
   * The body is no longer needed (its write is over): its memory may go to another batch, so
   * nothing may be read from this one afterwards.
   */
  release(): void {
    this.onRelease();
  }

  get lineCount(): number {
    return this.indexes.length;
  }

  /** The index in the batch of line `k`'s point. */
  index(k: number): number {
    return this.indexes[k] as number;
  }

  /** Line `k` as text. */
  text(k: number): string {
    return this.body.toString("utf8", this.starts[k], (this.starts[k + 1] as number) - 1);
  }

  /** Lines [from, to) as one body (a view of `body`, no copy). */
  slice(from: number, to: number): Buffer {
    return to <= from
      ? this.body.subarray(0, 0)
      : this.body.subarray(this.starts[from], (this.starts[to] as number) - 1);
  }
}

/** Room for this many UTF-8 bytes per point at first: the body grows when the lines are longer. */
const BYTES_PER_POINT = 192;

/**
 * Write bodies kept for the next batches. A body is a megabyte or so of memory outside the JS
 * heap, and V8 counts such memory towards starting a full collection: a fresh one per write,
 * grown by doubling, started one every second under load. Bodies come from here and go back
 * once their write is over.
 */
export class BodyPool {
  readonly #free: Buffer[] = [];

  constructor(
    /** Bodies kept at most (about the writes in flight at once). */
    private readonly keep = 4,
    /** Larger bodies are not kept. */
    private readonly maxBytes = 16 * 1024 * 1024,
  ) {}

  /**
   * The largest kept buffer when it has at least `bytes`, else a new one of its own memory (never
   * a slice of Node's shared pool).
   */
  take(bytes: number): Buffer {
    let largest = -1;
    for (let i = 0; i < this.#free.length; i++) {
      if (largest < 0 || (this.#free[i] as Buffer).length > (this.#free[largest] as Buffer).length)
        largest = i;
    }
    if (largest >= 0 && (this.#free[largest] as Buffer).length >= bytes) {
      return this.#free.splice(largest, 1)[0] as Buffer;
    }
    return Buffer.allocUnsafeSlow(Math.max(bytes, 64 * 1024));
  }

  give(buffer: Buffer): void {
    if (this.#free.length < this.keep && buffer.length <= this.maxBytes) this.#free.push(buffer);
  }

  /** Bodies waiting to be used again (tests, metrics). */
  get size(): number {
    return this.#free.length;
  }
}

/**
 * Lines written into one growing buffer as points are added, so no point and no line string
 * need outlive its turn: the caller may drop each point once it is added. Points line protocol
 * cannot carry are refused (with the reason), never written. `finish` gives the write body.
 */
export class LineEncoder {
  #body: Buffer;
  #offset = 0;
  /** Where each line starts, then one past the end of the body's last newline. */
  #starts: Uint32Array;
  /** Each line's point, by the order points were added. */
  #indexes: Uint32Array;
  #lines = 0;
  #added = 0;
  readonly #refused: Array<{ index: number; reason: string }> = [];

  constructor(
    /** Room for this many points from the start (the store's batches hold up to 5,000). */
    expectedPoints = 8_192,
    private readonly pool?: BodyPool,
  ) {
    const points = Math.max(16, expectedPoints);
    const bytes = points * BYTES_PER_POINT;
    this.#body = pool !== undefined ? pool.take(bytes) : Buffer.allocUnsafe(bytes);
    this.#starts = new Uint32Array(points + 1);
    this.#indexes = new Uint32Array(points);
  }

  /** Points added so far (written or refused). */
  get size(): number {
    return this.#added;
  }

  add(point: Point): void {
    const index = this.#added++;
    let line: string;
    try {
      line = toLine(point);
    } catch (err) {
      if (!(err instanceof LineProtocolError)) throw err;
      this.#refused.push({ index, reason: err.message });
      return;
    }
    if (this.#lines === this.#indexes.length) this.#growIndex();
    // At most 3 bytes per UTF-16 unit, and the newline.
    const most = line.length * 3 + 1;
    if (this.#offset + most > this.#body.length) {
      const bytes = Math.max(this.#body.length * 2, this.#offset + most);
      const grown = this.pool !== undefined ? this.pool.take(bytes) : Buffer.allocUnsafe(bytes);
      this.#body.copy(grown, 0, 0, this.#offset);
      this.#body = grown;
    }
    this.#starts[this.#lines] = this.#offset;
    this.#indexes[this.#lines] = index;
    this.#lines++;
    this.#offset += this.#body.write(line, this.#offset, "utf8");
    this.#body[this.#offset++] = 0x0a;
  }

  /** The write body of the points added. */
  finish(): EncodedBatch {
    this.#starts[this.#lines] = this.#offset;
    const body = this.#body;
    const pool = this.pool;
    let released = false;
    return new EncodedBatch(
      body.subarray(0, Math.max(0, this.#offset - 1)),
      this.#starts.subarray(0, this.#lines + 1),
      this.#indexes.subarray(0, this.#lines),
      this.#refused,
      () => {
        if (released || pool === undefined) return;
        released = true;
        pool.give(body);
      },
    );
  }

  #growIndex(): void {
    const size = this.#indexes.length * 2;
    const starts = new Uint32Array(size + 1);
    starts.set(this.#starts.subarray(0, this.#lines));
    const indexes = new Uint32Array(size);
    indexes.set(this.#indexes);
    this.#starts = starts;
    this.#indexes = indexes;
  }
}

/** The write body of `points` (see LineEncoder). */
export function encodeBatch(points: readonly Point[], pool?: BodyPool): EncodedBatch {
  const encoder = new LineEncoder(points.length, pool);
  for (const point of points) encoder.add(point);
  return encoder.finish();
}
