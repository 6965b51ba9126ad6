/**
 * A device process of the fleet bench: a few thousand devices, each on its own raw TCP socket,
 * speaking the device protocol of docs/protocol.md at a few µs of CPU per packet (MQTT.js costs
 * about 38 µs per message, too much for 10,000 devices beside the broker on two cores):
 *
 * - CONNECT with client id = username = device id, its secret, clean session 0, keepalive, and
 *   the Will on its status topic (§2.3); then SUBSCRIBE to its commit and config topics, the
 *   retained birth on its status topic, and its readings, QoS 1 (§1);
 * - a reading stays in the device's log until it is confirmed: by the commit that covers it
 *   (citywatch, §6), or by its PUBACK where there is no commit (Mosquitto); after a reconnect
 *   everything unconfirmed is sent again with `replay: true` (§4.3, §6.4);
 * - a lost connection or a failed attempt is retried after the simulator's jittered delay
 *   (reconnectDelayMs of simulators/fleet/device.ts, drawn from a seeded generator).
 *
 * Packets out are encoded with mqtt-packet (CONNECT, SUBSCRIBE, PUBLISH) or by hand (PUBACK);
 * packets in are cut from the stream by hand, and only the few kinds a device receives are read.
 * Started by bench/fleet.ts with child_process.fork; talks over IPC (bench/fleet-protocol.ts).
 */
import { connect, type Socket } from "node:net";
import { generate } from "mqtt-packet";
import { deviceTopic, PROTOCOL_VERSION } from "../contracts/index.js";
import { reconnectDelayMs } from "../simulators/fleet/device.js";
import { hashSeed, mulberry32 } from "../simulators/models/index.js";
import {
  answerRequests,
  type DevicesMessage,
  DevicesRequest,
  type DevicesSample,
  type DevicesSetup,
  type FleetDevice,
} from "./fleet-protocol.js";

/** MQTT 3.1.1 packet types (the high nibble of the first byte). */
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBACK = 9;
const PINGRESP = 13;
/** How often the cadence looks for readings that are due. */
const TICK_MS = 10;

const AGENT = { name: "citywatch-bench-fleet", version: "1" };

interface Entry {
  readonly seq: number;
  /** The reading's time (its due time), epoch ms. */
  readonly ts: number;
  /** When it was first published; undefined: not yet. */
  firstSentAt: number | undefined;
}

/** Counters of the whole process. */
const counts = {
  produced: 0,
  sent: 0,
  resent: 0,
  confirmed: 0,
  attempts: 0,
  drops: 0,
  oddities: 0,
  failures: {} as Record<string, number>,
};

function fail(why: string): void {
  counts.failures[why] = (counts.failures[why] ?? 0) + 1;
}

/** Confirmation latencies (ms from first send) since the parent last asked. */
let latencies: number[] = [];

let setup: DevicesSetup;
let random: () => number;

/** Uniform in [0, 1), seeded: the same run draws the same delays. */
function randomSource(seed: number): () => number {
  const rng = mulberry32(seed);
  return () => rng.next();
}

function pubackPacket(packetId: number): Buffer {
  return Buffer.from([PUBACK << 4, 2, packetId >> 8, packetId & 0xff]);
}

/** The `committedSeq` of a commit message (docs/protocol.md §6), or undefined. */
function committedSeqOf(text: string): number | undefined {
  try {
    const seq = (JSON.parse(text) as { committedSeq?: unknown }).committedSeq;
    return typeof seq === "number" ? seq : undefined;
  } catch {
    return undefined;
  }
}

/** Quiet values (far below every rule's limit), varying a little with seq and device. */
function values(kind: FleetDevice["kind"], seq: number, index: number): Record<string, number> {
  return kind === "dust"
    ? { pm10: 40 + ((seq * 7 + index) % 40), pm2_5: 20 + ((seq * 3 + index) % 20) }
    : { ch4: ((seq + index) % 10) / 10, o2: 20.9, co: (seq + index) % 5 };
}

class Device {
  private socket: Socket | undefined;
  private state: "down" | "connecting" | "up" = "down";
  private subscribed = false;
  private connects = 0;
  private nextPacketId = 1;
  /** Readings not yet confirmed, in seq order. */
  private readonly log: Entry[] = [];
  /** Data publishes waiting for their PUBACK, by packet id. */
  private readonly inflight = new Map<number, Entry>();
  private lastSeq = 0;
  /** Bytes of a packet split across reads. */
  private rest: Buffer | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Attempts failed since the last connection: each doubles the next wait, as the simulator's. */
  private failed = 0;
  /** Called once when a connection attempt ends, accepted or not (the connect limiter). */
  private settled: (() => void) | undefined;
  /** Since the last connect or cut: the milestones of the device's way back. */
  connackAt: number | undefined;
  subackAt: number | undefined;
  caughtUpAt: number | undefined;
  /** Readings up to this seq must be confirmed for the device to be caught up. */
  private upTarget = 0;
  /** The cadence: when the next reading is due. */
  nextDueMs = 0;
  private readonly topics: { data: string; status: string; commit: string; config: string };

