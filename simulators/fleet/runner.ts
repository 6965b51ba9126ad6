/**
 * The fleet runner: plays a compiled timeline against a running citywatch through the broker.
 * Every device gets its own MQTT connection and credentials (fleet/device.ts); connections are
 * opened in waves so a 10,000-device fleet does not hit the broker with one CONNECT storm; one
 * scheduler (fleet/scheduler.ts) drives all of them. Simulated time runs `speed` times faster
 * than the real clock from the moment the fleet is connected; readings carry simulated time.
 */
import mqtt from "mqtt";
import type { Logger } from "pino";
import { mulberry32, hashSeed } from "../models/index.js";
import type { TimedFault, Timeline } from "../scenario/compile.js";
import { paceProblem } from "../scenario/schema.js";
import { type FleetCounters, createCounters } from "./counters.js";
import { type DeviceLinkOptions, VirtualDevice } from "./device.js";
import {
  choose,
  faultRng,
  notJsonPayload,
  oversizedPayload,
  schemaInvalidPayload,
  unknownDeviceId,
  unknownSecret,
} from "./faults.js";
import { type Scheduler, createScheduler } from "./scheduler.js";

export interface FleetOptions {
  /** The broker, e.g. mqtt://127.0.0.1:18830. */
  readonly url: string;
  /** Each device's secret (from `citywatch sim --provision`). */
  readonly credentials: ReadonlyMap<string, string>;
  readonly link?: Partial<Omit<DeviceLinkOptions, "url">>;
  /** CONNECTs per wave and the pause between waves. */
  readonly connectWave?: { readonly size: number; readonly intervalMs: number };
  /** How long to wait for the last devices to connect before the clock starts; default 30 s. */
  readonly connectDeadlineMs?: number;
  /** After the last message is due, how long to wait for the commits before giving up. */
  readonly drainTimeoutMs?: number;
  /** Faults added on the command line, on top of the scenario's. */
  readonly extraFaults?: readonly TimedFault[];
}

export interface FleetSummary extends FleetCounters {
  readonly scenario: string;
  /** Messages still uncommitted when the run ended (0 when every reading landed). */
  readonly pending: number;
  /** Real time from the fleet being connected to the end, ms. */
  readonly elapsedMs: number;
  readonly simulatedMs: number;
  /** Whether every planned message was committed. */
  readonly complete: boolean;
}

export interface FleetRun {
  readonly counters: FleetCounters;
  /** The simulated clock now. */
  simNow(): number;
  /** Resolves when every message is committed, the drain timeout passed, or stop() was called. */
  readonly done: Promise<FleetSummary>;
  stop(): Promise<FleetSummary>;
}

export const DEFAULT_LINK: Omit<DeviceLinkOptions, "url"> = {
  windowSize: 32,
  resendAfterMs: 30_000,
  maxLogMessages: 10_000,
  commitWaitMs: 1_500,
  reconnectMs: [1_000, 5_000],
  keepaliveS: 60,
};

/** Thrown before anything connects: the fleet cannot run as asked. */
export class FleetError extends Error {
  constructor(
    readonly code: "SIM_PACE" | "SIM_NOT_PROVISIONED" | "SIM_CONNECT",
    message: string,
  ) {
    super(message);
    this.name = "FleetError";
  }
}

