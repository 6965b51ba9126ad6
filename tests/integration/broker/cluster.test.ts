import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect, publishUntil, until } from "../../support/broker.js";
import type { CliProcess } from "../../support/cli-process.js";
import { startBrokerCluster } from "../../support/broker-cluster.js";
import { provideRedis } from "../../support/services.js";
import { connectMqtt } from "../../support/mqtt-client.js";
import { requireService } from "../../support/suite.js";

const redis = await requireService("broker cluster over Redis", provideRedis);

const connect = connectMqtt;

describe.runIf(redis)("two broker processes sharing Redis", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-cluster-"));
  const brokers: CliProcess[] = [];
  const ports: number[] = [];
  const clients: MqttClient[] = [];
  let deviceSecret = "";
  let ingestSecret = "";

  beforeAll(async () => {
    const cluster = await startBrokerCluster(dir, redis?.url ?? "", ["a", "b"]);
    brokers.push(...cluster.brokers);
    ports.push(...cluster.ports);
    deviceSecret = cluster.deviceSecret;
    ingestSecret = cluster.ingestSecret;
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    const codes = await Promise.all(brokers.map((b) => b.stop()));
    expect(codes, brokers.map((b) => b.output().slice(-3000)).join("\n----\n")).toEqual([0, 0]); // both shut down cleanly on SIGTERM
    rmSync(dir, { recursive: true, force: true });
    await redis?.stop();
  });

  it("delivers a message published on one broker to a subscriber on the other", async () => {
    const [portA, portB] = ports as [number, number];
    // A persistent session: `citywatch broker` acknowledges device data only once a durable
    // consumer holds it (broker/durable.ts).
    const ingest = await connect(portB, "ingest", ingestSecret, "ingest-b", { clean: false });
    clients.push(ingest);
    const received = collect(ingest);
    await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    const device = await connect(portA, "dev-1", deviceSecret);
    clients.push(device);
    // The subscription reaches Redis asynchronously; publish until the first one arrives.
    await publishUntil(
      device,
      "citywatch/v1/devices/dev-1/data",
      () => received.length > 0,
      "a message across brokers",
    );
    await device.publishAsync("citywatch/v1/devices/dev-1/data", JSON.stringify({ seq: 1000 }), {
      qos: 1,
    });
    await until(() => received.some((m) => m.payload.includes("1000")), "the confirming message");
    expect(received.every((m) => m.topic === "citywatch/v1/devices/dev-1/data")).toBe(true);
  });

  it("shares retained messages: a status retained on one broker is seen by a late subscriber on the other", async () => {
    const [portA, portB] = ports as [number, number];
    const ingestA = await connect(portA, "ingest", ingestSecret, "ingest-a");
    clients.push(ingestA);
    await ingestA.publishAsync("citywatch/v1/devices/dev-1/commit", '{"committedSeq":42}', {
      qos: 1,
      retain: true,
    });
    const device = await connect(portB, "dev-1", deviceSecret);
    clients.push(device);
    const received = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/dev-1/commit", { qos: 1 });
    await until(() => received.length > 0, "the retained commit");
    expect(received[0]).toMatchObject({
      topic: "citywatch/v1/devices/dev-1/commit",
      payload: '{"committedSeq":42}',
      retain: true,
    });
  });
});
