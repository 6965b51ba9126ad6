import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startLocalIngest, type TestIngest } from "../../support/ingest.js";

/*
 * The round an idle pipeline starts (ingest/pipeline.ts): with no round in flight and none
 * launched for batch.maxDelayMs, a message is taken at once instead of after the batch delay;
 * within maxDelayMs of a round the next waits as before (at most one round per maxDelayMs unless
 * full, so the state file's write-ahead log grows no faster). The delay here is 3 s, so "at once"
 * and "after the delay" are far apart.
 */

const MAX_DELAY_MS = 3_000;
const base = Date.now() - 60_000;
const uplink = (seq: number) =>
  JSON.stringify({
    v: 1,
    deviceId: "noise-idle",
    seq,
    kind: "noise",
    readings: [
      {
        ts: new Date(base + seq * 1_000).toISOString(),
        quality: "normal",
        values: { LAeq: 50 },
      },
    ],
  });

let t: TestBroker;
let ingest: TestIngest;
let device: MqttClient;
let dir: string;
const committed = () => ingest.state.ledger.progress("noise-idle")?.committedSeq ?? 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-idle-round-"));
  t = await startTestBroker();
  const secret = t.addDevice("noise-idle", "noise");
  ingest = await startLocalIngest(t, {
    dataDir: dir,
    config: { batch: { maxDelayMs: MAX_DELAY_MS }, rules: { enabled: false } },
  });
  device = await t.connect({ username: "noise-idle", password: secret, reconnectPeriod: 0 });
  // Nothing launched since the start for longer than the delay: the pipeline is idle.
  await new Promise((r) => setTimeout(r, MAX_DELAY_MS + 200));
});
afterAll(async () => {
  await device?.endAsync(true).catch(() => undefined);
  await ingest?.stop();
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("commits a message on an idle pipeline at once, and the next within maxDelayMs after the delay", async () => {
  const first = Date.now();
  await device.publishAsync("citywatch/v1/devices/noise-idle/data", uplink(1), { qos: 1 });
  await until(() => committed() === 1, "the first message committed", MAX_DELAY_MS - 500);
  expect(Date.now() - first).toBeLessThan(MAX_DELAY_MS);
  // A round was launched just now: the next message waits for the batch delay.
  await device.publishAsync("citywatch/v1/devices/noise-idle/data", uplink(2), { qos: 1 });
  await new Promise((r) => setTimeout(r, 1_000));
  expect(committed()).toBe(1);
  await until(() => committed() === 2, "the second message committed", MAX_DELAY_MS + 2_000);
}, 20_000);
