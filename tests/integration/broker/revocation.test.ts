import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { localBroker } from "../../../cli/runtime/local-broker.js";
import { RegistryRevocations, withRevocations } from "../../../cli/runtime/revocations.js";
import { buildSystem, type System } from "../../../cli/runtime/system.js";
import { deviceTopic, IngestConfig } from "../../../contracts/index.js";
import { metricValue } from "../../../infra/metrics.js";
import { RegistryStore } from "../../../registry/store.js";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { registryViewOf } from "../../support/ingest.js";
import { dataTopic, noiseUplink } from "../../fault/flapping/all-in-one.js";

/*
 * Issue #16 item 1, the broker's part: `devices rotate-secret | disable | remove`, run by another
 * process, close the device's open MQTT connection at once (the old session kept publishing for
 * 75 s and more, until the device itself reconnected), as `citywatch start` wires it (the
 * registry watch's onRevoked into Broker.revoke). A removed device's retained commit goes with
 * its registration: an id registered again is not told the old device's progress.
 */

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const base = Date.now() - 3_600_000;
const IDS = ["dev-disabled", "dev-removed", "dev-rotated", "dev-ok"] as const;

let dir: string;
let t: TestBroker;
let system: System;
let watch: RegistryRevocations;
let cli: RegistryStore;
const clients = new Map<string, MqttClient>();
const closed = new Set<string>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-revoke-broker-"));
  t = await startTestBroker({}, { dataDir: dir });
  const secrets = new Map(IDS.map((id) => [id, t.addDevice(id, "noise")] as const));
  watch = new RegistryRevocations(join(dir, "registry.db"), { log, intervalMs: 50 });
  watch.onRevoked(({ deviceId, why }) => t.broker.revoke(deviceId, why));
  watch.start();
  system = buildSystem({
    log,
    config: IngestConfig.parse({ batch: { maxDelayMs: 20 } }),
    dataDir: dir,
    registry: withRevocations(registryViewOf(t), watch),
    local: localBroker(t.broker, log),
  });
  await system.start();
  for (const id of IDS) {
    const client = await t.connect({
      username: id,
      password: secrets.get(id) ?? "",
      reconnectPeriod: 0,
      // The removed device holds a persistent session, which its removal must drop.
      clean: id !== "dev-removed",
    });
    if (id === "dev-removed") await client.subscribeAsync(deviceTopic(id, "commit"), { qos: 1 });
    client.on("close", () => closed.add(id));
    clients.set(id, client);
  }
  cli = new RegistryStore(join(dir, "registry.db"));
});

afterAll(async () => {
  for (const c of clients.values()) await c.endAsync(true).catch(() => undefined);
  await system.stop();
  watch.close();
  cli.close();
  await t.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A retained message on the topic, as a client subscribing now would get it (or undefined). */
async function retained(client: MqttClient, topic: string): Promise<Buffer | undefined> {
  let got: Buffer | undefined;
  client.on("message", (at, payload) => {
    if (at === topic) got = payload;
  });
  await client.subscribeAsync(topic, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  return got;
}

it("closes a revoked device's open connection at once and drops a removed device's retained commit", async () => {
  for (const id of IDS) {
    for (let seq = 1; seq <= 5; seq++) {
      await clients
        .get(id)
        ?.publishAsync(dataTopic(id), noiseUplink(id, seq, base + seq * 1_000, { LAeq: 50 }), {
          qos: 1,
        });
    }
  }
  await until(
    () => IDS.every((id) => system.ingest.state.ledger.progress(id)?.committedSeq === 5),
    "first readings committed",
  );

  const started = Date.now();
  cli.setDeviceEnabled("dev-disabled", false);
  cli.removeDevice("dev-removed");
  cli.rotateSecret("dev-rotated");
  await until(
    () => closed.has("dev-disabled") && closed.has("dev-removed") && closed.has("dev-rotated"),
    "the three revoked connections closed",
    5_000,
  );
  const ms = Date.now() - started;
  expect(closed.has("dev-ok")).toBe(false);
  expect(clients.get("dev-ok")?.connected).toBe(true);
  const revoked = t.broker.metrics.registry.getSingleMetric(
    "citywatch_broker_sessions_revoked_total",
  );
  for (const why of ["disabled", "removed", "rotated"]) {
    expect(await metricValue(revoked, { why })).toBe(1);
  }

  // The removed registration's persistent subscriptions are gone with it.
  const persistence = (
    t.broker.aedes as unknown as {
      persistence: { subscriptionsByClient(c: { id: string }): Promise<unknown[]> };
    }
  ).persistence;
  let kept = await persistence.subscriptionsByClient({ id: "dev-removed" });
  for (let i = 0; i < 20 && kept.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    kept = await persistence.subscriptionsByClient({ id: "dev-removed" });
  }
  expect(kept).toEqual([]);

  // The id registered again: its first subscription is not told the old registration's commit.
  const secret = t.addDevice("dev-removed", "noise");
  const again = await t.connect({ username: "dev-removed", password: secret, reconnectPeriod: 0 });
  clients.set("dev-removed-again", again);
  const commit = await retained(again, deviceTopic("dev-removed", "commit"));
  // dev-ok's retained commit is still there (control).
  const control = await retained(clients.get("dev-ok")!, deviceTopic("dev-ok", "commit"));
  console.log(
    `[revocation] broker: revoked connections closed in ${ms} ms; removed device's retained commit ${commit === undefined ? "dropped" : "kept"}; control commit ${control === undefined ? "missing" : "kept"}`,
  );
  expect(commit).toBeUndefined();
  expect(control).toBeDefined();
});
