import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, expect, it } from "vitest";
import { metricValue, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startLocalIngest, type TestIngest } from "../../support/ingest.js";

/*
 * Issue #16 item 3, as it was found: three devices sending 256 KiB garbage messages for 90 s
 * pruned 86,645 dead letters of OTHER devices, every `missing_seq` record among them, and the
 * byte gauge stayed above its 1 GiB bound. Here on real parts (the embedded broker, real MQTT
 * clients, the in-process ingest on real SQLite files) with a small bound (8 MiB, so each
 * device's share is 1 MiB): ten quiet devices leave a few dead letters and a missing_seq record
 * each, then ten devices flood for FLOOD_MS (ten, so that their shares together pass the bound). The bound must hold at every sample (not once a
 * minute), and the quiet devices must lose nothing.
 */

const FLOOD_MS = Number(process.env["CITYWATCH_FAULT_FLOOD_MS"] ?? 20_000);
const MAX_BYTES = 8 * 1024 * 1024;
const GARBAGE = Buffer.alloc(256 * 1024 - 256, 0x7a); // within the broker's 256 KiB packet bound
const QUIET = Array.from({ length: 10 }, (_, i) => `quiet-${i}`);
// Ten flooders, so their shares (10 × 1 MiB) exceed the total bound and it has to act too.
const FLOODERS = Array.from({ length: 10 }, (_, i) => `flood-${i}`);
const GAUGE = "citywatch_ingest_dead_letter_bytes";
const dataTopic = (id: string) => `citywatch/v1/devices/${id}/data`;

const reading = (id: string, seq: number) =>
  JSON.stringify({
    v: 1,
    deviceId: id,
    seq,
    kind: "noise",
    readings: [
      { ts: new Date(Date.now() - 1_000).toISOString(), quality: "normal", values: { LAeq: 50 } },
    ],
  });

let t: TestBroker | undefined;
let ingest: TestIngest | undefined;
const clients: MqttClient[] = [];
const dir = mkdtempSync(join(tmpdir(), "cw-fault-dead-"));

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await ingest?.stop();
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("a flood of ten devices erases no one else's dead letters and stays within the byte bound", async () => {
  t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
  const secrets = new Map([...QUIET, ...FLOODERS].map((id) => [id, t?.addDevice(id) ?? ""]));
  ingest = await startLocalIngest(t, {
    dataDir: dir,
    config: { deadLetters: { maxBytes: MAX_BYTES }, gapTimeoutMs: 300 },
  });
  const running = ingest;
  const connect = async (id: string) => {
    const client = await (t as TestBroker).connect({
      username: id,
      password: secrets.get(id) ?? "",
    });
    clients.push(client);
    return client;
  };

  // The quiet devices: two garbage messages each, and seq 1 then 3 (2 is recorded missing).
  for (const id of QUIET) {
    const client = await connect(id);
    await client.publishAsync(dataTopic(id), "not json at all", { qos: 1 });
    await client.publishAsync(dataTopic(id), '{"v":1,"seq":"x"}', { qos: 1 });
    await client.publishAsync(dataTopic(id), reading(id, 1), { qos: 1 });
    await client.publishAsync(dataTopic(id), reading(id, 3), { qos: 1 });
  }
  await until(
    () => running.state.deadLetters.list({ limit: 100, reason: "missing_seq" }).length === 10,
    "the quiet devices' gaps recorded",
    20_000,
  );
  const quietBefore = new Map(
    QUIET.map((id) => [id, running.state.deadLetters.list({ limit: 100, deviceId: id })]),
  );
  expect([...quietBefore.values()].every((rows) => rows.length === 3)).toBe(true);

  // The flood: each flooder keeps 3 messages in flight, QoS 1, for FLOOD_MS.
  let sent = 0;
  let maxBytes = 0;
  let maxGauge = 0;
  const sampler = setInterval(() => {
    maxBytes = Math.max(maxBytes, running.state.deadLetters.bytes());
  }, 20);
  const end = Date.now() + FLOOD_MS;
  await Promise.all(
    FLOODERS.map(async (id) => {
      const client = await connect(id);
      await Promise.all(
        Array.from({ length: 3 }, async () => {
          while (Date.now() < end) {
            await client.publishAsync(dataTopic(id), GARBAGE, { qos: 1 });
            sent++;
          }
        }),
      );
    }),
  );
  await until(() => running.state.inbox.depth() === 0, "the inbox drained", 30_000);
  clearInterval(sampler);
  maxBytes = Math.max(maxBytes, running.state.deadLetters.bytes());
  maxGauge = await metricValue(running, GAUGE);

  const floodKept = FLOODERS.map((id) => running.state.deadLetters.held(id).rows);
  let quietLost = 0;
  for (const id of QUIET) {
    const now = running.state.deadLetters.list({ limit: 100, deviceId: id });
    quietLost += (quietBefore.get(id)?.length ?? 0) - now.length;
    expect(now.map((d) => d.id)).toEqual(quietBefore.get(id)?.map((d) => d.id));
  }
  const missing = running.state.deadLetters.list({ limit: 100, reason: "missing_seq" }).length;
  const kept = running.state.deadLetters.count();
  const pruned = running.state.deadLetters.prune(Date.now(), {
    maxBytes: MAX_BYTES,
    maxAgeMs: 86_400_000,
  });
  console.log(
    `[fault] dead-letter flood: sent=${sent} garbage messages of ${GARBAGE.length} B in ${FLOOD_MS} ms from ${FLOODERS.length} devices, ` +
      `kept=${kept} letters (${floodKept.join("/")} per flooder), pruned_at_insert=${pruned.device + pruned.bytes}, ` +
      `max_bytes=${maxBytes} (bound ${MAX_BYTES}), gauge=${maxGauge}, ` +
      `quiet_letters_lost=${quietLost}, missing_seq_kept=${missing}/10`,
  );
  expect(sent).toBeGreaterThan(FLOODERS.length * 8);
  expect(maxBytes).toBeLessThanOrEqual(MAX_BYTES);
  expect(maxGauge).toBeLessThanOrEqual(MAX_BYTES);
  expect(quietLost).toBe(0);
  expect(missing).toBe(10);
  for (const id of FLOODERS) {
    expect(running.state.deadLetters.held(id).bytes).toBeLessThanOrEqual(MAX_BYTES / 8);
  }
}, 120_000);
