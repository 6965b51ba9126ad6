import type { Registry } from "prom-client";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { pino } from "pino";
import { build, type Broker, type BrokerAddresses, type BrokerDeps } from "../../broker/app.js";
import { BrokerConfig, type DeviceInput, type SensorKind } from "../../contracts/index.js";
import { metricValue as valueOf } from "../../infra/metrics.js";
import { RegistryStore } from "../../registry/store.js";

/** A real embedded broker on free loopback ports, with a registry in a temporary SQLite file. */
export interface TestBroker {
  readonly broker: Broker;
  readonly addresses: BrokerAddresses;
  readonly registry: RegistryStore;
  readonly url: string;
  /** Register a device (and its site) and return its secret. */
  addDevice(id: string, kind?: SensorKind, extra?: Partial<DeviceInput>): string;
  /** Create a service account and return its secret. */
  addService(name: string, role: "ingest" | "simulator" | "monitor"): string;
  /** Connect an MQTT.js client and wait for CONNACK (rejects on a refused CONNECT). */
  connect(
    options: IClientOptions & { username: string; password?: string },
    url?: string,
  ): Promise<MqttClient>;
  stop(): Promise<void>;
}

export async function startTestBroker(
  overrides: Record<string, unknown> = {},
  setup: { dataDir?: string; durableData?: BrokerDeps["durableData"] } = {},
): Promise<TestBroker> {
  // With a dataDir the registry lives where `citywatch ingest --data-dir` finds it.
  const dir = setup.dataDir ?? mkdtempSync(join(tmpdir(), "cw-broker-"));
  const registry = new RegistryStore(join(dir, "registry.db"));
  const config = BrokerConfig.parse({
    host: "127.0.0.1",
    mqtt: { port: 0 },
    ws: { port: 0 },
    ...overrides,
  });
  const broker = build({
    log: pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" }),
    config,
    authenticate: (username, secret) => registry.authenticate(username, secret),
    ...(setup.durableData !== undefined ? { durableData: setup.durableData } : {}),
  });
  const addresses = await broker.start();
  const clients: MqttClient[] = [];
  const area = { district: "Test", gridCell: "T-1" };
  const location = { lat: 30.6, lon: 104.0 };
  registry.putSite({ id: "site-1", type: "ambient", name: "Test site", area, location });

  return {
    broker,
    addresses,
    registry,
    url: `mqtt://127.0.0.1:${addresses.mqtt}`,
    addDevice(id, kind = "noise", extra = {}) {
      return registry.addDevice({
        id,
        kind,
        model: "M",
        serial: `S-${id}`,
        location,
        area,
        siteId: "site-1",
        ...extra,
      }).secret;
    },
    addService(name, role) {
      return registry.addServiceAccount({ name, role }).secret;
    },
    connect(options, url) {
      return new Promise((resolve, reject) => {
        const client = mqtt.connect(url ?? `mqtt://127.0.0.1:${addresses.mqtt}`, {
          clientId: options.username,
          protocolVersion: 4,
          reconnectPeriod: 0,
          connectTimeout: 5_000,
          ...options,
        });
        clients.push(client);
        let settled = false;
        client.once("connect", () => {
          settled = true;
          resolve(client);
        });
        client.once("error", (error) => {
          if (settled) return;
          settled = true;
          client.end(true);
          reject(error);
        });
        client.once("close", () => {
          if (settled) return;
          settled = true;
          reject(Object.assign(new Error("connection closed before CONNACK"), { code: "CLOSED" }));
        });
      });
    },
    async stop() {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
      await broker.stop();
      registry.close();
      if (setup.dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Collect the messages a client receives, keyed by topic. */
export function collect(
  client: MqttClient,
): Array<{ topic: string; payload: string; retain: boolean }> {
  const received: Array<{ topic: string; payload: string; retain: boolean }> = [];
  client.on("message", (topic, payload, packet) =>
    received.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  return received;
}

/** Wait until `predicate` holds, polling; fails after `timeoutMs` with `what`. */
export async function until(
  predicate: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Publish device data (QoS 1, `{"seq": n}` from `firstSeq` on) until `arrived()` holds: a
 * subscription crossing brokers over Redis, or a session settling after a reconnection, may let
 * the first messages by.
 */
export async function publishUntil(
  device: MqttClient,
  topic: string,
  arrived: () => boolean,
  what: string,
  options: { firstSeq?: number; timeoutMs?: number } = {},
): Promise<void> {
  let seq = options.firstSeq ?? 1;
  await until(
    () => {
      if (arrived()) return true;
      device.publish(topic, JSON.stringify({ seq: seq++ }), { qos: 1 });
      return false;
    },
    what,
    options.timeoutMs ?? 10_000,
  );
}

/** Resolve when the client's connection closes. */
export function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve();
    client.once("close", () => resolve());
  });
}

/** The value of a counter or gauge in the broker's registry, for one label set. */
export async function metricValue(
  broker: { readonly metrics: { readonly registry: Registry } },
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return valueOf(broker.metrics.registry.getSingleMetric(name), labels);
}

/** SUBACK return codes for `filters`; MQTT.js rejects on a 0x80 code, this returns it instead. */
export async function subscribeCodes(
  client: MqttClient,
  filters: string[],
  qos: 0 | 1 = 1,
): Promise<number[]> {
  try {
    const granted = await client.subscribeAsync(filters, { qos });
    return granted.map((g) => g.qos);
  } catch (error) {
    const packet = (error as { packet?: { granted?: Array<number | { qos: number }> } }).packet;
    if (packet?.granted === undefined) throw error;
    return packet.granted.map((g) => (typeof g === "number" ? g : g.qos));
  }
}
