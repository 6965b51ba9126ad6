/**
 * The pipeline's part of the cluster bench (bench/cluster.ts): CPU per reading of a node's ingest
 * on PostgreSQL (ClusterPipeline over PostgresIngestState, ingest/cluster-pipeline.ts) against the
 * embedded pipeline on ingest.db (the single node), on the same messages in the same run.
 *
 * BENCH_CLUSTER_NODE_MESSAGES (default 4,000) messages of 50 readings (dust and tunnel gas
 * monitors, bench/ingest-payloads.ts) from 200 devices on 40 sites are put in the inbox first;
 * then the pipeline is started and timed until it has handled them all: decode, dedupe, the store
 * write (the embedded SQLite store, a file of its own per phase), the commit. No rules (their cost
 * is the same on both, bench backtest and bench ingest measure it). CPU is this process's (user +
 * system): the node's own, not the PostgreSQL server's, which a deployment runs elsewhere; the
 * server's share shows in the round trips (bench/cluster-ingest.ts).
 *
 * Phases: the single node; one cluster node holding every partition; two cluster nodes in this
 * process sharing them (their CPU summed: what splitting the work costs per reading).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import type { Logger } from "pino";
import { leaseFence } from "../cluster/fencing.js";
import { LeaseKeeper } from "../cluster/leases.js";
import { partitionOf } from "../cluster/partition.js";
import { type Device, deviceTopic, IngestConfig, type Site } from "../contracts/index.js";
import { ClusterPipeline } from "../ingest/cluster-pipeline.js";
import { ingestMetrics } from "../ingest/metrics.js";
import { Pipeline } from "../ingest/pipeline.js";
import { IngestState } from "../ingest/state.js";
import { PostgresIngestState } from "../ingest/state-postgres.js";
import { createSqliteStore } from "../ingest/store/sqlite.js";
import { benchDevices, DeviceStream, firstReadingMs } from "./ingest-payloads.js";

const DEVICES = 200;
const SITES = 40;
const READINGS_PER_MESSAGE = 50;

export interface NodeFigures {
  readonly phase: string;
  readonly nodes: number;
  readonly readings: number;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly cpuMicrosPerReading: number;
  readonly readingsPerSecond: number;
}

interface Fixture {
  readonly devices: Device[];
  readonly sites: Site[];
  readonly messages: Array<{ topic: string; payload: Buffer; receivedMs: number }>;
}

function fixture(count: number): Fixture {
  const area = { district: "D", gridCell: "G" };
  const location = { lat: 30, lon: 104 };
  const sites: Site[] = Array.from({ length: SITES }, (_, i) => ({
    id: `bench-site-${i}` as Site["id"],
    type: "ambient",
    name: `Site ${i}`,
    area,
    location,
  }));
  const list = benchDevices(DEVICES);
  const devices: Device[] = list.map((d, i) => ({
    id: d.id as Device["id"],
    kind: d.kind,
    model: "M",
    serial: `S${i}`,
    location,
    area,
    siteId: `bench-site-${i % SITES}` as Device["siteId"],
    expectedIntervalS: 60,
    enabled: true,
  }));
  const now = Date.now();
  const start = firstReadingMs(now);
  const streams = list.map((d, i) => new DeviceStream(d.id, d.kind, i, start));
  const messages = Array.from({ length: count }, (_, i) => {
    const stream = streams[i % DEVICES] as DeviceStream;
    return {
      topic: deviceTopic(stream.id, "data"),
      payload: stream.next(READINGS_PER_MESSAGE),
      receivedMs: now,
    };
  });
  return { devices, sites, messages };
}

const cpuSecondsSince = (from: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
};

/** Time and CPU from `start` until `done` holds (polled every 20 ms). */
async function measure(
  phase: string,
  nodes: number,
  readings: number,
  start: () => void,
  done: () => boolean | Promise<boolean>,
): Promise<NodeFigures> {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  start();
  while (!(await done())) await sleep(20);
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSecondsSince(cpu);
  return {
    phase,
    nodes,
    readings,
    seconds,
    cpuSeconds,
    cpuMicrosPerReading: (cpuSeconds * 1e6) / readings,
    readingsPerSecond: readings / seconds,
  };
}

