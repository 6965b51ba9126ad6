/**
 * One target's run in the fleet bench (bench/fleet.ts): warm-up, connect, hold, cut and the way
 * back, drain; the figures of each phase. A target is a broker the devices connect to: citywatch
 * (all in one, or its broker alone) or Mosquitto.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { type Fleet, type FleetOptions, type FleetSample, startFleet } from "./fleet-load.js";
import type { Confirm, FleetDevice, ServerMessage } from "./fleet-protocol.js";
import { formatCount } from "./table.js";

export interface Memory {
  /** Undefined where the process has no garbage-collected heap to ask (Mosquitto). */
  readonly heap?: number;
  readonly rss: number;
}

export interface ServerSample {
  readonly at: number;
  readonly cpuMicros: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  /** Readings stored so far (0 where nothing is stored). */
  readonly stored: number;
}

export type CountMessage = Extract<ServerMessage, { type: "count" }>;

export interface Target {
  readonly name: "citywatch" | "broker" | "mosquitto";
  readonly label: string;
  readonly port: number;
  readonly confirm: Confirm;
  /** Seconds of hold; 0: connect and measure only (no hold, no cut). */
  readonly holdS: number;
  /** Memory, after garbage collection where there is one. */
  memory(): Promise<Memory>;
  /** CPU, RSS and readings stored now (citywatch's processes only). */
  sample?(): Promise<ServerSample>;
  /** After the run: the store, the commit ledger and the counters (citywatch all in one). */
  count?(): Promise<CountMessage>;
}

export interface RunOptions extends FleetOptions {
  /** A phase that has not reached its end after this long is reported as it stands. */
  readonly phaseLimitMs: number;
  /** Once the fleet is back after the cut: how long the rate is watched. */
  readonly tailMs: number;
  /** After the last reading is produced: how long to wait for every confirmation. */
  readonly drainLimitMs: number;
  readonly pollMs: number;
}

export interface ConnectFigures {
  readonly devices: number;
  /** From the first CONNECT to the last CONNACK, SUBACK and first reading confirmed; ms. */
  readonly connackMs?: number;
  readonly subackMs?: number;
  readonly firstConfirmedMs?: number;
  readonly connected: number;
  readonly attempts: number;
  readonly failures: Record<string, number>;
}

export interface HoldFigures {
  readonly seconds: number;
  readonly produced: number;
  readonly confirmed: number;
  /** Readings stored per second over the hold (citywatch), or confirmed per second. */
  readonly ratePerSecond: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** CPU of the system under test, in cores. */
  readonly serverCores?: number;
  /** CPU of the device processes per reading produced, µs. */
  readonly devicesMicrosPerReading: number;
}

export interface ReconnectFigures {
  /** From the cut to the last CONNACK, and to the last device caught up; ms. */
  readonly connackMs?: number;
  readonly caughtUpMs?: number;
  readonly connected: number;
  readonly attempts: number;
  readonly failures: Record<string, number>;
  /** Readings stored per second, second by second from the cut (citywatch all in one). */
  readonly storedPerSecond: number[];
  /** Stored or confirmed per second over the tail once every device was back. */
  readonly tailRate?: number;
}

export interface LossFigures {
  readonly sent: number;
  readonly storeRows: number;
  readonly counter: number;
  readonly lost: number;
  readonly ledgerMatches: number;
  readonly ledgerDevices: number;
  readonly duplicates: number;
  readonly deadLetters: number;
  readonly storeErrors: number;
  readonly inbox: number;
  readonly authFailures: number;
  readonly limitRejections: number;
}

