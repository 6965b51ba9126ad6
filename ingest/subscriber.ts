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

export interface SubscriberDeps {
  readonly log: Logger;
  readonly state: IngestState;
  readonly metrics: IngestMetrics;
  readonly now: () => number;
  /** A message was added to the inbox. */
  readonly onMessage: () => void;
  /** Connected; `sessionPresent` false means the broker kept nothing of ours (retained commits may be gone too). */
  readonly onConnect: (sessionPresent: boolean) => void;
}

/** Resume reading once the inbox is below this share of its bound. */
const RESUME_AT = 0.9;

/**
 * The ingest's MQTT side: a persistent session (clean=false) subscribed at QoS1 to every device's
 * data topic. MQTT.js sends a PUBACK only when `handleMessage` calls back, and reads no further
 * packet until then; the message is written to the durable inbox first, so the broker's
 * "delivered" means "on the ingest's disk".
 *
 * When the inbox is full the ingest disconnects (without acknowledging the message in hand) and
 * reconnects once the inbox has drained below 90 %: the broker keeps the session's messages
 * meanwhile. (Holding the PUBACK instead would also stall PINGRESP and trip keepalive.)
 */
export function connectSubscriber(options: SubscriberOptions, deps: SubscriberDeps) {
  const log = deps.log.child({ module: "ingest-mqtt" });
  const client: MqttClient = mqtt.connect(options.url, {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    clean: false,
    protocolVersion: 4,
    // After a broker restart the ingest's session is what lets the broker acknowledge device data
    // again (broker/durable.ts): come back fast, and do not wait long on an attempt that hangs.
    reconnectPeriod: 250,
    connectTimeout: 3_000,
    resubscribe: true,
  });
  const filter = allDevicesFilter("data");
  let stopping = false;
  let pausedForFull = false;

  const resumeWhenDrained = () => {
    if (stopping) return;
    if (deps.state.inbox.depth() >= options.inboxMaxMessages * RESUME_AT) {
      setTimeout(resumeWhenDrained, 500);
      return;
    }
    pausedForFull = false;
    log.info({ inbox: deps.state.inbox.depth() }, "inbox drained; reconnecting to the broker");
    client.reconnect();
  };

  client.handleMessage = (packet, callback) => {
    if (stopping || pausedForFull) return; // no PUBACK: the broker re-delivers to the session later
    if (deps.state.inbox.depth() >= options.inboxMaxMessages) {
      pausedForFull = true;
      deps.metrics.inboxFullWaits.inc();
      log.warn(
        { inbox: deps.state.inbox.depth(), bound: options.inboxMaxMessages },
        "inbox full; disconnecting until it drains (the broker keeps the messages)",
      );
      client.end(true, () => setTimeout(resumeWhenDrained, 500));
      return;
    }
    const payload =
      typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    deps.state.inbox.append(packet.topic, payload, deps.now());
    deps.metrics.messagesReceived.inc();
    deps.onMessage();
    callback();
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
    deps.onConnect(connack.sessionPresent);
  });
  client.on("error", (error) => log.warn({ err: error.message }, "ingest MQTT error"));
  client.on("offline", () => {
    if (!pausedForFull && !stopping) log.warn("ingest disconnected from broker; reconnecting");
  });

  return {
    client,
    /** Publish a device's commit, retained, QoS1. The next commit supersedes a lost one. */
    publishCommit(deviceId: string, committedSeq: number): void {
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
          if (error)
            log.warn({ err: error.message, deviceId, committedSeq }, "commit publish failed");
        },
      );
    },
    connected: () => client.connected,
    async stop(): Promise<void> {
      stopping = true;
      await client.endAsync(false);
    },
  };
}
