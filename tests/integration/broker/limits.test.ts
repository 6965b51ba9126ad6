import { createServer } from "node:net";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { build } from "../../../broker/app.js";
import { ListenError } from "../../../broker/listeners.js";
import { BrokerConfig } from "../../../contracts/index.js";
import {
  closed,
  collect,
  metricValue,
  startTestBroker,
  type TestBroker,
  until,
} from "../../support/broker.js";

const data = (id: string) => `citywatch/v1/devices/${id}/data`;
const fixtures = new URL("../../fixtures/tls/", import.meta.url).pathname;

describe("broker limits", () => {
  let t: TestBroker | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it("refuses an oversized packet, closes that connection and keeps serving others", async () => {
    t = await startTestBroker({ limits: { maxPacketBytes: 4096 } });
    const big = t.addDevice("big");
    const ok = t.addDevice("ok");
    const ingestSecret = t.addService("ingest", "ingest");
    const ingest = await t.connect({ username: "ingest", password: ingestSecret });
    const received = collect(ingest);
    await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });

    const offender = await t.connect({ username: "big", password: big });
    const gone = closed(offender);
    offender.publish(data("big"), Buffer.alloc(64 * 1024, 0x41), { qos: 1 });
    await gone;
    expect(
      await metricValue(t.broker, "citywatch_broker_limit_rejections_total", {
        limit: "packet_size",
      }),
    ).toBe(1);

    const good = await t.connect({ username: "ok", password: ok });
    await good.publishAsync(data("ok"), Buffer.alloc(1024, 0x42), { qos: 1 });
    await until(() => received.length === 1, "the normal-sized message");
    expect(received.map((m) => m.topic)).toEqual([data("ok")]);
  });

  it("refuses an oversized CONNECT before authentication", async () => {
    t = await startTestBroker({ limits: { maxPacketBytes: 1024 } });
    await expect(t.connect({ username: "x", password: "p".repeat(4000) })).rejects.toMatchObject({
      code: "CLOSED",
    });
    expect(
      await metricValue(t.broker, "citywatch_broker_limit_rejections_total", {
        limit: "packet_size",
      }),
    ).toBe(1);
  });

  it("paces a device above its publish rate without losing messages", async () => {
    t = await startTestBroker({
      limits: { publishRatePerSecond: 50, publishBurst: 5, maxThrottleMs: 5_000 },
    });
    const secret = t.addDevice("fast");
    const ingest = await t.connect({
      username: "ingest",
      password: t.addService("ingest", "ingest"),
    });
    const received = collect(ingest);
    await ingest.subscribeAsync(data("fast"), { qos: 1 });
    const device = await t.connect({ username: "fast", password: secret });
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        device.publishAsync(data("fast"), String(i), { qos: 1 }),
      ),
    );
    await until(() => received.length === 20, "all 20 paced messages");
    expect(received.map((m) => Number(m.payload))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(
      await metricValue(t.broker, "citywatch_broker_publishes_throttled_total"),
    ).toBeGreaterThanOrEqual(10);
    expect(device.connected).toBe(true);
  });

  it("disconnects a device whose flood would need more than the allowed wait", async () => {
    t = await startTestBroker({
      limits: { publishRatePerSecond: 5, publishBurst: 5, maxThrottleMs: 500 },
    });
    const device = await t.connect({ username: "flood", password: t.addDevice("flood") });
    const gone = closed(device);
    for (let i = 0; i < 100; i++) device.publish(data("flood"), String(i), { qos: 0 });
    await gone;
    expect(
      await metricValue(t.broker, "citywatch_broker_limit_rejections_total", {
        limit: "publish_rate",
      }),
    ).toBe(1);
  });

  it("does not rate-limit service accounts", async () => {
    t = await startTestBroker({
      limits: { publishRatePerSecond: 1, publishBurst: 1, maxThrottleMs: 100 },
    });
    const sim = await t.connect({
      username: "simulator",
      password: t.addService("simulator", "simulator"),
    });
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => sim.publishAsync(data(`d${i}`), "x", { qos: 1 })),
    );
    expect(sim.connected).toBe(true);
    expect(await metricValue(t.broker, "citywatch_broker_publishes_throttled_total")).toBe(0);
  });

  it("refuses connections above the cap with CONNACK 3", async () => {
    t = await startTestBroker({ limits: { maxConnections: 2 } });
    const a = t.addDevice("a");
    const b = t.addDevice("b");
    const c = t.addDevice("c");
    await t.connect({ username: "a", password: a });
    await t.connect({ username: "b", password: b });
    await expect(t.connect({ username: "c", password: c })).rejects.toMatchObject({ code: 3 });
    expect(
      await metricValue(t.broker, "citywatch_broker_limit_rejections_total", {
        limit: "connections",
      }),
    ).toBe(1);
  });

  it("closes a connection that publishes on a topic deeper than the limit", async () => {
    t = await startTestBroker({ limits: { maxTopicLevels: 6 } });
    const device = await t.connect({ username: "deep", password: t.addDevice("deep") });
    const gone = closed(device);
    device.publish("citywatch/v1/devices/deep/data/a/b/c", "x", { qos: 1 });
    await gone;
    expect(
      await metricValue(t.broker, "citywatch_broker_limit_rejections_total", {
        limit: "topic_levels",
      }),
    ).toBe(1);
  });

  it("serves MQTT over TLS when a certificate and key are configured", async () => {
    t = await startTestBroker({
      tls: { port: 0, certFile: `${fixtures}cert.pem`, keyFile: `${fixtures}key.pem` },
    });
    expect(t.addresses.mqtts).toBeGreaterThan(0);
    expect(t.addresses.wss).toBeGreaterThan(0);
    const secret = t.addDevice("tls-dev");
    const ca = readFileSync(`${fixtures}cert.pem`);
    const client = await t.connect(
      { username: "tls-dev", password: secret, ca, servername: "localhost" },
      `mqtts://127.0.0.1:${t.addresses.mqtts}`,
    );
    expect(client.connected).toBe(true);
    const wss = await t.connect(
      { username: "tls-dev", password: secret, ca, clientId: "tls-dev" },
      `wss://localhost:${t.addresses.wss}/mqtt`,
    );
    expect(wss.connected).toBe(true);
  });

  it("names the setting to change when a port is taken", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    const broker = build({
      log: pino({ level: "silent" }),
      config: BrokerConfig.parse({ host: "127.0.0.1", mqtt: { port }, ws: { enabled: false } }),
      authenticate: () => ({ ok: false, reason: "unknown_user" }),
    });
    try {
      const error = await broker.start().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ListenError);
      expect(error).toMatchObject({ code: "BROKER_PORT_IN_USE" });
      expect((error as Error).message).toBe(
        `mqtt port ${port} on 127.0.0.1 is already in use; choose another with broker.mqtt.port (CITYWATCH_MQTT_PORT, --mqtt-port)`,
      );
    } finally {
      await broker.stop();
      blocker.close();
    }
  });
});
