import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import mqtt, { type MqttClient } from "mqtt";
import { pino } from "pino";
import { deviceTopic, type Uplink } from "../../contracts/index.js";
import { RegistryStore } from "../../registry/store.js";
import { createCounters, type FleetCounters } from "../../simulators/fleet/counters.js";
import { VirtualDevice } from "../../simulators/fleet/device.js";
import { createScheduler, type Scheduler } from "../../simulators/fleet/scheduler.js";
import { mulberry32 } from "../../simulators/models/random.js";
import { until } from "./broker.js";

/*
 * What the kill tests of the fault suite (tests/fault/kill) share: a registry of noise devices
 * written before the process starts, a config file with the publish rate limit out of the way,
 * fleets of devices publishing one reading per message (commit-aware, or plain QoS 1 trusting
 * the PUBACK), and the readings found in a store afterwards, by device and seq.
 */

/** A reading's time: one second per seq, two hours ago and on (inside the ingest's age window). */
export const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 1_000) * 1_000;
const tsOf = (seq: number) => new Date(T0 + seq * 1_000).toISOString();

/** The seed of the kill points: CITYWATCH_FAULT_SEED, or a fixed one (the run is repeatable). */
export function killRandom(): { seed: number; between(min: number, max: number): number } {
  const seed = Number(process.env["CITYWATCH_FAULT_SEED"] ?? 16);
  const rng = mulberry32(seed);
  return { seed, between: (min, max) => Math.round(rng.uniform(min, max)) };
}

/** Noise devices `ids` and an `ingest` service account in `dir`/registry.db; their secrets. */
export function registerDevices(
  dir: string,
  ids: readonly string[],
): { secrets: Map<string, string>; ingestSecret: string } {
  const registry = new RegistryStore(join(dir, "registry.db"));
  const area = { district: "D", gridCell: "G" };
  const location = { lat: 30, lon: 104 };
  registry.putSite({ id: "kill-site", type: "ambient", name: "Kill site", area, location });
  const secrets = new Map<string, string>();
  for (const [i, id] of ids.entries()) {
    const added = registry.addDevice({
      id,
      kind: "noise",
      model: "M",
      serial: String(i),
      location,
      area,
      siteId: "kill-site",
    });
    secrets.set(id, added.secret);
  }
  const ingestSecret = registry.addServiceAccount({ name: "ingest", role: "ingest" }).secret;
  registry.close();
  return { secrets, ingestSecret };
}

/** A config file in `dir` lifting the per-device publish rate limit; `ingestYaml` is appended. */
export function writeKillConfig(dir: string, ingestYaml = ""): string {
  const file = join(dir, "kill-config.yaml");
  writeFileSync(
    file,
    `broker:\n  limits:\n    publishRatePerSecond: 10000\n    publishBurst: 10000\n${ingestYaml}`,
  );
  return file;
}

function uplink(deviceId: string, seq: number): Uplink {
  return {
    v: 1,
    deviceId,
    seq,
    kind: "noise",
    readings: [{ ts: tsOf(seq), quality: "normal", values: { LAeq: 40 + (seq % 50) } }],
  } as Uplink;
}

/**
 * Devices speaking the whole protocol (the fleet runner's VirtualDevice): every message stays in
 * the device's log until a commit covers it, and everything above the last commit is re-sent
 * after a reconnect (docs/protocol.md 6.3, 6.4). `produce` adds one message per device.
 */
export class CommitFleet {
  readonly counters: FleetCounters;
  readonly devices: VirtualDevice[];
  private readonly scheduler: Scheduler;
  private readonly assigned = new Map<string, number>();

  constructor(url: string, secrets: Map<string, string>) {
    this.counters = createCounters(secrets.size);
    this.scheduler = createScheduler({ onError: (error) => console.error(error) });
    const rng = mulberry32(7);
    const deps = {
      log: pino({ level: "silent" }),
      counters: this.counters,
      scheduler: this.scheduler,
      simNow: Date.now,
      random: () => rng.next(),
    };
    const options = {
      url,
      windowSize: 32,
      resendAfterMs: 5_000,
      maxLogMessages: 1_000_000,
      commitWaitMs: 1_000,
      reconnectMs: [200, 600] as const,
      // Back at every restart, not later and later: the kills come a second or two apart, and
      // every device must be cut off and come back at each (the doubling is tested on its own).
      reconnectMaxMs: 600,
      keepaliveS: 10,
    };
    this.devices = [...secrets].map(
      ([id, secret]) => new VirtualDevice(id, "noise", secret, options, deps),
    );
  }

  async connect(): Promise<void> {
    await Promise.all(this.devices.map((d) => d.connect()));
  }

