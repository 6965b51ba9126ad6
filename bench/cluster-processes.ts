/**
 * Whole nodes, the last part of the cluster bench (bench/cluster.ts, issue #21): 1, 2 and 3
 * `citywatch start --database-url` processes (as tests/support/cluster-processes.ts starts them)
 * on a PostgreSQL schema of their own per setting and one InfluxDB (influxd from tests/support,
 * or CITYWATCH_TEST_INFLUXDB_URL). BENCH_CLUSTER_NODE_DEVICES (default 60) dust monitors on 30
 * sites are spread over the nodes (device i connects to node i mod N), each sending raw PUBLISH
 * packets (bench/raw-mqtt-load.ts) of 50 readings, QoS 1, 10 in flight. After an untimed warm-up
 * round, BENCH_CLUSTER_NODE_READINGS (default 150,000) readings are timed from the first packet
 * until every device's commit in PostgreSQL has reached its last seq. CPU is each node
 * process's (user + system, /proc), summed over the nodes: the cluster's CPU per reading, held
 * against one node's in the same run (issue #21: within 20 %). PostgreSQL's and InfluxDB's own
 * CPU are not in it (a deployment runs them elsewhere). With three nodes one is then killed
 * (SIGKILL) and the time until the two others hold every partition is read from their /healthz.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { pino } from "pino";
import { Device, RegistryFile, Site } from "../contracts/index.js";
import { migrate } from "../infra/postgres/migrate.js";
import { openPostgres, queryOnce as admin } from "../infra/postgres/pool.js";
import { CITYWATCH_MIGRATIONS } from "../infra/postgres/schema.js";
import { PostgresRegistryStore } from "../registry/store-postgres.js";
import { type NodeProcess, ownedBy, startNodeProcess } from "../tests/support/cluster-processes.js";
import { provideInfluxDB } from "../tests/support/services.js";
import { DeviceStream, firstReadingMs } from "./ingest-payloads.js";
import { processCpuMicros } from "./proc-cpu.js";
import { RawFleet } from "./raw-mqtt-load.js";

const PARTITIONS = 64;
const SITES = 30;
const READINGS_PER_MESSAGE = 50;
const WINDOW = 10;
const WARMUP_READINGS = 30_000;

export interface WholeNodeFigures {
  readonly nodes: number;
  readonly readings: number;
  readonly seconds: number;
  readonly readingsPerSecond: number;
  /** The nodes' CPU, summed. */
  readonly cpuSeconds: number;
  readonly cpuMicrosPerReading: number;
  /** Each node's share of that CPU (s). */
  readonly perNodeCpuSeconds: readonly number[];
  readonly load: number;
  /** Three nodes only: ms from a node's SIGKILL until the others hold every partition. */
  readonly takeoverMs?: number;
}

const log = pino({ level: "silent" });
const area = { district: "D", gridCell: "G" };
const location = { lat: 30, lon: 104 };

function city(count: number) {
  const sites = Array.from({ length: SITES }, (_, i) =>
    Site.parse({ id: `bench-site-${i}`, type: "ambient", name: `Site ${i}`, area, location }),
  );
  const devices = Array.from({ length: count }, (_, i) =>
    Device.parse({
      id: `bench-dust-${String(i).padStart(4, "0")}`,
      kind: "dust",
      model: "bench",
      serial: `bench-${i}`,
      siteId: `bench-site-${i % SITES}`,
      area,
      location,
      expectedIntervalS: 60,
    }),
  );
  return RegistryFile.parse({ sites, devices });
}

/** Resolves when every device of `ids` has a commit at `seq` or later. */
async function committed(pool: pg.Pool, ids: readonly string[], seq: number): Promise<void> {
  for (;;) {
    const { rows } = await pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM ingest_progress WHERE device_id = ANY($1) AND committed_seq >= $2",
      [ids, seq],
    );
    if (Number(rows[0]?.n) === ids.length) return;
    await sleep(50);
  }
}

const nodesCpu = (nodes: readonly NodeProcess[]) =>
  nodes.map((n) => processCpuMicros(n.process.child.pid) ?? Number.NaN);

