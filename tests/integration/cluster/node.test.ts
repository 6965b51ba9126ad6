import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { startClusterNode, type ClusterNode } from "../../../cli/runtime/cluster-node.js";
import { localBroker } from "../../../cli/runtime/local-broker.js";
import { partitionOf } from "../../../cluster/partition.js";
import { IngestConfig } from "../../../contracts/index.js";
import type { AlarmNotice } from "../../../contracts/model/alarms.js";
import { PostgresDeadLetters } from "../../../ingest/dead-letters-postgres.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import { inTransaction } from "../../../infra/postgres/transaction.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import { RuleSet } from "../../../rules/rule-set.js";
import { startTestBroker, type TestBroker } from "../../support/broker.js";
import { registryViewOf } from "../../support/ingest.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { dataTopic, noiseUplink } from "../../fault/flapping/all-in-one.js";
import { PARTITIONS, PATIENCE, RENEW_MS, TTL_MS, TestCluster } from "./keepers.js";

/*
 * Two cluster nodes (cli/runtime/cluster-node.ts), each with its own broker (aedes) and its own
 * connections to one PostgreSQL, sharing one time-series store: devices publish over MQTT (QoS 1)
 * to either node, the receiving node puts each message in the shared inbox before its PUBACK, and
 * the owner of the message's partition stores it, commits it and hands it to its rules. One node
 * dies mid-stream (its connections to PostgreSQL end, its broker stops); its devices reconnect to
 * the other and re-send everything they sent, as a device that saw no commit does.
 */

const postgres = await requireService("cluster nodes (PostgreSQL)", providePostgres);

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const SITES = 6;
const DEVICES = 12;
const SEQS = 20;
const T0 = Date.now();

const deviceIds = Array.from({ length: DEVICES }, (_, i) => `noise-${i}`);
const siteOfDevice = (i: number) => `site-${i % SITES}`;

const uplink = (deviceId: string, seq: number) =>
  noiseUplink(deviceId, seq, T0 - 120_000 + seq * 1_000, { LAeq: 45 });

