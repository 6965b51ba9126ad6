/**
 * Edge benchmark (`npm run bench -- edge`): how fast an agent drains its write-ahead log into the
 * store after an outage, and how many bytes of disk a buffered reading takes.
 *
 * The system under test is the real broker + ingest + SQLite store, built as `citywatch start`
 * builds them, in a child process (bench/ingest-server.ts, all-in-one); the agent runs in this
 * process. A round fills the agent's log while it is offline (one SQLite file, full 500-reading
 * messages, as an outage leaves it), starts the agent, and times from start until the ingest's
 * readings_stored counter holds every reading and the log is empty (every commit came back).
 *
 * The baseline, measured in the same run on the same child: the same messages published by a
 * bare MQTT.js client with the same window of 32 QoS1 publishes, counted on PUBACK, with no log
 * and no commit protocol: the rate the broker + ingest + store take, which the agent can at best
 * reach. The child's broker does not rate-limit publishes (as in the ingest bench); with the
 * default limit of 20 PUBLISH/s a device drains at most 10,000 readings/s (protocol 8), so an
 * agent reaches 20,000/s only with two or more devices.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import mqtt from "mqtt";
import { pino } from "pino";
import { deviceTopic, loadEdgeConfig, type Reading } from "../contracts/index.js";
import { buildAgent } from "../edge/index.js";
import { WriteAheadLog } from "../edge/wal/log.js";
import { IngestChild } from "./ingest-child.js";
import type { ClientCredentials } from "./broker-protocol.js";
import { formatCount, formatTable } from "./table.js";

const GOAL_READINGS_PER_SECOND = 20_000;
const READINGS_PER_MESSAGE = 500;
const WINDOW = 32;
/** Readings per round, split over the round's devices. */
const ROUND_READINGS = 200_000;
const ROUNDS = [{ devices: 1 }, { devices: 4 }] as const;
const ROUND_TIMEOUT_MS = 120_000;
const POLL_MS = 20;

/** Readings of one device, a second apart, ending an hour ago: inside the ingest's window. */
function readingsOf(count: number, offset: number): Reading[] {
  const start = Date.now() - 3_600_000 - count * 1_000;
  return Array.from({ length: count }, (_, i) => ({
    ts: new Date(start + i * 1_000 + offset).toISOString(),
    quality: "normal",
    values: {
      ch4: 2 + (i % 7) * 0.1,
      o2: 20.8,
      h2s: 0.4,
      co: 1.2,
      temperature: 22.6,
      humidity: 78,
      sumpLevel: 12 + (i % 5),
    },
  }));
}

interface Figure {
  readonly what: string;
  readonly devices: number;
  readonly readings: number;
  readonly seconds: number;
  readonly diskBytesPerReading?: number;
  readonly logBytesPerReading?: number;
}

async function storedNow(child: IngestChild): Promise<number> {
  return (await child.sample()).readingsStored;
}

async function waitStored(
  child: IngestChild,
  target: number,
  extra: () => boolean = () => true,
): Promise<void> {
  const deadline = performance.now() + ROUND_TIMEOUT_MS;
  while ((await storedNow(child)) < target || !extra()) {
    if (performance.now() > deadline) throw new Error(`only part of ${target} readings stored`);
    await sleep(POLL_MS);
  }
}

/** The bare publisher: one MQTT.js client per device, WINDOW QoS1 publishes in flight, no log. */
async function baseline(
  child: IngestChild,
  port: number,
  devices: readonly ClientCredentials[],
): Promise<Figure> {
  const per = ROUND_READINGS / devices.length;
  const before = await storedNow(child);
  const clients = await Promise.all(
    devices.map((d) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: d.clientId,
        username: d.username ?? d.clientId,
        password: d.password ?? "",
        protocolVersion: 4,
        reconnectPeriod: 0,
      }),
    ),
  );
  const payloads = devices.map((d, di) => {
    const readings = readingsOf(per, di);
    const out: string[] = [];
    for (let i = 0; i < readings.length; i += READINGS_PER_MESSAGE) {
      out.push(
        JSON.stringify({
          v: 1,
          deviceId: d.clientId,
          seq: out.length + 1,
          kind: "utility_tunnel",
          readings: readings.slice(i, i + READINGS_PER_MESSAGE),
        }),
      );
    }
    return out;
  });
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (client, di) => {
      const topic = deviceTopic(devices[di]?.clientId ?? "", "data");
      const queue = [...(payloads[di] ?? [])];
      const lanes = Array.from({ length: WINDOW }, async () => {
        for (let p = queue.shift(); p !== undefined; p = queue.shift()) {
          await client.publishAsync(topic, p, { qos: 1 });
        }
      });
      await Promise.all(lanes);
    }),
  );
  await waitStored(child, before + ROUND_READINGS);
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(clients.map((c) => c.endAsync()));
  return {
    what: "bare publisher (no log)",
    devices: devices.length,
    readings: ROUND_READINGS,
    seconds,
  };
}

