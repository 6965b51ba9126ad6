import { z } from "zod";
import { BrokerConfig, DEFAULT_PORTS } from "./broker.js";
import { Flag, Host, LogLevel, Port } from "./fields.js";

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
  /** HTTP listener for `/metrics` (Prometheus) and `/healthz` (later also the API). */
  http: z
    .strictObject({ host: Host.default("127.0.0.1"), port: Port.default(DEFAULT_PORTS.http) })
    .prefault({}),
  broker: BrokerConfig.prefault({}),
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
  CITYWATCH_BROKER_HOST: ["broker", "host"],
  CITYWATCH_MQTT_PORT: ["broker", "mqtt", "port"],
  CITYWATCH_MQTTS_PORT: ["broker", "tls", "port"],
  CITYWATCH_TLS_CERT: ["broker", "tls", "certFile"],
  CITYWATCH_TLS_KEY: ["broker", "tls", "keyFile"],
  CITYWATCH_WS_PORT: ["broker", "ws", "port"],
  CITYWATCH_WS_ENABLED: ["broker", "ws", "enabled"],
  CITYWATCH_BROKER_ID: ["broker", "id"],
  CITYWATCH_REDIS_URL: ["broker", "persistence", "url"],
};
