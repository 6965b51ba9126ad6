import { join } from "node:path";
import type { Logger } from "pino";
import {
  type Commit,
  type Device,
  deviceTopic,
  type IngestConfig,
  type Site,
  type StoreConfig,
} from "../contracts/index.js";
import type { DeviceLookup } from "./decode.js";
import { ingestMetrics, type IngestMetrics } from "./metrics.js";
import type { Publisher } from "./notify/mqtt.js";
import { Pipeline } from "./pipeline.js";
import { IngestState } from "./state.js";
import { createInfluxStore, type InfluxStoreOptions } from "./store/influxdb.js";
import { createSqliteStore } from "./store/sqlite.js";
import type { TimeSeriesStore } from "./store/types.js";
import { connectSubscriber } from "./subscriber.js";
import { buildTaskSystem, type TaskSystem } from "./tasks/build.js";
import type { Recheck } from "./tasks/graduated.js";
import { InboxGate, type GateDone } from "./gate.js";
import { AlarmStore } from "./rules/alarm-store.js";
import { RulesDriver } from "./rules/driver.js";
import { formatRuleProblems } from "./rules/load.js";
import { RuleSet } from "./rules/rule-set.js";

/** The registry as the ingest sees it (read-only). */
export interface RegistryView extends DeviceLookup {
  devices(): Device[];
  sites(): Site[];
}

export interface IngestDeps {
  readonly log: Logger;
  readonly config: IngestConfig;
  readonly dataDir: string;
  readonly registry: RegistryView;
  /**
   * Where messages come from: a broker to subscribe to with the ingest's service account, or the
   * broker in this process, whose publish gate writes the inbox before it acknowledges.
   */
  readonly mqtt?: { url: string; username: string; password: string; clientId: string };
  readonly local?: LocalBroker;
  readonly now?: () => number;
  /** Publishes task events on the MQTT task topics (QoS 1); absent: no MQTT task target. */
  readonly publishTask?: Publisher | undefined;
  /** Re-checks a warned party's data at the rectification deadline (graduated response). */
  readonly recheck?: Recheck | undefined;
}

/** The rule files could not be loaded: every problem, by file and path. */
export class RulesError extends Error {
  readonly code = "INGEST_RULES";
  constructor(readonly problems: string) {
    super(`the rule files have problems:\n${problems}`);
    this.name = "RulesError";
  }
}

export interface Ingest {
  readonly metrics: IngestMetrics;
  /** The rules in force (reload() swaps them only when every file is valid). */
  readonly rules: RuleSet;
  /** The rules driver; undefined when ingest.rules.enabled is false. */
  readonly driver: RulesDriver | undefined;
  readonly state: IngestState;
  readonly store: TimeSeriesStore;
  readonly pipeline: Pipeline;
  /** Tasks, their notifications, stream and API tokens; the rules driver hands decisions to `tasks.service`. */
  readonly tasks: TaskSystem;
  start(): Promise<void>;
  stop(): Promise<void>;
  mqttConnected(): boolean;
}

