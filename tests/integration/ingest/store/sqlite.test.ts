import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createSqliteStore } from "../../../../ingest/store/sqlite.js";
import { withLatestCache } from "../../../../ingest/store/latest-cache.js";
import type { TimeSeriesStore } from "../../../../ingest/store/types.js";
import { makeTempDir, removeTempDir } from "../../../support/process.js";
import { noise, T0 } from "./points.js";
import { timeSeriesStoreSuite } from "./suite.js";

/** The store suite on a real file, each open of the store wrapped by `wrap`. */
function sqliteSuite(wrap: (store: TimeSeriesStore) => TimeSeriesStore): void {
  timeSeriesStoreSuite({
    capabilities: {
      // Each point's fields are a JSON object: a field has no type of its own.
      fixedFieldTypes: false,
      // One synchronous transaction per write: nothing to gain from encoding points as they come.
      pointByPointBatch: false,
    },
    async fresh() {
      const dir = await makeTempDir("cw-sqlite-store-");
      const stores: TimeSeriesStore[] = [];
      return {
        open: async () => {
          const store = wrap(createSqliteStore(join(dir, "timeseries.db")));
          stores.push(store);
          await store.open();
          return store;
        },
        dispose: async () => {
          for (const store of stores) await store.close();
          await removeTempDir(dir);
        },
      };
    },
  });
}

describe("embedded SQLite store behind the last-value cache (as the ingest opens it)", () => {
  sqliteSuite(withLatestCache);
});

describe("embedded SQLite store on a real file", () => {
  sqliteSuite((store) => store);

  it("keeps its readings in a WAL-mode file another connection can read", async () => {
    const dir = await makeTempDir("cw-sqlite-store-");
    const file = join(dir, "timeseries.db");
    const store = createSqliteStore(file);
    try {
      await store.write([noise(T0, { LAeq: 60 })]);
      const check = new Database(file, { readonly: true });
      expect(check.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(check.prepare("SELECT count(*) AS n FROM readings").get()).toEqual({ n: 1 });
      check.close();
    } finally {
      await store.close();
      await removeTempDir(dir);
    }
  });
});
