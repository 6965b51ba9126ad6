import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { deviceTopic, type Reading } from "../../../contracts/index.js";
import { buildAgent, type EdgeAgent } from "../../../edge/index.js";
import type { Ingest } from "../../../ingest/app.js";
import { collect, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startTestIngest } from "../../support/ingest.js";
import {
  edgeConfig,
  ingestCounter,
  numberOf,
  storedReadings,
  testLog,
  tsOf,
} from "./agent-harness.js";

let dir: string;
let broker: TestBroker | undefined;
let ingest: Ingest | undefined;
const agents: EdgeAgent[] = [];
const clients: MqttClient[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.stop().catch(() => undefined);
  for (const client of clients.splice(0)) await client.endAsync(true).catch(() => undefined);
  await ingest?.stop();
  await broker?.stop();
  ingest = undefined;
  broker = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function setup(): Promise<TestBroker> {
  dir = mkdtempSync(join(tmpdir(), "cw-edge-agent-"));
  broker = await startTestBroker({}, { dataDir: join(dir, "broker") });
  return broker;
}

/**
 * The ingest, on the broker of the moment: a restarted broker opens the same registry file again,
 * and the ingest's registry view follows it instead of keeping the stopped broker's closed one.
 */
async function startIngest(first: TestBroker, config: Record<string, unknown> = {}) {
  const following = Object.create(first, {
    registry: { get: () => (broker ?? first).registry },
  }) as TestBroker;
  ingest = await startTestIngest(following, {
    dataDir: join(dir, "ingest"),
    clientId: "ingest-edge",
    config,
  });
  return ingest;
}

function start(agent: EdgeAgent): Promise<void> {
  agents.push(agent);
  return agent.start();
}

/** Hands interval readings numbered `from`..`to`-1 to the agent, as a driver would. */
function feed(agent: EdgeAgent, deviceId: string, from: number, to: number): void {
  for (let n = from; n < to; n++) {
    agent.sink({
      deviceId,
      kind: "noise",
      ts: tsOf(n),
      quality: "normal",
      values: { LAeq: 40 + (n % 50), LAmax: 95 },
      form: "interval",
    });
  }
}

describe("edge agent → aedes → ingest → SQLite store", () => {
  it("broker down for a while, then back: every reading arrives exactly once, the backlog as replay", async () => {
    let t = await setup();
    const live = await startIngest(t);
    const secret = t.addDevice("noise-e1", "noise");
    const watcherSecret = t.addService("watcher", "monitor");
    const agent = buildAgent({
      log: testLog(),
      // Reconnects within 2 s (full jitter: possibly before the ingest or the watcher subscribe to
      // the new broker, which loses that first window); the re-send after 2 s delivers it.
      config: edgeConfig(t.url, [{ deviceId: "noise-e1", kind: "noise", secret }], dir, {
        uplink: {
          reconnectMinMs: 2_000,
          reconnectMaxMs: 2_000,
          commitWaitMs: 300,
          lingerMs: 10,
          resendTimeoutMs: 2_000,
        },
      }),
    });
    await start(agent);
    await until(() => agent.connected("noise-e1"), "agent connected");
    feed(agent, "noise-e1", 0, 60);
    const storedCount = async () => (await storedReadings(live, "noise-e1", "noise")).length;
    await until(
      () => agent.stats().devices[0]?.log.pending === 0,
      "first readings committed",
      10_000,
    );
    expect(await storedCount()).toBe(60);

    const port = t.addresses.mqtt;
    await t.stop();
    broker = undefined;
    await until(() => !agent.connected("noise-e1"), "agent disconnected");
    feed(agent, "noise-e1", 60, 400); // into the log while the broker is down
    t = await startTestBroker({ mqtt: { port } }, { dataDir: join(dir, "broker") });
    broker = t;
    const watcher = await t.connect({ username: "watcher", password: watcherSecret });
    clients.push(watcher);
    const data = collect(watcher);
    await watcher.subscribeAsync(deviceTopic("noise-e1", "data"), { qos: 1 });
    await until(() => agent.connected("noise-e1"), "agent reconnected", 10_000);
    feed(agent, "noise-e1", 400, 450);
    await until(() => agent.stats().devices[0]?.log.pending === 0, "backlog committed", 20_000);

    const stored = await storedReadings(live, "noise-e1", "noise");
    const numbers = stored.map(numberOf).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 450 }, (_, i) => i));
    // Exactly once: the ingest stored each reading under one seq only (a reading re-formed under a
    // second seq would be counted twice here even though its point overwrites itself).
    expect(await ingestCounter(live, "citywatch_ingest_readings_stored_total")).toBe(450);
    expect(await ingestCounter(live, "citywatch_ingest_dead_letters_total")).toBe(0);
    const link = agent.stats().devices[0]?.link;
    expect(link?.connects).toBeGreaterThanOrEqual(2);
    expect(agent.stats().devices[0]?.log).toEqual({ pending: 0, dropped: 0 });
    // What waited through the outage went out marked replay (protocol 4.3).
    const messages = data.map(
      (m) => JSON.parse(m.payload) as { replay?: boolean; readings: Reading[] },
    );
    const backlog = messages.filter((m) =>
      m.readings.some((r) => {
        const n = Date.parse(r.ts) - tsOf(0);
        return n >= 60 && n < 400;
      }),
    );
    expect(backlog.length).toBeGreaterThan(0);
    expect(backlog.every((m) => m.replay === true)).toBe(true);
  }, 60_000);

  it("no commit on a live connection: the in-flight messages are re-sent until the ingest stores them", async () => {
    const t = await setup();
    const secret = t.addDevice("noise-e4", "noise");
    const watcher = await t.connect({
      username: "watcher",
      password: t.addService("watcher", "monitor"),
    });
    clients.push(watcher);
    const data = collect(watcher);
    await watcher.subscribeAsync(deviceTopic("noise-e4", "data"), { qos: 1 });
    // No ingest yet: the broker has no subscriber for the data, so nothing is stored or committed.
    const agent = buildAgent({
      log: testLog(),
      config: edgeConfig(t.url, [{ deviceId: "noise-e4", kind: "noise", secret }], dir),
    });
    await start(agent);
    await until(() => agent.connected("noise-e4"), "agent connected");
    feed(agent, "noise-e4", 0, 120);
    await until(() => (agent.stats().devices[0]?.link.resent ?? 0) > 0, "a re-send", 10_000);
    expect(agent.stats().devices[0]?.link.connects).toBe(1);

    const live = await startIngest(t);
    await until(
      () => agent.stats().devices[0]?.log.pending === 0,
      "committed after re-sends",
      20_000,
    );
    const numbers = (await storedReadings(live, "noise-e4", "noise"))
      .map(numberOf)
      .sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 120 }, (_, i) => i));
    expect(await ingestCounter(live, "citywatch_ingest_readings_stored_total")).toBe(120);
    // Re-sends on a connection that stayed up are the same messages, not replays (protocol 4.3).
    expect(agent.stats().devices[0]?.link.connects).toBe(1);
    const sent = data.map((m) => JSON.parse(m.payload) as { seq: number; replay?: boolean });
    expect(sent.every((m) => m.replay === undefined)).toBe(true);
    expect(new Set(sent.map((m) => m.seq)).size).toBeLessThan(sent.length);
  }, 60_000);

  it("log full: the oldest messages are dropped, counted, reported in the status; the rest arrive", async () => {
    let t = await setup();
    const secret = t.addDevice("noise-e2", "noise");
    const monitorSecret = t.addService("watcher", "monitor");
    const port = t.addresses.mqtt;
    await t.stop(); // the agent starts into an outage
    const agent = buildAgent({
      log: testLog(),
      config: edgeConfig(
        `mqtt://127.0.0.1:${port}`,
        [{ deviceId: "noise-e2", kind: "noise", secret }],
        dir,
        {
          wal: { file: join(dir, "wal.db"), maxReadingsPerMessage: 10, maxBytes: 64 * 1024 },
        },
      ),
    });
    await start(agent);
    // About 60 bytes a reading: 3,000 readings are ~180 KB, nearly three times the bound.
    for (let n = 0; n < 3_000; n += 10) feed(agent, "noise-e2", n, n + 10);
    const { log } = agent.stats().devices[0] ?? {};
    expect(log?.dropped).toBeGreaterThan(100);
    const dropped = log?.dropped ?? 0;
    expect(agent.stats().walDropped).toBe(dropped);

    t = await startTestBroker({ mqtt: { port } }, { dataDir: join(dir, "broker") });
    broker = t;
    const live = await startIngest(t, { gapTimeoutMs: 500 });
    const watcher = await t.connect({ username: "watcher", password: monitorSecret });
    clients.push(watcher);
    const statuses = collect(watcher);
    await watcher.subscribeAsync(deviceTopic("noise-e2", "status"), { qos: 1 });
    await until(() => agent.connected("noise-e2"), "agent connected", 10_000);
    await until(() => statuses.length > 0, "birth status", 5_000);
    const birth = JSON.parse(statuses[0]?.payload ?? "{}") as Record<string, unknown>;
    expect(birth).toMatchObject({ state: "online", reason: "startup", log: { dropped } });
    expect((birth["log"] as { pending: number }).pending).toBeGreaterThan(0);

    await until(() => agent.stats().devices[0]?.log.pending === 0, "log drained", 30_000);
    const numbers = (await storedReadings(live, "noise-e2", "noise"))
      .map(numberOf)
      .sort((a, b) => a - b);
    // Whole messages of 10 were dropped, oldest first: what is stored is the newest, contiguous.
    expect(numbers).toEqual(
      Array.from({ length: 3_000 - dropped * 10 }, (_, i) => dropped * 10 + i),
    );
    // The ingest records the dropped seqs as one gap.
    const gaps = live.state.deadLetters.list({
      limit: 10,
      deviceId: "noise-e2",
      reason: "missing_seq",
    });
    expect(gaps.map((g) => g.seq)).toEqual([1]);
    expect(gaps[0]?.detail).toMatch(new RegExp(`^seq 1\\.\\.${dropped} never arrived`));
  }, 60_000);

  it("applies a remote config once, refuses a bad one with the old kept, and remembers across a restart", async () => {
    const t = await setup();
    const live = await startIngest(t);
    const secret = t.addDevice("tunnel-e3", "utility_tunnel");
    const writerSecret = t.addService("config-writer", "ingest");
    const writer = await t.connect({ username: "config-writer", password: writerSecret });
    clients.push(writer);
    const acks = collect(writer);
    await writer.subscribeAsync(deviceTopic("tunnel-e3", "config-ack"), { qos: 1 });
    const config = edgeConfig(
      t.url,
      [{ deviceId: "tunnel-e3", kind: "utility_tunnel", secret }],
      dir,
    );
    const withThresholds = {
      ...config,
      devices: config.devices.map((d) => ({
        ...d,
        localThresholds: [{ quantity: "ch4", above: 20 }],
      })),
    };
    const publishConfig = (body: Record<string, unknown>) =>
      writer.publishAsync(
        deviceTopic("tunnel-e3", "config"),
        JSON.stringify({ v: 1, deviceId: "tunnel-e3", kind: "utility_tunnel", ...body }),
        { qos: 1, retain: true },
      );
    const ackList = () => acks.map((a) => JSON.parse(a.payload) as Record<string, unknown>);

    let agent = buildAgent({ log: testLog(), config: withThresholds });
    await start(agent);
    await until(() => agent.connected("tunnel-e3"), "agent connected");
    await publishConfig({
      revision: 1,
      reportIntervalS: 30,
      localThresholds: [{ quantity: "ch4", above: 10 }],
    });
    await until(() => acks.length === 1, "ack of revision 1");
    expect(ackList()[0]).toMatchObject({ revision: 1, status: "applied" });
    expect(agent.stats().devices[0]).toMatchObject({
      revision: 1,
      reportIntervalS: 30,
      localThresholds: [{ quantity: "ch4", above: 10 }],
    });

    await publishConfig({
      revision: 2,
      reportIntervalS: 0,
      localThresholds: [{ quantity: "pm10", above: 50 }],
    });
    await until(() => acks.length === 2, "ack of revision 2");
    const rejected = ackList()[1];
    expect(rejected).toMatchObject({ revision: 2, status: "rejected" });
    expect((rejected?.["problems"] as string[]).join("\n")).toMatch(/reportIntervalS/);
    expect(agent.stats().devices[0]).toMatchObject({
      revision: 2,
      reportIntervalS: 30,
      localThresholds: [{ quantity: "ch4", above: 10 }],
    });

    // A restart: the retained revision 2 comes again; nothing is re-applied, revision 1 stays.
    await agent.stop();
    agents.splice(0);
    agent = buildAgent({ log: testLog(), config: withThresholds });
    await start(agent);
    await until(() => acks.length === 3, "repeated answer after the restart");
    expect(ackList()[2]).toMatchObject({ revision: 2, status: "rejected" });
    expect(agent.stats().devices[0]).toMatchObject({
      revision: 2,
      reportIntervalS: 30,
      localThresholds: [{ quantity: "ch4", above: 10 }],
    });

    // The applied interval shapes the readings: samples aggregate into 30-s intervals.
    const base = Math.floor(Date.now() / 30_000) * 30_000 - 60_000;
    for (let s = 1; s <= 60; s++) {
      agent.sink({
        deviceId: "tunnel-e3",
        kind: "utility_tunnel",
        ts: base + s * 1000,
        quality: "normal",
        values: { ch4: s < 31 ? 2 : 4 },
        form: "sample",
      });
    }
    agent.sink({
      deviceId: "tunnel-e3",
      kind: "utility_tunnel",
      ts: base + 61_000,
      quality: "normal",
      values: { ch4: 1 },
      form: "sample",
    });
    await until(
      () => agent.stats().devices[0]?.readings === 2 && agent.stats().devices[0]?.log.pending === 0,
      "two readings committed",
      10_000,
    );
    const stored = await live.store.readings({
      deviceId: "tunnel-e3",
      kind: "utility_tunnel",
      fromMs: base,
      toMs: base + 120_000,
      limit: 10,
    });
    expect(stored.map((r) => [r.timeMs - base, r.values["ch4"]])).toEqual([
      [30_000, 2],
      [60_000, 4],
    ]);
  }, 60_000);
});
