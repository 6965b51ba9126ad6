/**
 * Fleet benchmark (`npm run bench -- fleet`, issue #20 item 3): 10,000 devices, one MQTT
 * connection each, against what `citywatch start` runs, against its broker alone, and against
 * Mosquitto as the baseline measured in the same run.
 *
 * 1. Connect: every device connects with its own credentials from the registry (at most
 *    BENCH_FLEET_CONNECTING connections waiting for their CONNACK at once), subscribes to its
 *    commit and config topics, publishes its birth and one reading. Goal: all connected
 *    (CONNACK and SUBACK) in ≤ 30 s.
 * 2. Hold: each device publishes one reading every 10 s, the fleet's phases spread evenly over
 *    the interval (1,000 readings/s for 10,000 devices), for 2 minutes. Goal: nothing lost —
 *    after the run, the rows in the embedded store equal the readings sent, and the commit
 *    ledger holds each device's last seq.
 * 3. Cut: every connection reset at once (TCP RST, no DISCONNECT: the broker publishes the
 *    Wills); each device reconnects after the simulator's jittered delay
 *    (simulators/fleet/device.ts reconnectDelayMs, its default range) and sends what it holds.
 *    Goal: back to full rate in ≤ 30 s — every device connected, subscribed and caught up
 *    (everything it produced before it was back confirmed by a commit).
 *
 * Memory: the process's heap and RSS after garbage collection, before the first connection,
 * after a warm-up (its own devices connect, publish and go, so code compiled and caches filled
 * on the first connections are not counted per connection), once the fleet is connected and
 * after the hold; per 1,000 connections from the warm-up's figure (goal ≤ 8 MiB). The broker
 * alone (the same broker, registry and devices, a publish gate that only counts in place of the
 * ingest) connects the fleet once more, to tell the broker's share of that memory from the
 * ingest's and the rules'. Mosquitto gets the same devices, secrets (password file) and
 * per-device ACL, the same phases (a shorter hold: nothing is stored behind it), and its RSS from
 * /proc; a reading is confirmed by its PUBACK there.
 *
 * The system under test runs in a child process (bench/fleet-server.ts), the devices in
 * BENCH_FLEET_PROCESSES others (bench/fleet-devices.ts: raw sockets, a few µs per packet).
 *
 * BENCH_FLEET_DEVICES (10000), BENCH_FLEET_HOLD_S (120), BENCH_FLEET_MOSQUITTO_HOLD_S (20),
 * BENCH_FLEET_PROCESSES (2), BENCH_FLEET_CONNECTING (200), BENCH_FLEET_BROKER=0 (skip the broker
 * alone), BENCH_FLEET_MOSQUITTO=0 (skip Mosquitto), BENCH_CPU_PROF=<dir> (a V8 CPU profile of
 * citywatch all in one).
 */
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LINK } from "../simulators/fleet/runner.js";
import { FleetChild } from "./fleet-child.js";
import { startMosquitto } from "./fleet-mosquitto.js";
import {
  loadText,
  type RunOptions,
  runTarget,
  seconds,
  type Target,
  type TargetResult,
} from "./fleet-phases.js";
import {
  type FleetDevice,
  type ServerArgs,
  ServerMessage,
  type ServerVariant,
} from "./fleet-protocol.js";
import { per1000, printReport } from "./fleet-report.js";
import { formatCount } from "./table.js";

function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
}

const DEVICES = envInt("BENCH_FLEET_DEVICES", 10_000);
const HOLD_S = envInt("BENCH_FLEET_HOLD_S", 120);
const MOSQUITTO_HOLD_S = envInt("BENCH_FLEET_MOSQUITTO_HOLD_S", 20);
const WITH_BROKER = process.env["BENCH_FLEET_BROKER"] !== "0";
const WITH_MOSQUITTO = process.env["BENCH_FLEET_MOSQUITTO"] !== "0";
const CPU_PROFILE_DIR = process.env["BENCH_CPU_PROF"] || undefined;
/**
 * Devices of their own that connect, publish a reading and go before the memory baseline is
 * taken. From a baseline taken before any connection, 200 devices came to 64 MiB of heap per
 * 1,000: mqtt-packet's cache of 65,536 two-byte buffers (6 MiB) and compiled code are made on the
 * first connections, whatever their number.
 */
const WARMUP = Math.min(200, Math.max(20, Math.round(DEVICES / 50)));
/** One reading per device every 10 s (issue #20 item 3). */
const INTERVAL_S = 10;
const GOALS = { connectS: 30, reconnectS: 30, mibPer1000: 8 } as const;
const PHASE_LIMIT_MS = 120_000;

