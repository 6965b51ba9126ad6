import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import type { CitywatchConfig } from "../../contracts/index.js";
import type { StoreRetention } from "../../contracts/model/backtest.js";
import { influxOptions } from "../../ingest/app.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import { type BacktestDeps, BacktestError, type PartRunner } from "../../rules/backtest/index.js";
import type { RulesRegistry } from "../../rules/driver.js";
import { historyOf, type HistorySpec } from "./history.js";

/*
 * A backtest's wiring (`citywatch rules backtest`, POST /api/v1/rules/backtest): the store's
 * history (history.ts), the registry, the store's retention, the clock.
 */

/** What a backtest reads: the store's history, the registry, the store's retention, the clock. */
export function backtestDeps(options: {
  readonly store: TimeSeriesStore;
  readonly registry: RulesRegistry;
  readonly log: Logger;
  readonly now: () => number;
  /** How long the store keeps readings (storeRetention of its configuration). */
  readonly retention: () => Promise<StoreRetention>;
  /** Runs parts of the replay in worker threads (backtest-parts.ts); absent: one replay here. */
  readonly parts?: PartRunner | undefined;
}): BacktestDeps {
  return {
    log: options.log.child({ module: "backtest" }),
    history: historyOf(options.store),
    registry: options.registry,
    retention: options.retention,
    now: options.now,
    parts: options.parts,
  };
}

/**
 * The configured store, to read: the embedded store's file must exist already (a backtest
 * of a data directory that never stored anything is a mistake, not an empty report).
 */
export function historySpecOf(config: CitywatchConfig): HistorySpec {
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
    return { type: "sqlite", file };
  }
  return { type: "influxdb", options: influxOptions(store) };
}
