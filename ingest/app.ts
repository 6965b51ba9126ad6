import { statfsSync } from "node:fs";
import { join } from "node:path";
import { Gauge } from "prom-client";
import type { Logger } from "pino";
import {
  type Commit,
  type Device,
  deviceTopic,
  type IngestConfig,
  type Site,
  type StoreConfig,
} from "../contracts/index.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import type { DeviceLookup } from "./decode.js";
import { ingestMetrics, type IngestMetrics } from "./metrics.js";
import { Pipeline } from "./pipeline.js";
import type { Pruned } from "./dead-letters.js";
import { IngestState } from "./state.js";
import { createInfluxStore, type InfluxStoreOptions } from "./store/influxdb.js";
import { createSqliteStore } from "./store/sqlite.js";
import { withLatestCache } from "./store/latest-cache.js";
import type { TimeSeriesStore } from "./store/types.js";
import { connectSubscriber } from "./subscriber.js";
import { freeBytes, InboxGate, isDiskFull, type GateDone } from "./gate.js";

/** The registry as the ingest sees it (read-only). */
export interface RegistryView extends DeviceLookup {
  devices(): Device[];
  sites(): Site[];
  /**
   * Whether the registry changed since the last ask (cli/runtime/revocations.ts). When given, the
   * ingest asks before each lookup and drops its cache on a change, so a device disabled or
   * removed has its next reading refused at once; absent, lookups are cached 5 s.
   */
  changed?(): boolean;
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
  /**
   * Readings the store acknowledged, in typed columns, once per round (the rules). Called before
   * the round's commits are published; it must not keep the batch past the call.
   */
  readonly onStored?: ((batch: StoredBatch) => void) | undefined;
}

export interface Ingest {
  readonly metrics: IngestMetrics;
  readonly state: IngestState;
  readonly store: TimeSeriesStore;
  readonly pipeline: Pipeline;
  /** Open the store (or note it is down) and start pruning dead letters; start() does it if not done. */
  open(): Promise<void>;
  /** Take messages: the pipeline, then the publish gate or the subscription. */
  start(): Promise<void>;
  /** Stop taking messages and finish the round in flight; the connection and files stay open. */
  drain(): Promise<void>;
  /** drain(), then close the connection, the store and the inbox. */
  stop(): Promise<void>;
  mqttConnected(): boolean;
  /** Whether the data directory's disk is full: device data is held unacknowledged, commits withheld. */
  diskFull(): boolean;
  /**
   * Publish as the ingest (QoS 1, not retained): through the broker in this process, or on the
   * ingest's own connection to a broker elsewhere. Rejects when not connected.
   */
  publish(topic: string, payload: string): Promise<void>;
}