const OPTIONS: RunOptions = {
  processes: envInt("BENCH_FLEET_PROCESSES", 2),
  connecting: envInt("BENCH_FLEET_CONNECTING", 200),
  intervalMs: INTERVAL_S * 1000,
  // The simulator's reconnect delays and keepalive (simulators/fleet/runner.ts DEFAULT_LINK).
  reconnectMs: DEFAULT_LINK.reconnectMs,
  keepaliveS: DEFAULT_LINK.keepaliveS,
  // As the simulator's MQTT.js connections (simulators/fleet/device.ts connectTimeout).
  connectTimeoutMs: 30_000,
  // A process busy with a connect storm answers late: a figure, not a failure.
  answerLimitMs: PHASE_LIMIT_MS,
  phaseLimitMs: PHASE_LIMIT_MS,
  tailMs: 10_000,
  drainLimitMs: 60_000,
  pollMs: 250,
};

/** "Max open files" of this process: [soft, hard]. */
function openFilesLimit(): [number, number] | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith("Max open files"));
    const [soft, hard] = (line ?? "").split(/\s{2,}/).slice(1, 3);
    const parse = (v: string | undefined) => (v === "unlimited" ? Infinity : Number(v));
    return [parse(soft), parse(hard)];
  } catch {
    return undefined;
  }
}

function ephemeralPorts(): number | undefined {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    return low !== undefined && high !== undefined ? high - low + 1 : undefined;
  } catch {
    return undefined;
  }
}

/** Refuse to start where the machine cannot hold the fleet's sockets. */
function checkLimits(): void {
  const limit = openFilesLimit();
  const ports = ephemeralPorts();
  // Node raises its soft open-files limit to the hard one at start; Mosquitto inherits it.
  const needed = DEVICES + WARMUP + 256;
  console.log(
    `open files: soft ${limit?.[0] ?? "?"}, hard ${limit?.[1] ?? "?"} (the broker holds up to ${formatCount(needed)}); ephemeral ports: ${ports === undefined ? "?" : formatCount(ports)}`,
  );
  if (limit !== undefined && limit[0] < needed) {
    throw new Error(
      `the open-files limit (${limit[0]}) is below the ${needed} the broker needs: raise it (ulimit -n ${needed}) or lower BENCH_FLEET_DEVICES`,
    );
  }
  if (ports !== undefined && ports < DEVICES + WARMUP + 1_000) {
    throw new Error(
      `${ports} ephemeral ports are too few for ${DEVICES} connections: widen net.ipv4.ip_local_port_range`,
    );
  }
}

/** citywatch in a child process, its devices (the fleet's, then the warm-up's) registered. */
async function startCitywatch(
  variant: ServerVariant,
): Promise<{ target: Target; devices: FleetDevice[]; stop(): Promise<void> }> {
  const execArgv = ["--expose-gc", "--max-semi-space-size=64"];
  if (CPU_PROFILE_DIR !== undefined && variant === "all-in-one") {
    execArgv.push("--cpu-prof", `--cpu-prof-dir=${CPU_PROFILE_DIR}`);
  }
  // Made here and removed here after the child exits, even when it had to be killed (or when
  // this process exits first: its children are killed then, see fleet-child.ts).
  const dataDir = await mkdtemp(join(tmpdir(), "citywatch-bench-fleet-"));
  const removeOnExit = () => rmSync(dataDir, { recursive: true, force: true });
  process.once("exit", removeOnExit);
  const args: ServerArgs = {
    variant,
    dataDir,
    devices: DEVICES + WARMUP,
    intervalS: INTERVAL_S,
    warmup: WARMUP,
  };
  const label = variant === "all-in-one" ? "citywatch" : "citywatch broker alone";
  const child = FleetChild.fork(
    label,
    "./fleet-server.ts",
    [JSON.stringify(args)],
    execArgv,
    ServerMessage,
  );
  const stop = async () => {
    await child.stop("stop");
    await rm(dataDir, { recursive: true, force: true });
    process.off("exit", removeOnExit);
  };
  let ready: Extract<ServerMessage, { type: "ready" }>;
  try {
    const first = await child.ready(180_000);
    if (first.type !== "ready") throw new Error(`${label} sent ${first.type} first`);
    ready = first;
  } catch (error) {
    await stop();
    throw error;
  }
  console.log(
    `${label} (pid ${child.pid}): ${formatCount(ready.devices.length)} devices registered in ${seconds(ready.registerMs)} s; ${variant === "all-in-one" ? "broker, ingest, rules and tasks in one process, the embedded store" : "the same broker, a publish gate that only counts"}; MQTT on port ${ready.port}`,
  );
  return {
    devices: ready.devices,
    stop,
    target: {
      name: variant === "all-in-one" ? "citywatch" : "broker",
      label,
      port: ready.port,
      confirm: variant === "all-in-one" ? "commit" : "puback",
      holdS: variant === "all-in-one" ? HOLD_S : 0,
      memory: async () => {
        const m = await child.ask("measure", {}, 60_000);
        return { heap: m.heapUsed, rss: m.rss };
      },
      sample: async () => {
        const s = await child.ask("sample", {}, PHASE_LIMIT_MS);
        return {
          at: Date.now(),
          cpuMicros: s.cpuMicros,
          rss: s.rss,
          heapUsed: s.heapUsed,
          heapTotal: s.heapTotal,
          external: s.external,
          stored: s.readingsStored,
        };
      },
      ...(variant === "all-in-one" ? { count: () => child.ask("count", {}, 120_000) } : {}),
    },
  };
}

