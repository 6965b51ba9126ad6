/**
 * One virtual device on its own MQTT connection, speaking the device protocol of
 * docs/protocol.md: client id = username = device id, Will on its status topic, birth after
 * every connect, data batches with QoS 1 and a `seq` from 1, and the commit protocol — every
 * message stays in a bounded in-memory log until a commit covers it, at most `windowSize` are in
 * flight, the in-flight ones are re-sent after a timeout, and after a reconnect everything
 * uncommitted is re-sent with `replay: true` (§6.3, §6.4).
 */
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import {
  Commit,
  type DeviceStatus,
  PROTOCOL_VERSION,
  type SensorKind,
  type Uplink,
  deviceTopic,
} from "../../contracts/index.js";
import type { Scheduler } from "./scheduler.js";
import type { FleetCounters } from "./counters.js";

export interface DeviceLinkOptions {
  readonly url: string;
  /** Messages sent and not yet committed, at most (docs/protocol.md §6.3 suggests ≤ 32). */
  readonly windowSize: number;
  /** Re-send the in-flight messages when the oldest is uncommitted this long (§6.3: 30 s). */
  readonly resendAfterMs: number;
  /** Messages kept uncommitted at most; at the bound the oldest is dropped and counted (§6.3). */
  readonly maxLogMessages: number;
  /** How long to wait for the retained commit after connecting before sending (§6.4 step 4). */
  readonly commitWaitMs: number;
  /** Reconnect delay after a lost connection, drawn uniformly from [min, max] (§2.5). */
  readonly reconnectMs: readonly [number, number];
  /** The doubling stops here (default RECONNECT_MAX_MS, 5 minutes). */
  readonly reconnectMaxMs?: number;
  readonly keepaliveS: number;
}

export interface DeviceDeps {
  readonly log: Logger;
  readonly counters: FleetCounters;
  readonly scheduler: Scheduler;
  /** The simulated clock, for status timestamps. */
  readonly simNow: () => number;
  /** Uniform [0, 1) for reconnect jitter. */
  readonly random: () => number;
}

interface LogEntry {
  readonly seq: number;
  /** The message as first sent; a replay re-serializes it with `replay: true`. */
  readonly uplink: Uplink | undefined;
  json: string;
  readonly readings: number;
  /** When it was last sent on the current connection; undefined: not yet. */
  sentAt: number | undefined;
  /** Sent at least once (a later send is a re-send). */
  sent: boolean;
}

const AGENT = { name: "citywatch-sim", version: "0.1.0" };
/** Network failures tolerated on the very first connect before the device is left out. */
const FIRST_CONNECT_ATTEMPTS = 5;
/** How long each step of a clean shutdown may take. */
const SHUTDOWN_STEP_MS = 5_000;

/** The longest wait between reconnect attempts (docs/protocol.md §2.5: doubling up to 5 minutes). */
export const RECONNECT_MAX_MS = 300_000;

/**
 * The wait before reconnecting after a lost connection or a failed attempt (docs/protocol.md
 * §2.5): uniform in `[min, max]` at the first attempt, the range doubling with each failed one
 * after it (`failed`: attempts failed since the last connection) up to `maxMs`, drawn
 * anew every time, so a fleet cut off at once comes back spread over the range, and a broker that
 * refuses or drops a storm of CONNECTs sees it thin out. Exported for bench/fleet.ts, whose
 * raw-socket devices reconnect the same way.
 */
export function reconnectDelayMs(
  range: readonly [number, number],
  random: () => number,
  failed = 0,
  maxMs = RECONNECT_MAX_MS,
): number {
  const [min, max] = range;
  const scale = 2 ** Math.min(Math.max(0, failed), 20);
  return Math.min(Math.max(maxMs, min), (min + random() * (max - min)) * scale);
}

/** Whether `promise` settled within `ms`; its outcome is ignored (best effort at shutdown). */
async function within(promise: Promise<unknown>, ms = SHUTDOWN_STEP_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([settled, late]);
  clearTimeout(timer);
  return result;
}

