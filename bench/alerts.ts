/**
 * Alerts benchmark (`npm run bench -- alerts`): alert latency, from a violating reading published
 * by a device to the task arriving on the live stream (server-sent events), p50 / p99 / max —
 * first on an idle system (the baseline of the same run), then while background devices publish
 * about 50,000 readings/s that the ingest stores and the rules engine evaluates (issue #20 goal:
 * p99 ≤ 250 ms under that load).
 *
 * The system under test runs in a child process (bench/alerts-server.ts): broker, ingest, default
 * rule pack plus one probe rule (`LAeq > 100`, no hold time), tasks, API. Each probe is a distinct
 * noise device, so each violating reading opens its own case; the bench listens on
 * GET /api/v1/tasks/stream and matches `filed` events by subject.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { connectAsync, type MqttClient } from "mqtt";
import { deviceTopic } from "../contracts/index.js";
import { AlertsReady, type AlertsArgs } from "./alerts-server.js";
import { Fleet } from "./ingest-load.js";
import { benchDevices, DeviceStream, firstReadingMs } from "./ingest-payloads.js";
import { formatCount, formatTable } from "./table.js";

const SERVER_SCRIPT = fileURLToPath(new URL("./alerts-server.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));

const BACKGROUND_DEVICES = 100;
const IDLE_PROBES = 20;
const LOADED_PROBES = 60;
/** Background load: this many readings every STEP_MS (50,000 readings/s), 50 per message. */
const STEP_MS = 250;
const STEP_READINGS = 12_500;
const WINDOW = 10;
const PROBE_EVERY_MS = 250;
/** A probe whose task has not arrived by then counts as lost (reported, not silently dropped). */
const PROBE_TIMEOUT_MS = 15_000;
const GOAL_P99_MS = 250;
const GOAL_READINGS_PER_SECOND = 50_000;

interface ProbeResult {
  readonly latencyMs: number | undefined;
}

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)];
}

/** Filed events of probe devices, by device id: when each arrived (performance.now()). */
class TaskStreamListener {
  readonly arrivals = new Map<string, number>();
  private readonly waiters = new Map<string, () => void>();
  private readonly abort = new AbortController();

  static async open(url: string, token: string): Promise<TaskStreamListener> {
    const listener = new TaskStreamListener();
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
      signal: listener.abort.signal,
    });
    if (!response.ok || response.body === null)
      throw new Error(`task stream answered HTTP ${response.status}`);
    void listener.read(response.body).catch(() => undefined);
    return listener;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame
          .split("\n")
          .filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6))
          .join("\n");
        if (data === "") continue;
        const event = JSON.parse(data) as {
          type: string;
          task: { subject: { id: string } };
        };
        const id = event.task.subject.id;
        if (event.type !== "filed" || !id.startsWith("probe-") || this.arrivals.has(id)) continue;
        this.arrivals.set(id, performance.now());
        this.waiters.get(id)?.();
      }
    }
  }

  /** Resolves with the arrival time of `id`'s task, or undefined after `timeoutMs`. */
  arrival(id: string, timeoutMs: number): Promise<number | undefined> {
    const known = this.arrivals.get(id);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.set(id, () => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(this.arrivals.get(id));
      });
    });
  }

  close(): void {
    this.abort.abort();
  }
}

async function probe(
  client: MqttClient,
  id: string,
  stream: TaskStreamListener,
): Promise<ProbeResult> {
  const payload = JSON.stringify({
    v: 1,
    deviceId: id,
    seq: 1,
    kind: "noise",
    readings: [{ ts: new Date().toISOString(), quality: "normal", values: { LAeq: 110 } }],
  });
  const sent = performance.now();
  const arrival = stream.arrival(id, PROBE_TIMEOUT_MS);
  await client.publishAsync(deviceTopic(id, "data"), payload, { qos: 1 });
  const at = await arrival;
  return { latencyMs: at === undefined ? undefined : at - sent };
}

async function storedReadings(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const match = /^citywatch_ingest_readings_stored_total (\d+(?:\.\d+)?)$/m.exec(text);
  return Number(match?.[1] ?? 0);
}

interface Phase {
  readonly name: string;
  readonly latencies: number[];
  readonly lost: number;
  readonly readingsPerSecond: number | undefined;
}

function summarize(phase: Phase): string[] {
  const sorted = [...phase.latencies].sort((a, b) => a - b);
  const ms = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(1));
  return [
    phase.name,
    phase.readingsPerSecond === undefined ? "-" : formatCount(phase.readingsPerSecond),
    String(sorted.length),
    String(phase.lost),
    ms(percentile(sorted, 50)),
    ms(percentile(sorted, 99)),
    ms(sorted[sorted.length - 1]),
  ];
}

