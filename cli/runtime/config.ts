import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import {
  CITYWATCH_ENV,
  CitywatchConfig,
  ConfigError,
  type Problem,
  loadConfig,
} from "../../contracts/index.js";

/**
 * Command-line flags of the commands that run a component (`start`, `broker`, `ingest`), by
 * commander's attribute name. Each command attaches only the option sets of what it runs
 * (COMMON_OPTIONS, BROKER_OPTIONS, INGEST_OPTIONS, INGEST_SOURCE_OPTIONS), so a flag it does not
 * take is simply absent here.
 */
export interface RunFlags {
  config?: string;
  dataDir?: string;
  logLevel?: string;
  pretty?: boolean;
  httpHost?: string;
  httpPort?: string;
  host?: string;
  mqttPort?: string;
  mqttsPort?: string;
  wsPort?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  redisUrl?: string;
  brokerId?: string;
  store?: string;
  influxdbUrl?: string;
  influxdbApi?: string;
  influxdbDatabase?: string;
  influxdbRetentionPolicy?: string;
  influxdbUsername?: string;
  influxdbToken?: string;
  influxdbOrg?: string;
  influxdbBucket?: string;
  rulesDir?: string[];
  rulesRegion?: string;
  httpReadings?: string;
  brokerUrl?: string;
  brokerUsername?: string;
  brokerClientId?: string;
  brokerPasswordFile?: string;
  databaseUrl?: string;
  databaseSchema?: string;
  nodeId?: string;
  partitions?: string | number;
}

/** One flag: its commander spelling, what it means, and the configuration path it sets. */
interface FlagSpec {
  readonly flags: string;
  readonly description: string;
  /** Configuration path the flag overrides (defaults < file < environment < flags). */
  readonly path?: readonly string[];
  /** The configuration value of the flag's raw value (default: the value itself). */
  readonly value?: (raw: unknown) => unknown;
  /** The environment variable that sets the same value, when its path differs from `path`. */
  readonly env?: string;
  /** Do not show the default in the help (it is not a fixed value). */
  readonly hideDefault?: boolean;
}

/** One concern's flags; attach with `withOptions(command, …sets)`. */
export type OptionSet = readonly FlagSpec[];

/** A secret read from a file, so that it appears neither in `ps` output nor in shell history. */
function secretFromFile(raw: unknown): unknown {
  const file = String(raw);
  let text: string;
  try {
    text = readFileSync(resolve(file), "utf8");
  } catch (error) {
    throw new FlagProblem(`cannot read ${file}: ${(error as Error).message}`);
  }
  const secret = text.replace(/\r?\n$/, "");
  if (secret === "") throw new FlagProblem(`${file} is empty`);
  return secret;
}

class FlagProblem extends Error {}

/** Flags every running component takes: configuration file, data directory, logs, HTTP listener. */
export const COMMON_OPTIONS: OptionSet = [
  { flags: "-c, --config <file>", description: "configuration file (YAML); also CITYWATCH_CONFIG" },
  {
    flags: "--data-dir <dir>",
    description: "data directory (registry, tokens, embedded state)",
    path: ["dataDir"],
  },
  {
    flags: "--log-level <level>",
    description: "fatal | error | warn | info | debug | trace | silent",
    path: ["log", "level"],
  },
  {
    flags: "--pretty",
    description: "human-readable logs instead of JSON lines",
    path: ["log", "pretty"],
    value: () => true,
  },
  {
    flags: "--http-host <address>",
    description: "address the HTTP listener (API, /metrics, /healthz) binds to",
    path: ["http", "host"],
  },
  {
    flags: "--http-port <port>",
    description: "HTTP port (API, /metrics, /healthz); 0 = any free port",
    path: ["http", "port"],
  },
];

