import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { Logger } from "pino";
import {
  Commit,
  type ConfigAck,
  type DeviceStatus,
  deviceTopic,
  type EdgeConfig,
  PROTOCOL_VERSION,
  type SensorKind,
} from "../../contracts/index.js";
import type { LoggedMessage, WriteAheadLog } from "../wal/log.js";
import { backoffMs } from "./backoff.js";

/**
 * The uplink of one device: its own MQTT.js connection (client id = user name = device id,
 * password = secret; docs/protocol.md 2.3), sending the device's write-ahead log and trimming it
 * only on the ingest's commit (6.1).
 *
 * - Connect: clean session 0, a retained Will `offline`/`lost` stamped with the connect time (5),
 *   subscribe to the own `commit` and `config`, publish the retained birth with the log figures.
 *   A SUBACK (or birth PUBACK) that does not come within `subscribeTimeoutMs` drops the
 *   connection (warn) and the link connects again with back-off: a broker that never answers
 *   the SUBSCRIBE would otherwise leave the device connected and sending nothing.
 * - After connecting, wait up to `commitWaitMs` for the retained commit (6.4 step 4), then send
 *   every uncommitted message oldest first; after an outage (a lost connection or failed
 *   attempts) the log is marked replay first, so the backlog goes out with `replay: true` (4.3).
 * - At most `window` messages sent and uncommitted (6.3). When the oldest has waited
 *   `resendTimeoutMs` for a commit, the in-flight messages are re-sent in seq order, unchanged; the
 *   timeout doubles while the commit does not move, up to `resendMaxMs`.
 * - A lost connection is retried by this class, not by MQTT.js (whose period is fixed): the delay
 *   grows exponentially with full jitter between `reconnectMinMs` and `reconnectMaxMs`.
 * - Each connection is a new MQTT.js client: MQTT.js keeps unacknowledged publishes only in
 *   memory, and the log, not the client, is what re-sends.
 * - `stop()`: the retained `offline`/`shutdown` status (awaiting its PUBACK), then DISCONNECT.
 *
 * The sent time of a message is kept in memory only (not `WriteAheadLog.markSent`): after a
 * restart every uncommitted message is re-sent anyway, and an fsync per publish would cost the
 * drain rate more than it tells.
 */

export interface DeviceLinkOptions {
  readonly url: string;
  readonly deviceId: string;
  readonly kind: SensorKind;
  readonly secret: string;
  readonly keepaliveS: number;
  readonly connectTimeoutMs: number;
  /**
   * How long the SUBACK of the start-up SUBSCRIBE (and the birth's PUBACK) may take before the
   * connection is dropped, logged at warn, and made again; the connect timeout when unset.
   */
  readonly subscribeTimeoutMs?: number;
  /** CA bundle and certificate checking for mqtts:// and wss://. */
  readonly tls: { readonly ca?: Buffer; readonly rejectUnauthorized: boolean };
  readonly uplink: EdgeConfig["uplink"];
  readonly agent: { readonly name: string; readonly version: string };
}

export interface DeviceLinkDeps {
  readonly log: Logger;
  readonly wal: WriteAheadLog;
  readonly now: () => number;
  readonly random?: () => number;
  /** A message on the device's config topic, raw (the agent validates it). */
  readonly onConfig: (payload: Buffer) => void;
}

export interface DeviceLinkStats {
  readonly connected: boolean;
  readonly connects: number;
  readonly inflight: number;
  readonly sent: number;
  readonly resent: number;
  readonly committedSeq: number;
  /** Commits refused: not JSON, not the contract, another device's, or ahead of the log. */
  readonly badCommits: number;
}

class SubscribeTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no SUBACK within ${timeoutMs} ms`);
    this.name = "SubscribeTimeoutError";
  }
}

/** How often the re-send timeout and the status refresh are checked. */
const TICK_MS = 500;
/** The longest `stop()` waits for the shutdown status's PUBACK. */
const STOP_WAIT_MS = 3_000;

export class DeviceLink {
  private client: MqttClient | undefined;
  private connected = false;
  /** True once the retained commit arrived or `commitWaitMs` passed on this connection. */
  private ready = false;
  private stopping = false;
  private everConnected = false;
  /** A connection was lost or an attempt failed since the last connection: send as replay. */
  private outage = false;
  private attempt = 0;
  /** seq → when it was last sent, for the messages of this connection not yet committed. */
  private readonly inflight = new Map<number, number>();
  /** The highest seq sent on this connection. */
  private sentUpTo = 0;
  private committedSeq = 0;
  private resendAfterMs: number;
  private lastStatusAt = 0;
  private pumpTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private commitWaitTimer: NodeJS.Timeout | undefined;
  private readonly tick: NodeJS.Timeout;
  private counters = { connects: 0, sent: 0, resent: 0, badCommits: 0 };
  private readonly topics: {
    data: string;
    status: string;
    commit: string;
    config: string;
    ack: string;
  };
  private readonly log: Logger;

  constructor(
    private readonly options: DeviceLinkOptions,
    private readonly deps: DeviceLinkDeps,
  ) {
    const id = options.deviceId;
    this.topics = {
      data: deviceTopic(id, "data"),
      status: deviceTopic(id, "status"),
      commit: deviceTopic(id, "commit"),
      config: deviceTopic(id, "config"),
      ack: deviceTopic(id, "config-ack"),
    };
    this.log = deps.log.child({ module: "uplink", deviceId: id });
    this.resendAfterMs = options.uplink.resendTimeoutMs;
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
  }

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    this.connect();
  }

  /** New readings are in the log: send them soon (after `lingerMs`, so neighbours travel together). */
  notify(): void {
    if (this.pumpTimer !== undefined || !this.ready) return;
    this.pumpTimer = setTimeout(() => {
      this.pumpTimer = undefined;
      this.pump();
    }, this.options.uplink.lingerMs);
  }

  /** Answer a configuration revision (protocol 7.2). Dropped if offline: the retained config comes again. */
  publishConfigAck(ack: ConfigAck): void {
    // The retained config arrives before the birth is out: CONNACK is what counts here.
    if (this.client?.connected !== true) return;
    this.client.publish(this.topics.ack, JSON.stringify(ack), { qos: 1 }, (error) => {
      if (error !== undefined) this.log.warn({ err: error }, "config-ack not sent");
    });
  }

  stats(): DeviceLinkStats {
    return {
      connected: this.connected,
      connects: this.counters.connects,
      inflight: this.inflight.size,
      sent: this.counters.sent,
      resent: this.counters.resent,
      committedSeq: this.committedSeq,
      badCommits: this.counters.badCommits,
    };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.tick);
    for (const timer of [this.pumpTimer, this.reconnectTimer, this.commitWaitTimer]) {
      if (timer !== undefined) clearTimeout(timer);
    }
    const client = this.client;
    if (client === undefined) return;
    if (this.connected) {
      const death = this.status("offline", "shutdown");
      await Promise.race([
        client.publishAsync(this.topics.status, death, { qos: 1, retain: true }),
        new Promise((resolve) => setTimeout(resolve, STOP_WAIT_MS)),
      ]).catch((error: unknown) => this.log.warn({ err: error }, "shutdown status not sent"));
      // DISCONNECT; a broker that does not answer does not hold the stop up.
      await Promise.race([
        client.endAsync(),
        new Promise((resolve) => setTimeout(resolve, STOP_WAIT_MS)),
      ]).catch(() => undefined);
      client.end(true);
    } else {
      client.end(true);
    }
    this.connected = false;
  }

  private connect(): void {
    if (this.stopping) return;
    const { options } = this;
    const will = this.status("offline", "lost");
    const clientOptions: IClientOptions = {
      protocolVersion: 4,
      clientId: options.deviceId,
      username: options.deviceId,
      password: options.secret,
      clean: false,
      keepalive: options.keepaliveS,
      connectTimeout: options.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      will: { topic: this.topics.status, payload: Buffer.from(will), qos: 1, retain: true },
      rejectUnauthorized: options.tls.rejectUnauthorized,
      ...(options.tls.ca !== undefined ? { ca: options.tls.ca } : {}),
    };
    const client = mqtt.connect(options.url, clientOptions);
    this.client = client;
    client.on("connect", () => void this.onConnect(client));
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
    client.on("error", (error) => this.log.warn({ err: error }, "MQTT error"));
    client.on("close", () => this.onClose(client));
  }

  private async onConnect(client: MqttClient): Promise<void> {
    this.attempt = 0;
    this.counters.connects++;
    if (this.outage) {
      try {
        const marked = this.deps.wal.markReplay(this.options.deviceId);
        this.log.info({ marked }, "connected after an outage: the backlog goes out as replay");
      } catch (error) {
        // The log could not be written: the backlog goes out unmarked rather than not at all.
        this.log.error({ err: error }, "backlog not marked replay");
      }
    }
    this.outage = false;
    const timeoutMs = this.options.subscribeTimeoutMs ?? this.options.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SubscribeTimeoutError(timeoutMs)), timeoutMs);
    });
    try {
      await Promise.race([
        (async () => {
          await client.subscribeAsync([this.topics.commit, this.topics.config], { qos: 1 });
          await client.publishAsync(
            this.topics.status,
            this.status("online", this.everConnected ? "reconnect" : "startup"),
            { qos: 1, retain: true },
          );
        })(),
        timeout,
      ]);
    } catch (error) {
      if (error instanceof SubscribeTimeoutError)
        this.log.warn({ timeoutMs }, "no SUBACK (or birth PUBACK) in time; reconnecting");
      else this.log.warn({ err: error }, "subscribe or birth failed; reconnecting");
      client.end(true);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (client !== this.client) return;
    this.connected = true;
    this.everConnected = true;
    this.lastStatusAt = this.deps.now();
    this.inflight.clear();
    this.sentUpTo = 0;
    this.resendAfterMs = this.options.uplink.resendTimeoutMs;
    // The retained commit usually arrived with the SUBACK already (then `ready` is set).
    if (this.ready) this.pump();
    else {
      this.commitWaitTimer = setTimeout(() => this.becomeReady(), this.options.uplink.commitWaitMs);
    }
  }

  private becomeReady(): void {
    if (this.commitWaitTimer !== undefined) clearTimeout(this.commitWaitTimer);
    this.commitWaitTimer = undefined;
    if (this.ready) return;
    this.ready = true;
    this.pump();
  }

  private onClose(client: MqttClient): void {
    if (client !== this.client) return;
    const wasConnected = this.connected;
    this.connected = false;
    this.ready = false;
    this.inflight.clear();
    this.sentUpTo = 0;
    this.outage = true;
    if (this.commitWaitTimer !== undefined) clearTimeout(this.commitWaitTimer);
    this.commitWaitTimer = undefined;
    client.removeAllListeners();
    client.on("error", () => undefined);
    client.end(true);
    if (this.stopping) return;
    const delay = backoffMs(
      this.attempt++,
      { minMs: this.options.uplink.reconnectMinMs, maxMs: this.options.uplink.reconnectMaxMs },
      this.deps.random,
    );
    if (wasConnected) this.log.warn({ retryInMs: delay }, "connection lost");
    else this.log.debug({ retryInMs: delay, attempt: this.attempt }, "connect failed");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topics.config) {
      this.deps.onConfig(payload);
      return;
    }
    if (topic !== this.topics.commit) return;
    let parsed: ReturnType<typeof Commit.safeParse>;
    try {
      parsed = Commit.safeParse(JSON.parse(payload.toString("utf8")));
    } catch (error) {
      this.badCommit({ problem: (error as Error).message });
      return;
    }
    if (!parsed.success) {
      this.badCommit({ problems: parsed.error.issues.map((i) => i.message) });
      return;
    }
    const commit = parsed.data;
    if (commit.deviceId !== this.options.deviceId) {
      this.badCommit({ problem: `commit for ${commit.deviceId}` });
      return;
    }
    let result: ReturnType<WriteAheadLog["commit"]>;
    try {
      result = this.deps.wal.commit(this.options.deviceId, commit.committedSeq);
    } catch (error) {
      // The log could not be written (disk full, I/O error): nothing trimmed; the next commit
      // (they are re-published, and retained) tries again.
      this.log.error(
        { err: error, committedSeq: commit.committedSeq },
        "commit not applied to the log",
      );
      return;
    }
    switch (result.outcome) {
      case "trimmed":
        this.committedSeq = commit.committedSeq;
        for (const seq of this.inflight.keys())
          if (seq <= commit.committedSeq) this.inflight.delete(seq);
        this.resendAfterMs = this.options.uplink.resendTimeoutMs;
        this.log.debug({ committedSeq: commit.committedSeq, trimmed: result.trimmed }, "commit");
        break;
      case "stale":
        this.committedSeq = Math.max(this.committedSeq, commit.committedSeq);
        break;
      case "ahead":
        // The counter went backwards (protocol 4.2): say so loudly, trim nothing.
        this.badCommit({
          committedSeq: commit.committedSeq,
          problem: "commit ahead of every seq in the log",
        });
        break;
    }
    if (!this.ready) this.becomeReady();
    else this.pump();
  }

  private badCommit(detail: Record<string, unknown>): void {
    this.counters.badCommits++;
    this.log.error(detail, "commit refused");
  }

  /** Sends logged messages after the last one sent, while the window has room. */
  private pump(): void {
    const client = this.client;
    if (!this.connected || !this.ready || client === undefined) return;
    const room = this.options.uplink.window - this.inflight.size;
    if (room <= 0) return;
    const messages = this.readLog(Math.max(this.sentUpTo, this.committedSeq), room);
    const now = this.deps.now();
    for (const message of messages) {
      this.send(client, message);
      this.inflight.set(message.seq, now);
      this.sentUpTo = message.seq;
      this.counters.sent++;
    }
  }

  /** Messages to send; none when the log cannot be read now (the next tick tries again). */
  private readLog(afterSeq: number, limit: number): LoggedMessage[] {
    try {
      return this.deps.wal.pending(this.options.deviceId, { afterSeq, limit });
    } catch (error) {
      this.log.error({ err: error }, "log not readable; sending paused until the next tick");
      return [];
    }
  }

  private send(client: MqttClient, message: LoggedMessage): void {
    const envelope = {
      v: PROTOCOL_VERSION,
      deviceId: this.options.deviceId,
      seq: message.seq,
      kind: this.options.kind,
      ...(message.replay ? { replay: true } : {}),
      readings: message.readings,
    };
    // A publish that fails (the connection closed) stays in the log and goes again after reconnect.
    client.publish(this.topics.data, JSON.stringify(envelope), { qos: 1 }, (error) => {
      if (error !== undefined)
        this.log.debug({ seq: message.seq, err: error }, "publish not acknowledged");
    });
  }

  private onTick(): void {
    const client = this.client;
    if (!this.connected || !this.ready || client === undefined) return;
    const now = this.deps.now();
    if (now - this.lastStatusAt >= this.options.uplink.statusRefreshMs) {
      this.lastStatusAt = now;
      client.publish(this.topics.status, this.status("online"), { qos: 1, retain: true });
    }
    if (this.inflight.size === 0) {
      this.pump();
      return;
    }
    const oldest = Math.min(...this.inflight.values());
    if (now - oldest < this.resendAfterMs) return;
    const seqs = [...this.inflight.keys()].sort((a, b) => a - b);
    const first = seqs[0] ?? 1;
    const messages = this.readLog(first - 1, seqs.length);
    for (const message of messages) {
      if (!this.inflight.has(message.seq)) continue;
      this.send(client, message);
      this.inflight.set(message.seq, now);
      this.counters.resent++;
    }
    this.log.info(
      { messages: seqs.length, firstSeq: first, waitedMs: now - oldest },
      "no commit: re-sent the in-flight messages",
    );
    this.resendAfterMs = Math.min(this.options.uplink.resendMaxMs, this.resendAfterMs * 2);
  }

  private status(state: "online" | "offline", reason?: DeviceStatus["reason"]): string {
    const status: DeviceStatus = {
      v: PROTOCOL_VERSION,
      deviceId: this.options.deviceId as DeviceStatus["deviceId"],
      state,
      ts: new Date(this.deps.now()).toISOString(),
      ...(reason !== undefined ? { reason } : {}),
      agent: this.options.agent,
      // The Will cannot know the log at the time of death; it carries no figures.
      ...(reason === "lost" ? {} : { log: this.deps.wal.stats(this.options.deviceId) }),
    };
    return JSON.stringify(status);
  }
}
