import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { LocalThreshold } from "../model/device-messages.js";
import { DeviceId } from "../model/ids.js";
import { SensorKind } from "../model/sensors.js";
import { MAX_READINGS_PER_MESSAGE } from "../model/uplink.js";
import { Flag, Host, LogLevel, MqttUrl, Port, PositiveInt } from "./fields.js";
import { loadConfig, type LoadOptions } from "./load.js";
import { ConfigError, type Problem } from "./problems.js";

/**
 * Configuration of the edge agent (`citywatch edge --config edge.yaml`): the broker it publishes
 * to, the devices it serves (each its own MQTT identity), the write-ahead log, the uplink's
 * window and timers, local alarms and the field drivers. docs/edge.md is the reference.
 */

/**
 * Bounds of the edge's write-ahead log (edge/wal). Policy when a bound is reached
 * (docs/protocol.md 6.3, "Log full"): the OLDEST uncommitted messages are deleted, across all
 * devices of the agent, oldest append first, until the log is back under `maxBytes`; messages
 * whose last reading was appended more than `maxAgeMs` ago are deleted too. Every deleted message
 * is added to its device's `dropped` count, reported in its status (`log.dropped`); its seq is
 * never reused, so the ingest's gap timeout records it as `missing_seq`. Nothing is dropped
 * silently.
 */
export const WalLimits = z.strictObject({
  /** Readings per message, at most the protocol's limit (protocol section 8). */
  maxReadingsPerMessage: PositiveInt.pipe(z.number().max(MAX_READINGS_PER_MESSAGE)).default(
    MAX_READINGS_PER_MESSAGE,
  ),
  /**
   * Bytes of reading JSON kept in the log, all devices together (SQLite's own overhead, about
   * 30-40 bytes per message, comes on top). At least 64 KiB so a full message always fits.
   */
  maxBytes: PositiveInt.pipe(z.number().min(64 * 1024)).default(256 * 1024 * 1024),
  /** Time in the log after which an uncommitted message is dropped: 7 days by default. */
  maxAgeMs: PositiveInt.pipe(z.number().min(60_000)).default(7 * 24 * 3_600_000),
});
export type WalLimits = z.infer<typeof WalLimits>;
export type WalLimitsInput = z.input<typeof WalLimits>;

/** One device the agent speaks for: one MQTT connection, one seq counter, one log of messages. */
export const EdgeDevice = z
  .strictObject({
    deviceId: DeviceId,
    kind: SensorKind,
    /** The secret printed by `citywatch devices add`; or read it from a file or an environment variable. */
    secret: z.string().min(1).optional(),
    secretFile: z.string().min(1).optional(),
    secretEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: "must be a variable name" })
      .optional(),
    /**
     * Seconds per reading sent: samples are aggregated into intervals of this length, aligned to
     * the wall clock (60 = one reading per minute, ending on the minute). The device's remote
     * configuration (`reportIntervalS`) may change it.
     */
    reportIntervalS: PositiveInt.pipe(z.number().max(86_400)).default(60),
    /** Thresholds evaluated on every sample at the edge, even offline (remote config may replace them). */
    localThresholds: z.array(LocalThreshold).max(32).default([]),
  })
  .superRefine((device, ctx) => {
    const sources = [device.secret, device.secretFile, device.secretEnv].filter(
      (s) => s !== undefined,
    );
    if (sources.length !== 1) {
      ctx.addIssue({
        code: "custom",
        path: ["secret"],
        message: "give exactly one of secret, secretFile or secretEnv",
      });
    }
  });
export type EdgeDevice = z.infer<typeof EdgeDevice>;

/**
 * A field driver. Only `type` is checked here; each driver checks its own options with its own
 * schema when the agent starts (edge/drivers/index.ts), and names problems by the same path.
 */
