/**
 * A load generator for the ingest bench that costs a few µs per message: every device's
 * PUBLISH packets are encoded before the round is timed (mqtt-packet, the encoder aedes and
 * MQTT.js use), and the round only writes those bytes to one raw TCP socket per device and
 * counts the PUBACKs coming back, keeping at most `window` QoS1 publishes unacknowledged per
 * device, as the MQTT.js fleet (bench/ingest-load.ts) does. MQTT.js spends about 38 µs of CPU
 * per message, so on two cores it cannot drive the one-reading path it measures; this one is
 * the bench's publisher, and the MQTT.js fleet stays as a cross-check of the same round.
 *
 * What it does not do: reconnect, keepalive (sessions connect with keepalive 0, which MQTT
 * 3.1.1 §3.1.2.10 defines as off), or anything but QoS1 publishes. Any packet from the broker
 * other than a PUBACK of a packet in flight fails the round, as a dropped connection does.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { generate, parser as packetParser, type IConnackPacket } from "mqtt-packet";
import { deviceTopic } from "../contracts/index.js";
import type { ClientCredentials } from "./broker-protocol.js";
import type { DeviceStream } from "./ingest-payloads.js";
import type { Prepared } from "./ingest-load.js";

/** PUBACK in MQTT 3.1.1: fixed header 0x40, remaining length 2, then the packet id. */
const PUBACK = 0x40;
const PUBACK_LENGTH = 4;
const CONNECT_BATCH = 25;
const CONNECT_TIMEOUT_MS = 10_000;

/** A round's packets, encoded before it is timed. */
export interface RawPrepared extends Prepared {
  /** Per device, its PUBLISH packets in seq order; packet ids run 1..65535 and wrap. */
  readonly packets: readonly (readonly Buffer[])[];
}

class Device {
  private nextId = 1;
  /** Bytes of a PUBACK split across two reads. */
  private partial: Buffer | undefined;
  onAck: (id: number) => void = () => undefined;
  onFailure: (error: Error) => void = () => undefined;

  constructor(
    readonly socket: Socket,
    readonly stream: DeviceStream,
  ) {}

  packetId(): number {
    const id = this.nextId;
    this.nextId = id === 65_535 ? 1 : id + 1;
    return id;
  }

  /** After CONNACK: every byte from the broker must be a PUBACK. */
  listen(): void {
    this.socket.on("data", (chunk: Buffer) => {
      const data = this.partial === undefined ? chunk : Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
      let at = 0;
      while (data.length - at >= PUBACK_LENGTH) {
        if (data[at] !== PUBACK || data[at + 1] !== 2) {
          this.onFailure(
            new Error(
              `${this.stream.id}: the broker sent packet type 0x${(data[at] ?? 0).toString(16)}, not a PUBACK`,
            ),
          );
          return;
        }
        this.onAck(data.readUInt16BE(at + 2));
        at += PUBACK_LENGTH;
      }
      if (at < data.length) this.partial = data.subarray(at);
    });
    const closed = () => this.onFailure(new Error(`${this.stream.id}: connection closed`));
    this.socket.on("close", closed);
    this.socket.on("error", (error) =>
      this.onFailure(new Error(`${this.stream.id}: ${error.message}`)),
    );
  }
}

/** CONNECT, then the CONNACK read with mqtt-packet's parser; rejects unless accepted. */
async function open(host: string, port: number, credentials: ClientCredentials): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true });
  await once(socket, "connect");
  const parser = packetParser({ protocolVersion: 4 });
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no CONNACK")), CONNECT_TIMEOUT_MS);
    parser.on("packet", (packet) => {
      clearTimeout(timer);
      if (packet.cmd === "connack") resolve(packet);
      else reject(new Error(`expected CONNACK, got ${packet.cmd}`));
    });
    parser.on("error", reject);
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("closed before CONNACK")));
  });
  const feed = (chunk: Buffer) => parser.parse(chunk);
  socket.on("data", feed);
  socket.write(
    generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clean: true,
      keepalive: 0,
      clientId: credentials.clientId,
      ...(credentials.username !== undefined ? { username: credentials.username } : {}),
      ...(credentials.password !== undefined
        ? { password: Buffer.from(credentials.password) }
        : {}),
    }),
  );
  try {
    const ack = await connack;
    if (ack.returnCode !== 0) throw new Error(`CONNACK return code ${ack.returnCode}`);
  } catch (error) {
    socket.destroy();
    throw new Error(`${credentials.clientId}: ${(error as Error).message}`);
  }
  socket.off("data", feed);
  socket.removeAllListeners("error");
  socket.removeAllListeners("close");
  return socket;
}