export async function run(): Promise<void> {
  const devices = benchDevices(BACKGROUND_DEVICES);
  const probeIds = Array.from(
    { length: IDLE_PROBES + LOADED_PROBES },
    (_, i) => `probe-${String(i).padStart(3, "0")}`,
  );
  const args: AlertsArgs = { devices, probes: probeIds };
  const child = fork(SERVER_SCRIPT, [JSON.stringify(args)], {
    cwd: REPO_ROOT,
    execArgv: ["--max-semi-space-size=64", "--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let fleet: Fleet | undefined;
  const probes: MqttClient[] = [];
  let stream: TaskStreamListener | undefined;
  try {
    const ready = await new Promise<AlertsReady>((resolve, reject) => {
      child.once("message", (m) => {
        const parsed = AlertsReady.safeParse(m);
        if (parsed.success) resolve(parsed.data);
        else reject(new Error(`alerts server sent ${JSON.stringify(m)}`));
      });
      child.once("exit", (code) => reject(new Error(`alerts server exited with ${code}`)));
    });
    const url = `mqtt://127.0.0.1:${ready.mqttPort}`;
    stream = await TaskStreamListener.open(
      `http://127.0.0.1:${ready.httpPort}/api/v1/tasks/stream`,
      ready.token,
    );
    const startMs = firstReadingMs(Date.now());
    fleet = await Fleet.open(
      url,
      ready.devices,
      devices.map((d, i) => new DeviceStream(d.id, d.kind, i, startMs)),
    );
    for (const c of ready.probes) {
      probes.push(
        await connectAsync(url, {
          clientId: c.clientId,
          username: c.username,
          password: c.password,
          protocolVersion: 4,
          reconnectPeriod: 0,
        }),
      );
    }
    const listener = stream;

    // Idle: the baseline.
    const idle: number[] = [];
    let idleLost = 0;
    for (let i = 0; i < IDLE_PROBES; i++) {
      const client = probes[i];
      const id = probeIds[i];
      if (client === undefined || id === undefined) continue;
      const result = await probe(client, id, listener);
      if (result.latencyMs === undefined) idleLost++;
      else idle.push(result.latencyMs);
      await sleep(PROBE_EVERY_MS);
    }

    // Loaded: background steps of STEP_READINGS every STEP_MS, probes every PROBE_EVERY_MS.
    const activeFleet = fleet;
    let loading = true;
    const storedBefore = await storedReadings(ready.httpPort);
    const loadStarted = performance.now();
    const background = (async () => {
      let step = 0;
      while (loading) {
        const due = loadStarted + step * STEP_MS;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        await activeFleet.publish(activeFleet.prepare(50, STEP_READINGS), WINDOW);
        step++;
      }
    })();
    await sleep(2_000); // let the load settle before probing
    const loaded: Array<Promise<ProbeResult>> = [];
    for (let i = IDLE_PROBES; i < probeIds.length; i++) {
      const client = probes[i];
      const id = probeIds[i];
      if (client === undefined || id === undefined) continue;
      loaded.push(probe(client, id, listener));
      await sleep(PROBE_EVERY_MS);
    }
    const results = await Promise.all(loaded);
    loading = false;
    await background;
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    const storedAfter = await storedReadings(ready.httpPort);
    const loadedLatencies = results.flatMap((r) =>
      r.latencyMs === undefined ? [] : [r.latencyMs],
    );
    const phases: Phase[] = [
      { name: "idle (baseline)", latencies: idle, lost: idleLost, readingsPerSecond: undefined },
      {
        name: "under load",
        latencies: loadedLatencies,
        lost: results.length - loadedLatencies.length,
        readingsPerSecond: (storedAfter - storedBefore) / loadSeconds,
      },
    ];
    console.log(
      "\nAlert latency: violating reading published -> task `filed` on the SSE stream (ms):",
    );
    console.log(
      formatTable(
        ["phase", "stored rdg/s", "probes", "lost", "p50", "p99", "max"],
        phases.map(summarize),
      ),
    );
    const sorted = [...loadedLatencies].sort((a, b) => a - b);
    const p99 = percentile(sorted, 99);
    const rate = phases[1]?.readingsPerSecond ?? 0;
    const pass =
      p99 !== undefined &&
      p99 <= GOAL_P99_MS &&
      rate >= GOAL_READINGS_PER_SECOND * 0.95 &&
      phases[1]?.lost === 0;
    console.log(
      `\ngoal: p99 ≤ ${GOAL_P99_MS} ms while storing ${formatCount(GOAL_READINGS_PER_SECOND)} readings/s: ` +
        `p99 ${p99 === undefined ? "-" : p99.toFixed(1)} ms at ${formatCount(rate)} readings/s -> ${pass ? "PASS" : "MISS"}`,
    );
    console.log(
      `BENCH_RESULT ${JSON.stringify({ bench: "alerts", phases: phases.map((ph) => ({ name: ph.name, readingsPerSecond: ph.readingsPerSecond, lost: ph.lost, latencyMs: summarize(ph).slice(4) })), goal: { p99Ms: GOAL_P99_MS, readingsPerSecond: GOAL_READINGS_PER_SECOND, pass } })}`,
    );
  } finally {
    stream?.close();
    await Promise.all(probes.map((c) => c.endAsync(true).catch(() => undefined)));
    await fleet?.close().catch(() => undefined);
    if (child.connected) child.send({ type: "stop" });
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(killer);
  }
}