describe.runIf(postgres)("cluster nodes behind their brokers", () => {
  let schema: TestSchema | undefined;
  let cluster: TestCluster | undefined;
  let dir: string | undefined;
  const brokers: TestBroker[] = [];
  const nodes: ClusterNode[] = [];
  let store: TimeSeriesStore | undefined;

  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
    await Promise.all(brokers.splice(0).map((b) => b.stop()));
    await store?.close();
    await cluster?.close();
    await schema?.drop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    [schema, cluster, dir, store] = [undefined, undefined, undefined, undefined];
  });

  it("stores every reading once and commits every device to its last seq across a node's death", async () => {
    schema = await createTestSchema(postgresUrl(postgres));
    cluster = await TestCluster.create(schema);
    dir = mkdtempSync(join(tmpdir(), "cw-cluster-node-"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    const config = IngestConfig.parse({ batch: { maxDelayMs: 10 }, gapTimeoutMs: 600_000 });
    // A dead letter from four years ago (past ingest.deadLetters.maxAgeMs, three years): the
    // first node to start prunes it.
    const admin = cluster.admin;
    await inTransaction(admin, (client) =>
      new PostgresDeadLetters(admin).add(client, 0, [
        {
          receivedMs: Date.now() - 4 * 365 * 86_400_000,
          topic: "citywatch/v1/devices/gone/data",
          deviceId: "gone",
          reason: "not_json",
          detail: "payload is not JSON",
          payload: Buffer.from("x"),
        },
      ]),
    );
    const rules = new RuleSet();
    expect(rules.reload()).toEqual([]);
    const notices: AlarmNotice[] = [];
    /** Each device's secret on each broker (each broker has a registry of its own here). */
    const secrets = new Map<string, string[]>();
    const pools: Array<Awaited<ReturnType<TestSchema["pool"]>>> = [];
    for (const name of ["a", "b"]) {
      const broker = await startTestBroker();
      brokers.push(broker);
      for (let s = 0; s < SITES; s++) {
        broker.registry.putSite({
          id: `site-${s}`,
          type: "ambient",
          name: `Site ${s}`,
          area: { district: "D", gridCell: "G" },
          location: { lat: 30, lon: 104 },
        });
      }
      deviceIds.forEach((id, i) => {
        const secret = broker.addDevice(id, "noise", { siteId: siteOfDevice(i) });
        secrets.set(id, [...(secrets.get(id) ?? []), secret]);
      });
      const pool = await schema.pool(4);
      pools.push(pool);
      nodes.push(
        await startClusterNode({
          log,
          nodeId: `node-${name}`,
          pool,
          partitions: PARTITIONS,
          config,
          registry: registryViewOf(broker),
          store,
          broker: localBroker(broker.broker, log),
          rules,
          region: "default",
          sink: { handleAlarm: (n) => notices.push(n), onAcknowledged: () => () => {} },
          ttlMs: TTL_MS,
          renewMs: RENEW_MS,
        }),
      );
    }
    const [brokerA, brokerB] = brokers as [TestBroker, TestBroker];
    const [nodeA, nodeB] = nodes as [ClusterNode, ClusterNode];
    await vi.waitFor(() => {
      expect(nodeA.keeper.owned().size + nodeB.keeper.owned().size).toBe(PARTITIONS);
      expect(nodeA.keeper.owned().size).toBeGreaterThan(0);
      expect(nodeB.keeper.owned().size).toBeGreaterThan(0);
    }, PATIENCE);
    const sitesOf = (node: ClusterNode) =>
      Array.from({ length: SITES }, (_, s) => `site-${s}`).filter((s) =>
        node.keeper.owned().has(partitionOf(s, PARTITIONS)),
      );
    // Both nodes own some of the sites: each handles messages the other received.
    expect(sitesOf(nodeA).length).toBeGreaterThan(0);
    expect(sitesOf(nodeB).length).toBeGreaterThan(0);

    // Even devices connect to node a's broker, odd ones to node b's.
    const connect = (i: number, broker: TestBroker, which: 0 | 1) =>
      broker.connect({
        username: deviceIds[i] as string,
        password: secrets.get(deviceIds[i] as string)?.[which] as string,
        clientId: deviceIds[i] as string,
      });
    const clients: MqttClient[] = [];
    for (let i = 0; i < DEVICES; i++) {
      clients.push(await connect(i, i % 2 === 0 ? brokerA : brokerB, i % 2 === 0 ? 0 : 1));
    }
    const publish = (client: MqttClient, i: number, seq: number) =>
      client.publishAsync(dataTopic(deviceIds[i] as string), uplink(deviceIds[i] as string, seq), {
        qos: 1,
      });
    const HALF = SEQS / 2;
    for (let seq = 1; seq <= HALF; seq++) {
      await Promise.all(clients.map((c, i) => publish(c, i, seq)));
    }

    // Node a dies (kill -9, as the others see it): its connections to PostgreSQL end and its
    // broker goes, dropping its devices. What it took and did not commit stays in the inbox.
    await pools[0]?.end();
    await brokerA.stop();
    brokers.splice(0, 1);
    nodes.splice(0, 1);
    await nodeA.stop().catch(() => undefined);

    // Its devices reconnect to node b and re-send all they sent (no commit seen), then go on.
    for (let i = 0; i < DEVICES; i += 2) {
      clients[i] = await connect(i, brokerB, 1);
      for (let seq = 1; seq <= HALF; seq++) await publish(clients[i] as MqttClient, i, seq);
    }
    for (let seq = HALF + 1; seq <= SEQS; seq++) {
      await Promise.all(clients.map((c, i) => publish(c, i, seq)));
    }

    await vi.waitFor(async () => {
      const { rows } = await (cluster as TestCluster).admin.query<{
        device_id: string;
        committed_seq: string;
      }>("SELECT device_id, committed_seq FROM ingest_progress ORDER BY device_id");
      expect(rows.map((r) => [r.device_id, Number(r.committed_seq)])).toEqual(
        [...deviceIds].sort().map((id) => [id, SEQS]),
      );
    }, PATIENCE);
    await vi.waitFor(() => expect(nodeB.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    for (const id of deviceIds) {
      const rows = await store.readings({
        deviceId: id,
        kind: "noise",
        fromMs: 0,
        toMs: Date.now() + 86_400_000,
        limit: 1_000,
      });
      expect(
        rows.map((r) => r.seq),
        id,
      ).toEqual(Array.from({ length: SEQS }, (_, k) => k + 1));
    }
    const { rows: left } = await cluster.admin.query<{ n: string }>(
      "SELECT count(*) AS n FROM ingest_inbox",
    );
    expect(Number(left[0]?.n)).toBe(0);
    const { rows: letters } = await cluster.admin.query("SELECT * FROM ingest_dead_letters");
    expect(letters).toEqual([]);
    expect(cluster.violations).toEqual([]);
    expect(nodeB.status()).toMatchObject({ owned: PARTITIONS, running: true });
    expect(nodeB.status().messages).toBeGreaterThan(0);
    // The same on the node's metrics, as /metrics will show them.
    const exposition = await nodeB.metrics.registry.metrics();
    expect(exposition).toMatch(
      new RegExp(`^citywatch_cluster_partitions_owned ${PARTITIONS}$`, "m"),
    );
    expect(exposition).toMatch(/^citywatch_cluster_takeovers_total [1-9]\d*$/m);
    // Every commit at its last seq: no device of the node's partitions behind.
    expect(exposition).toMatch(/^citywatch_cluster_commit_lag_messages 0$/m);
    expect(exposition).toMatch(/^citywatch_cluster_devices_behind 0$/m);
    expect(exposition).toMatch(/^citywatch_ingest_messages_received_total [1-9]\d*$/m);
    // The shared inbox's depth is counted in the background, at most every 250 ms: a scrape
    // shows the count the one before it started.
    await vi.waitFor(async () => {
      expect(await nodeB.metrics.registry.metrics()).toMatch(/^citywatch_ingest_inbox_depth 0$/m);
    }, PATIENCE);
    const pruned = [nodeA, nodeB].map((n) => n.metrics.deadLettersPruned);
    const ageCounts = await Promise.all(
      pruned.map(
        async (c) => (await c.get()).values.find((v) => v.labels.why === "age")?.value ?? 0,
      ),
    );
    expect(ageCounts.reduce((x, y) => x + y, 0)).toBe(1);
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  });
});
