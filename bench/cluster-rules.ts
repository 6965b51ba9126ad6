/**
 * The rules' part of a takeover (bench/cluster.ts): what a node does once its lease keeper holds
 * a dead node's partitions, RulesScope reading their alarm states from PostgreSQL and the rules
 * driver reading their devices' windows back from the time-series store, timed for a city of
 * BENCH_CLUSTER_DEVICES (default 1,000) noise monitors at 4 per construction site with 2 hours of
 * one reading a minute and an alarm state per site. Against the baseline of the same run: the
 * same driver starting alone (a single node's restart: every state and window read back).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import type { Logger } from "pino";
import { Device, Site } from "../contracts/index.js";
import { readBack } from "../cli/runtime/history.js";
import { RulesScope } from "../cli/runtime/cluster-rules.js";
import { LeaseKeeper } from "../cluster/leases.js";
import { createSqliteStore } from "../ingest/store/sqlite.js";
import type { Point, TimeSeriesStore } from "../ingest/store/types.js";
import { PostgresAlarmStore } from "../rules/alarm-store-postgres.js";
import { RulesDriver, type RulesRegistry } from "../rules/driver.js";
import { initialAlarmState } from "../rules/engine/alarm.js";
import { RuleSet } from "../rules/rule-set.js";

const MIN = 60_000;
const HOURS = 2;

export interface RulesTakeover {
  readonly devices: number;
  readonly readings: number;
  readonly states: number;
  /** A single node's start: every state and window read back (the baseline). */
  readonly restartMs: number;
  /** The takeover of every partition by RulesScope: states, then windows. */
  readonly takeoverMs: number;
}

function city(count: number): { sites: Site[]; devices: Device[] } {
  const area = { district: "bench", gridCell: "g1" };
  const location = { lat: 30.6, lon: 104.0 };
  const sites: Site[] = [];
  const devices: Device[] = [];
  for (let s = 0; s < Math.ceil(count / 4); s++) {
    sites.push(
      Site.parse({
        id: `build-${s}`,
        type: "construction_site",
        name: `Site ${s}`,
        area,
        location,
        regulatedParty: { name: `Builder ${s}` },
        phase: "structure",
      }),
    );
  }
  for (let d = 0; d < count; d++) {
    devices.push(
      Device.parse({
        id: `noise-${d}`,
        kind: "noise",
        model: "M",
        serial: `S${d}`,
        siteId: `build-${Math.floor(d / 4)}`,
        area,
        location,
        expectedIntervalS: 60,
      }),
    );
  }
  return { sites, devices };
}

async function writeHistory(store: TimeSeriesStore, devices: readonly Device[], nowMs: number) {
  let seq = 0;
  let points: Point[] = [];
  let written = 0;
  for (const d of devices) {
    for (let m = HOURS * 60 - 1; m >= 0; m--) {
      points.push({
        measurement: "noise",
        tags: {
          device: d.id,
          site: d.siteId,
          district: "bench",
          grid_cell: "g1",
          quality: "normal",
        },
        fields: { LAeq: 50 + (m % 7), LAmax: 60 + (m % 11) },
        seq: ++seq,
        timeMs: nowMs - m * MIN,
      });
    }
    if (points.length >= 10_000) {
      await store.write(points);
      written += points.length;
      points = [];
    }
  }
  await store.write(points);
  return written + points.length;
}

const driverOf = (
  log: Logger,
  registry: RulesRegistry,
  alarms: PostgresAlarmStore,
  series: TimeSeriesStore,
  nowMs: number,
) => {
  const rules = new RuleSet();
  const problems = rules.reload();
  if (problems.length > 0) throw new Error(`the default pack did not load: ${problems.length}`);
  return new RulesDriver({
    log,
    rules,
    registry,
    alarms,
    sink: { handleAlarm: () => undefined, onAcknowledged: () => () => {} },
    region: "default",
    tickMs: 3_600_000,
    now: () => nowMs,
    backfill: (d, fromMs, toMs) => readBack(series)(d, fromMs, toMs, 10_000),
  });
};

/** Times a takeover of every partition against a restart, on a migrated schema of `pool`. */
export async function rulesTakeover(
  pool: pg.Pool,
  partitions: number,
  count: number,
  log: Logger,
): Promise<RulesTakeover> {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-cluster-"));
  const series = createSqliteStore(join(dir, "timeseries.db"));
  const keeper = new LeaseKeeper({ nodeId: "bench-rules", pool, partitions, log });
  try {
    const nowMs = Math.floor(Date.now() / MIN) * MIN;
    const { sites, devices } = city(count);
    const registry: RulesRegistry = { devices: () => devices, sites: () => sites };
    const readings = await writeHistory(series, devices, nowMs);
    const scope = new RulesScope({ pool, partitions, owned: () => keeper.owned(), registry, log });
    // A state per site (an alarm pending for an hour), as a dead node would leave them.
    const seed = await PostgresAlarmStore.open({
      pool,
      partitionOf: scope.partitionOfSubject,
      partitions: [],
    });
    for (const site of sites) {
      seed.save(
        { ruleId: "noise.construction.laeq", subject: `site:${site.id}` },
        { ...initialAlarmState(nowMs - 60 * MIN), phase: "pending", startedAt: nowMs - 60 * MIN },
        nowMs,
      );
    }
    await seed.close();

    // Baseline: one node starting alone (twice: the first warms the code and the caches up).
    let restartMs = 0;
    let started = 0;
    for (let i = 0; i < 2; i++) {
      started = performance.now();
      const all = await PostgresAlarmStore.open({ pool });
      const restart = driverOf(log, registry, all, series, nowMs);
      await restart.start();
      restartMs = performance.now() - started;
      restart.stop();
      await all.close();
    }

    // The takeover: a keeper holding every partition, the driver rescoped by RulesScope.
    await keeper.start();
    const deadline = performance.now() + 60_000;
    while (keeper.owned().size < partitions) {
      if (performance.now() > deadline) throw new Error("the keeper did not take the partitions");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const store = await PostgresAlarmStore.open({ pool, partitions: [] });
    const taker = driverOf(log, scope.registry, store, series, nowMs);
    await taker.start();
    started = performance.now();
    await scope.attach(taker);
    const takeoverMs = performance.now() - started;
    if (scope.scoped().size !== partitions)
      throw new Error("the scope did not take every partition");
    taker.stop();
    scope.stop();
    await store.close();
    return { devices: devices.length, readings, states: sites.length, restartMs, takeoverMs };
  } finally {
    await keeper.stop();
    await series.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
