import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closed,
  collect,
  metricValue,
  startTestBroker,
  subscribeCodes,
  type TestBroker,
  until,
} from "../../support/broker.js";

const data = (id: string) => `citywatch/v1/devices/${id}/data`;
const commit = (id: string) => `citywatch/v1/devices/${id}/commit`;
const status = (id: string) => `citywatch/v1/devices/${id}/status`;
const reading = (id: string, seq: number) =>
  JSON.stringify({
    v: 1,
    deviceId: id,
    seq,
    kind: "noise",
    readings: [{ ts: new Date().toISOString(), quality: "normal", values: { LAeq: 55 } }],
  });

describe("broker authentication and ACL (real aedes, real MQTT.js)", () => {
  let t: TestBroker;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestBroker();
    for (const id of ["dev-a", "dev-b", "dev-off"]) secrets[id] = t.addDevice(id);
    t.registry.setDeviceEnabled("dev-off", false);
    secrets.ingest = t.addService("ingest", "ingest");
  });
  afterAll(() => t.stop());

  it("accepts a device with its secret", async () => {
    const client = await t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "" });
    expect(client.connected).toBe(true);
    expect(
      await metricValue(t.broker, "citywatch_broker_connections_total", { principal: "device" }),
    ).toBeGreaterThan(0);
    await client.endAsync();
  });

  it("refuses a wrong secret, a missing secret and an unknown device with CONNACK 4", async () => {
    const before = await metricValue(t.broker, "citywatch_broker_auth_failures_total", {
      reason: "bad_secret",
    });
    await expect(
      t.connect({ username: "dev-a", password: `${secrets["dev-a"]}x` }),
    ).rejects.toMatchObject({ code: 4 });
    await expect(t.connect({ username: "dev-a" })).rejects.toMatchObject({ code: 4 });
    await expect(t.connect({ username: "ghost", password: "whatever" })).rejects.toMatchObject({
      code: 4,
    });
    // The secret of another device does not open this one.
    await expect(
      t.connect({ username: "dev-a", password: secrets["dev-b"] ?? "" }),
    ).rejects.toMatchObject({ code: 4 });
    expect(
      await metricValue(t.broker, "citywatch_broker_auth_failures_total", { reason: "bad_secret" }),
    ).toBe(before + 2);
    expect(
      await metricValue(t.broker, "citywatch_broker_auth_failures_total", {
        reason: "missing_credentials",
      }),
    ).toBe(1);
    expect(
      await metricValue(t.broker, "citywatch_broker_auth_failures_total", {
        reason: "unknown_user",
      }),
    ).toBe(1);
  });

  it("refuses a disabled device with CONNACK 5 and a foreign client id with CONNACK 2", async () => {
    await expect(
      t.connect({ username: "dev-off", password: secrets["dev-off"] ?? "" }),
    ).rejects.toMatchObject({ code: 5 });
    // dev-a's credentials with dev-b's client id would take over dev-b's session.
    await expect(
      t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "", clientId: "dev-b" }),
    ).rejects.toMatchObject({ code: 2 });
  });

  it("refuses a Will on another device's status topic", async () => {
    await expect(
      t.connect({
        username: "dev-a",
        password: secrets["dev-a"] ?? "",
        will: { topic: status("dev-b"), payload: Buffer.from("{}"), qos: 1, retain: true },
      }),
    ).rejects.toMatchObject({ code: 5 });
    // Its own data topic is not a place for a death notice either.
    await expect(
      t.connect({
        username: "dev-a",
        password: secrets["dev-a"] ?? "",
        will: { topic: data("dev-a"), payload: Buffer.from("{}"), qos: 1, retain: false },
      }),
    ).rejects.toMatchObject({ code: 5 });
    expect(
      await metricValue(t.broker, "citywatch_broker_auth_failures_total", {
        reason: "will_denied",
      }),
    ).toBe(2);
    const ok = await t.connect({
      username: "dev-a",
      password: secrets["dev-a"] ?? "",
      will: { topic: status("dev-a"), payload: Buffer.from("{}"), qos: 1, retain: true },
    });
    await ok.endAsync();
  });

  it("delivers nothing a device publishes as another device, and closes its connection", async () => {
    const ingest = await t.connect({
      username: "ingest",
      password: secrets.ingest ?? "",
      clientId: "ingest-1",
    });
    const received = collect(ingest);
    await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    const attacker = await t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "" });
    const gone = closed(attacker);
    attacker.publish(data("dev-b"), reading("dev-b", 1), { qos: 1 });
    await gone; // the client sees its connection closed, with no PUBACK [MQTT-3.3.5-2]
    const honest = await t.connect({ username: "dev-b", password: secrets["dev-b"] ?? "" });
    await honest.publishAsync(data("dev-b"), reading("dev-b", 2), { qos: 1 });
    await until(() => received.length >= 1, "the honest reading");
    await new Promise((r) => setTimeout(r, 100));
    expect(received.map((m) => JSON.parse(m.payload) as { seq: number }).map((m) => m.seq)).toEqual(
      [2],
    );
    expect(
      await metricValue(t.broker, "citywatch_broker_acl_denials_total", {
        action: "publish",
        principal: "device",
      }),
    ).toBe(1);
    await Promise.all([ingest.endAsync(), honest.endAsync()]);
  });

  it("gives a device that subscribes to another device's topics a failure SUBACK and nothing else", async () => {
    const spy = await t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "" });
    const spied = collect(spy);
    expect(
      await subscribeCodes(spy, [commit("dev-b"), "citywatch/v1/devices/+/commit", "#"]),
    ).toEqual([128, 128, 128]);
    expect(await subscribeCodes(spy, [commit("dev-a")])).toEqual([1]);

    const victim = await t.connect({ username: "dev-b", password: secrets["dev-b"] ?? "" });
    const victimReceived = collect(victim);
    await victim.subscribeAsync(commit("dev-b"), { qos: 1 });
    const ingest = await t.connect({
      username: "ingest",
      password: secrets.ingest ?? "",
      clientId: "ingest-2",
    });
    await ingest.publishAsync(commit("dev-b"), '{"committedSeq":2}', { qos: 1 });
    await ingest.publishAsync(commit("dev-a"), '{"committedSeq":9}', { qos: 1 });
    await until(() => victimReceived.length === 1 && spied.length === 1, "both commits");
    await new Promise((r) => setTimeout(r, 100));
    expect(spied.map((m) => m.topic)).toEqual([commit("dev-a")]);
    expect(victimReceived.map((m) => m.topic)).toEqual([commit("dev-b")]);
    expect(spy.connected).toBe(true); // a refused SUBSCRIBE does not cost the connection
    await Promise.all([spy.endAsync(), victim.endAsync(), ingest.endAsync()]);
  });

  it("lets a device not forge its own commit", async () => {
    const device = await t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "" });
    const gone = closed(device);
    device.publish(commit("dev-a"), '{"committedSeq":999}', { qos: 1 });
    await gone;
  });

  it("serves MQTT over WebSocket with the same authentication", async () => {
    const ingest = await t.connect({
      username: "ingest",
      password: secrets.ingest ?? "",
      clientId: "ingest-ws",
    });
    const received = collect(ingest);
    await ingest.subscribeAsync(data("dev-a"), { qos: 1 });
    const ws = await t.connect(
      { username: "dev-a", password: secrets["dev-a"] ?? "" },
      `ws://127.0.0.1:${t.addresses.ws}/mqtt`,
    );
    await ws.publishAsync(data("dev-a"), reading("dev-a", 10), { qos: 1 });
    await until(() => received.length === 1, "the WebSocket reading");
    expect(JSON.parse(received[0]?.payload ?? "{}")).toMatchObject({ deviceId: "dev-a", seq: 10 });
    await expect(
      t.connect({ username: "dev-a", password: "wrong" }, `ws://127.0.0.1:${t.addresses.ws}/mqtt`),
    ).rejects.toMatchObject({ code: 4 });
    await Promise.all([ingest.endAsync(), ws.endAsync()]);
  });

  it("counts connected clients", async () => {
    const before = await metricValue(t.broker, "citywatch_broker_connected_clients");
    const a = await t.connect({ username: "dev-a", password: secrets["dev-a"] ?? "" });
    await until(() => t.broker.aedes.connectedClients >= 1, "client registered");
    expect(await metricValue(t.broker, "citywatch_broker_connected_clients")).toBe(before + 1);
    await a.endAsync();
    await until(() => t.broker.aedes.connectedClients === before, "client gone");
    expect(await metricValue(t.broker, "citywatch_broker_connected_clients")).toBe(before);
  });
});

describe("MQTT.js default import is the real client", () => {
  it("is not mocked", () => {
    expect(typeof mqtt.connect).toBe("function");
  });
});