export class VirtualDevice {
  private client: MqttClient | undefined;
  private readonly entries = new Map<number, LogEntry>();
  private nextSeq = 1;
  private committed = 0;
  private sentUpTo = 0;
  private everSent = false;
  private backoff = 1;
  /** Reconnect attempts since the last connection: each doubles the next wait (§2.5). */
  private failedAttempts = 0;
  private connected = false;
  private awaitingCommit = false;
  private connects = 0;
  private holdUntil = 0;
  private firstAttempts = 0;
  /** Messages this device dropped at its log bound, reported in its birth (§5 `log.dropped`). */
  private dropped = 0;
  private stopping = false;
  private lastSent: LogEntry | undefined;
  private ready: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private readonly topics: { data: string; status: string; commit: string; config: string };

  constructor(
    readonly id: string,
    readonly kind: SensorKind,
    private readonly secret: string,
    private readonly options: DeviceLinkOptions,
    private readonly deps: DeviceDeps,
  ) {
    this.topics = {
      data: deviceTopic(id, "data"),
      status: deviceTopic(id, "status"),
      commit: deviceTopic(id, "commit"),
      config: deviceTopic(id, "config"),
    };
  }

  /** Messages not yet covered by a commit. */
  get pending(): number {
    return this.entries.size;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Connect; resolves once subscribed and the retained commit (if any) is known. */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ready = { resolve, reject };
      const will: DeviceStatus = this.status("offline", "lost");
      const client = mqtt.connect(this.options.url, {
        protocolVersion: 4,
        clientId: this.id,
        username: this.id,
        password: this.secret,
        clean: false,
        keepalive: this.options.keepaliveS,
        connectTimeout: 30_000,
        // Reconnects are ours (jittered, held during a link outage), not MQTT.js's fixed period.
        reconnectPeriod: 0,
        will: {
          topic: this.topics.status,
          payload: Buffer.from(JSON.stringify(will)),
          qos: 1,
          retain: true,
        },
      });
      this.client = client;
      client.on("connect", () => this.onConnect());
      client.on("message", (topic, payload) => this.onMessage(topic, payload));
      client.on("close", () => this.onClose());
      client.on("error", (error) => {
        this.deps.counters.errors += 1;
        this.deps.log.debug({ device: this.id, err: error }, "device connection error");
        // A refused CONNECT (CONNACK 1-5: credentials, disabled, protocol) is configuration, not
        // load: retrying does not help (docs/protocol.md §2.5), so the first connect fails.
        const refused = typeof (error as { code?: unknown }).code === "number";
        if (refused && this.connects === 0) this.failFirstConnect(error);
      });
    });
  }

  private failFirstConnect(error: Error): void {
    this.stopping = true;
    this.ready?.reject(error);
    this.ready = undefined;
    this.client?.end(true);
  }

  /** Add a planned message to the log with the next `seq` and send it when the window allows. */
  enqueue(uplink: Uplink): void {
    const seq = this.nextSeq++;
    const message = { ...uplink, seq } as Uplink;
    this.append({
      seq,
      uplink: message,
      json: JSON.stringify(message),
      readings: message.readings.length,
      sentAt: undefined,
      sent: false,
    });
  }

  /** Add a message of the device's own (a fault payload) under the next `seq`. */
  enqueueRaw(payload: (seq: number) => string): void {
    const seq = this.nextSeq++;
    this.append({
      seq,
      uplink: undefined,
      json: payload(seq),
      readings: 0,
      sentAt: undefined,
      sent: false,
    });
  }

  /** Publish bytes that are not part of the log (no `seq` taken): garbage, oversized. */
  publishRaw(payload: string, qos: 0 | 1): boolean {
    if (!this.connected || this.client === undefined) return false;
    this.client.publish(this.topics.data, payload, { qos }, (error) => {
      if (error) this.deps.counters.errors += 1;
    });
    return true;
  }

  /** Send the last sent message again `copies` times, same bytes, same `seq`. */
  duplicateLast(copies: number): number {
    const last = this.lastSent;
    if (last === undefined || !this.connected) return 0;
    for (let i = 0; i < copies; i++) this.publish(last, true);
    return copies;
  }

  /** Cut the TCP connection without DISCONNECT (the broker publishes the Will); reconnect later. */
  cut(holdUntilMs = 0): void {
    this.holdUntil = Math.max(this.holdUntil, holdUntilMs);
    this.client?.stream.destroy();
  }

  /** Re-send the in-flight messages if the oldest has waited too long (§6.3), with back-off. */
  checkResend(nowMs: number): void {
    if (!this.connected || this.awaitingCommit || this.sentUpTo <= this.committed) return;
    let oldest: LogEntry | undefined;
    for (let seq = this.committed + 1; seq <= this.sentUpTo && oldest === undefined; seq++)
      oldest = this.entries.get(seq);
    if (oldest?.sentAt === undefined) return;
    if (nowMs - oldest.sentAt < this.options.resendAfterMs * this.backoff) return;
    for (let seq = this.committed + 1; seq <= this.sentUpTo; seq++) {
      const entry = this.entries.get(seq);
      if (entry !== undefined) this.publish(entry);
    }
    // §6.3: 60 s, 120 s, … up to 5 minutes when the commit does not move.
    this.backoff = Math.min(this.backoff * 2, 10);
  }

  /** Clean shutdown: `offline`/`shutdown` retained, then DISCONNECT (§5). */
  async shutdown(): Promise<void> {
    this.stopping = true;
    const client = this.client;
    if (client === undefined) return;
    // Each step is bounded: a PUBACK that never comes (the connection died meanwhile, and
    // MQTT.js keeps the message for a reconnect that will not happen) must not hold the fleet.
    if (this.connected) {
      const status = JSON.stringify(this.status("offline", "shutdown"));
      await within(client.publishAsync(this.topics.status, status, { qos: 1, retain: true }));
    }
    if (!(await within(client.endAsync(!this.connected)))) await within(client.endAsync(true));
  }

  private append(entry: LogEntry): void {
    if (this.entries.size >= this.options.maxLogMessages) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
      this.dropped += 1;
      this.deps.counters.dropped += 1;
    }
    this.entries.set(entry.seq, entry);
    this.pump();
  }

  private status(
    state: "online" | "offline",
    reason: NonNullable<DeviceStatus["reason"]>,
  ): DeviceStatus {
    const first = this.entries.values().next().value;
    return {
      v: PROTOCOL_VERSION,
      deviceId: this.id as DeviceStatus["deviceId"],
      state,
      ts: new Date(this.deps.simNow()).toISOString(),
      reason,
      ...(reason === "lost"
        ? {}
        : {
            agent: AGENT,
            log: {
              pending: this.entries.size,
              dropped: this.dropped,
              ...(first?.uplink?.readings[0] !== undefined
                ? { oldestPendingTs: first.uplink.readings[0].ts }
                : {}),
            },
          }),
    };
  }

  private onConnect(): void {
    const client = this.client;
    if (client === undefined) return;
    this.connected = true;
    this.failedAttempts = 0;
    this.connects += 1;
    if (this.connects > 1) {
      this.deps.counters.reconnects += 1;
      // §6.4: everything uncommitted goes again, oldest first, marked as a replay.
      for (const entry of this.entries.values()) {
        if (entry.uplink !== undefined)
          entry.json = JSON.stringify({ ...entry.uplink, replay: true });
        entry.sentAt = undefined;
      }
      this.sentUpTo = this.committed;
    }
    this.awaitingCommit = true;
    client.subscribe([this.topics.commit, this.topics.config], { qos: 1 }, (error) => {
      if (error) this.deps.counters.errors += 1;
    });
    client.publish(
      this.topics.status,
      JSON.stringify(this.status("online", this.connects > 1 ? "reconnect" : "startup")),
      { qos: 1, retain: true },
    );
    const connection = this.connects;
    this.deps.scheduler.at(Date.now() + this.options.commitWaitMs, () => {
      if (this.connects === connection) this.endCommitWait();
    });
  }

  private endCommitWait(): void {
    if (!this.awaitingCommit) return;
    this.awaitingCommit = false;
    if (this.ready !== undefined) {
      this.ready.resolve();
      this.ready = undefined;
    }
    this.pump();
  }

  private onClose(): void {
    this.connected = false;
    this.awaitingCommit = false;
    if (this.stopping || this.client === undefined) return;
    if (this.connects === 0) {
      // The first connect failed on the network (reset, timeout: a CONNECT storm at the
      // broker): retry a few times with jitter before giving the device up.
      this.firstAttempts += 1;
      if (this.firstAttempts >= FIRST_CONNECT_ATTEMPTS) {
        this.failFirstConnect(new Error(`no connection after ${this.firstAttempts} attempts`));
        return;
      }
    }
    const at = Math.max(
      Date.now() +
        reconnectDelayMs(
          this.options.reconnectMs,
          this.deps.random,
          this.failedAttempts,
          this.options.reconnectMaxMs,
        ),
      this.holdUntil,
    );
    this.failedAttempts += 1;
    this.deps.scheduler.at(at, () => {
      if (!this.stopping && !this.connected) this.client?.reconnect();
    });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.commit) return; // config: the simulator applies none (documented)
    let body: unknown;
    try {
      body = JSON.parse(payload.toString("utf8"));
    } catch {
      this.deps.counters.errors += 1;
      return;
    }
    const commit = Commit.safeParse(body);
    if (!commit.success || commit.data.deviceId !== this.id) {
      this.deps.counters.errors += 1;
      return;
    }
    this.applyCommit(commit.data.committedSeq);
    this.endCommitWait();
  }

  private applyCommit(committedSeq: number): void {
    if (committedSeq <= this.committed) return;
    const lastAssigned = this.nextSeq - 1;
    if (committedSeq > lastAssigned) {
      if (!this.everSent && this.entries.size === 0) {
        // A device the system already knows (an earlier run): continue above its commit
        // instead of sending seqs the ingest would drop as duplicates (§6.8).
        this.nextSeq = committedSeq + 1;
        this.committed = committedSeq;
        this.sentUpTo = committedSeq;
        return;
      }
      // §6.2: a commit beyond anything sent means the counter went backwards; do not trim.
      this.deps.counters.commitAhead += 1;
      return;
    }
    for (let seq = this.committed + 1; seq <= committedSeq; seq++) {
      const entry = this.entries.get(seq);
      if (entry === undefined) continue;
      this.entries.delete(seq);
      this.deps.counters.committedMessages += 1;
      this.deps.counters.committedReadings += entry.readings;
    }
    this.committed = committedSeq;
    this.sentUpTo = Math.max(this.sentUpTo, committedSeq);
    this.backoff = 1;
    this.pump();
  }

  private pump(): void {
    if (!this.connected || this.awaitingCommit) return;
    const last = this.nextSeq - 1;
    while (this.sentUpTo < last && this.sentUpTo - this.committed < this.options.windowSize) {
      this.sentUpTo += 1;
      const entry = this.entries.get(this.sentUpTo);
      // A seq dropped at the log bound is skipped: the ingest's gap timeout passes over it.
      if (entry !== undefined) this.publish(entry);
    }
  }

  /** Publish a logged message; `duplicate` marks an injected extra copy (not a re-send). */
  private publish(entry: LogEntry, duplicate = false): void {
    const client = this.client;
    if (client === undefined) return;
    const c = this.deps.counters;
    if (duplicate) c.duplicatesSent += 1;
    else if (entry.sent) c.resent += 1;
    else {
      c.published += 1;
      c.publishedReadings += entry.readings;
    }
    entry.sent = true;
    entry.sentAt = Date.now();
    this.everSent = true;
    this.lastSent = entry;
    client.publish(this.topics.data, entry.json, { qos: 1 }, (error) => {
      if (error) this.deps.counters.errors += 1;
    });
  }
}