  constructor(
    readonly spec: FleetDevice,
    readonly index: number,
  ) {
    this.topics = {
      data: deviceTopic(spec.id, "data"),
      status: deviceTopic(spec.id, "status"),
      commit: deviceTopic(spec.id, "commit"),
      config: deviceTopic(spec.id, "config"),
    };
  }

  get isUp(): boolean {
    return this.state === "up";
  }

  get isSubscribed(): boolean {
    return this.state === "up" && this.subscribed;
  }

  get seq(): number {
    return this.lastSeq;
  }

  private packetId(): number {
    const id = this.nextPacketId;
    this.nextPacketId = id === 65_535 ? 1 : id + 1;
    return id;
  }

  private status(state: "online" | "offline", reason: "startup" | "reconnect" | "lost"): Buffer {
    return Buffer.from(
      JSON.stringify({
        v: PROTOCOL_VERSION,
        deviceId: this.spec.id,
        state,
        ts: new Date().toISOString(),
        reason,
        ...(reason === "lost"
          ? {}
          : { agent: AGENT, log: { pending: this.log.length, dropped: 0 } }),
      }),
    );
  }

  /** Open a connection now; `settled` is called once the attempt is accepted or has failed. */
  connect(settled?: () => void): void {
    this.settled = settled;
    this.state = "connecting";
    counts.attempts++;
    const socket = connect({ host: setup.host, port: setup.port, noDelay: true });
    this.socket = socket;
    this.rest = undefined;
    let lastError: string | undefined;
    socket.on("connect", () => {
      socket.write(
        generate({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 4,
          clean: false,
          keepalive: setup.keepaliveS,
          clientId: this.spec.id,
          username: this.spec.id,
          password: Buffer.from(this.spec.password),
          will: {
            topic: this.topics.status,
            payload: this.status("offline", "lost"),
            qos: 1,
            retain: true,
          },
        }),
      );
    });
    socket.on("data", (chunk: Buffer) => {
      if (socket === this.socket) this.onData(chunk);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      lastError = error.code ?? error.message;
    });
    socket.on("close", () => {
      if (socket !== this.socket) return;
      this.socket = undefined;
      if (this.state === "connecting") this.attemptFailed(lastError ?? "closed");
      else if (this.state === "up") {
        counts.drops++;
        this.down();
        this.retry();
      }
    });
    this.connectTimer = setTimeout(() => {
      if (this.state !== "connecting" || socket !== this.socket) return;
      this.socket = undefined;
      socket.destroy();
      this.attemptFailed("timeout");
    }, setup.connectTimeoutMs);
  }

  private settle(): void {
    clearTimeout(this.connectTimer);
    const settled = this.settled;
    this.settled = undefined;
    settled?.();
  }

  private attemptFailed(why: string): void {
    fail(why);
    this.state = "down";
    this.settle();
    this.retry();
  }

