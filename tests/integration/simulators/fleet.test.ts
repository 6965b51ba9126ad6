import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Ingest } from "../../../ingest/app.js";
import {
  type Timeline,
  compileScenario,
  loadFleetLayout,
  parseScenario,
  runFleet,
} from "../../../simulators/index.js";
import { type TestBroker, startTestBroker, until } from "../../support/broker.js";
import { startTestIngest } from "../../support/ingest.js";

/*
 * The fleet runner with 200 devices, each on its own MQTT.js connection with its own secret,
 * against the real embedded broker (aedes) and the real ingest writing SQLite files: every
 * planned reading is committed and stored exactly once, also through a disconnect storm.
 */

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const DEVICES = 200;
let cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

function timeline(events: unknown[] = []): Timeline {
  const scenario = parseScenario("fleet-test", {
    name: "fleet-test",
    description: "load fleet only",
    seed: 99,
    start: "2026-11-27T08:00:00+08:00",
    duration: "2h",
    speed: 1440,
    batch: "10m",
    layout: { sites: [], devices: [] },
    events,
    expect: { tasks: [] },
  });
  return compileScenario(scenario, {
    nowMs: Date.now(),
    extra: loadFleetLayout(DEVICES),
  });
}

/** The broker with the timeline's devices registered; the ingest is started separately. */
async function brokerWith(
  t: Timeline,
): Promise<{ broker: TestBroker; dataDir: string; credentials: Map<string, string> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "cw-sim-fleet-"));
  const broker = await startTestBroker({}, { dataDir });
  const credentials = new Map<string, string>();
  for (const site of t.layout.sites) broker.registry.putSite(site);
  for (const device of t.layout.devices)
    credentials.set(device.id, broker.registry.addDevice(device).secret);
  cleanup.push(async () => {
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return { broker, dataDir, credentials };
}

async function ingestFor(broker: TestBroker, dataDir: string): Promise<Ingest> {
  const ingest = await startTestIngest(broker, { dataDir, clientId: "ingest-sim-test" });
  cleanup.push(() => ingest.stop());
  return ingest;
}

async function system(
  t: Timeline,
): Promise<{ broker: TestBroker; ingest: Ingest; credentials: Map<string, string> }> {
  const { broker, dataDir, credentials } = await brokerWith(t);
  return { broker, ingest: await ingestFor(broker, dataDir), credentials };
}

/** Planned readings per device, and the same counted in the store. */
async function storedAgainstPlanned(
  t: Timeline,
  ingest: Ingest,
): Promise<{ planned: number; stored: number; mismatched: string[] }> {
  let planned = 0;
  let stored = 0;
  const mismatched: string[] = [];
  for (const d of t.devices) {
    const mine = [...d.messages()].reduce((n, m) => n + m.uplink.readings.length, 0);
    const rows = await ingest.store.readings({
      deviceId: d.device.id,
      kind: d.device.kind,
      fromMs: t.startMs,
      toMs: t.endMs + 1,
      limit: 10_000,
    });
    planned += mine;
    stored += rows.length;
    if (rows.length !== mine) mismatched.push(`${d.device.id}: ${rows.length}/${mine}`);
  }
  return { planned, stored, mismatched };
}

const link = { resendAfterMs: 3_000, reconnectMs: [200, 800] as const, commitWaitMs: 300 };

describe("fleet runner against the real broker and ingest", () => {
  it("200 devices publish, get their commits, and every reading is stored once", async () => {
    const t = timeline();
    const { broker, ingest, credentials } = await system(t);
    // A monitor sees the bytes on the wire: they must be the timeline's, so the same seed
    // publishes the same payloads.
    const monitor = await broker.connect({
      username: "sim-monitor",
      password: broker.addService("sim-monitor", "monitor"),
    });
    const wire = new Map<string, string>();
    monitor.on("message", (_topic, payload) => {
      const text = payload.toString();
      const { deviceId, seq } = JSON.parse(text) as { deviceId: string; seq: number };
      if (!wire.has(`${deviceId}/${seq}`)) wire.set(`${deviceId}/${seq}`, text);
    });
    await monitor.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
    const run = await runFleet({ log }, t, { url: broker.url, credentials, link });
    const summary = await run.done;
    expect(summary).toMatchObject({ complete: true, pending: 0, errors: 0, dropped: 0 });
    const payloads = new Map(
      t.devices.flatMap((d) =>
        [...d.messages()].map(
          (m) => [`${d.device.id}/${m.seq}`, JSON.stringify(m.uplink)] as const,
        ),
      ),
    );
    await until(() => wire.size >= payloads.size, "the monitor saw every message");
    expect(new Map([...wire].sort())).toEqual(new Map([...payloads].sort()));
    expect(summary.connected).toBe(DEVICES);
    const { planned, stored, mismatched } = await storedAgainstPlanned(t, ingest);
    expect(mismatched).toEqual([]);
    expect(stored).toBe(planned);
    expect(summary.publishedReadings).toBe(planned);
    expect(summary.committedReadings).toBe(planned);
  }, 120_000);

  it("a disconnect storm of half the fleet loses nothing: replays fill in, every reading once", async () => {
    const t = timeline([{ type: "disconnect_storm", at: "1h", fraction: 0.5 }]);
    const { broker, ingest, credentials } = await system(t);
    const run = await runFleet({ log }, t, { url: broker.url, credentials, link });
    const summary = await run.done;
    expect(summary.cuts).toBe(DEVICES / 2);
    expect(summary.reconnects).toBeGreaterThanOrEqual(DEVICES / 2);
    expect(summary).toMatchObject({ complete: true, pending: 0, dropped: 0 });
    const { planned, stored, mismatched } = await storedAgainstPlanned(t, ingest);
    expect(mismatched).toEqual([]);
    expect(stored).toBe(planned);
    expect(summary.committedReadings).toBe(planned);
  }, 120_000);

  it("re-sends what is not committed after the timeout, until an ingest comes and commits it", async () => {
    const t = timeline();
    const { broker, dataDir, credentials } = await brokerWith(t);
    const run = await runFleet({ log }, t, {
      url: broker.url,
      credentials,
      link: { ...link, resendAfterMs: 1_000 },
    });
    // Nobody stores anything yet: the broker drops the data, the devices keep it and re-send.
    await until(() => run.counters.resent >= DEVICES, "re-sends without commits", 30_000);
    expect(run.counters.committedMessages).toBe(0);
    const ingest = await ingestFor(broker, dataDir);
    const summary = await run.done;
    expect(summary).toMatchObject({ complete: true, pending: 0, dropped: 0 });
    const { planned, stored, mismatched } = await storedAgainstPlanned(t, ingest);
    expect(mismatched).toEqual([]);
    expect(stored).toBe(planned);
  }, 120_000);

  it("at the log bound a device drops its oldest messages and counts them; the run reports what stayed uncommitted", async () => {
    const t = timeline();
    const { broker, credentials } = await brokerWith(t);
    const perDevice = [...(t.devices[0]?.messages() ?? [])].length;
    const run = await runFleet({ log }, t, {
      url: broker.url,
      credentials,
      link: { ...link, maxLogMessages: 5 },
      drainTimeoutMs: 1_000,
    });
    const summary = await run.done;
    expect(perDevice).toBe(12);
    expect(summary).toMatchObject({
      complete: false,
      committedMessages: 0,
      dropped: DEVICES * (perDevice - 5),
      pending: DEVICES * 5,
    });
  }, 60_000);
});
