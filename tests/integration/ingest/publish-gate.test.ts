import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import type { Ingest } from "../../../ingest/app.js";
import {
  collect,
  metricValue,
  startTestBroker,
  type TestBroker,
  until,
} from "../../support/broker.js";
import { startLocalIngest } from "../../support/ingest.js";
import { freePort } from "../../support/services.js";

const dataTopic = (id: string) => `citywatch/v1/devices/${id}/data`;
const base = Date.now();
/** One reading a second, so no two share a timestamp (a point's key). */
const uplink = (id: string, seq: number) =>
  JSON.stringify({
    v: 1,
    deviceId: id,
    seq,
    kind: "noise",
    readings: [
      {
        ts: new Date(base - 60_000 + seq * 1_000).toISOString(),
        quality: "normal",
        values: { LAeq: 50 + seq },
      },
    ],
  });

/**
 * The all-in-one ingest takes device data at the broker's publish gate: a QoS 1 PUBACK means the
 * message is in the durable inbox, whatever happens to the process a moment later.
 */
describe("ingest at the broker's publish gate (all-in-one)", () => {
  let t: TestBroker | undefined;
  let ingest: Ingest | undefined;
  let device: MqttClient | undefined;
  let dir: string;
  afterEach(async () => {
    await device?.endAsync(true).catch(() => undefined);
    await ingest?.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
    device = undefined;
  });

  async function setUp(config: Record<string, unknown>) {
    dir = mkdtempSync(join(tmpdir(), "cw-gate-"));
    t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
    const secret = t.addDevice("noise-7", "noise");
    ingest = await startLocalIngest(t, { dataDir: dir, config });
    device = await t.connect({ username: "noise-7", password: secret, reconnectPeriod: 0 });
    return { t, ingest, device };
  }

  it("stores and commits without a connection of its own", async () => {
    const { t, ingest, device } = await setUp({});
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/noise-7/commit", { qos: 1 });
    for (let seq = 1; seq <= 30; seq++)
      await device.publishAsync(dataTopic("noise-7"), uplink("noise-7", seq), { qos: 1 });
    await until(() => ingest.state.ledger.progress("noise-7")?.committedSeq === 30, "committed");
    await until(() => commits.some((c) => c.payload.includes('"committedSeq":30')), "commit");
    expect(t.broker.aedes.connectedClients).toBe(1);
    const stored = await ingest.store.readings({
      deviceId: "noise-7",
      kind: "noise",
      fromMs: base - 120_000,
      toMs: Date.now() + 60_000,
      limit: 100,
    });
    expect(stored.map((r) => r.values["LAeq"])).toEqual(
      Array.from({ length: 30 }, (_, i) => 51 + i),
    );
  });

  it("has the message in the durable inbox when the PUBACK arrives", async () => {
    // A store nobody answers: nothing leaves the inbox, so what the PUBACK promised is visible.
    const deadStore = `http://127.0.0.1:${await freePort()}`;
    const { ingest, device } = await setUp({
      store: { type: "influxdb", url: deadStore, timeoutMs: 300, maxRetries: 0 },
    });
    for (let seq = 1; seq <= 5; seq++) {
      await device.publishAsync(dataTopic("noise-7"), uplink("noise-7", seq), { qos: 1 });
      expect(ingest.state.inbox.depth()).toBe(seq);
    }
    // Not device data: let through, not kept.
    await device.publishAsync(
      "citywatch/v1/devices/noise-7/status",
      JSON.stringify({ v: 1, deviceId: "noise-7", state: "online", ts: new Date().toISOString() }),
      { qos: 1 },
    );
    expect(ingest.state.inbox.depth()).toBe(5);
    const kept = ingest.state.inbox
      .peek(10)
      .map((m) => JSON.parse(m.payload.toString()) as { seq: number });
    expect(kept.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it("holds the publisher at a full inbox, unacknowledged, and counts it", async () => {
    const deadStore = `http://127.0.0.1:${await freePort()}`;
    const { ingest, device } = await setUp({
      inboxMaxMessages: 3,
      store: { type: "influxdb", url: deadStore, timeoutMs: 300, maxRetries: 0 },
    });
    for (let seq = 1; seq <= 3; seq++)
      await device.publishAsync(dataTopic("noise-7"), uplink("noise-7", seq), { qos: 1 });
    let acked = false;
    void device.publishAsync(dataTopic("noise-7"), uplink("noise-7", 4), { qos: 1 }).then(
      () => (acked = true),
      () => undefined,
    );
    const fullWaits = () => metricValue(ingest, "citywatch_ingest_inbox_full_waits_total");
    const deadline = Date.now() + 5_000;
    while ((await fullWaits()) < 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(await fullWaits()).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(acked).toBe(false);
    expect(ingest.state.inbox.depth()).toBe(3);
  });
});