  private retry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(
      () => {
        if (this.state === "down") this.connect();
      },
      reconnectDelayMs(setup.reconnectMs, random, this.failed++),
    );
  }

  private down(): void {
    this.state = "down";
    this.subscribed = false;
    this.inflight.clear();
  }

  /** Reset the connection (no DISCONNECT: the broker publishes the Will) and reconnect later. */
  cut(): void {
    const socket = this.socket;
    this.socket = undefined;
    this.settle();
    clearTimeout(this.retryTimer);
    this.down();
    this.connackAt = undefined;
    this.subackAt = undefined;
    this.caughtUpAt = undefined;
    socket?.resetAndDestroy();
    this.retry();
  }

  /** Reset the connection and stay down. */
  close(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.down();
    socket?.resetAndDestroy();
  }

  /** A new reading, due at `ts`: into the log, and out at once when connected. */
  produce(ts: number): void {
    counts.produced++;
    const entry: Entry = { seq: ++this.lastSeq, ts, firstSentAt: undefined };
    this.log.push(entry);
    if (this.state === "up") this.publish(entry, false);
  }

  private publish(entry: Entry, replay: boolean): void {
    const socket = this.socket;
    if (socket === undefined) return;
    const now = Date.now();
    if (entry.firstSentAt === undefined) {
      entry.firstSentAt = now;
      counts.sent++;
    } else counts.resent++;
    const messageId = this.packetId();
    this.inflight.set(messageId, entry);
    const payload = JSON.stringify({
      v: PROTOCOL_VERSION,
      deviceId: this.spec.id,
      seq: entry.seq,
      kind: this.spec.kind,
      ...(replay ? { replay: true } : {}),
      readings: [
        {
          ts: new Date(entry.ts).toISOString(),
          quality: "normal",
          values: values(this.spec.kind, entry.seq, this.index),
        },
      ],
    });
    socket.write(
      generate({
        cmd: "publish",
        topic: this.topics.data,
        payload,
        qos: 1,
        dup: false,
        retain: false,
        messageId,
      }),
    );
  }

  /** Readings up to `seq` are safe: out of the log. */
  private confirm(seq: number): void {
    const now = Date.now();
    let n = 0;
    while (n < this.log.length && (this.log[n] as Entry).seq <= seq) {
      const entry = this.log[n] as Entry;
      if (entry.firstSentAt !== undefined) latencies.push(now - entry.firstSentAt);
      n++;
    }
    if (n === 0) return;
    this.log.splice(0, n);
    counts.confirmed += n;
    this.checkCaughtUp(now);
  }

  private checkCaughtUp(now: number): void {
    if (this.caughtUpAt !== undefined || !this.isSubscribed) return;
    const oldest = this.log[0];
    if (oldest === undefined || oldest.seq > this.upTarget) this.caughtUpAt = now;
  }

  private onData(chunk: Buffer): void {
    const data = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk]);
    this.rest = undefined;
    let at = 0;
    while (data.length - at >= 2) {
      // Remaining length: 1 to 4 bytes of 7 bits, least significant first (MQTT 3.1.1 §2.2.3).
      let length = 0;
      let i = at + 1;
      let shift = 1;
      let done = false;
      while (i < data.length && i < at + 5) {
        const byte = data[i++] as number;
        length += (byte & 0x7f) * shift;
        shift *= 128;
        if ((byte & 0x80) === 0) {
          done = true;
          break;
        }
      }
      if (!done) {
        if (i >= at + 5) {
          counts.oddities++;
          this.socket?.destroy();
          return;
        }
        break;
      }
      if (i + length > data.length) break;
      this.onPacket(data[at] as number, data, i, i + length);
      // The packet may have closed the connection.
      if (this.socket === undefined) return;
      at = i + length;
    }
    if (at < data.length) this.rest = data.subarray(at);
  }

  private onPacket(first: number, data: Buffer, start: number, end: number): void {
    switch (first >> 4) {
      case CONNACK:
        this.onConnack(data[start + 1] ?? 255);
        return;
      case SUBACK:
        for (let i = start + 2; i < end; i++) if (data[i] === 0x80) counts.oddities++;
        this.subscribed = true;
        this.subackAt = Date.now();
        this.checkCaughtUp(this.subackAt);
        return;
      case PUBACK: {
        const entry = this.inflight.get(data.readUInt16BE(start));
        if (entry === undefined) return; // the birth's
        this.inflight.delete(data.readUInt16BE(start));
        if (setup.confirm === "puback") this.confirmOne(entry);
        return;
      }
      case PUBLISH: {
        const qos = (first >> 1) & 3;
        const topicEnd = start + 2 + data.readUInt16BE(start);
        let payloadAt = topicEnd;
        if (qos > 0) {
          this.socket?.write(pubackPacket(data.readUInt16BE(topicEnd)));
          payloadAt += 2;
        }
        if (data.toString("utf8", start + 2, topicEnd) !== this.topics.commit) return;
        if (payloadAt === end) return; // a retained commit deleted
        const committedSeq = committedSeqOf(data.toString("utf8", payloadAt, end));
        if (committedSeq === undefined) counts.oddities++;
        else if (setup.confirm === "commit") this.confirm(committedSeq);
        return;
      }
      case PINGRESP:
        return;
      default:
        counts.oddities++;
    }
  }

  /** PUBACK as confirmation (no commit): the one entry, wherever it is in the log. */
  private confirmOne(entry: Entry): void {
    const at = this.log.indexOf(entry);
    if (at < 0) return;
    this.log.splice(at, 1);
    counts.confirmed++;
    if (entry.firstSentAt !== undefined) latencies.push(Date.now() - entry.firstSentAt);
    this.checkCaughtUp(Date.now());
  }

  private onConnack(returnCode: number): void {
    if (this.state !== "connecting") {
      counts.oddities++;
      return;
    }
    if (returnCode !== 0) {
      const socket = this.socket;
      this.socket = undefined;
      socket?.destroy();
      this.attemptFailed(`connack ${returnCode}`);
      return;
    }
    const socket = this.socket;
    if (socket === undefined) return;
    this.state = "up";
    this.failed = 0;
    this.connects++;
    this.settle();
    this.connackAt = Date.now();
    socket.cork();
    socket.write(
      generate({
        cmd: "subscribe",
        messageId: this.packetId(),
        subscriptions: [
          { topic: this.topics.commit, qos: 1 },
          { topic: this.topics.config, qos: 1 },
        ],
      }),
    );
    socket.write(
      generate({
        cmd: "publish",
        topic: this.topics.status,
        payload: this.status("online", this.connects > 1 ? "reconnect" : "startup"),
        qos: 1,
        dup: false,
        retain: true,
        messageId: this.packetId(),
      }),
    );
    // The first connect publishes the device's first reading; a reconnect, all it still holds.
    if (this.connects === 1) this.produce(Date.now());
    else for (const entry of this.log) this.publish(entry, true);
    this.upTarget = this.lastSeq;
    process.nextTick(() => socket.uncork());
  }
}

