import { z } from "zod";
import { Flag, Host, Port, PositiveInt } from "./fields.js";

/**
 * Default ports of the embedded broker. The standard MQTT ports (1883, 8883) are usually taken by a
 * system Mosquitto on a developer's machine, so citywatch's defaults sit in their own block;
 * production deployments set them explicitly.
 */
export const DEFAULT_PORTS = { mqtt: 18830, mqtts: 18831, ws: 18832, http: 18080 } as const;

export const BrokerLimits = z.strictObject({
  /**
   * Largest MQTT packet accepted, in bytes; a bigger one closes the connection before its body
   * is buffered. 256 KiB holds the largest valid uplink (500 readings) with room to spare.
   */
  maxPacketBytes: PositiveInt.default(256 * 1024),
  /** Topic levels at most; citywatch topics have 5 (7 with `$share/{group}/`). */
  maxTopicLevels: PositiveInt.default(10),
  /** Simultaneous MQTT connections at most; further CONNECTs are refused (CONNACK 3, server unavailable). */
  maxConnections: PositiveInt.default(20_000),
  /**
   * Sustained PUBLISH packets per second for one device connection, and the burst it may spend
   * at once. Over the rate, the broker stops reading from that connection (TCP backpressure);
   * a client that would have to wait longer than `maxThrottleMs` is disconnected.
   * Service accounts (ingest, simulators) are not rate limited.
   */
  publishRatePerSecond: PositiveInt.default(20),
  publishBurst: PositiveInt.default(100),
  maxThrottleMs: PositiveInt.default(5_000),
  /** Milliseconds a new connection has to send CONNECT. */
  connectTimeoutMs: PositiveInt.default(10_000),
});
export type BrokerLimits = z.infer<typeof BrokerLimits>;

const PersistenceChoice = z.discriminatedUnion("type", [
  /** Sessions, retained messages and QoS1 queues in process memory: one broker, lost on restart. */
  z.strictObject({ type: z.literal("memory") }),
  /**
   * Sessions and retained messages in Redis, messages fanned out over Redis pub/sub
   * (aedes-persistence-redis + mqemitter-redis): several broker processes form one cluster.
   */
  z.strictObject({
    type: z.literal("redis"),
    url: z.string().regex(/^rediss?:\/\//, { error: "must be a redis:// or rediss:// URL" }),
  }),
]);
/** `{ url: redis://… }` without a type means Redis (so CITYWATCH_REDIS_URL alone selects it). */
export const BrokerPersistence = z.preprocess(
  (value) =>
    typeof value === "object" && value !== null && !("type" in value) && "url" in value
      ? { type: "redis", ...value }
      : value,
  PersistenceChoice,
);
export type BrokerPersistence = z.infer<typeof BrokerPersistence>;

export const BrokerConfig = z.strictObject({
  /** Address the listeners bind to. 127.0.0.1 by default; 0.0.0.0 to accept field devices. */
  host: Host.default("127.0.0.1"),
  /** Plain MQTT over TCP. */
  mqtt: z
    .strictObject({ enabled: Flag.default(true), port: Port.default(DEFAULT_PORTS.mqtt) })
    .prefault({}),
  /** MQTT over TLS; listens only when a certificate and key are configured. */
  tls: z
    .strictObject({
      port: Port.default(DEFAULT_PORTS.mqtts),
      certFile: z.string().min(1).optional(),
      keyFile: z.string().min(1).optional(),
      /** CA bundle to verify client certificates against (optional; devices authenticate by secret). */
      caFile: z.string().min(1).optional(),
    })
    .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), {
      error: "tls needs both certFile and keyFile, or neither",
    })
    .prefault({}),
  /** MQTT over WebSocket (subprotocol `mqtt`); over TLS (wss) when TLS is configured. */
  ws: z
    .strictObject({
      enabled: Flag.default(true),
      port: Port.default(DEFAULT_PORTS.ws),
      path: z.string().startsWith("/").default("/mqtt"),
    })
    .prefault({}),
  limits: BrokerLimits.prefault({}),
  persistence: BrokerPersistence.default({ type: "memory" }),
  /** Broker id in a cluster; random when unset. */
  id: z.string().min(1).max(64).optional(),
});
export type BrokerConfig = z.infer<typeof BrokerConfig>;
export type BrokerConfigInput = z.input<typeof BrokerConfig>;
