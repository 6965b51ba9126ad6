import { z } from "zod";
import { ClientCredentials } from "./broker-protocol.js";

/**
 * The IPC messages between the ingest bench (parent, bench/ingest.ts) and the process under test
 * (child, bench/ingest-server.ts). Both ends parse with these schemas: an IPC message is
 * `unknown` data.
 */

/**
 * `all-in-one`: broker + ingest in one process, built as cli/commands/serve.ts builds them.
 * `broker-only`: the same broker and registry without the ingest; the bench subscribes in its
 * place, so the child's CPU time is the broker's share of the same load.
 */
export const IngestVariant = z.enum(["all-in-one", "broker-only"]);
export type IngestVariant = z.infer<typeof IngestVariant>;

/** The sensor kinds the bench's devices send. */
export const BenchKind = z.enum(["dust", "utility_tunnel"]);
export type BenchKind = z.infer<typeof BenchKind>;

export const BenchStore = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("sqlite") }),
  z.strictObject({
    type: z.literal("influxdb"),
    url: z.url(),
    database: z.string().min(1),
  }),
]);
export type BenchStore = z.infer<typeof BenchStore>;

/** What the child builds; passed as JSON in its first argument. */
export const ServerArgs = z.strictObject({
  variant: IngestVariant,
  store: BenchStore,
  devices: z.array(z.strictObject({ id: z.string().min(1), kind: BenchKind })),
  /** Merged over the ingest configuration (BENCH_INGEST_CONFIG): e.g. `{"batch":{"maxPoints":10000}}`. */
  ingestConfig: z.record(z.string(), z.unknown()).optional(),
});
export type ServerArgs = z.infer<typeof ServerArgs>;

export const ChildMessage = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("ready"),
    port: z.number().int().min(1).max(65_535),
    /** One registered device per entry of ServerArgs.devices, in that order. */
    devices: z.array(ClientCredentials),
    /** all-in-one with the SQLite store: the time-series file, for counting rows. */
    timeseriesFile: z.string().optional(),
  }),
  z.strictObject({
    type: z.literal("sample"),
    id: z.number().int(),
    /** process.cpuUsage() of the child, user + system, in microseconds. */
    cpuMicros: z.number(),
    /** The ingest's counters (0 for broker-only). */
    readingsStored: z.number(),
    messagesReceived: z.number(),
  }),
  z.strictObject({
    type: z.literal("stats"),
    id: z.number().int(),
    inbox: z.number().int(),
    deadLetters: z.number().int(),
    duplicates: z.number(),
    storeErrors: z.number(),
    storeWrites: z.number(),
    storeWriteSeconds: z.number(),
  }),
  z.strictObject({
    type: z.literal("failed"),
    id: z.number().int().optional(),
    message: z.string(),
  }),
]);
export type ChildMessage = z.infer<typeof ChildMessage>;
export type ReadyMessage = Extract<ChildMessage, { type: "ready" }>;
export type SampleMessage = Extract<ChildMessage, { type: "sample" }>;
export type StatsMessage = Extract<ChildMessage, { type: "stats" }>;

export const ParentMessage = z.discriminatedUnion("type", [
  /** CPU time and the ingest's counters now: cheap, polled while a round runs. */
  z.strictObject({ type: z.literal("sample"), id: z.number().int() }),
  /** Inbox depth, dead letters, duplicates, store writes: queries, asked after a round. */
  z.strictObject({ type: z.literal("stats"), id: z.number().int() }),
  /** Stop the ingest and the broker and exit (exiting is what writes a --cpu-prof profile). */
  z.strictObject({ type: z.literal("stop") }),
]);
export type ParentMessage = z.infer<typeof ParentMessage>;

/**
 * The floor sampler (bench/floor-sampler-process.ts): the floor run in short bursts alongside a
 * round, so it is timed under the same load on the machine as the process under test.
 */
/** The floor's input, as bench/ingest-floor.ts floorPayloads makes it; passed as JSON in argv[2]. */
export const SamplerArgs = z.strictObject({
  devices: z.number().int().positive(),
  messages: z.number().int().positive(),
});
export type SamplerArgs = z.infer<typeof SamplerArgs>;

export const SamplerParentMessage = z.discriminatedUnion("type", [
  /** Start bursts (ending any run in progress unreported). */
  z.strictObject({ type: z.literal("start") }),
  /** Stop the bursts and report them. */
  z.strictObject({ type: z.literal("stop"), id: z.number().int() }),
  z.strictObject({ type: z.literal("exit") }),
]);
export type SamplerParentMessage = z.infer<typeof SamplerParentMessage>;

export const SamplerMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("ready") }),
  z.strictObject({
    type: z.literal("result"),
    id: z.number().int(),
    /** CPU time of the bursts (process.cpuUsage, user + system), µs. */
    cpuMicros: z.number(),
    readings: z.number().int(),
    bursts: z.number().int(),
  }),
]);
export type SamplerMessage = z.infer<typeof SamplerMessage>;
