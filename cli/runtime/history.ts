import type { Logger } from "pino";
import type { Device } from "../../contracts/index.js";
import type { StoredReading } from "../../contracts/model/stored-readings.js";
import { createInfluxStore, type InfluxStoreOptions } from "../../ingest/store/influxdb.js";
import { createSqliteStore } from "../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import type { HistorySource } from "../../rules/backtest/replay.js";

/*
 * The stored history as the rules read it back, wired here because the rules do not know the
 * store: after a restart (the driver's backfill, cli/runtime/system.ts) and in a backtest,
 * in this thread or in a worker thread of a split one (backtest-part-worker.ts, which imports
 * no more than this: a worker loads its modules itself).
 */

/**
 * A device's stored readings in [fromMs, toMs), oldest first, at most `limit`, as the driver
 * takes them: not replayed, so they are judged as the live readings they were.
 */
export function readBack(store: TimeSeriesStore) {
  return async (
    device: Device,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<StoredReading[]> =>
    (await store.readings({ deviceId: device.id, kind: device.kind, fromMs, toMs, limit })).map(
      (r) => ({
        deviceId: device.id,
        kind: device.kind,
        timeMs: r.timeMs,
        quality: r.quality,
        values: r.values,
        replay: false,
        // The uplink message is stored with each reading; its receive time is not.
        seq: r.seq,
      }),
    );
}

/**
 * Readings a backtest reads at once from the embedded store. Its reads are local and cheap, and a
 * smaller chunk dies young: at the replay's default (200,000, sized for InfluxDB's HTTP reads) the
 * chunks outlived the young generation, and the old generation's collections cost the default
 * pack about a sixth of its replay speed (npm run bench -- backtest: about 110,000 against
 * 130,000 readings/s on one thread, on this project's 2-core machine).
 */
export const EMBEDDED_CHUNK_READINGS = 40_000;

/**
 * ... but at least this many of each device: a read asks the store once per device, and with a
 * thousand devices 40,000 readings are 40 of each, a query's own cost then outweighing its rows
 * (72 hours of a 1,000-device city read in one thread at 206,000-213,000 readings/s in parts of
 * 40,000, at 302,000 in parts of 120,000). 240 keeps a 160-device city at 40,000 and gives each of
 * two threads replaying 500 devices 120,000.
 */
export const EMBEDDED_READINGS_PER_DEVICE = 240;

/** The store's history as a backtest replays it: each device's rows as the store answers. */
export function historyOf(store: TimeSeriesStore): HistorySource {
  return {
    readings: (device, fromMs, toMs, limit) =>
      store.readings({ deviceId: device.id, kind: device.kind, fromMs, toMs, limit }),
    ...(store.name === "sqlite"
      ? { chunkReadings: EMBEDDED_CHUNK_READINGS, readingsPerDevice: EMBEDDED_READINGS_PER_DEVICE }
      : {}),
  };
}

/** The store a backtest reads, as data: what a worker thread of a split backtest opens. */
export type HistorySpec =
  | { readonly type: "sqlite"; readonly file: string }
  | { readonly type: "influxdb"; readonly options: InfluxStoreOptions };

/** The store a spec names, to read. */
export function openHistorySpec(spec: HistorySpec, log: Logger): TimeSeriesStore {
  // Not opened: opening creates the database, and a backtest only reads (a database that does
  // not exist is named by the retention check).
  return spec.type === "sqlite"
    ? createSqliteStore(spec.file)
    : createInfluxStore(spec.options, { log });
}
