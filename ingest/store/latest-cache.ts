import type { SensorKind } from "../../contracts/index.js";
import type { Point, StoredReading, TimeSeriesStore, WriteBatch, WriteOutcome } from "./types.js";

/*
 * The newest reading of each device, kept in memory beside the time-series store it wraps (what
 * InfluxDB 3 calls a last value cache and ThingsBoard keeps as its latest telemetry): the
 * console's device list, map and emergency board ask the newest reading of every device every
 * few seconds, and InfluxDB answers that by scanning each measurement (`GROUP BY "device"`).
 *
 * Exact while this process is the store's only writer, as in `citywatch start`, where the API
 * answers from the ingest's own store:
 * - A device's entry is made from the store's own answer (`latest`, `latestOf`), never from a
 *   write alone: a write says nothing of newer readings stored before the process started.
 * - A write the store accepted moves a known entry forward: a newer reading replaces it, an
 *   older one (a backlog) leaves it, one at the same instant merges its fields as the store does
 *   (the same point); a reading at the same instant with another quality flag is another series
 *   point, and the entry is dropped so the store decides.
 * - A store answer read while a write of the device was in flight is not kept (it may predate
 *   the write).
 * - An entry answers for `ttlMs` (default 60 s) after the store's answer or the last write that
 *   moved it: another writer or a retention policy that deletes the newest reading is seen
 *   within that time.
 * At most `maxDevices` entries (default 100,000; past it devices are answered by the store).
 */

export interface LatestCacheOptions {
  readonly ttlMs?: number;
  readonly maxDevices?: number;
  readonly now?: () => number;
  /** Counts each device answered: from memory (hit) or by the store (miss). */
  readonly onLookup?: (result: "hit" | "miss", count: number) => void;
}

interface Entry {
  readonly kind: SensorKind;
  /** undefined: the store has no reading of the device. */
  reading: StoredReading | undefined;
  validUntil: number;
}

export interface LatestCache {
  readonly size: number;
}

export function withLatestCache(
  store: TimeSeriesStore,
  options: LatestCacheOptions = {},
): TimeSeriesStore & { readonly latestCache: LatestCache } {
  const ttlMs = options.ttlMs ?? 60_000;
  const maxDevices = options.maxDevices ?? 100_000;
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  /** Counts writes per device: a store answer is kept only if none came while it was asked. */
  const writes = new Map<string, number>();
  const writesOf = (deviceId: string) => writes.get(deviceId) ?? 0;

  const fresh = (deviceId: string, kind: SensorKind): Entry | undefined => {
    const entry = entries.get(deviceId);
    if (entry === undefined || entry.kind !== kind) return undefined;
    if (entry.validUntil <= now()) {
      entries.delete(deviceId);
      return undefined;
    }
    return entry;
  };

  const remember = (
    deviceId: string,
    kind: SensorKind,
    reading: StoredReading | undefined,
    writesBefore: number,
  ) => {
    if (writesOf(deviceId) !== writesBefore) return; // a write came meanwhile
    if (!entries.has(deviceId) && entries.size >= maxDevices) return;
    entries.set(deviceId, { kind, reading, validUntil: now() + ttlMs });
  };

  /** A point the store accepted, into its device's entry. */
  const accepted = (p: Point) => {
    const deviceId = p.tags.device;
    writes.set(deviceId, writesOf(deviceId) + 1);
    const entry = entries.get(deviceId);
    if (entry === undefined || entry.kind !== p.measurement) return;
    const held = entry.reading;
    if (held === undefined || p.timeMs > held.timeMs) {
      entry.reading = { timeMs: p.timeMs, quality: p.tags.quality, seq: p.seq, values: p.fields };
    } else if (p.timeMs === held.timeMs) {
      if (p.tags.quality !== held.quality) {
        // Another series point at the same instant: which one the store calls newest is its own.
        entries.delete(deviceId);
        return;
      }
      entry.reading = {
        timeMs: p.timeMs,
        quality: p.tags.quality,
        seq: p.seq,
        values: { ...held.values, ...p.fields },
      };
    } else return; // an older reading: the entry stands
    entry.validUntil = now() + ttlMs;
  };

  const acceptedOf = (points: readonly Point[], outcome: WriteOutcome) => {
    const refused = new Set(outcome.rejected.map((r) => r.index));
    for (let i = 0; i < points.length; i++) if (!refused.has(i)) accepted(points[i] as Point);
  };

  const lookup = (result: "hit" | "miss", count: number) => {
    if (count > 0) options.onLookup?.(result, count);
  };

  return {
    name: store.name,
    open: () => store.open(),
    async write(points) {
      const outcome = await store.write(points);
      acceptedOf(points, outcome);
      return outcome;
    },
    ...(store.batch === undefined
      ? {}
      : {
          batch(): WriteBatch {
            const inner = (store.batch as () => WriteBatch)();
            // Each device's newest point of the batch and its index: all the cache needs of it.
            const newest = new Map<string, { point: Point; index: number }>();
            const merged: Array<{ point: Point; index: number }> = [];
            return {
              add(point: Point) {
                const index = inner.size;
                inner.add(point);
                const held = newest.get(point.tags.device);
                if (held === undefined || point.timeMs > held.point.timeMs) {
                  newest.set(point.tags.device, { point, index });
                } else if (point.timeMs === held.point.timeMs) merged.push({ point, index });
              },
              get size() {
                return inner.size;
              },
              async write() {
                const outcome = await inner.write();
                const refused = new Set(outcome.rejected.map((r) => r.index));
                // Points of a device's newest instant after the first: applied in order, so
                // fields merge and a second quality flag drops the entry, as for write().
                for (const { point, index } of [...newest.values(), ...merged].sort(
                  (a, b) => a.index - b.index,
                )) {
                  if (refused.has(index)) entries.delete(point.tags.device);
                  else accepted(point);
                }
                return outcome;
              },
            };
          },
        }),
    readings: (q) => store.readings(q),
    aggregate: (q) => store.aggregate(q),
    async latest(deviceId, kind) {
      const entry = fresh(deviceId, kind);
      if (entry !== undefined) {
        lookup("hit", 1);
        return entry.reading;
      }
      lookup("miss", 1);
      const before = writesOf(deviceId);
      const reading = await store.latest(deviceId, kind);
      remember(deviceId, kind, reading, before);
      return reading;
    },
    async latestOf(kind, deviceIds) {
      const out = new Map<string, StoredReading>();
      const missing: string[] = [];
      for (const id of deviceIds) {
        const entry = fresh(id, kind);
        if (entry === undefined) missing.push(id);
        else if (entry.reading !== undefined) out.set(id, entry.reading);
      }
      lookup("hit", deviceIds.length - missing.length);
      lookup("miss", missing.length);
      if (missing.length === 0) return out;
      const before = new Map(missing.map((id) => [id, writesOf(id)]));
      let found: Map<string, StoredReading>;
      if (store.latestOf !== undefined) found = await store.latestOf(kind, missing);
      else {
        found = new Map();
        for (const id of missing) {
          const reading = await store.latest(id, kind);
          if (reading !== undefined) found.set(id, reading);
        }
      }
      for (const id of missing) {
        const reading = found.get(id);
        remember(id, kind, reading, before.get(id) as number);
        if (reading !== undefined) out.set(id, reading);
      }
      return out;
    },
    ping: () => store.ping(),
    close: () => store.close(),
    latestCache: {
      get size() {
        return entries.size;
      },
    },
  };
}