/** Connect the fleet (in waves) and start playing the timeline. */
export async function runFleet(
  deps: { readonly log: Logger },
  timeline: Timeline,
  options: FleetOptions,
): Promise<FleetRun> {
  const log = deps.log.child({ module: "sim", scenario: timeline.name });
  const pace = paceProblem(timeline.speed, timeline.batchMs);
  if (pace !== undefined) throw new FleetError("SIM_PACE", pace);
  const missing = timeline.devices.filter((d) => !options.credentials.has(d.device.id));
  if (missing.length > 0) {
    throw new FleetError(
      "SIM_NOT_PROVISIONED",
      `${missing.length} device(s) have no credentials (${missing
        .slice(0, 3)
        .map((d) => d.device.id)
        .join(", ")}${missing.length > 3 ? ", …" : ""}); run citywatch sim --provision first`,
    );
  }

  const counters = createCounters(timeline.devices.length);
  const scheduler = createScheduler({
    onError: (error) => {
      counters.errors += 1;
      log.error({ err: error }, "fleet job failed");
    },
  });
  const jitter = mulberry32(hashSeed(timeline.seed, 0x5e7));
  let t0: number | undefined = undefined;
  const simNow = () =>
    t0 === undefined
      ? timeline.startMs
      : Math.min(timeline.endMs, timeline.startMs + (Date.now() - t0) * timeline.speed);
  const link = { ...DEFAULT_LINK, ...options.link, url: options.url };
  const devices = timeline.devices.map(
    (d) =>
      new VirtualDevice(
        d.device.id,
        d.device.kind,
        options.credentials.get(d.device.id) ?? "",
        link,
        {
          log,
          counters,
          scheduler,
          simNow,
          random: () => jitter.next(),
        },
      ),
  );
  const byId = new Map(devices.map((d) => [d.id, d]));

  // Connect in waves; a device that cannot connect is counted and left out.
  const wave = options.connectWave ?? { size: 200, intervalMs: 250 };
  const connecting: Promise<void>[] = [];
  for (let i = 0; i < devices.length; i += wave.size) {
    for (const device of devices.slice(i, i + wave.size)) connecting.push(device.connect());
    if (i + wave.size < devices.length) await new Promise((r) => setTimeout(r, wave.intervalMs));
  }
  // Wait for the stragglers only so long: a device still connecting after the deadline joins
  // late, its messages waiting in its log meanwhile (they are due by simulated time anyway).
  const settled = connecting.map((p) =>
    p.then(
      () => ({ ok: true as const }),
      (error: Error) => ({ ok: false as const, reason: error.message }),
    ),
  );
  const outcomes = await Promise.race([
    Promise.all(settled),
    new Promise<undefined>((r) =>
      setTimeout(() => r(undefined), options.connectDeadlineMs ?? 30_000),
    ),
  ]);
  if (outcomes !== undefined && devices.length > 0 && outcomes.every((o) => !o.ok)) {
    await Promise.all(devices.map((d) => d.shutdown()));
    const first = outcomes[0];
    throw new FleetError(
      "SIM_CONNECT",
      `no device could connect to ${options.url}: ${first !== undefined && !first.ok ? first.reason : "unknown"}`,
    );
  }
  void Promise.all(settled).then((all) => {
    const reasons = new Map<string, number>();
    for (const o of all) if (!o.ok) reasons.set(o.reason, (reasons.get(o.reason) ?? 0) + 1);
    if (reasons.size > 0)
      log.warn(
        {
          failed: [...reasons.values()].reduce((a, b) => a + b, 0),
          reasons: Object.fromEntries(reasons),
        },
        "devices could not connect",
      );
  });
  counters.connected = devices.filter((d) => d.isConnected).length;
  log.info({ devices: devices.length, connected: counters.connected }, "fleet connected");

  t0 = Date.now();
  const start = t0;
  const realAt = (simMs: number) => start + (simMs - timeline.startMs) / timeline.speed;
  // Each device publishes at its own phase within a batch, so the fleet does not fire at once.
  const phaseMs = (timeline.batchMs / timeline.speed) * 0.5;
  let producing = 0;
  timeline.devices.forEach((planned, i) => {
    const device = devices[i] as VirtualDevice;
    const messages = planned.messages();
    const offset = jitter.next() * phaseMs;
    producing += 1;
    const next = () => {
      const m = messages.next();
      if (m.done === true) {
        producing -= 1;
        return;
      }
      scheduler.at(realAt(m.value.dueMs) + offset, () => {
        if (m.value.skewed) counters.skewed += 1;
        device.enqueue(m.value.uplink);
        next();
      });
    };
    next();
  });

  for (const outage of timeline.linkDowns) {
    const device = byId.get(outage.deviceId);
    if (device === undefined) continue;
    scheduler.at(realAt(outage.fromMs), () => {
      counters.cuts += 1;
      device.cut(realAt(outage.toMs));
    });
  }
  const faults = [...timeline.faults, ...(options.extraFaults ?? [])];
  faults.forEach((fault, index) =>
    scheduler.at(realAt(fault.atMs), () =>
      applyFault(fault, faultRng(timeline.seed, index), {
        devices,
        counters,
        url: options.url,
        simNow,
        log,
      }),
    ),
  );

  let finish: (summary: FleetSummary) => void = () => undefined;
  const done = new Promise<FleetSummary>((resolve) => (finish = resolve));
  let finished = false;
  const end = async (): Promise<FleetSummary> => {
    if (!finished) {
      finished = true;
      scheduler.clear();
      await Promise.all(devices.map((d) => d.shutdown()));
      const pending = devices.reduce((n, d) => n + d.pending, 0);
      const summary: FleetSummary = {
        ...counters,
        scenario: timeline.name,
        pending,
        elapsedMs: Date.now() - start,
        simulatedMs: simNow() - timeline.startMs,
        complete: producing === 0 && pending === 0,
      };
      log.info(summary, "fleet run ended");
      finish(summary);
    }
    return done;
  };

  const drainDeadline = realAt(timeline.endMs) + (options.drainTimeoutMs ?? 120_000);
  const sweep = (s: Scheduler) =>
    s.at(Date.now() + 1_000, () => {
      const now = Date.now();
      for (const d of devices) d.checkResend(now);
      counters.connected = devices.filter((d) => d.isConnected).length;
      const drained = producing === 0 && devices.every((d) => d.pending === 0);
      if (drained || now > drainDeadline) void end();
      else sweep(s);
    });
  sweep(scheduler);

  return { counters, simNow, done, stop: end };
}