/** The broker of the all-in-one process, as the ingest uses it (see broker/app.ts). */
export interface LocalBroker {
  setPublishGate(
    gate: ((topic: string, payload: Buffer, done: GateDone) => void) | undefined,
  ): void;
  /** Publish as the broker itself (retained commits, task topics); resolves when routed. */
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

/** Cache registry lookups briefly: the ingest asks once per message. */
function cachedLookup(registry: DeviceLookup, ttlMs: number, now: () => number): DeviceLookup {
  const devices = new Map<string, { at: number; value: Device | undefined }>();
  const sites = new Map<string, { at: number; value: Site | undefined }>();
  const get = <T>(
    cache: Map<string, { at: number; value: T }>,
    id: string,
    load: (id: string) => T,
  ): T => {
    const hit = cache.get(id);
    const t = now();
    if (hit !== undefined && t - hit.at < ttlMs) return hit.value;
    const value = load(id);
    if (cache.size > 100_000) cache.clear();
    cache.set(id, { at: t, value });
    return value;
  };
  return {
    device: (id) => get(devices, id, (i) => registry.device(i)),
    site: (id) => get(sites, id, (i) => registry.site(i)),
  };
}

/** The InfluxDB store's options from the ingest configuration (validated there, see contracts). */
function influxOptions(store: Extract<StoreConfig, { type: "influxdb" }>): InfluxStoreOptions {
  const common = { url: store.url, timeoutMs: store.timeoutMs, maxRetries: store.maxRetries };
  if (store.api === "v1") {
    return {
      ...common,
      api: "v1",
      v1: {
        database: store.database ?? "citywatch",
        ...(store.retentionPolicy !== undefined ? { retentionPolicy: store.retentionPolicy } : {}),
        ...(store.username !== undefined ? { username: store.username } : {}),
        ...(store.password !== undefined ? { password: store.password } : {}),
      },
    };
  }
  return {
    ...common,
    api: "v2",
    v2: {
      org: store.org ?? "",
      bucket: store.bucket ?? "",
      token: store.token ?? "",
      ...(store.database !== undefined ? { database: store.database } : {}),
      ...(store.retentionPolicy !== undefined ? { retentionPolicy: store.retentionPolicy } : {}),
    },
  };
}

/** How often the dead letters are held to ingest.deadLetters. */
const DEAD_LETTER_PRUNE_MS = 60_000;

export function build(deps: IngestDeps): Ingest {
  const log = deps.log.child({ module: "ingest" });
  const now = deps.now ?? Date.now;
  const metrics = ingestMetrics();
  const state = new IngestState(join(deps.dataDir, "ingest.db"));
  const store =
    deps.config.store.type === "sqlite"
      ? createSqliteStore(join(deps.dataDir, "timeseries.db"))
      : createInfluxStore(influxOptions(deps.config.store), { log });
  if ((deps.mqtt === undefined) === (deps.local === undefined))
    throw new Error("the ingest needs exactly one of mqtt and local");
  let subscriber: ReturnType<typeof connectSubscriber> | undefined;
  const publishCommit = (deviceId: string, committedSeq: number) => {
    if (deps.local === undefined) return subscriber?.publishCommit(deviceId, committedSeq);
    const commit: Commit = {
      v: 1,
      deviceId: deviceId as Commit["deviceId"],
      committedSeq,
      ts: new Date(now()).toISOString(),
    };
    // A failed publish is logged by the broker adapter; the next commit supersedes a lost one.
    deps.local
      .publish(deviceTopic(deviceId, "commit"), JSON.stringify(commit), { qos: 1, retain: true })
      .catch(() => undefined);
  };
  let gate: InboxGate | undefined;

  const rulesConfig = deps.config.rules;
  const rules = new RuleSet({
    defaultPack: rulesConfig.defaultPack,
    directories: rulesConfig.directories,
  });
  const problems = rules.reload();
  if (problems.length > 0) throw new RulesError(formatRuleProblems(problems));
  let driver: RulesDriver | undefined;
  const tasks = buildTaskSystem({
    log,
    config: deps.config.tasks,
    dataDir: deps.dataDir,
    registry: deps.registry,
    metricsRegistry: metrics.registry,
    now,
    publish:
      deps.publishTask ??
      ((topic, payload) =>
        deps.local !== undefined
          ? deps.local.publish(topic, payload, { qos: 1, retain: false })
          : subscriber === undefined
            ? Promise.reject(new Error("not connected to the broker"))
            : subscriber.client.publishAsync(topic, payload, { qos: 1 }).then(() => undefined)),
    recheck:
      deps.recheck ??
      ((task) => driver?.recheck(task.rule.id, task.subject.type, task.subject.id) ?? "no_data"),
  });
  const alarms = rulesConfig.enabled ? new AlarmStore(join(deps.dataDir, "alarms.db")) : undefined;
  if (alarms !== undefined) {
    driver = new RulesDriver({
      log: log.child({ module: "rules" }),
      rules,
      registry: deps.registry,
      alarms,
      sink: tasks.service,
      region: rulesConfig.region,
      tickMs: rulesConfig.tickMs,
      now,
      metricsRegistry: metrics.registry,
      backfill: async (device, fromMs, toMs) =>
        (
          await store.readings({
            deviceId: device.id,
            kind: device.kind,
            fromMs,
            toMs,
            limit: 10_000,
          })
        ).map((r) => ({
          deviceId: device.id,
          kind: device.kind,
          timeMs: r.timeMs,
          quality: r.quality,
          values: r.values,
          replay: false,
        })),
    });
  }
  const pipeline = new Pipeline({
    log,
    config: deps.config,
    state,
    store,
    registry: cachedLookup(deps.registry, 5_000, now),
    metrics,
    now,
    publishCommit,
    ...(driver === undefined ? {} : { onStored: (readings) => driver?.onStoredBatch(readings) }),
    brokerConnected: () => gate !== undefined || (subscriber?.connected() ?? false),
  });
  metrics.observe({
    inbox: () => state.inboxDepth(),
    storeUp: () => (pipeline.isStoreUp ? 1 : 0),
    deadLetterBytes: () => state.deadLetterBytes(),
  });
  let pruneTimer: NodeJS.Timeout | undefined;
  const pruneDeadLetters = () => {
    try {
      const pruned = state.pruneDeadLetters(now(), deps.config.deadLetters);
      if (pruned.age > 0) metrics.deadLettersPruned.inc({ why: "age" }, pruned.age);
      if (pruned.bytes > 0) {
        metrics.deadLettersPruned.inc({ why: "bytes" }, pruned.bytes);
        log.warn(
          { pruned: pruned.bytes, maxBytes: deps.config.deadLetters.maxBytes },
          "dead letters at their byte bound; the oldest were deleted",
        );
      }
    } catch (error) {
      log.error({ err: (error as Error).message }, "dead letters could not be pruned");
    }
  };
  return {
    metrics,
    rules,
    driver,
    state,
    store,
    pipeline,
    tasks,
    async start() {
      await store.open().catch((error: unknown) => {
        // Start anyway: messages wait in the inbox until the store answers.
        pipeline.markStoreDown();
        log.warn(
          { err: (error as Error).message, store: store.name },
          "store not reachable at start; holding messages until it is",
        );
      });
      tasks.start();
      pruneDeadLetters();
      pruneTimer = setInterval(pruneDeadLetters, DEAD_LETTER_PRUNE_MS);
      pruneTimer.unref();
      // Windows are read back from the store in the background; alarms hold on missing data.
      driver?.start().catch((error: unknown) => {
        log.warn({ err: (error as Error).message }, "rules backfill failed");
      });
      pipeline.start();
      if (deps.local !== undefined) {
        gate = new InboxGate({
          log,
          state,
          metrics,
          now,
          inboxMaxMessages: deps.config.inboxMaxMessages,
          onMessages: () => pipeline.notify(),
        });
        deps.local.setPublishGate(gate.accept);
        // The broker in this process starts with no retained messages (unless on Redis).
        pipeline.republishAll();
        log.info({ store: store.name, inbox: state.inboxDepth() }, "ingest started (in-process)");
        return;
      }
      if (deps.mqtt === undefined) return;
      subscriber = connectSubscriber(
        { ...deps.mqtt, inboxMaxMessages: deps.config.inboxMaxMessages },
        {
          log,
          state,
          metrics,
          now,
          onMessage: () => pipeline.notify(),
          onConnect: (sessionPresent) => {
            pipeline.brokerReconnected();
            // A broker that kept nothing of our session may have lost the retained commits too.
            if (!sessionPresent) pipeline.republishAll();
          },
        },
      );
      log.info({ store: store.name, inbox: state.inboxDepth() }, "ingest started");
    },
    async stop() {
      // The last round still publishes its commits, so the pipeline stops before the connection.
      // Closed, not removed: until the broker stops, device data is refused (and re-sent later),
      // never acknowledged past the inbox.
      gate?.close();
      if (pruneTimer !== undefined) clearInterval(pruneTimer);
      await pipeline.stop();
      driver?.stop();
      alarms?.close();
      // Deliveries in flight may publish on the subscriber's connection: tasks stop first.
      await tasks.stop();
      await subscriber?.stop();
      await store.close();
      state.close();
      log.info("ingest stopped");
    },
    mqttConnected: () => gate !== undefined || (subscriber?.connected() ?? false),
  };
}
