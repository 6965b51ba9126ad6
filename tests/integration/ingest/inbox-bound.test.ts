import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Ingest } from "../../../ingest/app.js";
import {
  collect,
  metricValue,
  startTestBroker,
  type TestBroker,
  until,
} from "../../support/broker.js";
import { startTestIngest } from "../../support/ingest.js";
import { freePort } from "../../support/services.js";

/** The inbox is a bounded queue: at its bound the ingest stops taking messages, and says so. */
describe("ingest inbox bound", () => {
  let t: TestBroker;
  let ingest: Ingest;
  const dir = mkdtempSync(join(tmpdir(), "cw-inbox-bound-"));
  afterAll(async () => {
    await ingest?.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("holds at most inboxMaxMessages while the store is down, counts the waits, commits nothing", async () => {
    t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
    const secret = t.addDevice("noise-9", "noise");
    // A store nobody answers: every write fails, so the inbox only fills.
    const deadStore = `http://127.0.0.1:${await freePort()}`;
    ingest = await startTestIngest(t, {
      dataDir: dir,
      clientId: "ingest-bound",
      config: {
        inboxMaxMessages: 5,
        store: { type: "influxdb", url: deadStore, timeoutMs: 500, maxRetries: 0 },
      },
    });
    const device = await t.connect({ username: "noise-9", password: secret });
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/noise-9/commit", { qos: 1 });
    for (let seq = 1; seq <= 20; seq++) {
      const reading = { ts: new Date().toISOString(), quality: "normal", values: { LAeq: 50 } };
      await device.publishAsync(
        "citywatch/v1/devices/noise-9/data",
        JSON.stringify({ v: 1, deviceId: "noise-9", seq, kind: "noise", readings: [reading] }),
        { qos: 1 },
      );
    }
    const fullWaits = () => metricValue(ingest, "citywatch_ingest_inbox_full_waits_total");
    const deadline = Date.now() + 10_000;
    while ((await fullWaits()) < 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(await fullWaits()).toBeGreaterThanOrEqual(1);
    await until(() => !ingest.mqttConnected(), "ingest disconnected at the bound");
    expect(ingest.state.inbox.depth()).toBe(5);
    expect(ingest.pipeline.isStoreUp).toBe(false);
    expect(commits).toEqual([]);
  });
});
