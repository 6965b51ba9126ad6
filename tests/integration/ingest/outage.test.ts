import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import type { Ingest } from "../../../ingest/app.js";
import { startTestIngest } from "../../support/ingest.js";
import { collect, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { bearer, type CliProcess, issueToken, startCli } from "../../support/cli-process.js";
import { freePort, provideInfluxDB } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

const influx = await requireService("ingest with InfluxDB outage", provideInfluxDB);

const MESSAGES = 150;
const PER_MESSAGE = 10;

function message(deviceId: string, seq: number, base: number): string {
  return JSON.stringify({
    v: 1,
    deviceId,
    seq,
    kind: "utility_tunnel",
    readings: Array.from({ length: PER_MESSAGE }, (_, j) => ({
      ts: new Date(base + (seq * PER_MESSAGE + j) * 1_000).toISOString(),
      quality: "normal",
      values: { ch4: (seq % 20) + j / 10, o2: 20.9 },
    })),
  });
}

/** Publish seq from..to at QoS1, one after the other (the broker acks each). */
async function publishRange(
  device: MqttClient,
  deviceId: string,
  from: number,
  to: number,
  base: number,
): Promise<void> {
  for (let seq = from; seq <= to; seq++) {
    await device.publishAsync(
      `citywatch/v1/devices/${deviceId}/data`,
      message(deviceId, seq, base),
      { qos: 1 },
    );
  }
}

const committedOf = (commits: Array<{ payload: string }>) =>
  Math.max(
    -1,
    ...commits.map((c) => (JSON.parse(c.payload) as { committedSeq: number }).committedSeq),
  );

describe.runIf(influx?.outage)("InfluxDB killed mid-stream and restarted", () => {
  let t: TestBroker;
  let ingest: Ingest;
  const dir = mkdtempSync(join(tmpdir(), "cw-outage-"));
  afterAll(async () => {
    await ingest?.stop();
    await t?.stop();
    await influx?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stores every accepted reading exactly once, and commits only what is stored", async () => {
    t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
    const secret = t.addDevice("gas-1", "utility_tunnel");
    ingest = await startTestIngest(t, {
      dataDir: dir,
      clientId: "ingest-outage",
      config: {
        store: {
          type: "influxdb",
          url: influx?.url,
          database: `outage_${Date.now()}`,
          timeoutMs: 2_000,
          maxRetries: 1,
        },
      },
    });

    const device = await t.connect({ username: "gas-1", password: secret });
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/gas-1/commit", { qos: 1 });
    const base = Date.now() - 2 * 86_400_000;

    await publishRange(device, "gas-1", 1, 50, base);
    await until(() => committedOf(commits) === 50, "first 50 committed", 15_000);

    await influx?.outage?.kill();
    await publishRange(device, "gas-1", 51, 100, base);
    // The ingest has the messages (inbox) but the store does not: nothing is committed.
    await until(() => ingest.state.inbox.depth() === 50, "50 messages held in the inbox", 15_000);
    await until(() => !ingest.pipeline.isStoreUp, "store reported down", 15_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(committedOf(commits)).toBe(50);

    await influx?.outage?.restart();
    await publishRange(device, "gas-1", 101, MESSAGES, base);
    await until(() => committedOf(commits) === MESSAGES, "all committed after recovery", 60_000);

    const stored = await ingest.store.readings({
      deviceId: "gas-1",
      kind: "utility_tunnel",
      fromMs: 0,
      toMs: Date.now(),
      limit: 100_000,
    });
    expect(stored).toHaveLength(MESSAGES * PER_MESSAGE);
    expect(new Set(stored.map((r) => r.timeMs)).size).toBe(MESSAGES * PER_MESSAGE);
    expect(new Set(stored.map((r) => r.seq))).toEqual(
      new Set(Array.from({ length: MESSAGES }, (_, i) => i + 1)),
    );
    expect(ingest.state.deadLetters.count()).toBe(0);
  });
});

describe("ingest killed with SIGKILL mid-stream and restarted", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-ingest-kill-"));
  let t: TestBroker;
  const processes: CliProcess[] = [];
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("stores every accepted reading exactly once after restart", async () => {
    t = await startTestBroker(
      { limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } },
      { dataDir: dir },
    );
    const secret = t.addDevice("gas-2", "utility_tunnel");
    const ingestSecret = t.addService("ingest", "ingest");
    const httpPort = await freePort();
    const env = {
      CITYWATCH_INGEST_MQTT_URL: t.url,
      CITYWATCH_INGEST_MQTT_PASSWORD: ingestSecret,
      CITYWATCH_LOG_LEVEL: "warn",
    };
    const startIngest = async () => {
      const proc = startCli(["ingest", "--data-dir", dir, "--http-port", String(httpPort)], env);
      processes.push(proc);
      await proc.waitFor(/citywatch ingest is up/);
      return proc;
    };
    const device = await t.connect({ username: "gas-2", password: secret });
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/gas-2/commit", { qos: 1 });
    const base = Date.now() - 86_400_000;

    const first = await startIngest();
    await until(() => t.broker.aedes.connectedClients === 2, "ingest connected");
    await new Promise((r) => setTimeout(r, 200));
    // Publish while the ingest works, kill it in the middle of the stream, and publish the rest
    // while it is dead (the broker keeps them in the ingest's persistent session).
    const half = MESSAGES / 2;
    const publishing = publishRange(device, "gas-2", 1, half, base);
    await until(() => committedOf(commits) >= 30, "some commits", 20_000);
    first.child.kill("SIGKILL");
    await publishing;
    await publishRange(device, "gas-2", half + 1, MESSAGES, base);
    expect(committedOf(commits)).toBeLessThanOrEqual(half);

    await startIngest();
    await until(() => committedOf(commits) === MESSAGES, "all committed after restart", 60_000);
    const headers = bearer(issueToken(dir, "outage-check"));
    const res = await fetch(
      `http://127.0.0.1:${httpPort}/api/v1/devices/gas-2/readings?from=0&limit=10000`,
      { headers },
    );
    const body = (await res.json()) as { readings: Array<{ ts: string; seq: number }> };
    expect(body.readings).toHaveLength(MESSAGES * PER_MESSAGE);
    expect(new Set(body.readings.map((r) => r.ts)).size).toBe(MESSAGES * PER_MESSAGE);
    const dead = (await (
      await fetch(`http://127.0.0.1:${httpPort}/api/v1/dead-letters`, { headers })
    ).json()) as { deadLetters: unknown[] };
    expect(dead.deadLetters).toEqual([]);
  });
});