/** Flags of the embedded MQTT broker: listeners, TLS, persistence. */
export const BROKER_OPTIONS: OptionSet = [
  {
    flags: "--host <address>",
    description: "address the MQTT listeners bind to (0.0.0.0 for field devices)",
    path: ["broker", "host"],
  },
  {
    flags: "--mqtt-port <port>",
    description: "MQTT/TCP port; 0 = any free port",
    path: ["broker", "mqtt", "port"],
  },
  {
    flags: "--mqtts-port <port>",
    description: "MQTT/TLS port, listening only with --tls-cert and --tls-key",
    path: ["broker", "tls", "port"],
  },
  {
    flags: "--ws-port <port>",
    description: "MQTT over WebSocket port (wss with TLS); 0 = any free port",
    path: ["broker", "ws", "port"],
  },
  {
    flags: "--tls-cert <file>",
    description: "TLS certificate (PEM)",
    path: ["broker", "tls", "certFile"],
  },
  {
    flags: "--tls-key <file>",
    description: "TLS private key (PEM)",
    path: ["broker", "tls", "keyFile"],
  },
  {
    flags: "--tls-ca <file>",
    description: "CA bundle to verify client certificates against (PEM)",
    path: ["broker", "tls", "caFile"],
  },
  {
    flags: "--redis-url <url>",
    description: "Redis for broker persistence and clustering, e.g. redis://127.0.0.1:6379",
    path: ["broker", "persistence"],
    env: "CITYWATCH_REDIS_URL",
    value: (url) => ({ type: "redis", url }),
  },
  {
    flags: "--broker-id <id>",
    description: "this broker's id in a cluster",
    path: ["broker", "id"],
    hideDefault: true,
  },
];

/** Flags of a cluster node (`start` on a shared PostgreSQL; docs/cluster.md). */
export const CLUSTER_OPTIONS: OptionSet = [
  {
    flags: "--database-url <url>",
    description:
      "the cluster's shared PostgreSQL (postgres://…): run as one node of a cluster; absent: the data directory's files",
    path: ["cluster", "databaseUrl"],
  },
  {
    flags: "--database-schema <name>",
    description: "the schema within it (default: the server's search_path)",
    path: ["cluster", "databaseSchema"],
  },
  {
    flags: "--node-id <id>",
    description: "this node's name in the cluster (default: host name and process id)",
    path: ["cluster", "nodeId"],
    hideDefault: true,
  },
  {
    flags: "--partitions <n>",
    description: "the deployment's partition count, the same on every node (default 64)",
    path: ["cluster", "partitions"],
  },
];

/** Flags of the ingest and what runs with it: the time-series store, the rules, the API. */
export const INGEST_OPTIONS: OptionSet = [
  {
    flags: "--store <type>",
    description: "sqlite (embedded, {dataDir}/timeseries.db) | influxdb",
    path: ["ingest", "store", "type"],
  },
  {
    flags: "--influxdb-url <url>",
    description: "InfluxDB base URL, e.g. http://127.0.0.1:8086 (selects the InfluxDB store)",
    path: ["ingest", "store", "url"],
  },
  {
    flags: "--influxdb-api <v1|v2>",
    description:
      "v1: /write with a database (InfluxDB 1.x); v2: /api/v2/write with org, bucket and token (default v1)",
    path: ["ingest", "store", "api"],
  },
  {
    flags: "--influxdb-database <db>",
    description: "v1 database (default citywatch); v2: the database InfluxQL queries name",
    path: ["ingest", "store", "database"],
  },
  {
    flags: "--influxdb-retention-policy <rp>",
    description: "v1 retention policy",
    path: ["ingest", "store", "retentionPolicy"],
  },
  {
    flags: "--influxdb-username <user>",
    description: "v1 user (the password only from CITYWATCH_INFLUXDB_PASSWORD or the file)",
    path: ["ingest", "store", "username"],
  },
  {
    flags: "--influxdb-org <org>",
    description: "v2 organisation",
    path: ["ingest", "store", "org"],
  },
  {
    flags: "--influxdb-bucket <bucket>",
    description: "v2 bucket",
    path: ["ingest", "store", "bucket"],
  },
  {
    flags: "--influxdb-token <token>",
    description: "v2 API token (visible in ps: prefer CITYWATCH_INFLUXDB_TOKEN or the file)",
    path: ["ingest", "store", "token"],
  },
  {
    flags: "--rules-dir <dir...>",
    description: "directories of local rule files, loaded after the default pack (docs/rules.md)",
    path: ["ingest", "rules", "directories"],
  },
  {
    flags: "--rules-region <region>",
    description: "regulatory region keying regional limits (beijing, shanghai, …)",
    path: ["ingest", "rules", "region"],
  },
  {
    flags: "--http-readings <token|open>",
    description:
      "token: the readings endpoints need a bearer token; open: none (a proxy authenticates)",
    path: ["http", "readings"],
  },
];