export const EdgeDriver = z.looseObject({
  type: z.enum(["simulated", "hj212", "modbus"], {
    error: "must be one of simulated, hj212, modbus",
  }),
});
export type EdgeDriver = z.infer<typeof EdgeDriver>;

export const EdgeConfig = z
  .strictObject({
    log: z
      .strictObject({ level: LogLevel.default("info"), pretty: Flag.default(false) })
      .prefault({}),
    mqtt: z
      .strictObject({
        url: MqttUrl.default("mqtt://127.0.0.1:18830"),
        /** CA bundle (PEM) to verify the broker's certificate with (mqtts://, wss://). */
        caFile: z.string().min(1).optional(),
        /** Never turn off in production: the secret travels in CONNECT. */
        rejectUnauthorized: Flag.default(true),
        keepaliveS: PositiveInt.pipe(z.number().min(10).max(300)).default(60),
        connectTimeoutMs: PositiveInt.default(10_000),
      })
      .prefault({}),
    devices: z
      .array(EdgeDevice)
      .min(1, { error: "the agent needs at least one device" })
      .max(1_000),
    /** The write-ahead log (edge/wal): one SQLite file for all devices. */
    wal: WalLimits.extend({ file: z.string().min(1).default("./data/edge/wal.db") }).prefault({}),
    /**
     * What the field drivers refuse, kept in a bounded SQLite log (edge/agent/dead-letters.ts,
     * docs/edge.md): `file` defaults to `dead-letters.db` beside the write-ahead log.
     */
    deadLetters: z
      .strictObject({
        file: z.string().min(1).optional(),
        /** Rows kept at most; the oldest is pruned first. */
        maxEntries: PositiveInt.pipe(z.number().min(10).max(10_000_000)).default(10_000),
        /** Rows kept at most per source (an MN, a peer address); that source's oldest is pruned first. */
        maxPerSource: PositiveInt.pipe(z.number().max(10_000_000)).default(2_000),
      })
      .prefault({}),
    /** The uplink (docs/protocol.md 6.3 and 6.4). */
    uplink: z
      .strictObject({
        /** Messages sent but not committed, per device, at most (protocol: ≤ 32). */
        window: PositiveInt.pipe(z.number().max(32)).default(32),
        /** Re-send the in-flight messages when the oldest is uncommitted this long... */
        resendTimeoutMs: PositiveInt.default(30_000),
        /** ...doubling while the commit does not move, up to this. */
        resendMaxMs: PositiveInt.default(300_000),
        /** Reconnect delay: exponential from min to max, with full jitter. */
        reconnectMinMs: PositiveInt.default(1_000),
        reconnectMaxMs: PositiveInt.default(60_000),
        /** After connecting, how long to wait for the retained commit before re-sending the log. */
        commitWaitMs: PositiveInt.default(3_000),
        /** New readings wait this long so readings formed together leave in one message. */
        lingerMs: PositiveInt.default(200),
        /** Refresh the retained `online` status with the log figures this often (protocol 5: ≥ 1 min). */
        statusRefreshMs: PositiveInt.pipe(z.number().min(60_000)).default(600_000),
      })
      .prefault({}),
    /** Local alarm outputs (a log line always; optionally a command). */
    alarms: z
      .strictObject({
        /** Clear an alarm only this fraction of the threshold back inside it (hysteresis). */
        hysteresis: z.number().min(0).max(0.5).default(0.05),
        /** Run on every raise and clear, with args + [event, deviceId, quantity, value, threshold]. */
        command: z
          .strictObject({
            path: z.string().min(1),
            args: z.array(z.string()).default([]),
            timeoutMs: PositiveInt.default(10_000),
          })
          .optional(),
        /** Commands running at once at most; further events queue... */
        maxConcurrent: PositiveInt.default(2),
        /** ...up to this many; beyond, the oldest queued event is dropped and counted. */
        maxQueued: PositiveInt.default(100),
      })
      .prefault({}),
    /** Remote configuration: settings the devices accept (docs/protocol.md 7.2). */
    remoteConfig: z
      .strictObject({
        /** Where the applied revision of each device is kept across restarts. */
        dir: z.string().min(1).default("./data/edge/device-config"),
        minReportIntervalS: PositiveInt.default(1),
      })
      .prefault({}),
    drivers: z.array(EdgeDriver).max(64).default([]),
    /** `GET /metrics` (Prometheus) and `GET /healthz`; off unless a port is set. */
    http: z.strictObject({ host: Host.default("127.0.0.1"), port: Port.optional() }).prefault({}),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.devices.forEach((d, i) => {
      if (seen.has(d.deviceId)) {
        ctx.addIssue({
          code: "custom",
          path: ["devices", i, "deviceId"],
          message: `device ${d.deviceId} is listed twice`,
        });
      }
      seen.add(d.deviceId);
    });
    if (config.uplink.reconnectMaxMs < config.uplink.reconnectMinMs) {
      ctx.addIssue({
        code: "custom",
        path: ["uplink", "reconnectMaxMs"],
        message: "must be >= uplink.reconnectMinMs",
      });
    }
    if (config.uplink.resendMaxMs < config.uplink.resendTimeoutMs) {
      ctx.addIssue({
        code: "custom",
        path: ["uplink", "resendMaxMs"],
        message: "must be >= uplink.resendTimeoutMs",
      });
    }
  });
