import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { allDevicesFilter, type Commit, deviceTopic } from "../contracts/index.js";
import type { IngestMetrics } from "./metrics.js";
import type { IngestState } from "./state.js";

export interface SubscriberOptions {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  readonly clientId: string;
  readonly inboxMaxMessages: number;
}

/**
 * The ingest's MQTT side: a persistent session (clean=false) subscribed at QoS1 to every device's
 * data topic. MQTT.js sends a PUBACK only when `handleMessage` calls back, and reads no further
 * packet until then; the message is written to the durable inbox first, so the broker's
 * "delivered" means "on the ingest's disk". When the inbox is full the callback waits: the
 * broker keeps further messages for this session (backpressure).
 */
export function connectSubscriber(
  options: SubscriberOptions,
  deps: {
    log: Logger;
    state: IngestState;
    metrics: IngestMetrics;
    onMessage: () => void;
    now: () => number;
  },
) {
  const log = deps.log.child({ module: "ingest-mqtt" });
  const client: MqttClient = mqtt.connect(options.url, {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: 1_000,
    connectTimeout: 10_000,
    resubscribe: true,
  });
  const filter = allDevicesFilter("data");
  let stopping = false;

  client.handleMessage = (packet, callback) => {
    const store = () => {
      if (stopping) return; // no PUBACK: the broker re-delivers to the persistent session later
      if (deps.state.inboxDepth() >= options.inboxMaxMessages) {
        deps.metrics.inboxFullWaits.inc();
        setTimeout(store, 100);
        return;
      }
      const payload =
        typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
      deps.state.appendInbox(packet.topic, payload, deps.now());
      deps.metrics.messagesReceived.inc();
      deps.onMessage();
      callback();
    };
    store();
  };

  client.on("connect", (connack) => {
    log.info(
      { url: options.url, sessionPresent: connack.sessionPresent },
      "ingest connected to broker",
    );
    if (!connack.sessionPresent) {
      client.subscribe(filter, { qos: 1 }, (error, granted) => {
        if (error !== null || granted?.[0]?.qos === 128)
          log.error({ err: error?.message, filter }, "subscribe refused");
      });
    }
  });
  client.on("error", (error) => log.warn({ err: error.message }, "ingest MQTT error"));
  client.on("offline", () => log.warn("ingest disconnected from broker; reconnecting"));

  return {
    client,
    /** Publish a device's commit, retained, QoS1; does not wait for the broker. */
    publishCommit(deviceId: string, committedSeq: number): Promise<void> {
      const commit: Commit = {
        v: 1,
        deviceId: deviceId as Commit["deviceId"],
        committedSeq,
        ts: new Date(deps.now()).toISOString(),
      };
      client.publish(
        deviceTopic(deviceId, "commit"),
        JSON.stringify(commit),
        { qos: 1, retain: true },
        (error) => {
          // The next commit of the device supersedes this one (retained, cumulative).
          if (error)
            log.warn({ err: error.message, deviceId, committedSeq }, "commit publish failed");
        },
      );
      return Promise.resolve();
    },
    connected: () => client.connected,
    async stop(): Promise<void> {
      stopping = true;
      await client.endAsync(false);
    },
  };
}