/** Flags of the ingest run alone: the broker it subscribes to, with its service account. */
export const INGEST_SOURCE_OPTIONS: OptionSet = [
  {
    flags: "--broker-url <url>",
    description: "broker the ingest subscribes to: mqtt://, mqtts://, ws:// or wss:// (required)",
    path: ["ingest", "mqtt", "url"],
  },
  {
    flags: "--broker-username <name>",
    description: "the ingest's service account",
    path: ["ingest", "mqtt", "username"],
  },
  {
    flags: "--broker-client-id <id>",
    description: "MQTT client id: the account name or <name>-…",
    path: ["ingest", "mqtt", "clientId"],
  },
  {
    flags: "--broker-password-file <file>",
    description:
      "file holding the service account's secret (required unless CITYWATCH_INGEST_MQTT_PASSWORD is set; there is no password flag, so the secret stays out of ps)",
    path: ["ingest", "mqtt", "password"],
    value: secretFromFile,
  },
];

const ALL_OPTIONS: OptionSet = [
  ...COMMON_OPTIONS,
  ...BROKER_OPTIONS,
  ...INGEST_OPTIONS,
  ...INGEST_SOURCE_OPTIONS,
  ...CLUSTER_OPTIONS,
];

function at(tree: unknown, path: readonly string[]): unknown {
  let node = tree;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** The built-in defaults, shown in the help next to each flag. */
const DEFAULTS: unknown = CitywatchConfig.parse({});
const ENV_OF = new Map(Object.entries(CITYWATCH_ENV).map(([name, path]) => [path.join("."), name]));

function describe(spec: FlagSpec): string {
  const notes: string[] = [];
  if (spec.path !== undefined) {
    const env = spec.env ?? ENV_OF.get(spec.path.join("."));
    if (env !== undefined) notes.push(`env ${env}`);
    const fallback = at(DEFAULTS, spec.path);
    if (
      spec.hideDefault !== true &&
      (typeof fallback === "string" || typeof fallback === "number")
    ) {
      notes.push(`default ${String(fallback)}`);
    }
  }
  return notes.length === 0 ? spec.description : `${spec.description} [${notes.join("; ")}]`;
}

/** Attach option sets to a command, each flag once even if two sets name it. */
export function withOptions(command: Command, ...sets: OptionSet[]): Command {
  const seen = new Set<string>();
  for (const spec of sets.flat()) {
    if (seen.has(spec.flags)) continue;
    seen.add(spec.flags);
    command.addOption(new Option(spec.flags, describe(spec)));
  }
  return command;
}

function setPath(tree: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = tree;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (typeof next === "object" && next !== null && !Array.isArray(next)) {
      node = next as Record<string, unknown>;
    } else {
      const created: Record<string, unknown> = {};
      node[key] = created;
      node = created;
    }
  });
}

/** The flags given, as a partial configuration tree; a flag that cannot be read is a problem. */
function overridesOf(flags: RunFlags): Record<string, unknown> {
  const tree: Record<string, unknown> = {};
  const problems: Problem[] = [];
  const given = flags as Record<string, unknown>;
  for (const spec of ALL_OPTIONS) {
    if (spec.path === undefined) continue;
    const raw = given[new Option(spec.flags).attributeName()];
    if (raw === undefined) continue;
    try {
      setPath(tree, spec.path, spec.value === undefined ? raw : spec.value(raw));
    } catch (error) {
      if (!(error instanceof FlagProblem)) throw error;
      problems.push({ path: new Option(spec.flags).long ?? spec.flags, message: error.message });
    }
  }
  if (problems.length > 0) throw new ConfigError("command line", problems);
  return tree;
}

/**
 * Load the configuration once: defaults < file (`--config` or CITYWATCH_CONFIG) < environment
 * (CITYWATCH_*) < flags. Throws ConfigError listing every problem.
 */
export function loadCitywatchConfig(
  flags: RunFlags,
  env: NodeJS.ProcessEnv = process.env,
): CitywatchConfig {
  const file = flags.config ?? env.CITYWATCH_CONFIG;
  return loadConfig(CitywatchConfig, {
    file: file === undefined || file === "" ? undefined : resolve(file),
    env,
    envMapping: CITYWATCH_ENV,
    overrides: overridesOf(flags),
  });
}

export { ConfigError };
