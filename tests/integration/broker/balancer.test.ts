import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, publishUntil, until } from "../../support/broker.js";
import { type BrokerCluster, startBrokerCluster } from "../../support/broker-cluster.js";
import { type Balancer, provideHaproxy, startBalancer } from "../../support/haproxy.js";
import { connectMqtt } from "../../support/mqtt-client.js";
import { provideRedis } from "../../support/services.js";
import { within } from "../../support/process.js";
import { requireService } from "../../support/suite.js";

/*
 * Issue #21, item 4's first part: devices that know only a TCP balancer's address (HAProxy, as
 * docs/deploy.md and the cluster design place it) in front of two brokers sharing Redis. The
 * broker a device is connected to is killed (SIGKILL); the balancer's health check takes it out,
 * the device reconnects through the same address to the other broker, and its data flows on to a
 * consumer on that broker, its persistent session and subscription intact.
 */

const seqOf = (payload: string) => (JSON.parse(payload) as { seq: number }).seq;

/** `promise`, or a clear error naming `what` once `ms` have passed. */
async function timed<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  const result = await within(promise, ms);
  if (result === undefined) throw new Error(`${what}: nothing within ${ms} ms`);
  return result;
}

const redis = await requireService("devices behind a balancer (Redis)", provideRedis);
const haproxy = await requireService("devices behind a balancer (HAProxy)", provideHaproxy);

describe.runIf(redis !== undefined && haproxy !== undefined)("brokers behind HAProxy", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-balancer-"));
  const clients: MqttClient[] = [];
  let cluster: BrokerCluster;
  let balancer: Balancer;

  beforeAll(async () => {
    cluster = await startBrokerCluster(dir, redis?.url ?? "", ["a", "b"]);
    balancer = await startBalancer(haproxy?.url ?? "", cluster.ports);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await balancer?.stop();
    await Promise.all(cluster?.brokers.map((b) => b.stop()) ?? []);
    rmSync(dir, { recursive: true, force: true });
    await redis?.stop();
  });

  it("a device that knows only the balancer goes on through the other broker when its own dies", async () => {
    const [, portB] = cluster.ports as [number, number];
    // The durable consumer of device data, on the broker that stays (broker/durable.ts).
    const ingest = await connectMqtt(portB, "ingest", cluster.ingestSecret, "ingest-b", {
      clean: false,
    });
    clients.push(ingest);
    const received = collect(ingest);
    await timed(
      ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 }),
      "the consumer's SUBACK",
    );

    // The device: the balancer's address only, a persistent session, reconnecting on its own.
    const device = mqtt.connect(`mqtt://127.0.0.1:${balancer.port}`, {
      username: "dev-1",
      password: cluster.deviceSecret,
      clientId: "dev-1",
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 200,
      connectTimeout: 2_000,
      // What it is subscribed to after the reconnection is its session's, kept in Redis.
      resubscribe: false,
    });
    clients.push(device);
    let connects = 0;
    device.on("connect", () => (connects += 1));
    await until(() => connects === 1, "the device's first connection", 10_000);
    await timed(
      device.subscribeAsync("citywatch/v1/devices/dev-1/commit", { qos: 1 }),
      "the device's SUBACK",
    );

    // Through broker a (the balancer's first backend): across Redis to the consumer on b.
    await publishUntil(
      device,
      "citywatch/v1/devices/dev-1/data",
      () => received.length > 0,
      "a message through the balancer",
    );

    const [brokerA] = cluster.brokers;
    brokerA?.child.kill("SIGKILL");
    await until(() => connects === 2, "the device's reconnection through the balancer", 15_000);
    // Until one arrives: a message sent while the reconnected session settles is re-sent.
    await publishUntil(
      device,
      "citywatch/v1/devices/dev-1/data",
      () => received.some((m) => seqOf(m.payload) >= 1000),
      "data through the other broker after the kill",
      { firstSeq: 1000, timeoutMs: 15_000 },
    );
    // The session's subscription survived on the other broker: a commit reaches the device.
    const commits = collect(device);
    await timed(
      ingest.publishAsync("citywatch/v1/devices/dev-1/commit", '{"committedSeq":1000}', {
        qos: 1,
        retain: true,
      }),
      "the commit's PUBACK",
    );
    await until(() => commits.length > 0, "the commit on the other broker");
    expect(commits[0]?.payload).toBe('{"committedSeq":1000}');
  }, 60_000);
});
