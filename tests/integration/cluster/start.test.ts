import { randomBytes } from "node:crypto";
import type { AddressInfo, Server } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import type pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RegistryFile } from "../../../contracts/index.js";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { bearer, type CliProcess, type SystemPorts } from "../../support/cli-process.js";
import {
  nodeApi,
  nodeHealth,
  type NodeProcess,
  startNodeProcess,
} from "../../support/cluster-processes.js";
import { removeTempDir } from "../../support/process.js";
import {
  createMigratedSchema,
  postgresUrl,
  provideInfluxDB,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { type ReceivedEvent, webhookReceiver } from "../../support/webhook-receiver.js";
import { DEVICES, SITES } from "../../unit/tasks/fixtures.js";

/*
 * `citywatch start --database-url`: whole processes as an operator runs them (issue #21). Two
 * nodes on one PostgreSQL schema and one InfluxDB share the partitions; a methane sensor
 * publishes to one of them; that node is killed (SIGKILL) mid-stream; the sensor reconnects to
 * the other and sends again what it saw no commit for. Every reading is stored once, its commit
 * reaches the last seq, the alarm is filed once (its repeats counted on the one task), the other
 * node holds every partition within 10 s, and a webhook receiver hears the task.
 */

const postgres = await requireService("cluster nodes as processes (PostgreSQL)", providePostgres);
const influx = await requireService("cluster nodes as processes (InfluxDB)", provideInfluxDB);

const PARTITIONS = 8;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const GAS = DEVICES.find((d) => d.id === "g-1");

describe.runIf(postgres && influx)("citywatch start --database-url", () => {
  let schema: TestSchema | undefined;
  let server: Server | undefined;
  const dirs: string[] = [];
  const nodes: CliProcess[] = [];
  const clients: MqttClient[] = [];

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
    await schema?.drop();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await Promise.all(dirs.splice(0).map((d) => removeTempDir(d)));
    [schema, server] = [undefined, undefined];
  });

  it("shares the partitions, takes over a killed node's within 10 s, and stores, commits and files once", async () => {
    const url = postgresUrl(postgres);
    const created = await createMigratedSchema(url, 2);
    schema = created.schema;
    const pool: pg.Pool = created.pool;
    const registry = new PostgresRegistryStore(pool);
    const imported = await registry.importFile(
      RegistryFile.parse({ sites: SITES, devices: [GAS] }),
    );
    const secret = imported.devices[0]!.secret;
    const token = (await new PostgresTokenStore(pool).add("cluster-test", "admin")).token;

    const received: ReceivedEvent[] = [];
    server = await webhookReceiver(received);
    const webhookPort = (server.address() as AddressInfo).port;
    const database = `cw_cluster_${randomBytes(4).toString("hex")}`;

    const setting = {
      databaseUrl: url,
      schema: schema.name,
      influxUrl: influx!.url,
      influxDatabase: database,
      webhookPort,
      partitions: PARTITIONS,
    };
    const start = async (name: string): Promise<NodeProcess> => {
      const started = await startNodeProcess(name, setting);
      dirs.push(started.dir);
      nodes.push(started.process);
      return started;
    };
    const health = nodeHealth;
    const api = <T>(ports: SystemPorts, path: string) => nodeApi<T>(ports, path, token);

    const a = await start("node-a");
    const b = await start("node-b");
    // Both hold some of the partitions, and together all of them.
    await vi.waitFor(
      async () => {
        const [ha, hb] = [await health(a.ports), await health(b.ports)];
        expect([ha["status"], hb["status"]]).toEqual(["ok", "ok"]);
        expect(Number(ha["owned"]) + Number(hb["owned"])).toBe(PARTITIONS);
        expect(Number(ha["owned"])).toBeGreaterThan(0);
        expect(Number(hb["owned"])).toBeGreaterThan(0);
      },
      { timeout: 30_000, interval: 200 },
    );
    // Each node's /metrics shows the cluster's figures.
    const metrics = await (await fetch(`http://127.0.0.1:${a.ports.http}/metrics`)).text();
    expect(metrics).toMatch(/^citywatch_cluster_partitions_owned [1-9]\d*$/m);

    const t0 = Date.now() - 60_000;
    const uplink = (seq: number) =>
      JSON.stringify({
        v: 1,
        deviceId: "g-1",
        seq,
        kind: "utility_tunnel",
        readings: [
          {
            ts: new Date(t0 + seq * 1_000).toISOString(),
            quality: "normal",
            values: { ch4: seq >= 6 ? 22 : 2, o2: 20.9 },
          },
        ],
      });
    const connect = async (ports: SystemPorts) => {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${ports.mqtt}`, {
        clientId: "g-1",
        username: "g-1",
        password: secret,
        reconnectPeriod: 0,
        protocolVersion: 4,
      });
      clients.push(client);
      return client;
    };
    const topic = "citywatch/v1/devices/g-1/data";

    // Seqs 1-8 through node a: 6-8 over 20 %LEL raise the alarm, filed once.
    const first = await connect(a.ports);
    for (let seq = 1; seq <= 8; seq++) await first.publishAsync(topic, uplink(seq), { qos: 1 });
    type Tasks = { tasks: Array<{ id: string; rule: { id: string }; repeats: number }> };
    await vi.waitFor(
      async () => {
        const { tasks } = await api<Tasks>(b.ports, "/api/v1/tasks");
        expect(tasks.map((t) => t.rule.id)).toEqual(["tunnel.ch4"]);
      },
      { timeout: 20_000, interval: 200 },
    );

    // Node a dies; the sensor goes to node b and sends everything again (it trusts no commit it
    // did not see), then goes on to seq 14.
    const killedAt = Date.now();
    a.process.child.kill("SIGKILL");
    await first.endAsync(true);
    const second = await connect(b.ports);
    for (let seq = 1; seq <= 14; seq++) await second.publishAsync(topic, uplink(seq), { qos: 1 });

    await vi.waitFor(
      async () => expect(Number((await health(b.ports))["owned"])).toBe(PARTITIONS),
      { timeout: 15_000, interval: 100 },
    );
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThan(10_000 + 1_000);

    // Stored once each, committed to the last seq, one task with its repeats.
    await vi.waitFor(
      async () => {
        const { devices } = await api<{
          devices: Array<{ id: string; committedSeq: number | null }>;
        }>(b.ports, "/api/v1/devices");
        expect(devices.find((d) => d.id === "g-1")?.committedSeq).toBe(14);
      },
      { timeout: 20_000, interval: 200 },
    );
    const { readings } = await api<{ readings: Array<{ ts: string }> }>(
      b.ports,
      `/api/v1/devices/g-1/readings?from=${new Date(t0).toISOString()}&to=${new Date().toISOString()}&limit=100`,
    );
    expect(readings.map((r) => Date.parse(r.ts) - t0)).toEqual(
      Array.from({ length: 14 }, (_, i) => (i + 1) * 1_000),
    );
    // One task: the new owner continued from the alarm state node a left in PostgreSQL, so the
    // re-sent 6-8 and the further readings over the limit neither filed it again nor counted as a
    // repeat (a repeat is the condition holding again after it stopped).
    const { tasks } = await api<Tasks>(b.ports, "/api/v1/tasks");
    expect(tasks).toHaveLength(1);
    expect(tasks[0]?.repeats).toBe(0);
    // The receiver heard the filing, and no delivery twice (each idempotency key once).
    await vi.waitFor(
      () =>
        expect(received.filter((e) => e.type === "filed").map((e) => e.taskId)).toEqual([
          tasks[0]?.id,
        ]),
      { timeout: 15_000, interval: 200 },
    );
    const keys = received.map((e) => e.key);
    expect(new Set(keys).size).toBe(keys.length);

    // Node a comes back and takes its share again; a clean stop exits 0.
    nodes.splice(nodes.indexOf(a.process), 1);
    const again = await start("node-a");
    await vi.waitFor(
      async () => expect(Number((await health(again.ports))["owned"])).toBeGreaterThan(0),
      { timeout: 30_000, interval: 200 },
    );

    // The console's registry routes on a node: a device registered on node a connects to node
    // b at once with the secret it was given, its readings are stored; disabled on node a, its
    // session on node b is closed within a poll of the registry.
    const register = await fetch(`http://127.0.0.1:${again.ports.http}/api/v1/devices`, {
      method: "POST",
      headers: { ...bearer(token), "content-type": "application/json" },
      body: JSON.stringify({ ...GAS, id: "g-2", serial: "GT4-0002" }),
    });
    expect(register.status).toBe(201);
    const issued = (await register.json()) as { deviceId: string; secret: string };
    const { sites } = await api<{ sites: Array<{ id: string; party?: { name: string } }> }>(
      again.ports,
      "/api/v1/sites",
    );
    expect(sites.map((site) => site.id).sort()).toEqual(SITES.map((site) => site.id).sort());
    expect(sites.find((site) => site.id === "cs-1")?.party?.name).toBe("Acme <Build> Co.");
    const g2 = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ports.mqtt}`, {
      clientId: "g-2",
      username: "g-2",
      password: issued.secret,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    clients.push(g2);
    await g2.publishAsync("citywatch/v1/devices/g-2/data", uplink(1).replaceAll('"g-1"', '"g-2"'), {
      qos: 1,
    });
    await vi.waitFor(
      async () => {
        const { devices } = await api<{
          devices: Array<{ id: string; committedSeq: number | null }>;
        }>(b.ports, "/api/v1/devices");
        expect(devices.find((d) => d.id === "g-2")?.committedSeq).toBe(1);
      },
      { timeout: 20_000, interval: 200 },
    );
    // Stored, not dead-lettered as unknown: node b knew the device from its CONNECT on.
    const { readings: g2Readings } = await api<{ readings: unknown[] }>(
      b.ports,
      `/api/v1/devices/g-2/readings?from=${new Date(t0).toISOString()}&to=${new Date().toISOString()}`,
    );
    expect(g2Readings).toHaveLength(1);
    const closed = new Promise<void>((resolve) => g2.once("close", () => resolve()));
    const disable = await fetch(`http://127.0.0.1:${again.ports.http}/api/v1/devices/g-2`, {
      method: "PATCH",
      headers: { ...bearer(token), "content-type": "application/json" },
      body: JSON.stringify({ enabled: false }),
    });
    expect(disable.status).toBe(200);
    expect(await Promise.race([closed.then(() => "closed"), sleep(5_000).then(() => "open")])).toBe(
      "closed",
    );

    expect(await again.process.stop(15_000)).toBe(0);
    expect(await b.process.stop(15_000)).toBe(0);
    nodes.splice(0);
    process.stdout.write(`[cluster start] takeover after SIGKILL seen in ${takeoverMs} ms\n`);
  }, 180_000);
});
