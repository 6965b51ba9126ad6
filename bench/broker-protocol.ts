import { z } from "zod";

/**
 * The IPC messages between the broker bench (parent) and a broker under test (child process,
 * bench/broker-server.ts). Both ends parse with these schemas: an IPC message is `unknown` data.
 */

/** The throughput publisher's device id (its topic is `citywatch/v1/devices/bench-pub/data`). */
export const PUBLISHER_ID = "bench-pub";
/** Service accounts may connect as `{name}-{suffix}`; the suffix keeps bench sessions apart. */
export const SUBSCRIBER_ID = "ingest-bench";

/** `shipped`: build() from broker/app.ts with auth and ACL. `aedes`: bare aedes, no auth. */
export const ServerVariant = z.enum(["shipped", "aedes"]);
export type ServerVariant = z.infer<typeof ServerVariant>;

/** How one MQTT client identifies itself; bare aedes and Mosquitto take no username. */
export const ClientCredentials = z.strictObject({
  clientId: z.string().min(1),
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
});
export type ClientCredentials = z.infer<typeof ClientCredentials>;

export const ChildMessage = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("ready"),
    port: z.number().int().min(1).max(65_535),
    /** The throughput publisher: a registered device on the shipped broker. */
    publisher: ClientCredentials,
    /** The throughput subscriber: the `ingest` service account on the shipped broker. */
    subscriber: ClientCredentials,
    /** Devices for the idle-connection memory measurement (registered before the baseline). */
    idle: z.array(ClientCredentials),
  }),
  z.strictObject({
    type: z.literal("memory"),
    heapUsed: z.number(),
    rss: z.number(),
    connectedClients: z.number().int(),
  }),
  z.strictObject({
    type: z.literal("cpu"),
    /** process.cpuUsage() of the broker process, user + system, in microseconds. */
    micros: z.number(),
  }),
  z.strictObject({ type: z.literal("failed"), message: z.string() }),
]);
export type ChildMessage = z.infer<typeof ChildMessage>;
export type ReadyMessage = Extract<ChildMessage, { type: "ready" }>;
export type MemoryMessage = Extract<ChildMessage, { type: "memory" }>;

export const ParentMessage = z.discriminatedUnion("type", [
  /** Collect garbage, then report heap and RSS. */
  z.strictObject({ type: z.literal("measure") }),
  /** Report CPU time used so far: broker cost per message, independent of other load on the machine. */
  z.strictObject({ type: z.literal("cpu") }),
  /** Close the broker and exit (exiting normally is what writes a --cpu-prof profile). */
  z.strictObject({ type: z.literal("stop") }),
]);
export type ParentMessage = z.infer<typeof ParentMessage>;
