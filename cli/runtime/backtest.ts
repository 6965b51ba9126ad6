import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import type { CitywatchConfig, Device } from "../../contracts/index.js";
import type { StoreRetention } from "../../contracts/model/backtest.js";
import type { StoredReading } from "../../contracts/model/stored-readings.js";
import { influxOptions } from "../../ingest/app.js";
import { createInfluxStore } from "../../ingest/store/influxdb.js";
import { createSqliteStore } from "../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import { type BacktestDeps, BacktestError } from "../../rules/backtest/index.js";
import type { RulesRegistry } from "../../rules/driver.js";

/*
 * The stored history as the rules read it back, wired here because the rules do not know the
 * store: after a restart (the driver's backfill, cli/runtime/system.ts) and in a backtest
 * (`citywatch rules backtest`, POST /api/v1/rules/backtest).
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

/** What a backtest reads: the store's history, the registry, the store's retention, the clock. */
export function backtestDeps(options: {
  readonly store: TimeSeriesStore;
  readonly registry: RulesRegistry;
  readonly log: Logger;
  readonly now: () => number;
  /** How long the store keeps readings (storeRetention of its configuration). */
  readonly retention: () => Promise<StoreRetention>;
}): BacktestDeps {
  return {
    log: options.log.child({ module: "backtest" }),
    history: { readings: readBack(options.store) },
    registry: options.registry,
    retention: options.retention,
    now: options.now,
  };
}

/**
 * The configured store, to read: the embedded store's file must exist already (a backtest
 * of a data directory that never stored anything is a mistake, not an empty report).
 */
export function openHistoryStore(config: CitywatchConfig, log: Logger): TimeSeriesStore {
  const store = config.ingest.store;
  if (store.type === "sqlite") {
    const file = join(resolve(config.dataDir), "timeseries.db");
    if (!existsSync(file)) {
      throw new BacktestError([
        {
          path: "store",
          message: `no embedded store at ${file}: nothing was ever stored in this data directory (--data-dir, or --store influxdb)`,
        },
      ]);
    }
    return createSqliteStore(file);
  }
  // Not opened: opening creates the database, and a backtest only reads (a database that does
  // not exist is named by the retention check).
  return createInfluxStore(influxOptions(store), { log });
}
