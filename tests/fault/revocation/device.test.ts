import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { localBroker } from "../../../cli/runtime/local-broker.js";
import {
  type DeviceRevocation,
  RegistryRevocations,
  withRevocations,
} from "../../../cli/runtime/revocations.js";
import { buildSystem, type System } from "../../../cli/runtime/system.js";
import { IngestConfig } from "../../../contracts/index.js";
import { metricValue } from "../../../infra/metrics.js";
import { RegistryStore } from "../../../registry/store.js";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { registryViewOf } from "../../support/ingest.js";
import { dataTopic, noiseUplink } from "../flapping/all-in-one.js";

/*
 * Issue #16 item 1, devices (the ingest's part): `devices disable` and `devices remove`, run by
 * another process (another connection to registry.db), take effect on the very next reading: the
 * ingest used to cache lookups 5 s, and stored every reading sent within them. The MQTT session
 * is left open here on purpose (closing it is the broker's part, through the same watch's
 * onRevoked): whatever the session still manages to publish is dead-lettered, never stored. The
 * watch names each revoked device, rotate-secret included, for the broker to close its session.
 */

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const base = Date.now() - 3_600_000;
const uplink = (id: string, seq: number) =>
  noiseUplink(id, seq, base + seq * 1_000, { LAeq: 50 + (seq % 20) });

let dir: string;
let t: TestBroker;
let system: System;
let watch: RegistryRevocations;
let cli: RegistryStore;
const clients = new Map<string, MqttClient>();
const heard: DeviceRevocation[] = [];
const IDS = ["dev-disabled", "dev-removed", "dev-rotated", "dev-ok"] as const;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-revoke-dev-"));
  t = await startTestBroker(
    { limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } },
    { dataDir: dir },
  );
  const secrets = new Map(IDS.map((id) => [id, t.addDevice(id, "noise")] as const));
  watch = new RegistryRevocations(join(dir, "registry.db"), { log, intervalMs: 50 });
  watch.onRevoked((r) => heard.push(r));
  watch.start();
  system = buildSystem({
    log,
    config: IngestConfig.parse({ batch: { maxDelayMs: 20 } }),
    dataDir: dir,
    registry: withRevocations(registryViewOf(t), watch),
    local: localBroker(t.broker, log),
  });
  await system.start();
  for (const id of IDS)
    clients.set(id, await t.connect({ username: id, password: secrets.get(id) ?? "" }));
  // `citywatch devices …` in another process: its own connection to the registry file.
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

/** Publish seqs [from, to] of a device; the count the broker acknowledged. */
async function send(id: string, from: number, to: number): Promise<number> {
  const client = clients.get(id);
  let acked = 0;
  for (let seq = from; seq <= to; seq++) {
    const ok = await client
      ?.publishAsync(dataTopic(id), uplink(id, seq), { qos: 1 })
      .then(() => true)
      .catch(() => false);
    if (ok === true) acked++;
  }
  return acked;
}

const stored = async (id: string) =>
  (
    await system.ingest.store.readings({
      deviceId: id,
      kind: "noise",
      fromMs: base - 60_000,
      toMs: Date.now() + 60_000,
      limit: 1_000,
    })
  ).length;

const deadLettered = (reason: string) =>
  metricValue(
    system.ingest.metrics.registry.getSingleMetric("citywatch_ingest_dead_letters_total"),
    {
      reason,
    },
  );

it("refuses a disabled or removed device's readings from the next one on, and names every revoked device", async () => {
  for (const id of IDS) expect(await send(id, 1, 20)).toBe(20);
  await until(
    () => IDS.every((id) => system.ingest.state.ledger.progress(id)?.committedSeq === 20),
    "first 20 of each committed",
  );

  cli.setDeviceEnabled("dev-disabled", false);
  cli.removeDevice("dev-removed");
  cli.rotateSecret("dev-rotated");
  // At once: well inside the 5-s cache the ingest had.
  const sentAfter = {
    disabled: await send("dev-disabled", 21, 40),
    removed: await send("dev-removed", 21, 40),
    ok: await send("dev-ok", 21, 40),
  };
  await until(
    () =>
      system.ingest.state.ledger.progress("dev-ok")?.committedSeq === 40 &&
      system.ingest.state.inbox.depth() === 0,
    "everything handled",
  );

  const figures = {
    disabledStored: await stored("dev-disabled"),
    removedStored: await stored("dev-removed"),
    okStored: await stored("dev-ok"),
    refusedDisabled: await deadLettered("disabled_device"),
    refusedUnknown: await deadLettered("unknown_device"),
  };
  console.log(
    `[fault] revocation (devices): sent after revocation=${sentAfter.disabled + sentAfter.removed}, stored after revocation=${figures.disabledStored - 20 + figures.removedStored - 20}, dead-lettered=${figures.refusedDisabled + figures.refusedUnknown}, control stored=${figures.okStored}/40, lost=${40 - figures.okStored}`,
  );
  expect(figures.disabledStored).toBe(20);
  expect(figures.removedStored).toBe(20);
  expect(figures.okStored).toBe(40);
  // Every reading the old session still got acknowledged is a counted dead letter, not lost.
  expect(figures.refusedDisabled).toBe(sentAfter.disabled);
  expect(figures.refusedUnknown).toBe(sentAfter.removed);
  await until(() => heard.length >= 3, "the watch names each revoked device", 2_000);
  expect(heard.map((r) => [r.deviceId, r.why]).sort()).toEqual([
    ["dev-disabled", "disabled"],
    ["dev-removed", "removed"],
    ["dev-rotated", "rotated"],
  ]);
});