export class RawFleet {
  private constructor(private readonly devices: readonly Device[]) {}

  get size(): number {
    return this.devices.length;
  }

  /** Connect every device (`credentials[i]` for `streams[i]`), `CONNECT_BATCH` at a time. */
  static async open(
    url: string,
    credentials: readonly ClientCredentials[],
    streams: readonly DeviceStream[],
  ): Promise<RawFleet> {
    if (credentials.length !== streams.length) throw new Error("one credential per device");
    const { hostname, port } = new URL(url);
    const devices: Device[] = [];
    try {
      for (let i = 0; i < credentials.length; i += CONNECT_BATCH) {
        const batch = await Promise.all(
          credentials
            .slice(i, i + CONNECT_BATCH)
            .map((c) => open(hostname, Number(port || 1883), c)),
        );
        batch.forEach((socket, j) => {
          const device = new Device(socket, streams[i + j] as DeviceStream);
          device.listen();
          devices.push(device);
        });
      }
    } catch (error) {
      for (const d of devices) d.socket.destroy();
      throw error;
    }
    return new RawFleet(devices);
  }

  /** As the MQTT.js fleet's `prepare`, with every message encoded as its PUBLISH packet. */
  prepare(readingsPerMessage: number, readings: number): RawPrepared {
    const perDeviceMessages = Math.max(
      1,
      Math.ceil(readings / (readingsPerMessage * this.devices.length)),
    );
    const perDevice: Buffer[][] = [];
    const packets: Buffer[][] = [];
    for (const device of this.devices) {
      const topic = deviceTopic(device.stream.id, "data");
      const payloads = Array.from({ length: perDeviceMessages }, () =>
        device.stream.next(readingsPerMessage),
      );
      perDevice.push(payloads);
      packets.push(
        payloads.map((payload) =>
          generate({
            cmd: "publish",
            topic,
            payload,
            qos: 1,
            dup: false,
            retain: false,
            messageId: device.packetId(),
          }),
        ),
      );
    }
    const messages = perDeviceMessages * this.devices.length;
    return {
      readingsPerMessage,
      perDevice,
      packets,
      messages,
      readings: messages * readingsPerMessage,
    };
  }

  /**
   * Write every prepared packet, each device keeping at most `window` unacknowledged; resolves
   * when every one is acknowledged, rejects on a dropped connection or an unexpected packet.
   */
  publish(prepared: RawPrepared, window: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let pending = this.devices.length;
      let failed = false;
      const fail = (error: Error) => {
        if (failed) return;
        failed = true;
        reject(error);
      };
      this.devices.forEach((device, i) => {
        const packets = prepared.packets[i] ?? [];
        let sent = 0;
        let acked = 0;
        const fill = () => {
          if (failed || sent >= packets.length || sent - acked >= window) return;
          // One write per turn of the ack handler: what the window allows, corked together.
          device.socket.cork();
          while (sent < packets.length && sent - acked < window) {
            device.socket.write(packets[sent++] as Buffer);
          }
          process.nextTick(() => device.socket.uncork());
        };
        device.onFailure = fail;
        device.onAck = () => {
          acked++;
          if (acked > sent) {
            fail(new Error(`${device.stream.id}: a PUBACK for nothing in flight`));
            return;
          }
          if (acked < packets.length) fill();
          else if (--pending === 0 && !failed) resolve();
        };
        if (packets.length === 0) {
          if (--pending === 0) resolve();
          return;
        }
        fill();
      });
    });
  }

  /** DISCONNECT and end every socket. */
  async close(): Promise<void> {
    const disconnect = generate({ cmd: "disconnect" });
    await Promise.all(
      this.devices.map(async (device) => {
        device.onFailure = () => undefined;
        device.socket.removeAllListeners("close");
        if (device.socket.destroyed) return;
        const closed = once(device.socket, "close").catch(() => undefined);
        device.socket.end(disconnect);
        await closed;
      }),
    );
  }
}
