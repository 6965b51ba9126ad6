import { afterEach, describe, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import {
  closed,
  metricValue,
  startTestBroker,
  type TestBroker,
  until,
} from "../../support/broker.js";

/**
 * The broker acknowledges device data only once a durable consumer holds it (broker/durable.ts,
 * docs/protocol.md 6.1): held while there is none, acknowledged when the ingest's persistent
 * session appears, refused unacknowledged (connection closed, counted) after the hold time or
 * over the hold bound.
 */
describe("device data without a durable consumer (memory persistence)", () => {
  let t: TestBroker | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it("holds the PUBACK until the ingest's persistent session subscribes, then acknowledges", async () => {
    t = await startTestBroker({}, { durableData: { holdMs: 10_000 } });
    const device = await t.connect({ username: "noise-d1", password: t.addDevice("noise-d1") });
    let acked = false;
    const publish = device
      .publishAsync(deviceTopic("noise-d1", "data"), "1", { qos: 1 })
      .then(() => (acked = true));
    await new Promise((r) => setTimeout(r, 500));
    expect(acked).toBe(false);
    expect(await metricValue(t.broker, "citywatch_broker_data_held")).toBe(1);
    // A clean session is no durable consumer.
    const password = t.addService("ingest", "ingest");
    const clean = await t.connect({ username: "ingest", password, clientId: "ingest-c" });
    await clean.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    await new Promise((r) => setTimeout(r, 500));
    expect(acked).toBe(false);
    const ingest = await t.connect({
      username: "ingest",
      password,
      clientId: "ingest-p",
      clean: false,
    });
    const received: string[] = [];
    ingest.on("message", (_topic, payload) => received.push(payload.toString()));
    await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    await publish;
    await until(() => received.includes("1"), "the held message delivered to the ingest");
    expect(await metricValue(t.broker, "citywatch_broker_data_held_total")).toBe(1);
    expect(await metricValue(t.broker, "citywatch_broker_data_held")).toBe(0);
  });

  it("closes the connection unacknowledged after the hold time, counted", async () => {
    t = await startTestBroker({}, { durableData: { holdMs: 300 } });
    const device = await t.connect({ username: "noise-d2", password: t.addDevice("noise-d2") });
    let acked = false;
    device.publish(deviceTopic("noise-d2", "data"), "1", { qos: 1 }, (error) => {
      if (!error) acked = true;
    });
    await closed(device);
    expect(acked).toBe(false);
    expect(
      await metricValue(t.broker, "citywatch_broker_data_refused_total", {
        reason: "no_durable_consumer",
      }),
    ).toBe(1);
  });

  it("refuses at once over the hold bound, counted", async () => {
    t = await startTestBroker(
      { limits: { publishRatePerSecond: 1_000, publishBurst: 1_000 } },
      { durableData: { holdMs: 10_000, maxHeld: 2 } },
    );
    const device = await t.connect({ username: "noise-d3", password: t.addDevice("noise-d3") });
    for (let i = 1; i <= 3; i++)
      device.publish(deviceTopic("noise-d3", "data"), String(i), { qos: 1 });
    await closed(device);
    expect(
      await metricValue(t.broker, "citywatch_broker_data_refused_total", {
        reason: "hold_queue_full",
      }),
    ).toBe(1);
  });
});