export interface TargetResult {
  readonly name: Target["name"];
  readonly label: string;
  readonly connect: ConnectFigures;
  readonly memory: {
    /** Before any connection; `baseline`: after the warm-up devices came and went. */
    readonly cold: Memory;
    readonly baseline: Memory;
    readonly connected: Memory;
    readonly held?: Memory;
    readonly connections: number;
  };
  readonly hold?: HoldFigures;
  readonly reconnect?: ReconnectFigures;
  readonly final: {
    readonly produced: number;
    readonly sent: number;
    readonly resent: number;
    readonly confirmed: number;
    readonly drops: number;
    readonly oddities: number;
  };
  readonly loss?: LossFigures;
  /** The sample of the process under test with the highest RSS, and the phase it was in. */
  readonly peak?: ServerSample & { readonly phase: string };
  readonly load: string;
}

export function loadText(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

export function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/**
 * The kernel's TCP counters of the whole machine (/proc/net/netstat): connections dropped at a
 * listener's full accept queue (each costs the client a SYN retransmitted after 1 s, then 2 s,
 * 4 s...) and SYNs retransmitted. Undefined where there is no /proc.
 */
function tcpCounters(): { overflows: number; synRetrans: number } | undefined {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8")
      .split("\n")
      .filter((l) => l.startsWith("TcpExt:"));
    const names = (lines[0] ?? "").split(/\s+/);
    const values = (lines[1] ?? "").split(/\s+/).map(Number);
    const read = (name: string) => values[names.indexOf(name)] ?? Number.NaN;
    return { overflows: read("ListenOverflows"), synRetrans: read("TCPSynRetrans") };
  } catch {
    return undefined;
  }
}

/** What the kernel counted since `before`, as a clause. */
function tcpText(before: ReturnType<typeof tcpCounters>): string {
  const after = tcpCounters();
  if (before === undefined || after === undefined) return "";
  return `; the machine's kernel: ${formatCount(after.overflows - before.overflows)} connections dropped at a full accept queue, ${formatCount(after.synRetrans - before.synRetrans)} SYNs sent again`;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function failuresText(failures: Record<string, number>): string {
  const entries = Object.entries(failures);
  return entries.length === 0 ? "none" : entries.map(([why, n]) => `${why} ${n}`).join(", ");
}

function diffFailures(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [why, n] of Object.entries(after)) {
    const d = n - (before[why] ?? 0);
    if (d > 0) out[why] = d;
  }
  return out;
}

/** What the phases of one run share: the target, its fleet, and every sample of the server. */
class Run {
  readonly servers: ServerSample[] = [];
  peak: (ServerSample & { phase: string }) | undefined;
  phase = "start";

  constructor(
    readonly target: Target,
    readonly fleet: Fleet,
    readonly options: RunOptions,
  ) {}

  get confirmedWord(): string {
    return this.target.confirm === "commit" ? "committed" : "acknowledged";
  }

  async serverSample(): Promise<ServerSample | undefined> {
    const server = await this.target.sample?.();
    if (server !== undefined) {
      this.servers.push(server);
      if (this.peak === undefined || server.rss > this.peak.rss) {
        this.peak = { ...server, phase: this.phase };
      }
    }
    return server;
  }