async function setting(
  url: string,
  influx: { url: string },
  count: number,
  deviceCount: number,
  readings: number,
): Promise<WholeNodeFigures> {
  const schema = `citywatch_bench_${randomBytes(4).toString("hex")}`;
  await admin(url, `CREATE SCHEMA ${schema}`);
  const pool = await openPostgres({ url, schema, max: 2, log });
  const nodes: NodeProcess[] = [];
  const fleets: RawFleet[] = [];
  try {
    await migrate(pool, CITYWATCH_MIGRATIONS);
    const file = city(deviceCount);
    const imported = await new PostgresRegistryStore(pool).importFile(file);
    const secret = new Map(imported.devices.map((d) => [d.record.id as string, d.secret]));
    const started = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        startNodeProcess(`bench-node-${i}`, {
          databaseUrl: url,
          schema,
          influxUrl: influx.url,
          influxDatabase: schema,
          partitions: PARTITIONS,
          configLines: [
            "broker:",
            "  limits: { publishRatePerSecond: 1000000000, publishBurst: 1000000000 }",
          ],
        }),
      ),
    );
    nodes.push(...started);
    for (;;) {
      const owned = await Promise.all(nodes.map((n) => ownedBy(n.ports)));
      if (owned.reduce((a, b) => a + b, 0) === PARTITIONS && owned.every((o) => o > 0)) break;
      await sleep(100);
    }
    const start = firstReadingMs(Date.now());
    const ids = file.devices.map((d) => d.id as string);
    const groups = nodes.map((_, k) => ids.filter((_, i) => i % count === k));
    for (const [k, group] of groups.entries()) {
      fleets.push(
        await RawFleet.open(
          `mqtt://127.0.0.1:${nodes[k]?.ports.mqtt}`,
          group.map((id) => ({ clientId: id, username: id, password: secret.get(id) ?? "" })),
          group.map((id) => new DeviceStream(id, "dust", ids.indexOf(id), start)),
        ),
      );
    }
    /** One round over every fleet; resolves with the seq every device reached. */
    let seq = 0;
    const round = async (total: number) => {
      const prepared = fleets.map((f) => f.prepare(READINGS_PER_MESSAGE, total));
      const perDevice = prepared[0]?.perDevice[0]?.length ?? 0;
      seq += perDevice;
      await Promise.all(fleets.map((f, k) => f.publish(prepared[k]!, WINDOW)));
      await committed(pool, ids, seq);
      return prepared.reduce((n, p) => n + p.readings, 0);
    };
    await round(WARMUP_READINGS / count);
    const cpuBefore = nodesCpu(nodes);
    const t0 = performance.now();
    const sent = await round(readings / count);
    const seconds = (performance.now() - t0) / 1000;
    const cpuAfter = nodesCpu(nodes);
    const perNode = cpuAfter.map((after, k) => (after - (cpuBefore[k] ?? 0)) / 1e6);
    const cpuSeconds = perNode.reduce((a, b) => a + b, 0);
    let takeoverMs: number | undefined;
    if (count === 3) {
      const [victim, ...survivors] = nodes as [NodeProcess, ...NodeProcess[]];
      const killed = performance.now();
      victim.process.child.kill("SIGKILL");
      for (;;) {
        const owned = await Promise.all(survivors.map((n) => ownedBy(n.ports)));
        if (owned.reduce((a, b) => a + b, 0) === PARTITIONS) break;
        await sleep(20);
      }
      takeoverMs = performance.now() - killed;
    }
    return {
      nodes: count,
      readings: sent,
      seconds,
      readingsPerSecond: sent / seconds,
      cpuSeconds,
      cpuMicrosPerReading: (cpuSeconds * 1e6) / sent,
      perNodeCpuSeconds: perNode,
      load: loadavg()[0] ?? 0,
      ...(takeoverMs === undefined ? {} : { takeoverMs }),
    };
  } finally {
    await Promise.all(fleets.map((f) => f.close()));
    await Promise.all(nodes.map((n) => n.process.stop(15_000)));
    await Promise.all(nodes.map((n) => rm(n.dir, { recursive: true, force: true })));
    await pool.end();
    await admin(url, `DROP SCHEMA ${schema} CASCADE`);
  }
}

/** 1, 2 and 3 whole nodes on the same load, in this order. */
export async function wholeNodes(url: string): Promise<WholeNodeFigures[]> {
  const provided = await provideInfluxDB();
  if (!provided.ok) throw new Error(`whole nodes need InfluxDB: ${provided.reason}`);
  const devices = Number(process.env["BENCH_CLUSTER_NODE_DEVICES"] || 60);
  const readings = Number(process.env["BENCH_CLUSTER_NODE_READINGS"] || 150_000);
  try {
    const figures: WholeNodeFigures[] = [];
    for (const count of [1, 2, 3])
      figures.push(await setting(url, provided.service, count, devices, readings));
    return figures;
  } finally {
    await provided.service.stop();
  }
}