export type EdgeConfig = z.infer<typeof EdgeConfig>;
export type EdgeConfigInput = z.input<typeof EdgeConfig>;

/** Environment variables of the edge agent and the configuration path each one sets. */
export const EDGE_ENV: Readonly<Record<string, readonly string[]>> = {
  CITYWATCH_LOG_LEVEL: ["log", "level"],
  CITYWATCH_LOG_PRETTY: ["log", "pretty"],
  CITYWATCH_EDGE_MQTT_URL: ["mqtt", "url"],
  CITYWATCH_EDGE_WAL_FILE: ["wal", "file"],
  CITYWATCH_EDGE_DEAD_LETTERS_FILE: ["deadLetters", "file"],
  CITYWATCH_EDGE_HTTP_PORT: ["http", "port"],
};

/** A device with its secret read, whichever way the file named it. */
export type ResolvedEdgeDevice = Omit<EdgeDevice, "secret" | "secretFile" | "secretEnv"> & {
  readonly secret: string;
};

export type ResolvedEdgeConfig = Omit<EdgeConfig, "devices"> & {
  readonly devices: readonly ResolvedEdgeDevice[];
};

/**
 * Load the edge configuration (defaults < file < environment < flags) and read every device's
 * secret (a relative `secretFile` is relative to the working directory). Throws ConfigError listing every problem, secrets included.
 */
export function loadEdgeConfig(options: LoadOptions): ResolvedEdgeConfig {
  const config = loadConfig(EdgeConfig, { envMapping: EDGE_ENV, ...options });
  const env = options.env ?? {};
  const problems: Problem[] = [];
  const devices = config.devices.map((device, i): ResolvedEdgeDevice => {
    const { secret, secretFile, secretEnv, ...rest } = device;
    let value = secret;
    if (secretFile !== undefined) {
      try {
        value = readFileSync(resolve(secretFile), "utf8").trim();
      } catch (error) {
        problems.push({
          path: `devices.${i}.secretFile`,
          message: `cannot read ${secretFile}: ${(error as Error).message}`,
        });
      }
    }
    if (secretEnv !== undefined) {
      value = env[secretEnv];
      if (value === undefined || value === "") {
        problems.push({
          path: `devices.${i}.secretEnv`,
          message: `environment variable ${secretEnv} is not set`,
        });
      }
    }
    return { ...rest, secret: value ?? "" };
  });
  if (problems.length > 0) throw new ConfigError(options.file ?? "configuration", problems);
  return Object.freeze({ ...config, devices: Object.freeze(devices) });
}