  /** One new message per device; its seq is the device's next (the fleet is its only writer). */
  produce(): void {
    const now = Date.now();
    for (const device of this.devices) {
      const seq = (this.assigned.get(device.id) ?? 0) + 1;
      this.assigned.set(device.id, seq);
      device.enqueue(uplink(device.id, seq));
      device.checkResend(now);
    }
  }

  /** The seqs each device gave out: 1..n. */
  sentSeqs(): Map<string, number> {
    return new Map(this.assigned);
  }

  async allCommitted(timeoutMs: number): Promise<void> {
    await until(
      () => this.devices.every((d) => d.pending === 0),
      "every device's log committed",
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.devices.map((d) => d.shutdown()));
    this.scheduler.clear();
  }
}

/**
 * Plain QoS 1 devices (MQTT.js reconnecting by itself, a clean session, no log): each message is
 * published once and counted as acknowledged when its PUBACK comes.
 */
export class PlainFleet {
  readonly clients = new Map<string, MqttClient>();
  readonly acked = new Map<string, Set<number>>();
  private readonly sent = new Map<string, number>();

  constructor(url: string, secrets: Map<string, string>) {
    for (const [id, secret] of secrets) {
      const client = mqtt.connect(url, {
        clientId: id,
        username: id,
        password: secret,
        protocolVersion: 4,
        reconnectPeriod: 100,
        connectTimeout: 2_000,
      });
      client.on("error", () => undefined);
      this.clients.set(id, client);
      this.acked.set(id, new Set());
    }
  }

  async connect(): Promise<void> {
    await until(
      () => [...this.clients.values()].every((c) => c.connected),
      "plain devices connected",
      15_000,
    );
  }

  produce(): void {
    for (const [id, client] of this.clients) {
      const seq = (this.sent.get(id) ?? 0) + 1;
      this.sent.set(id, seq);
      client.publish(
        deviceTopic(id, "data"),
        JSON.stringify(uplink(id, seq)),
        { qos: 1 },
        (error) => {
          if (!error) this.acked.get(id)?.add(seq);
        },
      );
    }
  }

  get sentTotal(): number {
    return [...this.sent.values()].reduce((a, b) => a + b, 0);
  }

  get ackedTotal(): number {
    return [...this.acked.values()].reduce((a, s) => a + s.size, 0);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.endAsync(true)));
  }
}

/** Calls `tick` every `periodMs` until stopped. */
export function every(periodMs: number, tick: () => void): { stop(): void } {
  const timer = setInterval(tick, periodMs);
  return { stop: () => clearInterval(timer) };
}

/** Each device's stored seqs (one entry per stored reading), from an embedded store file. */
export function sqliteStoredSeqs(file: string): Map<string, number[]> {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db
      .prepare("SELECT device, seq FROM readings WHERE measurement = 'noise' ORDER BY time_ms")
      .all() as Array<{ device: string; seq: number }>;
    return groupSeqs(rows);
  } finally {
    db.close();
  }
}

export function groupSeqs(rows: Iterable<{ device: string; seq: number }>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const { device, seq } of rows) {
    const list = out.get(device) ?? [];
    list.push(seq);
    out.set(device, list);
  }
  return out;
}

/** What is missing and what is there twice, against what should be stored once per device. */
export function tally(
  expected: Map<string, Iterable<number>>,
  stored: Map<string, number[]>,
): { stored: number; duplicates: number; lost: number; lostExamples: string[] } {
  let total = 0;
  let duplicates = 0;
  const lostExamples: string[] = [];
  let lost = 0;
  for (const seqs of stored.values()) {
    total += seqs.length;
    duplicates += seqs.length - new Set(seqs).size;
  }
  for (const [device, seqs] of expected) {
    const have = new Set(stored.get(device) ?? []);
    for (const seq of seqs) {
      if (have.has(seq)) continue;
      lost++;
      if (lostExamples.length < 10) lostExamples.push(`${device}#${seq}`);
    }
  }
  return { stored: total, duplicates, lost, lostExamples };
}

/** 1..n for each device. */
export const oneTo = (sent: Map<string, number>): Map<string, number[]> =>
  new Map([...sent].map(([id, n]) => [id, Array.from({ length: n }, (_, i) => i + 1)]));

/** Pids of this process's children running `command` (e.g. the influxd a support helper started). */
export function childPidsOf(command: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      if (comm === command && ppid === process.pid) pids.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/** The sum of every series of `metric` on a citywatch process's /metrics. */
export async function scrapeMetric(httpPort: number, metric: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${metric} `) || line.startsWith(`${metric}{`))
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}