/** Run citywatch's variant on its own registered devices; they are returned, warm-up's last. */
async function runCitywatch(variant: ServerVariant): Promise<{
  result: TargetResult;
  devices: FleetDevice[];
}> {
  const started = await startCitywatch(variant);
  try {
    const fleet = started.devices.slice(0, DEVICES);
    const warm = started.devices.slice(DEVICES);
    return {
      result: await runTarget(started.target, fleet, warm, OPTIONS),
      devices: started.devices,
    };
  } finally {
    await started.stop();
  }
}

/** Mosquitto on `registered` (the fleet's devices, then the warm-up's), or why not. */
async function runMosquitto(registered: readonly FleetDevice[]): Promise<TargetResult | string> {
  const started = await startMosquitto(registered);
  if ("unavailable" in started) return `unavailable: ${started.unavailable}`;
  console.log(
    `${started.version} (pid ${started.pid}): the same devices and secrets (a password file, PBKDF2-SHA512), an ACL of each device's own topics; port ${started.port}; hold ${MOSQUITTO_HOLD_S} s`,
  );
  try {
    return await runTarget(
      {
        name: "mosquitto",
        label: "mosquitto",
        port: started.port,
        confirm: "puback",
        holdS: MOSQUITTO_HOLD_S,
        memory: async () => ({ rss: await started.rss() }),
      },
      registered.slice(0, DEVICES),
      registered.slice(DEVICES),
      OPTIONS,
    );
  } catch (error) {
    return `failed: ${(error as Error).message}`;
  } finally {
    await started.stop();
  }
}

export async function run(): Promise<void> {
  const cores = cpus();
  const loadBefore = loadText();
  console.log(
    `fleet bench: ${cores.length} x ${cores[0]?.model ?? "cpu"}, node ${process.version}, load ${loadBefore}`,
  );
  console.log(
    `${formatCount(DEVICES)} devices (half dust monitors, half tunnel gas monitors), one MQTT connection each from ${OPTIONS.processes} device processes (raw sockets), at most ${OPTIONS.connecting} CONNECTs awaiting their CONNACK at first; 1 reading every ${INTERVAL_S} s each, held ${HOLD_S} s; after the cut each device reconnects after a delay uniform in ${OPTIONS.reconnectMs[0]}-${OPTIONS.reconnectMs[1]} ms, drawn anew at each attempt (the simulator's); keepalive ${OPTIONS.keepaliveS} s; ${WARMUP} warm-up devices before each memory baseline`,
  );
  checkLimits();

  const results: TargetResult[] = [];
  const notes: string[] = [];
  const city = await runCitywatch("all-in-one");
  results.push(city.result);
  // The devices registered for citywatch, for Mosquitto's password file.
  let registered: FleetDevice[] = [];
  if (WITH_BROKER) {
    const broker = await runCitywatch("broker");
    results.push(broker.result);
    registered = broker.devices;
  } else notes.push("broker alone: skipped (BENCH_FLEET_BROKER=0)");
  if (!WITH_MOSQUITTO) notes.push("mosquitto: skipped (BENCH_FLEET_MOSQUITTO=0)");
  else {
    // The same device ids and secrets as a citywatch registry of this run.
    if (registered.length === 0) registered = city.devices;
    const mosquitto = await runMosquitto(registered);
    if (typeof mosquitto === "string") notes.push(`mosquitto: ${mosquitto}`);
    else results.push(mosquitto);
  }

  const loadAfter = loadText();
  printReport(results, notes, GOALS, DEVICES / INTERVAL_S);
  console.log(`\nload average before ${loadBefore}, after ${loadAfter}`);
  if (CPU_PROFILE_DIR !== undefined) console.log(`CPU profile of citywatch: ${CPU_PROFILE_DIR}`);
  const result = {
    bench: "fleet",
    devices: DEVICES,
    warmup: WARMUP,
    intervalS: INTERVAL_S,
    holdS: HOLD_S,
    mosquittoHoldS: MOSQUITTO_HOLD_S,
    options: OPTIONS,
    goals: GOALS,
    results: results.map((r) => ({
      ...r,
      per1000: {
        connected: { heap: per1000(r, "connected", "heap"), rss: per1000(r, "connected", "rss") },
        held: { heap: per1000(r, "held", "heap"), rss: per1000(r, "held", "rss") },
      },
    })),
    notes,
    loadAverage: { before: loadBefore, after: loadAfter },
  };
  console.log(`\nBENCH_RESULT ${JSON.stringify(result)}`);
}
