import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BacktestReport } from "../../../contracts/model/backtest.js";
import type { StoredReading } from "../../../contracts/model/stored-readings.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { Point, TimeSeriesStore } from "../../../ingest/store/types.js";
import { backtest, BacktestError } from "../../../rules/backtest/index.js";
import { packRules } from "../../../rules/backtest/sources.js";
import { backtestDeps } from "../../../cli/runtime/backtest.js";
import { workerParts } from "../../../cli/runtime/backtest-parts.js";
import {
  casesOf,
  FROM,
  HOUR,
  roughCity,
  roughEmit,
  TO,
  WARM_UP,
} from "../../support/backtest-cities.js";

/*
 * A backtest split by site into worker threads, each reading the embedded store's file itself
 * and taking part after part, reports exactly what one replay in this thread reports (the rough
 * city, its devices not in step), and its reading budget counts every part.
 */

const city = roughCity(3);
let dir: string;
let file: string;
let store: TimeSeriesStore;
let written = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-backtest-parts-"));
  file = join(dir, "timeseries.db");
  store = createSqliteStore(file);
  const points: Point[] = [];
  city.devices.forEach((device, index) =>
    // Each device a few seconds off the minute, its own offset: devices are not in step.
    roughEmit(device, index, (r: StoredReading) =>
      points.push({
        measurement: r.kind,
        tags: {
          device: r.deviceId,
          site: device.siteId,
          district: device.area.district,
          grid_cell: device.area.gridCell,
          quality: r.quality,
        },
        fields: r.values,
        seq: points.length + 1,
        timeMs: r.timeMs + ((index * 7_919) % 29_000),
      }),
    ),
  );
  written = points.length;
  const { rejected } = await store.write(points);
  expect(rejected).toEqual([]);
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Worker threads the last split run started. */
let workersStarted = 0;

async function run(workers: number | undefined, maxReadings?: number): Promise<BacktestReport> {
  const log = pino({ level: "silent" });
  const parts = workers === undefined ? undefined : workerParts({ type: "sqlite", file }, workers);
  workersStarted = 0;
  // As the CLI does: the workers load while the backtest plans.
  parts?.prestart();
  try {
    return await backtest(
      backtestDeps({
        store,
        registry: { devices: () => city.devices, sites: () => city.sites },
        log,
        now: () => TO + HOUR,
        retention: () => Promise.resolve({ ms: undefined, description: "the test's store" }),
        parts,
      }),
      {
        fromMs: FROM,
        toMs: TO,
        region: "default",
        tickMs: 5_000,
        warmUpMs: WARM_UP,
        rules: packRules(),
        compare: packRules(),
        maxReadings,
      },
    );
  } finally {
    workersStarted = parts?.started ?? 0;
    await parts?.close();
  }
}

/** The report without what a run's speed changes. */
const decided = (r: BacktestReport) => ({ ...r, elapsedMs: 0, readingsPerSecond: 0 });

describe("backtest split into worker threads", () => {
  it("reports what one replay in this thread reports", async () => {
    const one = await run(undefined);
    const split = await run(3);
    // 18 sites in more parts than threads (guidedParts): the two workers took part after part.
    expect(city.sites.length).toBe(18);
    expect(workersStarted).toBe(2);
    expect(one.run.totals.raised).toBeGreaterThan(20);
    expect(casesOf(split.run)).toEqual(casesOf(one.run));
    expect(decided(split)).toEqual(decided(one));
    expect(split.data.readings).toBeGreaterThan(10_000);
  }, 120_000);

  it("counts its reading budget over every part", async () => {
    // Every stored reading is in the replay (warm-up included).
    const total = written;
    // Each part alone stays under the budget; all of them together do not.
    const error = await run(3, Math.ceil(total * 0.6)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BacktestError);
    expect((error as BacktestError).message).toMatch(/more than \d+ readings to replay/);
  }, 120_000);
});
