/**
 * The MQTT.js side of the ingest bench: one connection per device, each publishing its own
 * messages (its own seq) at QoS1 with a bounded number in flight.
 */
import type { MqttClient } from "mqtt";
import { deviceTopic } from "../contracts/index.js";
import type { ClientCredentials } from "./broker-protocol.js";
import type { DeviceStream } from "./ingest-payloads.js";
import { closeIdleConnections, openIdleConnections } from "./mqtt-load.js";

const CONNECT_BATCH = 25;

/** A round's messages, made before it is timed so the load generator only publishes. */
export interface Prepared {
  readonly readingsPerMessage: number;
  /** Per device (in fleet order), its messages in seq order. */
  readonly perDevice: readonly (readonly Buffer[])[];
  readonly messages: number;
  readonly readings: number;
}

function onFailure(clients: readonly MqttClient[], fail: (error: Error) => void): () => void {
  const detach: Array<() => void> = [];
  clients.forEach((client, i) => {
    const onClose = () => fail(new Error(`device connection ${i} closed by the broker`));
    const onError = (error: Error) => fail(new Error(`device connection ${i}: ${error.message}`));
    client.on("close", onClose);
    client.on("error", onError);
    detach.push(() => {
      client.off("close", onClose);
      client.off("error", onError);
    });
  });
  return () => {
    for (const off of detach) off();
  };
}

export class Fleet {
  private constructor(
    private readonly clients: readonly MqttClient[],
    private readonly streams: readonly DeviceStream[],
  ) {}

  get size(): number {
    return this.clients.length;
  }

  /** Connect every device (`credentials[i]` for `streams[i]`). */
  static async open(
    url: string,
    credentials: readonly ClientCredentials[],
    streams: readonly DeviceStream[],
  ): Promise<Fleet> {
    if (credentials.length !== streams.length) throw new Error("one credential per device");
    const clients = await openIdleConnections(url, credentials, CONNECT_BATCH);
    return new Fleet(clients, streams);
  }

  /** At least `readings` readings, `readingsPerMessage` per message, spread evenly over the devices. */
  prepare(readingsPerMessage: number, readings: number): Prepared {
    const perDeviceMessages = Math.max(
      1,
      Math.ceil(readings / (readingsPerMessage * this.streams.length)),
    );
    const perDevice = this.streams.map((stream) =>
      Array.from({ length: perDeviceMessages }, () => stream.next(readingsPerMessage)),
    );
    const messages = perDeviceMessages * this.streams.length;
    return { readingsPerMessage, perDevice, messages, readings: messages * readingsPerMessage };
  }

  /**
   * Publish every prepared message at QoS1, each device keeping at most `window` unacknowledged.
   * Resolves when the broker has acknowledged all of them; rejects if a connection fails.
   */
  publish(prepared: Prepared, window: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let pendingDevices = this.clients.length;
      let failed = false;
      const fail = (error: Error) => {
        if (failed) return;
        failed = true;
        detach();
        reject(error);
      };
      const detach = onFailure(this.clients, fail);
      this.clients.forEach((client, i) => {
        const messages = prepared.perDevice[i] ?? [];
        const stream = this.streams[i];
        if (stream === undefined || messages.length === 0) {
          if (--pendingDevices === 0) resolve();
          return;
        }
        const topic = deviceTopic(stream.id, "data");
        let sent = 0;
        let acked = 0;
        // MQTT.js passes null, not undefined, on success.
        const onAck = (error?: Error | null) => {
          if (error) {
            fail(error);
            return;
          }
          acked++;
          if (acked < messages.length) fill();
          else if (--pendingDevices === 0 && !failed) {
            detach();
            resolve();
          }
        };
        const fill = () => {
          while (!failed && sent < messages.length && sent - acked < window) {
            const payload = messages[sent++];
            if (payload !== undefined) client.publish(topic, payload, { qos: 1 }, onAck);
          }
        };
        fill();
      });
    });
  }

  close(): Promise<void> {
    return closeIdleConnections(this.clients, CONNECT_BATCH);
  }
}
