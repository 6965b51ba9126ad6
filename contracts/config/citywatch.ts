import { z } from "zod";
import { BrokerConfig, DEFAULT_PORTS } from "./broker.js";
import { digitsToNumber, Flag, Host, LogLevel, Port } from "./fields.js";
import { IngestConfig } from "./ingest.js";

/**
 * `http.trustProxy`: a flag, a hop count, or addresses / CIDR ranges (a list, or one string of
 * them separated by commas, as the environment gives it).
 */
const TrustProxy = z.preprocess(
  (value) => {
    if (typeof value !== "string") return value;
    const flag = Flag.safeParse(value);
    if (flag.success) return flag.data;
    if (/^\d+$/.test(value)) return Number(value);
    return value
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part !== "");
  },
  z.union(
    [
      z.boolean(),
      z.number().int().min(1).max(32),
      z
        .array(
          z.string().regex(/^[0-9A-Fa-f:.]+(\/\d{1,3})?$/, {
            error: "must be an IP address or CIDR range",
          }),
        )
        .min(1),
    ],
    {
      error: "http.trustProxy is true, false, a hop count (1-32), or proxy addresses / CIDR ranges",
    },
  ),
);

/** Configuration of the all-in-one process (`citywatch start`) and of each component run alone. */
export const CitywatchConfig = z.strictObject({
  /** Directory for the embedded state (SQLite registry, later spill and time series). */
  dataDir: z.string().min(1).default("./data"),
  log: z
    .strictObject({
      level: LogLevel.default("info"),
      /** Human-readable logs (pino-pretty) instead of JSON lines. */
      pretty: Flag.default(false),
    })
    .prefault({}),
  /** HTTP listener: the API (`/api/v1`), `/openapi.json`, `/metrics` (Prometheus), `/healthz`. */
  http: z
    .strictObject({
      host: Host.default("127.0.0.1"),
      port: Port.default(DEFAULT_PORTS.http),
      /**
       * `token`: the readings endpoints (devices, readings, aggregates, latest, dead letters)
       * need a bearer token of any role (`citywatch tokens add`), like the task API. `open`: no
       * token, for a deployment whose reverse proxy authenticates users itself.
       */
      readings: z
        .enum(["token", "open"], { error: "http.readings is token or open" })
        .default("token"),
      /**
       * Whom to believe about a client's address (`X-Forwarded-For`), as fastify's `trustProxy`:
       * `false` (default: the socket's peer; a client cannot claim another address), `true`
       * (every hop: only behind a proxy that overwrites the header), a hop count, or the
       * proxies' addresses / CIDR ranges. Sign-in throttling and the readers' per-address
       * bounds count the address this yields (docs/security.md, People and sessions).
       */
      trustProxy: TrustProxy.default(false),
    })
    .prefault({}),
  broker: BrokerConfig.prefault({}),
  ingest: IngestConfig.prefault({}),
  /**
   * A node of a cluster (docs/cluster.md). With `databaseUrl`, `citywatch start` keeps its state
   * in that PostgreSQL, shared with the other nodes (registry, inbox and commit ledger, alarm
   * states, tasks with their outbox and audit trail, users and tokens), and takes its share of
   * the work by leases. Absent: one process on the data directory's files, as ever.
   */
  cluster: z
    .strictObject({
      /** postgres://… (PG* environment variables fill in what it leaves out). */
      databaseUrl: z
        .string()
        .regex(/^postgres(ql)?:\/\//, { error: "cluster.databaseUrl is a postgres:// URL" })
        .optional(),
      /** The schema within it; absent: the server's search_path. */
      databaseSchema: z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,62}$/, {
          error: "cluster.databaseSchema is lower-case letters, digits and _",
        })
        .optional(),
      /**
       * This node's name in the leases, the outbox's delivery leases and the logs; unique in
       * the cluster. Absent: the host name and the process id.
       */
      nodeId: z
        .string()
        .regex(/^[A-Za-z0-9._:-]{1,100}$/, {
          error: "cluster.nodeId is 1-100 letters, digits, '.', '_', ':' or '-'",
        })
        .optional(),
      /** The deployment's partition count: the same on every node, and as `citywatch migrate`. */
      partitions: z.preprocess(
        digitsToNumber,
        z
          .number({ error: "cluster.partitions is a whole number" })
          .int({ error: "cluster.partitions is a whole number" })
          .min(1)
          .max(4_096)
          .default(64),
      ),
      /** How long a partition's lease lasts without renewal, and how often it is renewed. */
      leaseTtlMs: z.number().int().min(1_000).max(600_000).default(6_000),
      leaseRenewMs: z.number().int().min(100).max(300_000).default(2_000),
    })
    .refine((c) => c.leaseRenewMs * 2 <= c.leaseTtlMs, {
      error: "cluster.leaseRenewMs must be at most half of cluster.leaseTtlMs",
      path: ["leaseRenewMs"],
    })
    .prefault({}),
  /** The operators' console served at / (docs/console.md). */
  console: z
    .strictObject({
      map: z
        .strictObject({
          /**
           * The map's base layer: an XYZ tile URL template with {z}, {x}, {y} and optionally {s}
           * (a subdomain), in Web Mercator with WGS-84 coordinates: Tianditu
           * (https://t{s}.tianditu.gov.cn/vec_w/wmts?…&tk=KEY) or a city GIS's tile service.
           * Its origin is added to the console's Content-Security-Policy (img-src). Absent: no
           * tiles; the map draws its base from `areas` alone.
           */
          tileUrl: z
            .url({ protocol: /^https?$/, error: "console.map.tileUrl is an http(s) URL template" })
            .refine((u) => u.includes("{z}") && u.includes("{x}") && u.includes("{y}"), {
              error: "console.map.tileUrl needs {z}, {x} and {y}",
            })
            .optional(),
          /** The tile provider's attribution shown on the map (審图号 for Tianditu). */
          tileAttribution: z.string().max(500).default(""),
          /** What {s} of the template takes, one character each (Tianditu: 01234567). */
          tileSubdomains: z.string().max(16).default("abc"),
          /** The deepest zoom level the tile service answers. */
          tileMaxZoom: z.number().int().min(1).max(22).default(18),
          /**
           * A GeoJSON FeatureCollection of districts and grid cells (polygons with
           * `properties.kind` district | grid and `properties.name`), the map's base without
           * tiles. Default: the demo city's (simulators/demo-city/areas.geojson).
           */
          areas: z.string().min(1).optional(),
        })
        .prefault({}),
      /**
       * The public page at /public (信息公开): readings per district, the monitoring points and
       * case counts, no personal data, no sign-in (contracts/model/public.ts). Off by default:
       * a deployment decides to publish.
       */
      public: z
        .strictObject({
          enabled: Flag.default(false),
          /** Who publishes, shown as the page's heading (e.g. the city's bureau). */
          title: z.string().max(200).default(""),
          /** Days of case counts shown (the last so many days up to now). */
          days: z.number().int().min(1).max(366).default(30),
        })
        .prefault({}),
    })
    .prefault({}),
});
export type CitywatchConfig = z.infer<typeof CitywatchConfig>;
export type CitywatchConfigInput = z.input<typeof CitywatchConfig>;

