import { randomUUID } from "node:crypto";
import { connectAsync, type IPublishPacket } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import {
  canConnect,
  provideInfluxDB,
  provideMosquitto,
  provideRedis,
  redisCommands,
  type ServiceHandle,
} from "../support/services.js";
import { requireService } from "../support/suite.js";

// Each service really does its job here, so a suite that gets one from tests/support can trust it.
const influx = await requireService("support services: InfluxDB", provideInfluxDB);
const mosquitto = await requireService("support services: Mosquitto", provideMosquitto);
const redis = await requireService("support services: Redis", provideRedis);

afterAll(async () => {
  await Promise.all([influx?.stop(), mosquitto?.stop(), redis?.stop()]);
});

// describe.runIf does not narrow the type inside the suite.
function present(service: ServiceHandle | undefined): ServiceHandle {
  if (service === undefined) throw new Error("suite ran without its service");
  return service;
}

function hostAndPort(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? defaultPort : Number(parsed.port),
  };
}

async function expectStopClosesPort(service: ServiceHandle, defaultPort: number): Promise<void> {
  const { host, port } = hostAndPort(service.url, defaultPort);
  expect(await canConnect(host, port)).toBe(true);
  await service.stop();
  expect(await canConnect(host, port)).toBe(false);
  await service.stop(); // idempotent
}

describe.runIf(influx)("InfluxDB from tests/support", () => {
  const db = `support_services_${randomUUID().replaceAll("-", "")}`;

  async function influxQuery(method: "GET" | "POST", query: string): Promise<unknown> {
    const url = new URL("/query", present(influx).url);
    url.searchParams.set("db", db);
    url.searchParams.set("q", query);
    const response = await fetch(url, { method });
    expect(response.status).toBe(200);
    return response.json();
  }

  it("creates a database, writes a point and reads it back", async () => {
    await influxQuery("POST", `CREATE DATABASE ${db}`);
    try {
      const write = await fetch(new URL(`/write?db=${db}&precision=s`, present(influx).url), {
        method: "POST",
        body: "support_check,sensor=s1 value=42.5 1700000000\n",
      });
      expect(write.status).toBe(204);

      const result = await influxQuery("GET", "SELECT value FROM support_check WHERE sensor='s1'");
      expect(result).toEqual({
        results: [
          {
            statement_id: 0,
            series: [
              {
                name: "support_check",
                columns: ["time", "value"],
                values: [["2023-11-14T22:13:20Z", 42.5]],
              },
            ],
          },
        ],
      });
    } finally {
      await influxQuery("POST", `DROP DATABASE ${db}`);
    }
  });

  it.runIf(influx?.source === "local-binary")("stops, closing its port", async () => {
    await expectStopClosesPort(present(influx), 8086);
  });
});

describe.runIf(mosquitto)("Mosquitto from tests/support", () => {
  it("delivers a QoS 1 message from one client to another", async () => {
    const url = present(mosquitto).url;
    const topic = `citywatch/support-check/${randomUUID()}`;
    const options = { reconnectPeriod: 0, connectTimeout: 5_000 };
    const subscriber = await connectAsync(url, { ...options, clientId: `sub-${randomUUID()}` });
    const publisher = await connectAsync(url, { ...options, clientId: `pub-${randomUUID()}` });
    try {
      const granted = await subscriber.subscribeAsync(topic, { qos: 1 });
      expect(granted.map((g) => g.qos)).toEqual([1]);

      const received = new Promise<IPublishPacket>((resolve) => {
        subscriber.on("message", (_topic, _payload, packet) => resolve(packet));
      });
      await publisher.publishAsync(topic, "reading 42", { qos: 1 });
      const packet = await received;

      expect(packet.topic).toBe(topic);
      expect(packet.qos).toBe(1);
      expect(packet.payload.toString()).toBe("reading 42");
    } finally {
      await Promise.all([subscriber.endAsync(), publisher.endAsync()]);
    }
  });

  it.runIf(mosquitto?.source === "local-binary")("stops, closing its port", async () => {
    await expectStopClosesPort(present(mosquitto), 1883);
  });
});

describe.runIf(redis)("Redis from tests/support", () => {
  it("stores and returns a value over RESP", async () => {
    const key = `citywatch:support-check:${randomUUID()}`;
    const replies = await redisCommands(present(redis).url, [
      ["SET", key, "reading 42"],
      ["GET", key],
      ["DEL", key],
      ["GET", key],
    ]);
    expect(replies).toEqual(["OK", "reading 42", 1, null]);
  });

  it.runIf(redis?.source === "local-binary")("stops, closing its port", async () => {
    await expectStopClosesPort(present(redis), 6379);
  });
});
