import { z } from "zod";
import { Flag, MqttUrl, PositiveInt } from "./fields.js";
import { TasksConfig } from "./tasks.js";

const days = (n: number) => n * 24 * 3600 * 1000;

const StoreChoice = z.discriminatedUnion("type", [
  /** Embedded time series in SQLite (`{dataDir}/timeseries.db`): one machine, no server. */
  z.strictObject({ type: z.literal("sqlite") }),
  /** InfluxDB over HTTP line protocol; queries in InfluxQL. */
  z.strictObject({
    type: z.literal("influxdb"),
    url: z.url({ error: "must be a URL, e.g. http://127.0.0.1:8086" }),
    /** v1: `/write?db=&rp=` with user/password (InfluxDB 1.x). v2: `/api/v2/write?org=&bucket=` with a token (1.8+, 2.x, 3.x). */
    api: z.enum(["v1", "v2"]).default("v1"),
    /** v1: the database (default `citywatch`). v2: the database InfluxQL queries name through the DBRP mapping (default: the bucket). */
    database: z.string().min(1).optional(),
    retentionPolicy: z.string().min(1).optional(),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    org: z.string().min(1).optional(),
    bucket: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
    timeoutMs: PositiveInt.default(10_000),
    maxRetries: z
      .preprocess(
        (v) => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v),
        z.number().int().min(0),
      )
      .default(4),
  }),
]);
/** Where readings are stored. A `url` without a `type` means InfluxDB (so CITYWATCH_INFLUXDB_URL alone selects it). */
export const StoreConfig = z.preprocess(
  (value) =>
    typeof value === "object" && value !== null && !("type" in value) && "url" in value
      ? { type: "influxdb", ...value }
      : value,
  StoreChoice.superRefine((store, ctx) => {
    if (store.type !== "influxdb" || store.api !== "v2") return;
    for (const key of ["org", "bucket", "token"] as const) {
      if (store[key] === undefined)
        ctx.addIssue({ code: "custom", path: [key], message: `the v2 API needs ${key}` });
    }
  }),
);
export type StoreConfig = z.infer<typeof StoreConfig>;

export const IngestConfig = z.strictObject({
  enabled: Flag.default(true),
  /** The broker the ingest subscribes to; in the all-in-one process, the embedded one. */
  mqtt: z
    .strictObject({
      url: MqttUrl.optional(),
      username: z.string().min(1).default("ingest"),
      password: z.string().min(1).optional(),
      clientId: z.string().min(1).default("ingest-1"),
    })
    .prefault({}),
  store: StoreConfig.default({ type: "sqlite" }),
  /** Points per store write at most, and the longest a point waits for its batch to fill. */
  batch: z
    .strictObject({ maxPoints: PositiveInt.default(5_000), maxDelayMs: PositiveInt.default(100) })
    .prefault({}),
  /**
   * Messages held in the durable inbox at most. At the bound the ingest stops acknowledging
   * (MQTT PUBACK), so the broker holds further messages in the ingest's persistent session.
   */
  inboxMaxMessages: PositiveInt.default(200_000),
  /**
   * What the dead letters may hold, the oldest pruned first, once a minute: received longer ago
   * than `maxAgeMs` (3 years, as long as the raw readings should be kept: docs/data-model.md 10),
   * and past `maxBytes` of payload and detail (a device sending garbage cannot fill the disk).
   * citywatch_ingest_dead_letters_pruned_total counts what went.
   */
  deadLetters: z
    .strictObject({
      maxBytes: PositiveInt.default(1024 * 1024 * 1024),
      maxAgeMs: PositiveInt.default(days(3 * 365)),
    })
    .prefault({}),
  /** Readings timestamped further ahead than this are dead-lettered (device clock wrong). */
  maxFutureMs: PositiveInt.default(5 * 60 * 1000),
  /** Readings older than this are dead-lettered (an edge's log holds at most this long). */
  maxAgeMs: PositiveInt.default(days(30)),
  /**
   * A missing seq blocks the device's commit until it arrives (an edge re-sends it). After this
   * long with later messages stored, the gap is recorded as a dead letter and the commit moves on.
   */
  gapTimeoutMs: PositiveInt.default(10 * 60 * 1000),
  /** A device is online while its last message is younger than this many expected intervals. */
  onlineIntervals: PositiveInt.default(3),
  /**
   * The rules engine: the default pack (rules/pack) and then local rule directories,
   * evaluated on every stored reading and on a clock tick (silence and steady values still move
   * an alarm). docs/rules.md.
   */
  rules: z
    .strictObject({
      enabled: Flag.default(true),
      /** Load the default pack (rules/pack; its sources in docs/standards.md) first. */
      defaultPack: Flag.default(true),
      /** Directories of local rule files (*.yaml, *.yml, *.json), loaded after the pack, in order. */
      directories: z.array(z.string().min(1)).default([]),
      /** The deployment's regulatory region, which keys regional limit tables (e.g. `beijing`). */
      region: z
        .string()
        .regex(/^[a-z][a-z0-9_-]{0,31}$/, { error: "a region is a lowercase key such as beijing" })
        .default("default"),
      /** Every open or watched alarm is evaluated this often, besides on each reading. */
      tickMs: PositiveInt.default(5_000),
    })
    .prefault({}),
  /** The task service: routing, SLA, graduated response, notifications, API tokens. */
  tasks: TasksConfig.prefault({}),
});
export type IngestConfig = z.infer<typeof IngestConfig>;