interface FaultContext {
  readonly devices: readonly VirtualDevice[];
  readonly counters: FleetCounters;
  readonly url: string;
  readonly simNow: () => number;
  readonly log: Logger;
}

function applyFault(fault: TimedFault, rng: ReturnType<typeof faultRng>, ctx: FaultContext): void {
  const online = ctx.devices.filter((d) => d.isConnected);
  /** `count` devices drawn with replacement: one device may get several of the payloads. */
  const draw = (count: number) =>
    Array.from({ length: count }, () => online[Math.floor(rng.next() * online.length)]).filter(
      (d): d is VirtualDevice => d !== undefined,
    );
  ctx.log.info({ fault: fault.type }, "injecting fault");
  switch (fault.type) {
    case "disconnect_storm":
      for (const d of choose(online, fault.fraction, rng)) {
        ctx.counters.cuts += 1;
        d.cut();
      }
      return;
    case "duplicate_burst":
      for (const d of choose(online, fault.fraction, rng)) d.duplicateLast(fault.copies);
      return;
    case "malformed":
      for (const d of draw(fault.count)) {
        if (fault.variant === "schema") {
          const ts = new Date(ctx.simNow()).toISOString();
          d.enqueueRaw((seq) => schemaInvalidPayload(d.id, d.kind, seq, ts));
          ctx.counters.malformedSchema += 1;
        } else if (d.publishRaw(notJsonPayload(d.id, rng), 1)) {
          ctx.counters.malformedNotJson += 1;
        }
      }
      return;
    case "oversized":
      // QoS 0: the broker closes the connection before reading it, and MQTT.js must not keep
      // it to send again after the reconnect.
      for (const d of draw(fault.count))
        if (d.publishRaw(oversizedPayload(d.id), 0)) ctx.counters.oversized += 1;
      return;
    case "unknown_device":
      for (let i = 0; i < fault.count; i++)
        probeUnknown(ctx, unknownDeviceId(rng), unknownSecret(rng));
      return;
  }
}

/** Try to connect as a device the registry does not hold; the broker must refuse (CONNACK 4). */
function probeUnknown(ctx: FaultContext, id: string, secret: string): void {
  const client = mqtt.connect(ctx.url, {
    protocolVersion: 4,
    clientId: id,
    username: id,
    password: secret,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  let settled = false;
  const settle = (accepted: boolean) => {
    if (settled) return;
    settled = true;
    if (accepted) {
      ctx.counters.unknownAccepted += 1;
      ctx.log.error({ device: id }, "the broker accepted an unregistered device");
    } else ctx.counters.unknownRefused += 1;
    client.end(true);
  };
  client.once("connect", () => settle(true));
  // CONNACK 4, or the connection closed without one: refused either way.
  client.once("error", () => settle(false));
  client.once("close", () => settle(false));
}
