import { resolve } from "node:path";
import { CITYWATCH_ENV, CitywatchConfig, ConfigError, loadConfig } from "../../contracts/index.js";

/** Command-line flags shared by the commands that run a component. */
export interface RunFlags {
  config?: string;
  dataDir?: string;
  host?: string;
  mqttPort?: string;
  mqttsPort?: string;
  wsPort?: string;
  httpPort?: string;
  tlsCert?: string;
  tlsKey?: string;
  redisUrl?: string;
  logLevel?: string;
  pretty?: boolean;
  store?: string;
  influxdbUrl?: string;
  influxdbApi?: string;
  influxdbDatabase?: string;
  influxdbToken?: string;
  influxdbOrg?: string;
  influxdbBucket?: string;
  rulesDir?: string[];
}

function overridesOf(flags: RunFlags): Record<string, unknown> {
  const tree: Record<string, Record<string, unknown>> = { broker: {}, http: {}, log: {} };
  const broker = tree.broker as Record<string, unknown>;
  const out: Record<string, unknown> = tree;
  if (flags.dataDir !== undefined) out.dataDir = flags.dataDir;
  if (flags.host !== undefined) broker.host = flags.host;
  if (flags.mqttPort !== undefined) broker.mqtt = { port: flags.mqttPort };
  if (flags.wsPort !== undefined) broker.ws = { port: flags.wsPort };
  const tls: Record<string, unknown> = {};
  if (flags.mqttsPort !== undefined) tls.port = flags.mqttsPort;
  if (flags.tlsCert !== undefined) tls.certFile = flags.tlsCert;
  if (flags.tlsKey !== undefined) tls.keyFile = flags.tlsKey;
  if (Object.keys(tls).length > 0) broker.tls = tls;
  if (flags.redisUrl !== undefined) broker.persistence = { type: "redis", url: flags.redisUrl };
  if (flags.httpPort !== undefined) (tree.http as Record<string, unknown>).port = flags.httpPort;
  if (flags.logLevel !== undefined) (tree.log as Record<string, unknown>).level = flags.logLevel;
  if (flags.pretty === true) (tree.log as Record<string, unknown>).pretty = true;
  const store: Record<string, unknown> = {};
  if (flags.store !== undefined) store.type = flags.store;
  if (flags.influxdbUrl !== undefined) store.url = flags.influxdbUrl;
  if (flags.influxdbApi !== undefined) store.api = flags.influxdbApi;
  if (flags.influxdbDatabase !== undefined) store.database = flags.influxdbDatabase;
  if (flags.influxdbToken !== undefined) store.token = flags.influxdbToken;
  if (flags.influxdbOrg !== undefined) store.org = flags.influxdbOrg;
  if (flags.influxdbBucket !== undefined) store.bucket = flags.influxdbBucket;
  const ingest: Record<string, unknown> = {};
  if (Object.keys(store).length > 0) ingest.store = store;
  if (flags.rulesDir !== undefined) ingest.rules = { directories: flags.rulesDir };
  if (Object.keys(ingest).length > 0) out.ingest = ingest;
  return out;
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