  /** Poll the fleet (and the server) until `done` or the limit. */
  async watch(
    done: (sample: FleetSample) => boolean,
    limitMs: number,
    onSample?: (sample: FleetSample, server?: ServerSample) => void,
    everyMs = this.options.pollMs,
  ): Promise<FleetSample> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const [sample, server] = await Promise.all([this.fleet.sample(), this.serverSample()]);
      onSample?.(sample, server);
      if (done(sample) || Date.now() >= deadline) return sample;
      await sleep(everyMs);
    }
  }

  /** Every device connects, subscribes, publishes its birth and one reading. */
  async connect(): Promise<{ figures: ConnectFigures; sample: FleetSample }> {
    this.phase = "connect";
    const tcp = tcpCounters();
    const start = Date.now();
    await this.fleet.command("connect");
    let lastLine = start;
    const sample = await this.watch(
      (s) => s.lastCaughtUpMs !== undefined,
      this.options.phaseLimitMs,
      (s) => {
        if (s.at - lastLine < 5_000) return;
        lastLine = s.at;
        console.log(
          `  connect +${seconds(s.at - start)} s: ${formatCount(s.connected)} connected, ${formatCount(s.caughtUp)} with their first reading ${this.confirmedWord}`,
        );
      },
    );
    const figures: ConnectFigures = {
      devices: this.fleet.size,
      connected: sample.connected,
      attempts: sample.attempts,
      failures: sample.failures,
      ...(sample.lastConnackMs !== undefined ? { connackMs: sample.lastConnackMs - start } : {}),
      ...(sample.lastSubackMs !== undefined ? { subackMs: sample.lastSubackMs - start } : {}),
      ...(sample.lastCaughtUpMs !== undefined
        ? { firstConfirmedMs: sample.lastCaughtUpMs - start }
        : {}),
    };
    const at = (ms: number | undefined) => (ms === undefined ? "-" : `${seconds(ms)} s`);
    console.log(
      `  connect: ${formatCount(sample.connected)}/${formatCount(this.fleet.size)} connected; last CONNACK ${at(figures.connackMs)}, last SUBACK ${at(figures.subackMs)}, last first reading ${this.confirmedWord} ${at(figures.firstConfirmedMs)}; ${formatCount(sample.attempts)} attempts, failed: ${failuresText(sample.failures)}${tcpText(tcp)}`,
    );
    return { figures, sample };
  }

  /** A reading from every device every interval, for `holdS`. */
  async hold(holdS: number): Promise<HoldFigures> {
    this.phase = "hold";
    const start = Date.now() + 1_000;
    await this.fleet.cadence(start);
    await this.fleet.latencies(); // the connect phase's are not the hold's
    await sleep(Math.max(0, start - Date.now()));
    const first = await this.fleet.sample();
    const serverFirst = await this.serverSample();
    const end = start + holdS * 1000;
    let line = { at: start, stored: serverFirst?.stored, confirmed: first.confirmed };
    const last = await this.watch(
      () => Date.now() >= end,
      holdS * 1000 + 5_000,
      (s, server) => {
        if (s.at - line.at < 10_000) return;
        const span = (s.at - line.at) / 1000;
        const rate =
          server !== undefined && line.stored !== undefined && this.target.confirm === "commit"
            ? `stored ${formatCount((server.stored - line.stored) / span)}/s`
            : `${this.confirmedWord} ${formatCount((s.confirmed - line.confirmed) / span)}/s`;
        console.log(
          `  hold +${seconds(s.at - start)} s: ${rate}, ${formatCount(s.connected)} connected, ${formatCount(s.produced - s.confirmed)} readings unconfirmed, load ${loadText()}`,
        );
        line = { at: s.at, stored: server?.stored, confirmed: s.confirmed };
      },
      1_000,
    );
    const serverLast = await this.serverSample();
    const latencies = (await this.fleet.latencies()).sort((a, b) => a - b);
    const span = (last.at - first.at) / 1000;
    const produced = last.produced - first.produced;
    const stored =
      serverFirst !== undefined && serverLast !== undefined && this.target.confirm === "commit"
        ? serverLast.stored - serverFirst.stored
        : undefined;
    const figures: HoldFigures = {
      seconds: span,
      produced,
      confirmed: last.confirmed - first.confirmed,
      ratePerSecond: (stored ?? last.confirmed - first.confirmed) / span,
      latencyMs: {
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: latencies[latencies.length - 1] ?? Number.NaN,
      },
      ...(serverFirst !== undefined && serverLast !== undefined
        ? {
            serverCores:
              (serverLast.cpuMicros - serverFirst.cpuMicros) /
              1e6 /
              ((serverLast.at - serverFirst.at) / 1000),
          }
        : {}),
      devicesMicrosPerReading: produced > 0 ? (last.cpuMicros - first.cpuMicros) / produced : NaN,
    };
    console.log(
      `  hold: ${formatCount(produced)} readings produced in ${span.toFixed(0)} s, ${stored !== undefined ? "stored" : this.confirmedWord} ${formatCount(figures.ratePerSecond)}/s; latency to ${this.target.confirm} p50 ${figures.latencyMs.p50.toFixed(0)} ms, p99 ${figures.latencyMs.p99.toFixed(0)} ms, max ${figures.latencyMs.max.toFixed(0)} ms${figures.serverCores !== undefined ? `; ${this.target.label} used ${(figures.serverCores * 100).toFixed(0)} % of a core` : ""}; device processes ${figures.devicesMicrosPerReading.toFixed(0)} µs of CPU per reading`,
    );
    return figures;
  }

  /** Every connection reset at once; the devices come back after the simulator's delays. */
  async cut(): Promise<ReconnectFigures> {
    this.phase = "cut";
    const before = await this.fleet.sample();
    const tcp = tcpCounters();
    const cutAt = Date.now();
    await this.fleet.command("cut");
    const back = await this.watch((s) => s.lastCaughtUpMs !== undefined, this.options.phaseLimitMs);
    const tcpBack = tcpText(tcp);
    const tailFrom = await this.fleet.sample();
    const serverTailFrom = await this.serverSample();
    await sleep(this.options.tailMs);
    const tailTo = await this.fleet.sample();
    const serverTailTo = await this.serverSample();
    const tailSpan = (tailTo.at - tailFrom.at) / 1000;
    const storing = this.target.confirm === "commit" && this.target.sample !== undefined;
    // Second by second from the cut until every device was back: readings stored.
    const storedPerSecond: number[] = [];
    if (storing) {
      const from = this.servers.filter((s) => s.at >= cutAt - this.options.pollMs);
      const at = (ms: number) => from.find((s) => s.at >= ms);
      for (let t = 1; cutAt + t * 1000 <= back.at; t++) {
        const a = at(cutAt + (t - 1) * 1000);
        const b = at(cutAt + t * 1000);
        if (a !== undefined && b !== undefined) {
          storedPerSecond.push(((b.stored - a.stored) * 1000) / Math.max(1, b.at - a.at));
        }
      }
    }
    const figures: ReconnectFigures = {
      ...(back.lastConnackMs !== undefined ? { connackMs: back.lastConnackMs - cutAt } : {}),
      ...(back.lastCaughtUpMs !== undefined ? { caughtUpMs: back.lastCaughtUpMs - cutAt } : {}),
      connected: back.connected,
      attempts: back.attempts - before.attempts,
      failures: diffFailures(back.failures, before.failures),
      storedPerSecond,
      ...(back.lastCaughtUpMs !== undefined
        ? {
            tailRate:
              storing && serverTailFrom !== undefined && serverTailTo !== undefined
                ? (serverTailTo.stored - serverTailFrom.stored) / tailSpan
                : (tailTo.confirmed - tailFrom.confirmed) / tailSpan,
          }
        : {}),
    };
    const at = (ms: number | undefined) => (ms === undefined ? "-" : `${seconds(ms)} s`);
    console.log(
      `  cut: all ${formatCount(this.fleet.size)} connections reset at once; ${formatCount(back.connected)} back, last CONNACK ${at(figures.connackMs)}, all caught up (everything produced before ${this.confirmedWord}) ${at(figures.caughtUpMs)} after the cut; ${formatCount(figures.attempts)} attempts, failed: ${failuresText(figures.failures)}${tcpBack}`,
    );
    if (storedPerSecond.length > 0) {
      console.log(
        `  stored per second from the cut: ${storedPerSecond.map((r) => formatCount(r)).join(" ")}`,
      );
    }
    if (figures.tailRate !== undefined) {
      console.log(
        `  the ${this.options.tailMs / 1000} s after: ${storing ? "stored" : this.confirmedWord} ${formatCount(figures.tailRate)}/s (full rate ${formatCount((this.fleet.size * 1000) / this.options.intervalMs)}/s)`,
      );
    }
    return figures;
  }

  /** No more readings; wait until every one produced is confirmed. */
  async drain(): Promise<FleetSample> {
    this.phase = "drain";
    await this.fleet.command("quiet");
    return this.watch((s) => s.confirmed >= s.produced, this.options.drainLimitMs);
  }

  /** citywatch all in one: the store and the commit ledger against what the devices sent. */
  async loss(sent: number): Promise<LossFigures | undefined> {
    if (this.target.count === undefined) return undefined;
    const count = await this.target.count();
    const seqs = await this.fleet.seqs();
    const ids = Object.keys(seqs);
    return {
      sent,
      storeRows: count.storeRows,
      counter: count.readingsStored,
      lost: sent - count.storeRows,
      ledgerMatches: ids.filter((id) => count.committed[id] === seqs[id]).length,
      ledgerDevices: ids.length,
      duplicates: count.duplicates,
      deadLetters: count.deadLetters,
      storeErrors: count.storeErrors,
      inbox: count.inbox,
      authFailures: count.authFailures,
      limitRejections: count.limitRejections,
    };
  }
}