/** The broker of the all-in-one process, as the ingest uses it (see broker/app.ts). */
export interface LocalBroker {
  setPublishGate(
    gate: ((topic: string, payload: Buffer, done: GateDone) => void) | undefined,
  ): void;
  /** Publish as the broker itself (retained commits, task topics); resolves when routed. */
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

/** A prune of the dead letters on the metrics, and a warning when the byte bound deleted some. */
export function notePruned(
  metrics: IngestMetrics,
  log: Logger,
  pruned: Pruned,
  maxBytes: number,
): void {
  if (pruned.age > 0) metrics.deadLettersPruned.inc({ why: "age" }, pruned.age);
  if (pruned.device > 0) metrics.deadLettersPruned.inc({ why: "device" }, pruned.device);
  if (pruned.bytes > 0) {
    metrics.deadLettersPruned.inc({ why: "bytes" }, pruned.bytes);
    log.warn(
      { pruned: pruned.bytes, maxBytes },
      "dead letters at their byte bound; the oldest were deleted",
    );
  }
}

/**
 * A device's commit published (QoS 1, retained) as the broker in this process: fire and forget.
 * A failed publish is logged by the broker adapter; the next commit supersedes a lost one.
 */
export function commitPublisher(
  broker: LocalBroker,
  now: () => number,
): (deviceId: string, committedSeq: number) => void {
  return (deviceId, committedSeq) => {
    const commit: Commit = {
      v: 1,
      deviceId: deviceId as Commit["deviceId"],
      committedSeq,
      ts: new Date(now()).toISOString(),
    };
    broker
      .publish(deviceTopic(deviceId, "commit"), JSON.stringify(commit), { qos: 1, retain: true })
      .catch(() => undefined);
  };
}

/**
 * Cache registry lookups: the ingest asks once per message. A registry that says when it changed
 * (`changed`) empties the cache at the change, so revocations are not cached.
 */
function cachedLookup(
  registry: DeviceLookup & Pick<RegistryView, "changed">,
  ttlMs: number,
  now: () => number,
): DeviceLookup {
  const devices = new Map<string, { at: number; value: Device | undefined }>();
  const sites = new Map<string, { at: number; value: Site | undefined }>();
  const get = <T>(
    cache: Map<string, { at: number; value: T }>,
    id: string,
    load: (id: string) => T,
  ): T => {
    if (registry.changed?.() === true) {
      devices.clear();
      sites.clear();
    }
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
export function influxOptions(
  store: Extract<StoreConfig, { type: "influxdb" }>,
): InfluxStoreOptions {
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

/**
 * Free space the publish gate keeps for the pipeline to commit what the inbox holds: 5 % of the
 * data directory's file system, at least 512 KiB and at most 64 MiB.
 */
function diskReserveBytes(dataDir: string): number {
  try {
    const s = statfsSync(dataDir);
    return Math.min(64 * 2 ** 20, Math.max(512 * 2 ** 10, Math.round(s.blocks * s.bsize * 0.05)));
  } catch {
    return 512 * 2 ** 10;
  }
}

/**
 * Open a file of the data directory; a full disk says so ("disk full", code DISK_FULL) instead of
 * SQLite's raw error (SQLITE_FULL, or SQLITE_IOERR_SHMSIZE when the WAL index cannot grow).
 */
export function openOnDisk<T>(dataDir: string, file: string, open: () => T): T {
  try {
    return open();
  } catch (error) {
    if (!isDiskFull(error)) throw error;
    const free = freeBytes(dataDir);
    throw Object.assign(
      new Error(
        `disk full: cannot open ${file} in ${dataDir} (${free ?? "?"} bytes free; ${(error as { code?: string }).code ?? ""}): free space there and start again`,
      ),
      { code: "DISK_FULL", cause: error },
    );
  }
}

/** How often the dead letters are held to ingest.deadLetters. */
export const DEAD_LETTER_PRUNE_MS = 60_000;
/** The WAL is truncated at most this often while free space is under twice the reserve. */
const WAL_RECLAIM_MS = 1_000;

export function build(deps: IngestDeps): Ingest {
  const log = deps.log.child({ module: "ingest" });
  const now = deps.now ?? Date.now;
  const metrics = ingestMetrics();
  const reserveBytes = diskReserveBytes(deps.dataDir);
  const state = openOnDisk(
    deps.dataDir,
    "ingest.db",
    () => new IngestState(join(deps.dataDir, "ingest.db")),
  );
  // The newest reading of each device kept beside the store (latest-cache.ts): the API's latest
  // queries answer from memory; this process is the store's writer.
  const store = withLatestCache(
    deps.config.store.type === "sqlite"
      ? openOnDisk(deps.dataDir, "timeseries.db", () =>
          createSqliteStore(join(deps.dataDir, "timeseries.db")),
        )
      : createInfluxStore(influxOptions(deps.config.store), { log }),
    { onLookup: (result, n) => metrics.latestLookups.inc({ result }, n) },
  );
  if ((deps.mqtt === undefined) === (deps.local === undefined))
    throw new Error("the ingest needs exactly one of mqtt and local");
  let subscriber: ReturnType<typeof connectSubscriber> | undefined;
  const local = deps.local === undefined ? undefined : commitPublisher(deps.local, now);
  const publishCommit = (deviceId: string, committedSeq: number) => {
    if (local === undefined) return subscriber?.publishCommit(deviceId, committedSeq);
    local(deviceId, committedSeq);
  };
  let gate: InboxGate | undefined;

  // One lookup for the pipeline and the ledger: commits and dedupe are per registration, so a
  // device id registered again starts clean (commit-ledger.ts useGenerations).
  // A registry that says when it changed (the revocation watch: one read of SQLite's
  // data_version per lookup) empties the cache at every change, so its entries may live long; a
  // device reporting every minute then costs no registry read per message (a read and parse of
  // its record cost about 20 µs). Without it, 5 s.
  const lookup = cachedLookup(
    deps.registry,
    deps.registry.changed === undefined ? 5_000 : 600_000,
    now,
  );
  state.ledger.useGenerations((id) => lookup.device(id)?.generation);
  // Free space in the data directory. Under twice the reserve, ingest.db's WAL (up to 40 MB,
  // never shrinking by itself) is first copied back and truncated, at most every second: on a
  // small disk it would otherwise grow into the reserve, and hold the room the ingest needs to
  // resume after space is freed.
  let reclaimedAt = Number.NEGATIVE_INFINITY;
  const free = (): number | undefined => {
    const bytes = freeBytes(deps.dataDir);
    if (bytes === undefined || bytes >= 2 * reserveBytes || now() - reclaimedAt < WAL_RECLAIM_MS)
      return bytes;
    reclaimedAt = now();
    if (!state.reclaimWal()) return bytes;
    metrics.walReclaims.inc();
    return freeBytes(deps.dataDir);
  };
  const pipeline = new Pipeline({
    log,
    config: deps.config,
    state,
    store,
    registry: lookup,
    metrics,
    now,
    publishCommit,
    ...(deps.onStored === undefined ? {} : { onStored: deps.onStored }),
    brokerConnected: () => gate !== undefined || (subscriber?.connected() ?? false),
    // A quarter of the gate's reserve: what the gate took is committed while room remains.
    diskRoom: () => (free() ?? Number.POSITIVE_INFINITY) >= reserveBytes / 4,
  });
  const diskFull = () => pipeline.isDiskFull || (gate?.diskFull() ?? false);
  new Gauge({
    name: "citywatch_ingest_disk_full",
    help: "1 while the data directory's disk is full: device data held unacknowledged, commits withheld.",
    registers: [metrics.registry],
    collect() {
      this.set(diskFull() ? 1 : 0);
    },
  });
  metrics.observe({
    inbox: () => state.inbox.depth(),
    storeUp: () => (pipeline.isStoreUp ? 1 : 0),
    deadLetterBytes: () => state.deadLetters.bytes(),
  });
  let pruneTimer: NodeJS.Timeout | undefined;
  let opened = false;
  const pruneDeadLetters = () => {
    try {
      notePruned(
        metrics,
        log,
        state.deadLetters.prune(now(), deps.config.deadLetters),
        deps.config.deadLetters.maxBytes,
      );
    } catch (error) {
      log.error({ err: (error as Error).message }, "dead letters could not be pruned");
    }
  };
  async function open(): Promise<void> {
    if (opened) return;
    opened = true;
    await store.open().catch((error: unknown) => {
      // Start anyway: messages wait in the inbox until the store answers.
      pipeline.markStoreDown();
      log.warn(
        { err: (error as Error).message, store: store.name },
        "store not reachable at start; holding messages until it is",
      );
    });
    pruneDeadLetters();
    pruneTimer = setInterval(pruneDeadLetters, DEAD_LETTER_PRUNE_MS);
    pruneTimer.unref();
  }

  async function drain(): Promise<void> {
    // The last round still publishes its commits, so the pipeline stops before the connection.
    // Closed, not removed: until the broker stops, device data is refused (and re-sent later),
    // never acknowledged past the inbox.
    gate?.close();
    if (pruneTimer !== undefined) clearInterval(pruneTimer);
    await pipeline.stop();
  }

  return {
    metrics,
    state,
    store,
    pipeline,
    open,
    drain,
    async start() {
      await open();
      pipeline.start();
      if (deps.local !== undefined) {
        gate = new InboxGate({
          log,
          inbox: state.inbox,
          metrics,
          now,
          inboxMaxMessages: deps.config.inboxMaxMessages,
          onMessages: () => pipeline.notify(),
          free,
          reserveBytes,
        });
        deps.local.setPublishGate(gate.accept);
        // The broker in this process starts with no retained messages (unless on Redis).
        pipeline.republishAll();
        log.info({ store: store.name, inbox: state.inbox.depth() }, "ingest started (in-process)");
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
      log.info({ store: store.name, inbox: state.inbox.depth() }, "ingest started");
    },
    async stop() {
      await drain();
      await subscriber?.stop();
      await store.close();
      state.close();
      log.info("ingest stopped");
    },
    mqttConnected: () => gate !== undefined || (subscriber?.connected() ?? false),
    diskFull,
    publish: (topic, payload) =>
      deps.local !== undefined
        ? deps.local.publish(topic, payload, { qos: 1, retain: false })
        : subscriber === undefined
          ? Promise.reject(new Error("not connected to the broker"))
          : subscriber.client.publishAsync(topic, payload, { qos: 1 }).then(() => undefined),
  };
}
