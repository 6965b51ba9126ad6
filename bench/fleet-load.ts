/**
 * The fleet bench's device processes (bench/fleet-devices.ts) driven as one fleet: each gets
 * its share of the devices, the same commands at once, and their samples are merged.
 */
import { FleetChild } from "./fleet-child.js";
import {
  type Confirm,
  DevicesMessage,
  type DevicesSample,
  type FleetDevice,
} from "./fleet-protocol.js";

/** How the devices behave, the same for every target. */
export interface FleetOptions {
  readonly processes: number;
  /** CONNECTs without their CONNACK yet, at most, over all the processes, at the first connect. */
  readonly connecting: number;
  readonly intervalMs: number;
  readonly reconnectMs: readonly [number, number];
  readonly connectTimeoutMs: number;
  readonly keepaliveS: number;
  /** How long a process may take to answer a sample (a busy machine answers late). */
  readonly answerLimitMs: number;
}

/** The device processes' samples merged: sums, and the latest milestone once all reached it. */
export interface FleetSample extends Omit<DevicesSample, "type" | "id"> {
  readonly at: number;
}

export interface Fleet {
  readonly size: number;
  command(type: "connect" | "cut" | "quiet"): Promise<void>;
  /** Each device's reading every interval from `t0` (epoch ms), at its own phase. */
  cadence(t0: number): Promise<void>;
  sample(): Promise<FleetSample>;
  /** Confirmation latencies (ms) since the last call. */
  latencies(): Promise<number[]>;
  /** Each device's last seq. */
  seqs(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

type DevicesChild = FleetChild<DevicesMessage>;

export function mergeSamples(samples: readonly DevicesSample[]): FleetSample {
  const sum = (pick: (s: DevicesSample) => number) => samples.reduce((n, s) => n + pick(s), 0);
  const last = (pick: (s: DevicesSample) => number | undefined) => {
    let latest = 0;
    for (const s of samples) {
      const at = pick(s);
      if (at === undefined) return undefined;
      latest = Math.max(latest, at);
    }
    return latest;
  };
  const failures: Record<string, number> = {};
  for (const s of samples) {
    for (const [why, n] of Object.entries(s.failures)) failures[why] = (failures[why] ?? 0) + n;
  }
  const lastConnackMs = last((s) => s.lastConnackMs);
  const lastSubackMs = last((s) => s.lastSubackMs);
  const lastCaughtUpMs = last((s) => s.lastCaughtUpMs);
  return {
    at: Date.now(),
    cpuMicros: sum((s) => s.cpuMicros),
    devices: sum((s) => s.devices),
    connected: sum((s) => s.connected),
    subscribed: sum((s) => s.subscribed),
    produced: sum((s) => s.produced),
    sent: sum((s) => s.sent),
    resent: sum((s) => s.resent),
    confirmed: sum((s) => s.confirmed),
    attempts: sum((s) => s.attempts),
    failures,
    drops: sum((s) => s.drops),
    oddities: sum((s) => s.oddities),
    caughtUp: sum((s) => s.caughtUp),
    ...(lastConnackMs !== undefined ? { lastConnackMs } : {}),
    ...(lastSubackMs !== undefined ? { lastSubackMs } : {}),
    ...(lastCaughtUpMs !== undefined ? { lastCaughtUpMs } : {}),
  };
}

/** Fork the device processes for `devices` against 127.0.0.1:`port` and set them up. */
export async function startFleet(
  port: number,
  devices: readonly FleetDevice[],
  confirm: Confirm,
  options: FleetOptions,
): Promise<Fleet> {
  const processes = Math.max(1, Math.min(options.processes, devices.length));
  const children: DevicesChild[] = [];
  const per = Math.ceil(devices.length / processes);
  try {
    for (let p = 0; p < processes; p++) {
      const slice = devices.slice(p * per, (p + 1) * per);
      if (slice.length === 0) continue;
      const child = FleetChild.fork(
        `device process ${p + 1}`,
        "./fleet-devices.ts",
        [],
        [],
        DevicesMessage,
      );
      children.push(child);
      await child.command(
        "setup",
        {
          setup: {
            host: "127.0.0.1",
            port,
            devices: slice,
            firstIndex: p * per,
            fleetSize: devices.length,
            confirm,
            intervalMs: options.intervalMs,
            connecting: Math.max(1, Math.round(options.connecting / processes)),
            reconnectMs: [...options.reconnectMs],
            connectTimeoutMs: options.connectTimeoutMs,
            keepaliveS: options.keepaliveS,
            seed: 20,
          },
        },
        60_000,
      );
    }
  } catch (error) {
    await Promise.all(children.map((c) => c.stop("close")));
    throw error;
  }
  const all = <T>(each: (child: DevicesChild) => Promise<T>) => Promise.all(children.map(each));
  return {
    size: devices.length,
    command: async (type) => void (await all((c) => c.command(type))),
    cadence: async (t0) => void (await all((c) => c.command("cadence", { t0 }))),
    sample: async () => mergeSamples(await all((c) => c.ask("sample", {}, options.answerLimitMs))),
    latencies: async () => (await all((c) => c.ask("latencies"))).flatMap((m) => m.values),
    seqs: async () => {
      const last: Record<string, number> = {};
      for (const m of await all((c) => c.ask("seqs"))) Object.assign(last, m.last);
      return last;
    },
    close: async () => void (await all((c) => c.stop("close"))),
  };
}