let devices: Device[] = [];
let cadence: NodeJS.Timeout | undefined;

/** Connect every device, at most `setup.connecting` attempts without an answer at once. */
function connectAll(): void {
  let next = 0;
  let open = 0;
  const pump = () => {
    while (open < setup.connecting && next < devices.length) {
      const device = devices[next++] as Device;
      open++;
      device.connect(() => {
        open--;
        pump();
      });
    }
  };
  pump();
}

/** Each device's reading every interval, at its phase within the interval (the fleet spread evenly). */
function startCadence(t0: number): void {
  const { intervalMs, fleetSize, firstIndex } = setup;
  devices.forEach((device, i) => {
    device.nextDueMs = t0 + ((firstIndex + i + 0.5) / fleetSize) * intervalMs;
  });
  // The devices' phases rise with their index, so the next due is always at the cursor.
  let cursor = 0;
  clearInterval(cadence);
  cadence = setInterval(() => {
    const now = Date.now();
    for (let n = 0; n < devices.length; n++) {
      const device = devices[cursor] as Device;
      if (device.nextDueMs > now) break;
      device.produce(device.nextDueMs);
      device.nextDueMs += intervalMs;
      cursor = (cursor + 1) % devices.length;
    }
  }, TICK_MS);
}

/** The latest of a milestone over the devices, once every device has reached it. */
function lastOf(read: (d: Device) => number | undefined): number | undefined {
  let last = 0;
  for (const d of devices) {
    const at = read(d);
    if (at === undefined) return undefined;
    if (at > last) last = at;
  }
  return last;
}

function sample(id: number): DevicesSample {
  const usage = process.cpuUsage();
  let connected = 0;
  let subscribed = 0;
  let caughtUp = 0;
  for (const d of devices) {
    if (d.isUp) connected++;
    if (d.isSubscribed) subscribed++;
    if (d.caughtUpAt !== undefined) caughtUp++;
  }
  const lastConnackMs = lastOf((d) => d.connackAt);
  const lastSubackMs = lastOf((d) => d.subackAt);
  const lastCaughtUpMs = lastOf((d) => d.caughtUpAt);
  return {
    type: "sample",
    id,
    cpuMicros: usage.user + usage.system,
    devices: devices.length,
    connected,
    subscribed,
    produced: counts.produced,
    sent: counts.sent,
    resent: counts.resent,
    confirmed: counts.confirmed,
    attempts: counts.attempts,
    failures: { ...counts.failures },
    drops: counts.drops,
    oddities: counts.oddities,
    caughtUp,
    ...(lastConnackMs !== undefined ? { lastConnackMs } : {}),
    ...(lastSubackMs !== undefined ? { lastSubackMs } : {}),
    ...(lastCaughtUpMs !== undefined ? { lastCaughtUpMs } : {}),
  };
}

function handle(message: DevicesRequest): DevicesMessage | undefined {
  switch (message.type) {
    case "setup":
      setup = message.setup;
      random = randomSource(hashSeed(setup.seed, setup.firstIndex));
      devices = setup.devices.map((spec, i) => new Device(spec, setup.firstIndex + i));
      return { type: "ok", id: message.id };
    case "connect":
      connectAll();
      return { type: "ok", id: message.id };
    case "cadence":
      startCadence(message.t0);
      return { type: "ok", id: message.id };
    case "cut":
      for (const d of devices) d.cut();
      return { type: "ok", id: message.id };
    case "quiet":
      clearInterval(cadence);
      return { type: "ok", id: message.id };
    case "sample":
      return sample(message.id);
    case "latencies": {
      const values = latencies;
      latencies = [];
      return { type: "latencies", id: message.id, values };
    }
    case "seqs":
      return {
        type: "seqs",
        id: message.id,
        last: Object.fromEntries(devices.map((d) => [d.spec.id, d.seq])),
      };
    case "close":
      shutdown();
      return undefined;
  }
}

function shutdown(): void {
  clearInterval(cadence);
  for (const d of devices) d.close();
  if (process.connected) process.disconnect();
  process.exit(0);
}

if (process.send === undefined) throw new Error("bench/fleet-devices.ts runs under fork() only");
answerRequests(DevicesRequest, handle);
// The parent went away without saying close: never outlive it.
process.on("disconnect", shutdown);
