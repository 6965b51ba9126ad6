import type { MqttClient } from "mqtt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseTopic, TaskEvent, tasksFilter } from "../../../contracts/index.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { collect, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

describe("MQTT task topics through the outbox", () => {
  let dir: string;
  let t: TestBroker;
  let system: TaskSystem | undefined;

  beforeEach(async () => {
    dir = await makeTempDir("cw-task-mqtt-");
    t = await startTestBroker();
  });
  afterEach(async () => {
    await system?.stop();
    await t.stop();
    await removeTempDir(dir);
  });

  it("publishes each task event on citywatch/v1/tasks/{kind}/{id}; while the connection is down nothing is lost", async () => {
    const ingestSecret = t.addService("ingest", "ingest");
    const monitor = await t.connect({
      username: "console",
      password: t.addService("console", "monitor"),
    });
    await monitor.subscribeAsync(tasksFilter(), { qos: 1 });
    const received = collect(monitor);

    // The publisher the ingest wires: QoS 1 on its own connection; refused while disconnected.
    let connection: MqttClient | undefined = await t.connect({
      username: "ingest",
      password: ingestSecret,
    });
    const publish = async (topic: string, payload: string) => {
      if (connection === undefined || !connection.connected)
        throw new Error("MQTT connection down");
      await connection.publishAsync(topic, payload, { qos: 1 });
    };
    system = startSystem(dir, {
      now: Date.now,
      publish,
      config: tasksConfig({ outbox: { backoffBaseMs: 20, backoffMaxMs: 100 } }),
    });

    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(Date.now()), noiseEvidence(Date.now())),
    );
    await until(() => received.length === 1, "first event");

    await connection.endAsync();
    connection = undefined;
    await system.service.applyAlarm(gasNotice(raise(Date.now(), { level: "IV", deviceId: "g-1" })));
    await system.service.transition("enf-000001", { to: "dispatched" }, { name: "x (admin)" });
    await until(() => system!.outbox.pending("mqtt") === 2, "two events held");
    await new Promise((r) => setTimeout(r, 200)); // several failed attempts
    expect(received).toHaveLength(1);

    connection = await t.connect({ username: "ingest", password: ingestSecret });
    await until(
      () => received.length === 3 && system!.outbox.pending("mqtt") === 0,
      "held events delivered",
      10_000,
    );

    const events = received.map((m) => ({
      topic: parseTopic(m.topic),
      event: TaskEvent.parse(JSON.parse(m.payload)),
    }));
    expect(events.map((e) => e.topic)).toEqual([
      { ok: true, topic: { type: "task", taskKind: "enforcement", taskId: "enf-000001" } },
      { ok: true, topic: { type: "task", taskKind: "emergency", taskId: "emg-000002" } },
      { ok: true, topic: { type: "task", taskKind: "enforcement", taskId: "enf-000001" } },
    ]);
    expect(events.map((e) => e.event.type)).toEqual(["filed", "filed", "transition"]);
    expect(new Set(events.map((e) => e.event.id)).size).toBe(3);
    expect((await system.metrics.deliveryFailures.get()).values[0]?.value).toBeGreaterThan(0);
  });
});
