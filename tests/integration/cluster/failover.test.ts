import { randomBytes } from "node:crypto";
import type { AddressInfo, Server } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Device, RegistryFile } from "../../../contracts/index.js";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import {
  type ClusterSetting,
  nodeApi,
  type NodeProcess,
  ownedBy,
  startNodeProcess,
} from "../../support/cluster-processes.js";
import { type Balancer, provideHaproxy, startBalancer } from "../../support/haproxy.js";
import { removeTempDir } from "../../support/process.js";
import {
  createMigratedSchema,
  postgresUrl,
  provideInfluxDB,
  providePostgres,
  provideRedis,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { type ReceivedEvent, webhookReceiver } from "../../support/webhook-receiver.js";
import { DEVICES, SITES } from "../../unit/tasks/fixtures.js";

/*
 * The failover test of issue #21: three `citywatch start --database-url` nodes on loopback ports
 * behind HAProxy in TCP mode, their brokers sharing Redis, on one PostgreSQL schema and one
 * InfluxDB. Devices know only the balancer's address. Mid-stream one node is killed (SIGKILL),
 * then a second; then both are started again. A device sends each message until it is
 * acknowledged (reconnecting through the balancer to whichever node is up), so every message it
 * counts as sent was acknowledged once. Counted against what was sent: every reading stored
 * exactly once and committed, every alarm filed exactly once, every filing delivered to the
 * webhook receiver (repeats of one delivery only with its idempotency key).
 */

const postgres = await requireService("cluster failover (PostgreSQL)", providePostgres);
const influx = await requireService("cluster failover (InfluxDB)", provideInfluxDB);
const redis = await requireService("cluster failover (Redis)", provideRedis);
const haproxy = await requireService("cluster failover (HAProxy)", provideHaproxy);

const PARTITIONS = 8;
const SEQS = 60;
/** From this seq on the gas sensors read 22 %LEL (over the 20 %LEL alarm). */
const GAS_FROM = 20;
const INTERVAL_MS = 100;

const template = DEVICES.find((d) => d.id === "g-1") as Device;
const noiseTemplate = DEVICES.find((d) => d.id === "n-1") as Device;
/** Two gas sensors on each of the three segments, and a quiet noise monitor on three sites. */
const fleet: Device[] = [
  ...[1, 2, 3, 4, 5, 6].map((i) =>
    Device.parse({
      ...template,
      id: `g-${i}`,
      serial: `GT4-${i}`,
      siteId: `ts-${((i - 1) % 3) + 1}`,
    }),
  ),
  ...[1, 2, 3].map((i) =>
    Device.parse({ ...noiseTemplate, id: `n-${i}`, serial: `SN-${i}`, siteId: `cs-${i}` }),
  ),
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A device that knows only the balancer: each message is sent until it is acknowledged. */
class FieldDevice {
  client: MqttClient | undefined;
  connections = 0;
  resent = 0;
  /** When each seq's reading was taken: stamped at its first send, the same when sent again. */
  readonly stamps = new Map<number, number>();
  constructor(
    readonly device: Device,
    readonly secret: string,
    readonly port: number,
  ) {}

  payload(seq: number): string {
    const gas = this.device.kind === "utility_tunnel";
    return JSON.stringify({
      v: 1,
      deviceId: this.device.id,
      seq,
      kind: this.device.kind,
      readings: [
        {
          ts: new Date(this.stamp(seq)).toISOString(),
          quality: "normal",
          values: gas ? { ch4: seq >= GAS_FROM ? 22 : 2, o2: 20.9 } : { LAeq: 45, LAmax: 52 },
        },
      ],
    });
  }

  /** Readings are taken as they are sent (real time): the rules judge silence on the clock. */
  stamp(seq: number): number {
    const at = this.stamps.get(seq) ?? Date.now();
    this.stamps.set(seq, at);
    return at;
  }

  async send(seq: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) this.resent++;
      try {
        const client = this.client ?? (await this.connect());
        await Promise.race([
          client.publishAsync(`citywatch/v1/devices/${this.device.id}/data`, this.payload(seq), {
            qos: 1,
          }),
          sleep(5_000).then(() => Promise.reject(new Error("no PUBACK within 5 s"))),
        ]);
        return;
      } catch {
        // The node went (or refused): drop the connection and go through the balancer again.
        this.client?.end(true);
        this.client = undefined;
        await sleep(200);
      }
    }
  }

  async connect(): Promise<MqttClient> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${this.port}`, {
      clientId: this.device.id,
      username: this.device.id,
      password: this.secret,
      reconnectPeriod: 0,
      connectTimeout: 3_000,
      protocolVersion: 4,
    });
    client.on("error", () => undefined);
    client.on("close", () => {
      if (this.client === client) this.client = undefined;
    });
    this.connections++;
    this.client = client;
    return client;
  }

  async run(): Promise<void> {
    for (let seq = 1; seq <= SEQS; seq++) {
      await this.send(seq);
      await sleep(INTERVAL_MS);
    }
  }
}

describe.runIf(postgres && influx && redis && haproxy)("three nodes behind HAProxy", () => {
  let schema: TestSchema | undefined;
  let server: Server | undefined;
  let balancer: Balancer | undefined;
  const nodes: NodeProcess[] = [];
  const devices: FieldDevice[] = [];

  afterEach(async () => {
    for (const d of devices.splice(0)) d.client?.end(true);
    await Promise.all(nodes.map((n) => n.process.stop()));
    await Promise.all(nodes.splice(0).map((n) => removeTempDir(n.dir)));
    await balancer?.stop();
    await schema?.drop();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    [schema, server, balancer] = [undefined, undefined, undefined];
  });

  it("loses nothing and repeats nothing across two kills and two restarts", async () => {
    const url = postgresUrl(postgres);
    const created = await createMigratedSchema(url, 2);
    schema = created.schema;
    const registry = new PostgresRegistryStore(created.pool);
    const imported = await registry.importFile(
      RegistryFile.parse({ sites: SITES, devices: fleet }),
    );
    const secrets = new Map(imported.devices.map((d) => [d.record.id as string, d.secret]));
    const token = (await new PostgresTokenStore(created.pool).add("failover", "admin")).token;
    const received: ReceivedEvent[] = [];
    server = await webhookReceiver(received);
    const setting: ClusterSetting = {
      databaseUrl: url,
      schema: schema.name,
      influxUrl: influx!.url,
      influxDatabase: `cw_failover_${randomBytes(4).toString("hex")}`,
      webhookPort: (server.address() as AddressInfo).port,
      partitions: PARTITIONS,
      redisUrl: redis!.url,
    };

    const started = await Promise.all(
      ["node-a", "node-b", "node-c"].map((name) => startNodeProcess(name, setting)),
    );
    nodes.push(...started);
    const [a, b, c] = started as [NodeProcess, NodeProcess, NodeProcess];
    balancer = await startBalancer(
      haproxy!.url,
      started.map((n) => n.ports.mqtt),
      "roundrobin",
    );
    const shares = async () => Promise.all(started.map((n) => ownedBy(n.ports)));
    await vi.waitFor(
      async () => {
        const owned = await shares();
        expect(owned.reduce((x, y) => x + y, 0)).toBe(PARTITIONS);
        expect(owned.every((o) => o > 0)).toBe(true);
      },
      { timeout: 30_000, interval: 200 },
    );

    for (const device of fleet)
      devices.push(new FieldDevice(device, secrets.get(device.id) ?? "", balancer.port));
    const running = Promise.all(devices.map((d) => d.run()));

    // A quarter of the way: node a dies. Half-way: node b too. Then both come back.
    await sleep((SEQS * INTERVAL_MS) / 4);
    a.process.child.kill("SIGKILL");
    await sleep((SEQS * INTERVAL_MS) / 4);
    const killedB = Date.now();
    b.process.child.kill("SIGKILL");
    await vi.waitFor(async () => expect(await ownedBy(c.ports)).toBe(PARTITIONS), {
      timeout: 15_000,
      interval: 100,
    });
    const takeoverMs = Date.now() - killedB;
    const again = await Promise.all([a, b].map((n) => startNodeProcess(n.name, setting, n.ports)));
    nodes.push(...again);
    await running;

    // Every reading stored once and committed, on whichever node answers.
    const ask = <T>(path: string) => nodeApi<T>(c.ports, path, token);
    await vi.waitFor(
      async () => {
        const { devices: listed } = await ask<{
          devices: Array<{ id: string; committedSeq: number | null }>;
        }>("/api/v1/devices");
        expect(
          listed.filter((d) => fleet.some((f) => f.id === d.id)).map((d) => d.committedSeq),
        ).toEqual(fleet.map(() => SEQS));
      },
      { timeout: 30_000, interval: 250 },
    );
    for (const device of devices) {
      const stamps = [...device.stamps.values()];
      const range = `from=${new Date(Math.min(...stamps) - 1).toISOString()}&to=${new Date(Math.max(...stamps) + 1).toISOString()}&limit=1000`;
      const { readings } = await ask<{ readings: Array<{ ts: string }> }>(
        `/api/v1/devices/${device.device.id}/readings?${range}`,
      );
      expect(
        readings.map((r) => Date.parse(r.ts)),
        device.device.id,
      ).toEqual(stamps);
    }

    // One task per segment, each filed once; the receiver heard each filing (a repeat of a
    // delivery only under its idempotency key, at most one per kill).
    type Tasks = { tasks: Array<{ id: string; rule: { id: string }; subject: { id: string } }> };
    const { tasks } = await ask<Tasks>("/api/v1/tasks");
    expect(tasks.map((t) => `${t.rule.id} ${t.subject.id}`).sort()).toEqual([
      "tunnel.ch4 ts-1",
      "tunnel.ch4 ts-2",
      "tunnel.ch4 ts-3",
    ]);
    await vi.waitFor(
      () =>
        expect(
          [...new Set(received.filter((e) => e.type === "filed").map((e) => e.taskId))].sort(),
        ).toEqual(tasks.map((t) => t.id).sort()),
      { timeout: 20_000, interval: 200 },
    );
    const byKey = new Map<string, ReceivedEvent>();
    for (const e of received) {
      const seen = byKey.get(e.key);
      if (seen !== undefined) expect(seen).toEqual(e);
      byKey.set(e.key, e);
    }
    const repeated = received.length - byKey.size;
    expect(repeated).toBeLessThanOrEqual(2);
    // Each event delivered under one key (no event under two keys).
    expect(new Set([...byKey.values()].map((e) => e.eventId)).size).toBe(byKey.size);

    // All three hold partitions again; clean stops exit 0.
    await vi.waitFor(
      async () => {
        const owned = await Promise.all(again.concat(c).map((n) => ownedBy(n.ports)));
        expect(owned.every((o) => o > 0)).toBe(true);
      },
      { timeout: 30_000, interval: 200 },
    );
    for (const node of again.concat(c)) expect(await node.process.stop(15_000)).toBe(0);
    const reconnects = devices.reduce((n, d) => n + d.connections, 0) - devices.length;
    const resent = devices.reduce((n, d) => n + d.resent, 0);
    process.stdout.write(
      `[cluster failover] ${fleet.length} devices x ${SEQS} readings through HAProxy, 2 kills, 2 restarts: stored ${fleet.length * SEQS} once each, ${tasks.length} tasks, ${received.length} deliveries (${repeated} repeated by key), ${reconnects} reconnects, ${resent} sends again; last takeover ${takeoverMs} ms\n`,
    );
  }, 240_000);
});
