import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { metricValue, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startLocalIngest, type TestIngest } from "../../support/ingest.js";
import { provideInfluxDB } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

const influx = await requireService("ingest with InfluxDB store rejections", provideInfluxDB);

const MESSAGES = 6;
const base = Date.now() - 10 * 60_000;

/** Two readings per message; the second of an even seq carries LAmax, which InfluxDB refuses. */
function message(seq: number): string {
  return JSON.stringify({
    v: 1,
    deviceId: "noise-3",
    seq,
    kind: "noise",
    readings: [
      {
        ts: new Date(base + seq * 2_000).toISOString(),
        quality: "normal",
        values: { LAeq: 50 + seq },
      },
      {
        ts: new Date(base + seq * 2_000 + 1_000).toISOString(),
        quality: "normal",
        values: seq % 2 === 0 ? { LAeq: 60 + seq, LAmax: 70 + seq } : { LAeq: 60 + seq },
      },
    ],
  });
}

async function influxPost(path: string, body?: string): Promise<void> {
  const response = await fetch(new URL(path, influx?.url), {
    method: "POST",
    ...(body !== undefined ? { body } : {}),
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
}

/**
 * Readings InfluxDB refuses (a field already stored with another type: a real 400 "field type
 * conflict" from influxd) across a round written in several batches: each refused reading is
 * dead-lettered with its own message (seq, index, raw payload), every other reading of the round
 * is stored, and the commit moves over all of them; the rules see the stored readings only.
 */
describe.runIf(influx)("readings the store refuses, in a round of several writes", () => {
  let t: TestBroker | undefined;
  let ingest: TestIngest | undefined;
  let device: MqttClient | undefined;
  const dir = mkdtempSync(join(tmpdir(), "cw-rejections-"));
  afterAll(async () => {
    await device?.endAsync(true).catch(() => undefined);
    await ingest?.stop();
    await t?.stop();
    await influx?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("dead-letters each refused reading with its message and stores the rest", async () => {
    const database = `rejections_${Date.now()}`;
    await influxPost(`/query?q=${encodeURIComponent(`CREATE DATABASE ${database}`)}`);
    // LAmax as a string in this shard: every float LAmax written there now conflicts.
    await influxPost(
      `/write?db=${database}&precision=ms`,
      `noise,device=other LAmax="loud" ${base}`,
    );
    t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
    const secret = t.addDevice("noise-3", "noise");
    ingest = await startLocalIngest(t, {
      dataDir: dir,
      // Three readings per write, and time for the whole burst to make one round.
      config: {
        batch: { maxPoints: 3, maxDelayMs: 500 },
        store: { type: "influxdb", url: influx?.url, database },
      },
    });
    device = await t.connect({ username: "noise-3", password: secret, reconnectPeriod: 0 });
    for (let seq = 1; seq <= MESSAGES; seq++) {
      await device.publishAsync("citywatch/v1/devices/noise-3/data", message(seq), { qos: 1 });
    }
    const running = ingest;
    await until(
      () => running.state.ledger.progress("noise-3")?.committedSeq === MESSAGES,
      "committed",
    );

    const dead = running.state.deadLetters
      .list({ limit: 100, reason: "store_rejected" })
      .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    expect(dead.map((d) => d.seq)).toEqual([2, 4, 6]);
    for (const letter of dead) {
      expect(letter.deviceId).toBe("noise-3");
      expect(letter.detail).toMatch(/^readings 1 refused by the store \(the others are stored\): /);
      expect(letter.detail).toMatch(/field type conflict/);
      expect(letter.payload.toString()).toBe(message(letter.seq ?? 0));
    }
    expect(
      await metricValue(running, "citywatch_ingest_dead_letters_total", {
        reason: "store_rejected",
      }),
    ).toBe(3);

    const stored = await running.store.readings({
      deviceId: "noise-3",
      kind: "noise",
      fromMs: base,
      toMs: base + 60_000,
      limit: 100,
    });
    const expected = Array.from({ length: MESSAGES }, (_, i) => i + 1).flatMap((seq) =>
      seq % 2 === 0 ? [50 + seq] : [50 + seq, 60 + seq],
    );
    expect(stored.map((r) => r.values["LAeq"])).toEqual(expected);
    expect(stored.every((r) => r.values["LAmax"] === undefined)).toBe(true);
    // The rules saw exactly what was stored: the noise rules' LAeq windows hold the stored
    // readings, not the refused ones.
    expect(running.driver?.windowSamples()).toBe(expected.length);
  });
});