function lookup(f: Fixture) {
  const devices = new Map(f.devices.map((d) => [d.id as string, d]));
  const sites = new Map(f.sites.map((s) => [s.id as string, s]));
  return { device: (id: string) => devices.get(id), site: (id: string) => sites.get(id) };
}

const config = IngestConfig.parse({ batch: { maxDelayMs: 10 } });

/** The single node: the embedded pipeline on ingest.db. */
async function singleNode(f: Fixture, log: Logger): Promise<NodeFigures> {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-cluster-node-"));
  const state = new IngestState(join(dir, "ingest.db"));
  const store = createSqliteStore(join(dir, "timeseries.db"));
  try {
    await store.open();
    state.inbox.appendMany(f.messages);
    const pipeline = new Pipeline({
      log,
      config,
      state,
      store,
      registry: lookup(f),
      metrics: ingestMetrics(),
      publishCommit: () => undefined,
      brokerConnected: () => true,
      now: Date.now,
    });
    const figures = await measure(
      "single node (ingest.db)",
      1,
      f.messages.length * READINGS_PER_MESSAGE,
      () => pipeline.start(),
      () => state.inbox.depth() === 0,
    );
    await pipeline.stop();
    return figures;
  } finally {
    await store.close();
    state.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `nodes` cluster nodes in this process, sharing every partition, on PostgreSQL. */
async function clusterNodes(
  f: Fixture,
  log: Logger,
  openPool: () => Promise<pg.Pool>,
  partitions: number,
  nodes: number,
): Promise<NodeFigures> {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-cluster-node-"));
  const store = createSqliteStore(join(dir, "timeseries.db"));
  const started: Array<{ keeper: LeaseKeeper; pool: pg.Pool; pipeline: ClusterPipeline }> = [];
  try {
    await store.open();
    const registry = lookup(f);
    for (let n = 0; n < nodes; n++) {
      const pool = await openPool();
      const keeper = new LeaseKeeper({ nodeId: `bench-node-${n}`, pool, partitions, log });
      await keeper.start();
      const state = new PostgresIngestState({ pool, fence: leaseFence(pool, keeper) });
      const pipeline = new ClusterPipeline({
        log,
        config,
        state,
        store,
        registry,
        metrics: ingestMetrics(),
        owned: () => keeper.owned(),
        publishCommit: () => undefined,
        now: Date.now,
      });
      started.push({ keeper, pool, pipeline });
    }
    // Every partition held, each node its share, before the messages come.
    while (started.reduce((n, s) => n + s.keeper.owned().size, 0) < partitions) await sleep(50);
    const [first] = started;
    if (first === undefined) throw new Error("no node");
    const appender = new PostgresIngestState({
      pool: first.pool,
      fence: leaseFence(first.pool, first.keeper),
    });
    const siteOf = new Map(f.devices.map((d) => [deviceTopic(d.id, "data"), d.siteId as string]));
    for (let i = 0; i < f.messages.length; i += 500) {
      await appender.append(
        f.messages.slice(i, i + 500).map((m) => ({
          ...m,
          partition: partitionOf(siteOf.get(m.topic) ?? "", partitions),
        })),
      );
    }
    const total = f.messages.length;
    const figures = await measure(
      nodes === 1
        ? "cluster node (PostgreSQL), all partitions"
        : `${nodes} cluster nodes (PostgreSQL), CPU summed`,
      nodes,
      total * READINGS_PER_MESSAGE,
      () => {
        for (const s of started) s.pipeline.start();
      },
      () => started.reduce((n, s) => n + s.pipeline.counts.messages, 0) >= total,
    );
    return figures;
  } finally {
    for (const s of started) await s.pipeline.stop();
    for (const s of started) await s.keeper.stop();
    for (const s of started) await s.pool.end();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The three phases, with the inbox tables emptied between them. */
export async function pipelineCpu(
  openPool: () => Promise<pg.Pool>,
  clean: () => Promise<void>,
  partitions: number,
  log: Logger,
): Promise<NodeFigures[]> {
  const count = Number(process.env["BENCH_CLUSTER_NODE_MESSAGES"] || 4_000);
  const f = fixture(count);
  const out: NodeFigures[] = [await singleNode(f, log)];
  for (const nodes of [1, 2]) {
    await clean();
    out.push(await clusterNodes(f, log, openPool, partitions, nodes));
  }
  return out;
}