/** The agent: fill its log offline, start it, time the drain into the store. */
async function agentDrain(
  child: IngestChild,
  port: number,
  devices: readonly ClientCredentials[],
): Promise<Figure> {
  const per = ROUND_READINGS / devices.length;
  const dir = mkdtempSync(join(tmpdir(), "citywatch-bench-edge-"));
  try {
    const file = join(dir, "wal.db");
    const limits = { maxReadingsPerMessage: READINGS_PER_MESSAGE, maxBytes: 1024 ** 3 };
    const fill = new WriteAheadLog({ file, limits }, { now: Date.now });
    devices.forEach((d, di) => {
      const readings = readingsOf(per, di);
      for (let i = 0; i < readings.length; i += READINGS_PER_MESSAGE) {
        fill.append(d.clientId, readings.slice(i, i + READINGS_PER_MESSAGE));
      }
    });
    const logBytes = fill.size().bytes;
    fill.close();
    const disk = [file, `${file}-wal`].reduce((sum, f) => {
      try {
        return sum + statSync(f).size;
      } catch {
        return sum; // no -wal file after a checkpoint on close
      }
    }, 0);

    const config = loadEdgeConfig({
      overrides: {
        log: { level: "warn" },
        mqtt: { url: `mqtt://127.0.0.1:${port}` },
        devices: devices.map((d) => ({
          deviceId: d.clientId,
          kind: "utility_tunnel",
          secret: d.password ?? "",
        })),
        wal: { file, ...limits },
        remoteConfig: { dir: join(dir, "device-config") },
        uplink: { window: WINDOW, lingerMs: 1, commitWaitMs: 200 },
      },
    });
    const agent = buildAgent({ log: pino({ level: "warn" }), config });
    const before = await storedNow(child);
    const t0 = performance.now();
    await agent.start();
    const drained = () => agent.stats().devices.every((d) => d.log.pending === 0);
    await waitStored(child, before + ROUND_READINGS, drained);
    const seconds = (performance.now() - t0) / 1000;
    await agent.stop();
    return {
      what: "edge agent, log → store",
      devices: devices.length,
      readings: ROUND_READINGS,
      seconds,
      diskBytesPerReading: disk / ROUND_READINGS,
      logBytesPerReading: logBytes / ROUND_READINGS,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const total = ROUNDS.reduce((n, r) => n + 2 * r.devices, 0);
  const { child, ready } = await IngestChild.start("edge", {
    variant: "all-in-one",
    store: { type: "sqlite" },
    devices: Array.from({ length: total }, (_, i) => ({
      id: `bench-edge-${i}`,
      kind: "utility_tunnel" as const,
    })),
  });
  const figures: Figure[] = [];
  try {
    let next = 0;
    const take = (n: number) => ready.devices.slice(next, (next += n));
    for (const round of ROUNDS) {
      figures.push(await baseline(child, ready.port, take(round.devices)));
      figures.push(await agentDrain(child, ready.port, take(round.devices)));
    }
  } finally {
    await child.stop();
  }
  const rows = figures.map((f) => [
    f.what,
    String(f.devices),
    formatCount(f.readings),
    f.seconds.toFixed(2),
    formatCount(f.readings / f.seconds),
    f.diskBytesPerReading === undefined ? "-" : f.diskBytesPerReading.toFixed(1),
    f.logBytesPerReading === undefined ? "-" : f.logBytesPerReading.toFixed(1),
  ]);
  console.log(
    formatTable(
      ["path", "devices", "readings", "seconds", "readings/s", "disk B/reading", "JSON B/reading"],
      rows,
    ),
  );
  const agentRates = figures
    .filter((f) => f.what.startsWith("edge"))
    .map((f) => ({ devices: f.devices, rate: f.readings / f.seconds }));
  for (const { devices, rate } of agentRates) {
    const base = figures.find((f) => f.devices === devices && f.what.startsWith("bare"));
    const ratio = base === undefined ? Number.NaN : rate / (base.readings / base.seconds);
    console.log(
      `agent with ${devices} device(s): ${formatCount(rate)} readings/s drained (${(ratio * 100).toFixed(0)} % of the bare publisher), goal ${formatCount(GOAL_READINGS_PER_SECOND)}: ${rate >= GOAL_READINGS_PER_SECOND ? "met" : "NOT met"}`,
    );
  }
  console.log(
    "disk B/reading: the log's SQLite file and its WAL after the fill, per reading; JSON B/reading: the readings' own JSON.",
  );
}
