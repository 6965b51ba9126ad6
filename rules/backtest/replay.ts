import { performance } from "node:perf_hooks";
import { setImmediate as yieldNow } from "node:timers/promises";
import type { Device } from "../../contracts/index.js";
import type { StoredReading } from "../../contracts/model/stored-readings.js";

/*
 * The replay of a backtest: the devices' stored readings read back chunk by chunk of data time,
 * merged in time order, and handed to the drivers as the ingest would hand them over (one batch
 * per tick of data time, `now` at the batch's newest reading), with a tick at every `tickMs` of
 * data time (`now` at that instant). Only the drivers' public entry points are used: what the
 * engine makes of a batch and a tick is its own business.
 */

/** Where the stored history comes from (the time-series store, through the composition root). */
export interface HistorySource {
  /** A device's stored readings in [fromMs, toMs), oldest first, at most `limit`. */
  readings(
    device: Device,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<readonly StoredReading[]>;
}

/** What the replay feeds: a rules driver, through its public entry points. */
export interface ReplayTarget {
  onStored(readings: readonly StoredReading[]): void;
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
 * (the embedded store scans a device's rows per query); the chunk is what is held in memory.
 */
const CHUNK_READINGS = 200_000;
/** Readings asked of the store per query; a device with more in a chunk is read in pages. */
const PAGE_SIZE = 50_000;
/** Devices read from the store at the same time (InfluxDB answers over HTTP). */
const READ_CONCURRENCY = 8;
/** Wall time between yields to the event loop (the API's process serves other requests). */
const YIELD_EVERY_MS = 20;
const PROGRESS_EVERY_MS = 250;

/** Data time in which the devices send about CHUNK_READINGS readings, by their expected intervals. */
function chunkFor(devices: readonly Device[]): number {
  const perMs = devices.reduce((n, d) => n + 1 / (d.expectedIntervalS * 1_000), 0);
  return perMs > 0 ? Math.min(CHUNK_READINGS / perMs, 365 * 86_400_000) : 86_400_000;
}

/** One device's readings in [fromMs, toMs), paged; readings of one instant never split a page. */
async function readDevice(
  history: HistorySource,
  device: Device,
  fromMs: number,
  toMs: number,
  pageSize: number,
): Promise<StoredReading[]> {
  const out: StoredReading[] = [];
  let start = fromMs;
  for (;;) {
    const page = await history.readings(device, start, toMs, pageSize);
    if (page.length < pageSize) {
      for (const r of page) out.push(r);
      return out;
    }
    // A full page: the readings of its last instant (one per quality flag) may go on in the
    // next, so they are read again from there.
    const last = (page[page.length - 1] as StoredReading).timeMs;
    let keep = page.length;
    while (keep > 0 && (page[keep - 1] as StoredReading).timeMs === last) keep -= 1;
    if (keep === 0) keep = page.length; // a whole page of one instant
    for (let i = 0; i < keep; i++) out.push(page[i] as StoredReading);
    start = keep === page.length ? last + 1 : last;
  }
}

/** Every device's readings in [fromMs, toMs), merged in time order. */
async function readChunk(
  history: HistorySource,
  devices: readonly Device[],
  fromMs: number,
  toMs: number,
  pageSize: number,
): Promise<StoredReading[]> {
  const lists: StoredReading[][] = new Array<StoredReading[]>(devices.length);
  let next = 0;
  const worker = async () => {
    while (next < devices.length) {
      const i = next++;
      lists[i] = await readDevice(history, devices[i] as Device, fromMs, toMs, pageSize);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, devices.length) }, worker));
  const merged = lists.flat();
  // Stable: readings of one instant keep their device order.
  merged.sort((a, b) => a.timeMs - b.timeMs);
  return merged;
}

/** The first index at or after `from` whose reading is later than `at`. */
function after(readings: readonly StoredReading[], from: number, at: number): number {
  let lo = from;
  let hi = readings.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((readings[mid] as StoredReading).timeMs <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export async function replay(args: ReplayArgs): Promise<Replayed> {
  const { history, devices, targets, tickMs, fromMs, toMs, warmUpFromMs } = args;
  const chunkMs = Math.max(1, Math.round((args.chunkMs ?? chunkFor(devices)) / tickMs)) * tickMs;
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
  const feed = (chunk: readonly StoredReading[], from: number, to: number) => {
    if (to <= from) return;
    const batch = chunk.slice(from, to);
    // The batch arrives when its newest reading was taken.
    args.setNow((batch[batch.length - 1] as StoredReading).timeMs);
    for (const target of targets) target.onStored(batch);
  };

  // The first tick reads the registry and the rules: the engine watches from here.
  tick(warmUpFromMs);
  let nextTick = warmUpFromMs + tickMs;
  let pending: Promise<StoredReading[]> | undefined;
  const readNext = (start: number) => {
    const promise = readChunk(history, devices, start, Math.min(start + chunkMs, toMs), pageSize);
    promise.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    return promise;
  };
  // Readings after the last tick of a chunk wait for the next tick, in the next chunk: chunk
  // boundaries change nothing.
  let carry: StoredReading[] = [];
  for (let start = warmUpFromMs; start < toMs; start += chunkMs) {
    const end = Math.min(start + chunkMs, toMs);
    const read = await (pending ?? readNext(start));
    pending = end < toMs ? readNext(end) : undefined;
    for (const r of read) {
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
    const chunk = carry.length === 0 ? read : carry.concat(read);
    // Each tick inside the chunk after the readings up to it; a reading at the chunk's end
    // belongs to the next chunk, and so does the tick there.
    let i = 0;
    for (; nextTick < end; nextTick += tickMs) {
      const j = after(chunk, i, nextTick);
      feed(chunk, i, j);
      i = j;
      tick(nextTick);
      if (performance.now() - lastYield >= YIELD_EVERY_MS) {
        progress(nextTick, false);
        await yieldNow();
        lastYield = performance.now();
      }
    }
    carry = chunk.slice(i);
  }
  feed(carry, 0, carry.length);
  tick(toMs);
  progress(toMs, true);
  return { readings, warmUpReadings, firstMs, lastMs };
}
