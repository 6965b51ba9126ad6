import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import {
  type ConfigAck,
  type LocalThreshold,
  PROTOCOL_VERSION,
  QUANTITIES,
  type QuantitySpec,
  type Reading,
  type ResolvedEdgeConfig,
  type ResolvedEdgeDevice,
  valuesSchema,
} from "../../contracts/index.js";
import { createDrivers } from "../drivers/index.js";
import type { SampleSource } from "../drivers/simulated.js";
import type { Driver, DriverSink, FieldSample } from "../drivers/types.js";
import { DeviceLink, type DeviceLinkStats } from "../uplink/device-link.js";
import { type LogStats, WriteAheadLog } from "../wal/log.js";
import { IntervalAggregator, LateSampleError } from "./aggregate.js";
import { EdgeDeadLetterLog } from "./dead-letters.js";
import { AlarmCommandRunner, type AlarmOutput, LocalAlarms, logAlarm } from "./local-alarms.js";
import { checkDeviceConfig, type HandledRevision, RevisionStore } from "./remote-config.js";

/**
 * The edge agent: configuration → drivers → (local alarms, aggregation) → write-ahead log →
 * uplink, per device. Every sample is checked against the device's kind (zod, contracts) and
 * evaluated by the local alarms first, online or not; `sample`s are aggregated into interval
 * readings, `interval`s go to the log as they are; a reading is in the log (fsynced) before the
 * uplink may send it. Remote configuration changes the interval and the thresholds.
 */

export const AGENT = { name: "citywatch-edge", version: "0.1.0" } as const;

/** How often open intervals are checked for their end (a device that stops sending still reports). */
const CLOSE_TICK_MS = 1_000;
/** An interval is closed this long after its end, so a sample stamped at the end still joins it. */
const CLOSE_GRACE_MS = 2_000;

export interface AgentDeps {
  readonly log: Logger;
  readonly config: ResolvedEdgeConfig;
  readonly now?: () => number;
  /** Signal models for the simulated driver (cli/ composes them from simulators/). */
  readonly simulation?: SampleSource;
  /** Name of the configuration file, for problems found in the drivers' entries. */
  readonly source?: string;
}

export interface DeviceStats {
  readonly deviceId: string;
  readonly samples: number;
  readonly refused: number;
  /** Samples that came after their interval was sent, logged on their own as replay. */
  readonly late: number;
  readonly readings: number;
  /** Settings in force (from the file, or from the last remote revision applied). */
  readonly reportIntervalS: number;
  readonly localThresholds: readonly LocalThreshold[];
  readonly log: LogStats;
  readonly link: DeviceLinkStats;
  readonly revision?: number;
}

export interface AgentStats {
  readonly devices: DeviceStats[];
  readonly drivers: Record<string, Readonly<Record<string, number>>>;
  readonly walDropped: number;
  readonly deadLetters: ReturnType<EdgeDeadLetterLog["stats"]>;
  readonly alarmCommands?: ReturnType<AlarmCommandRunner["stats"]>;
}

export interface EdgeAgent {
  /** Where drivers hand samples; public so a test or an embedding program can feed the agent. */
  readonly sink: DriverSink;
  readonly wal: WriteAheadLog;
  /** What the drivers refused (edge/agent/dead-letters.ts), served on `GET /dead-letters`. */
  readonly deadLetters: EdgeDeadLetterLog;
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): AgentStats;
  /** The device's connection is up (for tests and health). */
  connected(deviceId: string): boolean;
}

/** A sample the agent does not take: unknown device, wrong kind, values out of range. */
export class SampleRefusedError extends Error {
  readonly code = "EDGE_SAMPLE_REFUSED";
}

interface DeviceState {
  readonly device: ResolvedEdgeDevice;
  readonly aggregator: IntervalAggregator;
  readonly alarms: LocalAlarms;
  readonly link: DeviceLink;
  readonly schema: ReturnType<typeof valuesSchema>;
  handled?: HandledRevision;
  samples: number;
  refused: number;
  late: number;
  readings: number;
}