/** The warm-up devices connect, publish their reading, have it confirmed, and are reset. */
async function warmUp(
  target: Target,
  devices: readonly FleetDevice[],
  options: RunOptions,
): Promise<FleetSample> {
  const fleet = await startFleet(target.port, devices, target.confirm, {
    ...options,
    processes: 1,
  });
  try {
    await fleet.command("connect");
    const run = new Run(target, fleet, options);
    const done = await run.watch((s) => s.lastCaughtUpMs !== undefined, options.phaseLimitMs);
    if (done.lastCaughtUpMs === undefined) {
      throw new Error(
        `warm-up: ${done.caughtUp}/${devices.length} devices had their reading confirmed`,
      );
    }
    return done;
  } finally {
    await fleet.close();
  }
}

/** Warm up, connect the fleet, hold, cut, drain: every figure of one target. */
export async function runTarget(
  target: Target,
  devices: readonly FleetDevice[],
  warmDevices: readonly FleetDevice[],
  options: RunOptions,
): Promise<TargetResult> {
  const cold = await target.memory();
  const warm = await warmUp(target, warmDevices, options);
  // Let the broker see the resets and publish the Wills before the baseline.
  await sleep(1_000);
  const fleet = await startFleet(target.port, devices, target.confirm, options);
  const run = new Run(target, fleet, options);
  try {
    const baseline = await target.memory();
    const connect = await run.connect();
    const connected = await target.memory();
    let hold: HoldFigures | undefined;
    let held: Memory | undefined;
    let reconnect: ReconnectFigures | undefined;
    if (target.holdS > 0) {
      hold = await run.hold(target.holdS);
      held = await target.memory();
      reconnect = await run.cut();
    }
    const drained = await run.drain();
    // The warm-up devices' readings are in the store too.
    const loss = await run.loss(drained.sent + warm.sent);
    return {
      name: target.name,
      label: target.label,
      connect: connect.figures,
      memory: {
        cold,
        baseline,
        connected,
        ...(held !== undefined ? { held } : {}),
        connections: connect.sample.connected,
      },
      ...(hold !== undefined ? { hold } : {}),
      ...(reconnect !== undefined ? { reconnect } : {}),
      final: {
        produced: drained.produced,
        sent: drained.sent,
        resent: drained.resent,
        confirmed: drained.confirmed,
        drops: drained.drops,
        oddities: drained.oddities,
      },
      ...(loss !== undefined ? { loss } : {}),
      ...(run.peak !== undefined ? { peak: run.peak } : {}),
      load: loadText(),
    };
  } finally {
    await fleet.close();
  }
}