/**
 * Environment variables and the configuration path each one sets. Environment wins over the
 * file; command-line flags win over both.
 */
export const CITYWATCH_ENV: Readonly<Record<string, readonly string[]>> = {
  CITYWATCH_DATA_DIR: ["dataDir"],
  CITYWATCH_LOG_LEVEL: ["log", "level"],
  CITYWATCH_LOG_PRETTY: ["log", "pretty"],
  CITYWATCH_HTTP_HOST: ["http", "host"],
  CITYWATCH_HTTP_PORT: ["http", "port"],
  CITYWATCH_HTTP_READINGS: ["http", "readings"],
  CITYWATCH_TRUST_PROXY: ["http", "trustProxy"],
  CITYWATCH_MAP_TILE_URL: ["console", "map", "tileUrl"],
  CITYWATCH_PUBLIC_PAGE: ["console", "public", "enabled"],
  CITYWATCH_BROKER_HOST: ["broker", "host"],
  CITYWATCH_MQTT_PORT: ["broker", "mqtt", "port"],
  CITYWATCH_MQTTS_PORT: ["broker", "tls", "port"],
  CITYWATCH_TLS_CERT: ["broker", "tls", "certFile"],
  CITYWATCH_TLS_KEY: ["broker", "tls", "keyFile"],
  CITYWATCH_WS_PORT: ["broker", "ws", "port"],
  CITYWATCH_WS_ENABLED: ["broker", "ws", "enabled"],
  CITYWATCH_BROKER_ID: ["broker", "id"],
  CITYWATCH_REDIS_URL: ["broker", "persistence", "url"],
  CITYWATCH_INGEST_ENABLED: ["ingest", "enabled"],
  CITYWATCH_RULES_ENABLED: ["ingest", "rules", "enabled"],
  CITYWATCH_RULES_REGION: ["ingest", "rules", "region"],
  CITYWATCH_INGEST_MQTT_URL: ["ingest", "mqtt", "url"],
  CITYWATCH_INGEST_MQTT_USERNAME: ["ingest", "mqtt", "username"],
  CITYWATCH_INGEST_MQTT_PASSWORD: ["ingest", "mqtt", "password"],
  CITYWATCH_STORE: ["ingest", "store", "type"],
  CITYWATCH_INFLUXDB_URL: ["ingest", "store", "url"],
  CITYWATCH_INFLUXDB_API: ["ingest", "store", "api"],
  CITYWATCH_INFLUXDB_DATABASE: ["ingest", "store", "database"],
  CITYWATCH_INFLUXDB_RETENTION_POLICY: ["ingest", "store", "retentionPolicy"],
  CITYWATCH_INFLUXDB_USERNAME: ["ingest", "store", "username"],
  CITYWATCH_INFLUXDB_PASSWORD: ["ingest", "store", "password"],
  CITYWATCH_INFLUXDB_ORG: ["ingest", "store", "org"],
  CITYWATCH_INFLUXDB_BUCKET: ["ingest", "store", "bucket"],
  CITYWATCH_INFLUXDB_TOKEN: ["ingest", "store", "token"],
  CITYWATCH_EVIDENCE_KEY_FILE: ["ingest", "tasks", "evidence", "keyFile"],
  CITYWATCH_PUBLIC_URL: ["ingest", "tasks", "evidence", "publicUrl"],
  CITYWATCH_DATABASE_URL: ["cluster", "databaseUrl"],
  CITYWATCH_DATABASE_SCHEMA: ["cluster", "databaseSchema"],
  CITYWATCH_NODE_ID: ["cluster", "nodeId"],
  CITYWATCH_PARTITIONS: ["cluster", "partitions"],
};
