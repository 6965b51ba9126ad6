import { performance } from "node:perf_hooks";
import { setImmediate as yieldNow } from "node:timers/promises";
import type { Device } from "../../contracts/index.js";
import type { QualityFlag } from "../../contracts/index.js";
import type { StoredBatch } from "../../contracts/model/stored-readings.js";

/*
 * The replay of a backtest: the devices' stored readings read back chunk by chunk of data time,
 * merged in time order, and handed to the drivers as the ingest would hand them over (one batch
 * per tick of data time, `now` at the batch's newest reading), with a tick at every `tickMs` of
 * data time (`now` at that instant). Only the drivers' public entry points are used: what the
 * engine makes of a batch and a tick is its own business.
 */

/** A stored reading of a device, as the store answers (the device is the query's). */
export interface HistoryRow {
  readonly timeMs: number;
  readonly quality: QualityFlag;
  /** The uplink message's seq, where the store keeps it. */
  readonly seq?: number | undefined;
  readonly values: Readonly<Record<string, number | boolean>>;
}

/** Where the stored history comes from (the time-series store, through the composition root). */
export interface HistorySource {
  /** A device's stored readings in [fromMs, toMs), oldest first, at most `limit`. */
  readings(
    device: Device,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<readonly HistoryRow[]>;
  /**
   * Readings the replay reads at once (default CHUNK_READINGS): the source's trade-off between
   * the number of reads and the memory a chunk holds.
   */
  readonly chunkReadings?: number;
  /**
   * At least this many readings of each device per read, whatever `chunkReadings` gives: each
   * read costs a query per device, so many devices in a small chunk pay that cost for few rows.
   */
  readonly readingsPerDevice?: number;
}

/** What the replay feeds: a rules driver, through its public entry points. */
export interface ReplayTarget {
  onStoredBatch(readings: StoredBatch): void;
  tick(): void;
}

export interface ReplayProgress {
  /** Data time reached. */
  readonly atMs: number;
  readonly warmUpFromMs: number;
  readonly fromMs: number;
  readonly toMs: number;
  /** Readings replayed so far, warm-up included. */
  readonly readings: number;
}

export interface ReplayArgs {
  readonly history: HistorySource;
  readonly devices: readonly Device[];
  readonly targets: readonly ReplayTarget[];
  /** Sets the drivers' clock. */
  readonly setNow: (ms: number) => void;
  /** Start of the warm-up; ticks fall on it and every `tickMs` after it. */
  readonly warmUpFromMs: number;
  readonly fromMs: number;
  readonly toMs: number;
  readonly tickMs: number;
  /** Past this many readings the replay stops with TooManyReadings. */
  readonly maxReadings?: number | undefined;
  readonly onProgress?: ((progress: ReplayProgress) => void) | undefined;
  /** Data time read at once, rounded to whole ticks (default: about 200,000 readings' worth). */
  readonly chunkMs?: number | undefined;
  /** Readings asked of the store per query (default 50,000). */
  readonly pageSize?: number | undefined;
}

export interface Replayed {
  /** Readings in [fromMs, toMs). */
  readonly readings: number;
  readonly warmUpReadings: number;
  readonly firstMs: number | undefined;
  readonly lastMs: number | undefined;
}

/** The replay went past its reading budget. */
export class TooManyReadings extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} readings to replay`);
    this.name = "TooManyReadings";
  }
}

/**
 * Readings read from the store at once, by the devices' expected intervals: a chunk of data time
 * is as long as that many readings take (rounded to whole ticks). Fewer, longer reads cost less
 * over HTTP (InfluxDB); the chunk is what is held in memory. A source may ask for its own size
 * (HistorySource.chunkReadings).
 */
const CHUNK_READINGS = 200_000;
/** Readings asked of the store per query; a device with more in a chunk is read in pages. */
const PAGE_SIZE = 50_000;
/** Devices read from the store at the same time (InfluxDB answers over HTTP). */
const READ_CONCURRENCY = 8;
/** Wall time between yields to the event loop (the API's process serves other requests). */
const YIELD_EVERY_MS = 20;
const PROGRESS_EVERY_MS = 250;

/** Data time in which the devices send about `chunkReadings` readings, by their expected intervals. */
function chunkFor(devices: readonly Device[], chunkReadings: number): number {
  const perMs = devices.reduce((n, d) => n + 1 / (d.expectedIntervalS * 1_000), 0);
  return perMs > 0 ? Math.min(chunkReadings / perMs, 365 * 86_400_000) : 86_400_000;
}

/** One device's readings in [fromMs, toMs), paged; readings of one instant never split a page. */
async function readDevice(
  history: HistorySource,
  device: Device,
  fromMs: number,
  toMs: number,
  pageSize: number,
): Promise<HistoryRow[]> {
  const out: HistoryRow[] = [];
  let start = fromMs;
  for (;;) {
    const page = await history.readings(device, start, toMs, pageSize);
    if (page.length < pageSize) {
      for (const r of page) out.push(r);
      return out;
    }
    // A full page: the readings of its last instant (one per quality flag) may go on in the
    // next, so they are read again from there.
    const last = (page[page.length - 1] as HistoryRow).timeMs;
    let keep = page.length;
    while (keep > 0 && (page[keep - 1] as HistoryRow).timeMs === last) keep -= 1;
    if (keep === 0) keep = page.length; // a whole page of one instant
    for (let i = 0; i < keep; i++) out.push(page[i] as HistoryRow);
    start = keep === page.length ? last + 1 : last;
  }
}

/**
 * Readings of every device in time order, as two columns: the store's rows, and each row's
 * device (an index into the replay's devices). No object per reading is made beyond the store's.
 */
interface Chunk {
  readonly rows: HistoryRow[];
  readonly owners: number[];
}

/**
 * The devices' lists (each oldest first) merged in time order, readings of one instant in
 * device order: a heap of the lists' heads, log(devices) steps a reading.
 */
function mergeByTime(lists: readonly HistoryRow[][]): Chunk {
  const rows: HistoryRow[] = [];
  const owners: number[] = [];
  const next = new Int32Array(lists.length);
  const headTime = new Float64Array(lists.length);
  // The heap holds device indexes; its order: head time, then device index.
  const heap: number[] = [];
  const before = (x: number, y: number) =>
    (headTime[x] as number) < (headTime[y] as number) || (headTime[x] === headTime[y] && x < y);
  const down = (i: number) => {
    const len = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= len) return;
      const r = l + 1;
      const c = r < len && before(heap[r] as number, heap[l] as number) ? r : l;
      if (!before(heap[c] as number, heap[i] as number)) return;
      const swap = heap[c] as number;
      heap[c] = heap[i] as number;
      heap[i] = swap;
      i = c;
    }
  };
  lists.forEach((list, d) => {
    if (list.length === 0) return;
    headTime[d] = (list[0] as HistoryRow).timeMs;
    heap.push(d);
  });
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
  while (heap.length > 0) {
    const d = heap[0] as number;
    const list = lists[d] as HistoryRow[];
    const i = next[d] as number;
    rows.push(list[i] as HistoryRow);
    owners.push(d);
    if (i + 1 < list.length) {
      next[d] = i + 1;
      headTime[d] = (list[i + 1] as HistoryRow).timeMs;
      down(0);
    } else {
      // The list is done: the heap's last entry takes its place (none: the merge is done).
      const last = heap.pop() as number;
      if (heap.length > 0) {
        heap[0] = last;
        down(0);
      }
    }
  }
  return { rows, owners };
}

/** Every device's readings in [fromMs, toMs), merged in time order. */
async function readChunk(
  history: HistorySource,
  devices: readonly Device[],
  fromMs: number,
  toMs: number,
  pageSize: number,
): Promise<Chunk> {
  const lists: HistoryRow[][] = new Array<HistoryRow[]>(devices.length);
  let next = 0;
  const worker = async () => {
    while (next < devices.length) {
      const i = next++;
      lists[i] = await readDevice(history, devices[i] as Device, fromMs, toMs, pageSize);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, devices.length) }, worker));
  return mergeByTime(lists);
}

/** The first index at or after `from` whose reading is later than `at`. */
function after(rows: readonly HistoryRow[], from: number, at: number): number {
  let lo = from;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((rows[mid] as HistoryRow).timeMs <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Readings [from, from + length) of a chunk as the driver takes them (a StoredBatch, no object per
 * reading): not replayed, so judged as the live readings they were; the uplink seq the store
 * kept; no receive time (the store does not keep it).
 */
class ChunkBatch implements StoredBatch {
  constructor(
    private readonly chunk: Chunk,
    private readonly ids: readonly string[],
    private readonly from: number,
    readonly length: number,
  ) {}
  private row(i: number): HistoryRow {
    return this.chunk.rows[this.from + i] as HistoryRow;
  }
  isStored(): boolean {
    return true;
  }
  deviceId(i: number): string {
    return this.ids[this.chunk.owners[this.from + i] as number] as string;
  }
  timeMs(i: number): number {
    return this.row(i).timeMs;
  }
  quality(i: number): QualityFlag {
    return this.row(i).quality;
  }
  replay(): boolean {
    return false;
  }
  seq(i: number): number | undefined {
    return this.row(i).seq;
  }
  receivedMs(): number | undefined {
    return undefined;
  }
  value(i: number, quantity: string): number | boolean | undefined {
    return (this.row(i).values as Readonly<Record<string, number | boolean | undefined>>)[quantity];
  }
}

export async function replay(args: ReplayArgs): Promise<Replayed> {
  const { history, devices, targets, tickMs, fromMs, toMs, warmUpFromMs } = args;
  const chunkReadings = Math.max(
    history.chunkReadings ?? CHUNK_READINGS,
    (history.readingsPerDevice ?? 0) * devices.length,
  );
  const chunkMs =
    Math.max(1, Math.round((args.chunkMs ?? chunkFor(devices, chunkReadings)) / tickMs)) * tickMs;
  const pageSize = args.pageSize ?? PAGE_SIZE;
  let readings = 0;
  let warmUpReadings = 0;
  let firstMs: number | undefined;
  let lastMs: number | undefined;
  let lastYield = performance.now();
  let lastProgress = lastYield;
  const progress = (atMs: number, force: boolean) => {
    if (args.onProgress === undefined) return;
    const now = performance.now();
    if (!force && now - lastProgress < PROGRESS_EVERY_MS) return;
    lastProgress = now;
    args.onProgress({ atMs, warmUpFromMs, fromMs, toMs, readings: readings + warmUpReadings });
  };
  const tick = (at: number) => {
    args.setNow(at);
    for (const target of targets) target.tick();
  };
  const ids = devices.map((d) => d.id);
  const feed = (chunk: Chunk, from: number, to: number) => {
    if (to <= from) return;
    // The batch is handed over at its newest reading; each of its readings arrived when it was
    // taken (the drivers' arrivalAtReading), so no device's clock depends on the batch's others.
    args.setNow((chunk.rows[to - 1] as HistoryRow).timeMs);
    const batch = new ChunkBatch(chunk, ids, from, to - from);
    for (const target of targets) target.onStoredBatch(batch);
  };

  // The first tick reads the registry and the rules: the engine watches from here.
  tick(warmUpFromMs);
  let nextTick = warmUpFromMs + tickMs;
  let pending: Promise<Chunk> | undefined;
  const readNext = (start: number) => {
    const promise = readChunk(history, devices, start, Math.min(start + chunkMs, toMs), pageSize);
    promise.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    return promise;
  };
  // Readings after the last tick of a chunk wait for the next tick, in the next chunk: chunk
  // boundaries change nothing.
  let carry: Chunk = { rows: [], owners: [] };
  for (let start = warmUpFromMs; start < toMs; start += chunkMs) {
    const end = Math.min(start + chunkMs, toMs);
    const read = await (pending ?? readNext(start));
    pending = end < toMs ? readNext(end) : undefined;
    for (const r of read.rows) {
      if (r.timeMs < fromMs) warmUpReadings += 1;
      else {
        readings += 1;
        firstMs ??= r.timeMs;
        lastMs = r.timeMs;
      }
    }
    if (args.maxReadings !== undefined && readings + warmUpReadings > args.maxReadings) {
      throw new TooManyReadings(args.maxReadings);
    }
    const chunk: Chunk =
      carry.rows.length === 0
        ? read
        : { rows: carry.rows.concat(read.rows), owners: carry.owners.concat(read.owners) };
    // Each tick inside the chunk after the readings up to it; a reading at the chunk's end
    // belongs to the next chunk, and so does the tick there.
    let i = 0;
    for (; nextTick < end; nextTick += tickMs) {
      const j = after(chunk.rows, i, nextTick);
      feed(chunk, i, j);
      i = j;
      tick(nextTick);
      if (performance.now() - lastYield >= YIELD_EVERY_MS) {
        progress(nextTick, false);
        await yieldNow();
        lastYield = performance.now();
      }
    }
    carry = { rows: chunk.rows.slice(i), owners: chunk.owners.slice(i) };
  }
  feed(carry, 0, carry.rows.length);
  tick(toMs);
  progress(toMs, true);
  return { readings, warmUpReadings, firstMs, lastMs };
}