export function buildAgent(deps: AgentDeps): EdgeAgent {
  const { config } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.log.child({ module: "edge" });
  // Drivers first: a driver entry that is wrong is refused before any file is opened.
  // The dead-letter log opens after the drivers are built; refusals reach it once it is open.
  const opened: { deadLetters?: EdgeDeadLetterLog } = {};
  const drivers: Driver[] = createDrivers(
    config.drivers,
    {
      log,
      devices: config.devices.map((d) => ({ deviceId: d.deviceId, kind: d.kind })),
      now,
      ...(deps.simulation !== undefined ? { simulation: deps.simulation } : {}),
      deadLetters: (letter) => opened.deadLetters?.record(letter),
    },
    deps.source,
  );
  const deadLetters = new EdgeDeadLetterLog(
    config.deadLetters.file ?? join(dirname(config.wal.file), "dead-letters.db"),
    config.deadLetters,
    now,
  );
  opened.deadLetters = deadLetters;
  let walDropped = 0;
  const wal = new WriteAheadLog(
    {
      file: config.wal.file,
      limits: {
        maxBytes: config.wal.maxBytes,
        maxAgeMs: config.wal.maxAgeMs,
        maxReadingsPerMessage: config.wal.maxReadingsPerMessage,
      },
    },
    {
      now,
      onDrop: (dropped) => {
        walDropped++;
        log.warn({ dropped }, "log full: oldest message dropped (reported as log.dropped)");
      },
    },
  );
  const revisions = new RevisionStore(config.remoteConfig.dir);
  const command =
    config.alarms.command === undefined
      ? undefined
      : new AlarmCommandRunner(
          config.alarms.command,
          config.alarms,
          log.child({ module: "alarm-command" }),
        );
  const logLine = logAlarm(log.child({ module: "local-alarm" }));
  const alarmOutput: AlarmOutput = (event) => {
    logLine(event);
    command?.push(event);
  };
  const tls = {
    rejectUnauthorized: config.mqtt.rejectUnauthorized,
    ...(config.mqtt.caFile !== undefined ? { ca: readFileSync(config.mqtt.caFile) } : {}),
  };

  const devices = new Map<string, DeviceState>();
  for (const device of config.devices) {
    const stored = revisions.load(device.deviceId);
    if (stored.problem !== undefined) {
      log.error(
        { deviceId: device.deviceId, problem: stored.problem },
        "stored remote config unreadable; using the file's settings",
      );
    }
    const applied = stored.record?.applied;
    const intervalS = applied?.reportIntervalS ?? device.reportIntervalS;
    const thresholds = applied?.localThresholds ?? device.localThresholds;
    const state: DeviceState = {
      device,
      aggregator: new IntervalAggregator(device.kind, intervalS * 1000),
      alarms: new LocalAlarms(device.deviceId, thresholds, config.alarms.hysteresis, alarmOutput),
      link: new DeviceLink(
        {
          url: config.mqtt.url,
          deviceId: device.deviceId,
          kind: device.kind,
          secret: device.secret,
          keepaliveS: config.mqtt.keepaliveS,
          connectTimeoutMs: config.mqtt.connectTimeoutMs,
          tls,
          uplink: config.uplink,
          agent: AGENT,
        },
        { log, wal, now, onConfig: (payload) => onConfig(device.deviceId, payload) },
      ),
      schema: valuesSchema(device.kind),
      ...(stored.record !== undefined ? { handled: stored.record } : {}),
      samples: 0,
      refused: 0,
      late: 0,
      readings: 0,
    };
    devices.set(device.deviceId, state);
  }

  function append(state: DeviceState, readings: readonly Reading[]): void {
    if (readings.length === 0) return;
    wal.append(state.device.deviceId, readings);
    state.readings += readings.length;
    state.link.notify();
  }

  /** Appends readings formed off the sample path (timer, reconfiguration); a failure is logged with them. */
  function appendOrLog(state: DeviceState, readings: readonly Reading[]): void {
    try {
      append(state, readings);
    } catch (error) {
      log.error({ deviceId: state.device.deviceId, err: error, readings }, "readings not logged");
    }
  }

  const sink: DriverSink = (sample: FieldSample) => {
    const state = devices.get(sample.deviceId);
    if (state === undefined)
      throw new SampleRefusedError(`device ${sample.deviceId} is not served by this agent`);
    try {
      const values = checkValues(state, sample);
      state.alarms.evaluate(sample.ts, values);
      if (sample.form === "interval") {
        const reading = {
          ts: new Date(sample.ts).toISOString(),
          quality: sample.quality,
          values,
        } as Reading;
        append(state, [reading]);
      } else {
        let closed: Reading[];
        try {
          closed = state.aggregator.add(sample.ts, sample.quality, values);
        } catch (error) {
          if (!(error instanceof LateSampleError)) throw error;
          // Its interval was already sent: kept at its own time, in a message marked replay.
          const reading = {
            ts: new Date(sample.ts).toISOString(),
            quality: sample.quality,
            values,
          };
          wal.appendReplay(state.device.deviceId, [reading]);
          state.readings++;
          state.late++;
          state.link.notify();
          closed = [];
        }
        append(state, closed);
      }
      state.samples++;
    } catch (error) {
      state.refused++;
      throw error;
    }
  };

  function onConfig(deviceId: string, payload: Buffer): void {
    const state = devices.get(deviceId);
    if (state === undefined) return;
    const check = checkDeviceConfig(payload, state.device, config.remoteConfig);
    const ts = now();
    const answer = (revision: number, status: ConfigAck["status"], problems?: string[]) =>
      state.link.publishConfigAck({
        v: PROTOCOL_VERSION,
        deviceId: deviceId as ConfigAck["deviceId"],
        revision,
        ts: new Date(ts).toISOString(),
        status,
        ...(problems !== undefined && problems.length > 0 ? { problems } : {}),
      });
    if (check.revision === undefined) {
      log.error(
        { deviceId, problems: check.ok ? [] : check.problems },
        "config message without a readable revision: not answered",
      );
      return;
    }
    const handled = state.handled;
    if (handled !== undefined && check.revision <= handled.revision) {
      // Retained again after a reconnect: repeat the earlier answer (7.2 MAY), apply nothing.
      if (check.revision === handled.revision)
        answer(handled.revision, handled.status, handled.problems);
      return;
    }
    let record: HandledRevision;
    if (!check.ok) {
      record = {
        revision: check.revision,
        status: "rejected",
        problems: check.problems,
        ...(handled?.applied !== undefined ? { applied: handled.applied } : {}),
      };
    } else {
      const settings = check.settings;
      record = {
        revision: check.revision,
        status: "applied",
        applied: {
          revision: check.revision,
          reportIntervalS:
            settings.reportIntervalS ??
            handled?.applied?.reportIntervalS ??
            state.device.reportIntervalS,
          localThresholds: [
            ...(settings.localThresholds ??
              handled?.applied?.localThresholds ??
              state.device.localThresholds),
          ],
        },
      };
    }
    // Recorded before it takes effect: a revision that could not be recorded is not applied (a
    // restart would apply it again); the retained config comes back at the next connect.
    try {
      revisions.save(deviceId, record);
    } catch (error) {
      log.error(
        { deviceId, revision: check.revision, err: error },
        "remote config not recorded; not applied",
      );
      return;
    }
    if (record.status === "rejected") {
      log.warn(
        { deviceId, revision: record.revision, problems: record.problems },
        "remote config rejected; the previous one stays",
      );
    } else if (record.applied !== undefined) {
      const { reportIntervalS = state.device.reportIntervalS, localThresholds = [] } =
        record.applied;
      appendOrLog(state, state.aggregator.setInterval(reportIntervalS * 1000, ts));
      state.alarms.setThresholds(localThresholds, ts);
      log.info(
        { deviceId, revision: record.revision, applied: record.applied },
        "remote config applied",
      );
    }
    state.handled = record;
    answer(record.revision, record.status, record.problems);
  }

  const started: Driver[] = [];
  let closeTimer: NodeJS.Timeout | undefined;
  let statsTimer: NodeJS.Timeout | undefined;

  const closeIntervals = () => {
    const t = now() - CLOSE_GRACE_MS;
    for (const state of devices.values()) appendOrLog(state, state.aggregator.close(t));
  };

  const stats = (): AgentStats => ({
    devices: [...devices.values()].map((s) => ({
      deviceId: s.device.deviceId,
      samples: s.samples,
      refused: s.refused,
      late: s.late,
      readings: s.readings,
      reportIntervalS: s.aggregator.interval / 1000,
      localThresholds: s.alarms.thresholdsInForce(),
      log: wal.stats(s.device.deviceId),
      link: s.link.stats(),
      ...(s.handled !== undefined ? { revision: s.handled.revision } : {}),
    })),
    drivers: Object.fromEntries(started.map((d) => [d.name, d.stats()])),
    walDropped,
    deadLetters: deadLetters.stats(),
    ...(command !== undefined ? { alarmCommands: command.stats() } : {}),
  });

  return {
    sink,
    wal,
    deadLetters,
    stats,
    connected: (deviceId) => devices.get(deviceId)?.link.isConnected ?? false,
    async start() {
      for (const state of devices.values()) state.link.start();
      closeTimer = setInterval(closeIntervals, CLOSE_TICK_MS);
      statsTimer = setInterval(() => log.info(stats(), "edge agent stats"), 60_000);
      statsTimer.unref();
      for (const driver of drivers) {
        await driver.start(sink);
        started.push(driver);
        log.info({ driver: driver.name }, "driver started");
      }
      log.info(
        { devices: devices.size, drivers: drivers.length, wal: config.wal.file },
        "edge agent started",
      );
    },
    async stop() {
      // Inputs first, then what they produced: drivers, open intervals, uplinks, the log.
      for (const driver of [...started].reverse()) {
        await driver
          .stop()
          .catch((error: unknown) =>
            log.error({ err: error, driver: driver.name }, "driver stop failed"),
          );
      }
      if (closeTimer !== undefined) clearInterval(closeTimer);
      if (statsTimer !== undefined) clearInterval(statsTimer);
      for (const state of devices.values()) appendOrLog(state, state.aggregator.cut(now()));
      await Promise.all([...devices.values()].map((s) => s.link.stop()));
      command?.stop();
      wal.close();
      deadLetters.close();
      log.info("edge agent stopped");
    },
  };
}

/**
 * The sample's values as a reading of the device's kind: switches arrive as 1 / 0 (HJ 212 and
 * Modbus report them as numbers) and become booleans; then the contract's ranges apply.
 */
function checkValues(state: DeviceState, sample: FieldSample): Record<string, number | boolean> {
  if (sample.kind !== state.device.kind) {
    throw new SampleRefusedError(
      `device ${sample.deviceId} is ${state.device.kind}, not ${sample.kind}`,
    );
  }
  if (!Number.isFinite(sample.ts)) throw new SampleRefusedError("sample time is not a number");
  const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[state.device.kind];
  const values: Record<string, number | boolean> = {};
  for (const [name, value] of Object.entries(sample.values)) {
    const spec = specs[name];
    if (spec?.type === "boolean") {
      if (value !== 0 && value !== 1)
        throw new SampleRefusedError(`${name} must be 1 or 0, got ${value}`);
      values[name] = value === 1;
    } else {
      values[name] = value;
    }
  }
  const parsed = state.schema.safeParse(values);
  if (!parsed.success) {
    throw new SampleRefusedError(parsed.error.issues.map((i) => i.message).join("; "));
  }
  return values;
}
