import { hostname } from "node:os";
import type { Logger } from "pino";
import { Registry } from "prom-client";
import { type Broker, type BrokerAddresses, build as buildBroker } from "../../broker/app.js";
import { type CitywatchConfig, ConfigError } from "../../contracts/index.js";
import { influxOptions } from "../../ingest/app.js";
import { createInfluxStore } from "../../ingest/store/influxdb.js";
import { storeRetention } from "../../ingest/store/retention.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import { makePrivate } from "../../registry/private-files.js";
import { PostgresRegistryStore } from "../../registry/store-postgres.js";
import { formatRuleProblems } from "../../rules/load.js";
import { RulesError } from "../../rules/app.js";
import {
  placeholderHealth,
  placeholderPlace,
  placeholderReport,
} from "../../rules/placeholders.js";
import { RuleSet } from "../../rules/rule-set.js";
import { buildSharedTaskSystem, type SharedTaskSystem } from "../../tasks/app.js";
import { PostgresTokenStore } from "../../tasks/auth/store-postgres.js";
import { PostgresTaskStore } from "../../tasks/store-postgres.js";
import { buildApi } from "../runtime/api.js";
import { type ClusterNode, startClusterNode } from "../runtime/cluster-node.js";
import { openSharedDatabase } from "../runtime/database.js";
import { stopOnSignal } from "../runtime/lifecycle.js";
import { localBroker } from "../runtime/local-broker.js";
import type { DeviceRegistry } from "../runtime/registry-api.js";
import { PostgresRegistryWatch } from "../runtime/registry-watch-postgres.js";
import { rulesRegistry } from "../runtime/standby.js";
import { asConfigError, evidenceKeyring } from "../runtime/system.js";
import { apiSessions, listenApi, preflight } from "./serve.js";

/*
 * `citywatch start --database-url postgres://…`: one node of a cluster (docs/cluster.md, Running
 * a node). The same parts as the one-process `start`, on the shared state:
 *
 *   devices ──MQTT──▶ this node's broker (CONNECT checked against the registry in PostgreSQL)
 *     ──publish gate──▶ shared inbox (ingest_inbox) ──▶ PUBACK
 *   lease keeper ──owned partitions──▶ ingest rounds ──▶ InfluxDB, commit ledger, rules
 *     ──decisions──▶ the task service (tasks in PostgreSQL) ──outbox (delivery leases)──▶ webhooks
 *   API (/api/v1, the console, /metrics, /healthz with this node's leases)
 *
 * What stays in the data directory: the evidence signing keys and the link key, attachment files
 * and monthly reports (docs/cluster.md says what that means for several nodes). Nothing is
 * seeded: a cluster's registry comes from `citywatch migrate --to` or the registry's commands,
 * and its first user from `citywatch users add --database-url …`.
 */

/** Connections of a node's pool: the lease keeper, the ingest rounds, the task service, the API. */
const NODE_POOL_SIZE = 10;

export async function serveCluster(config: CitywatchConfig, log: Logger): Promise<void> {
  const database = config.cluster.databaseUrl;
  if (database === undefined) throw new Error("serveCluster needs cluster.databaseUrl");
  const store = config.ingest.store;
  if (store.type !== "influxdb") {
    throw new ConfigError("configuration", [
      {
        path: "ingest.store.type",
        message:
          "a cluster node stores readings in the time-series store the nodes share: influxdb (--store influxdb --influxdb-url …); the embedded store is one process's",
      },
    ]);
  }
  if (config.ingest.mqtt.url !== undefined) {
    throw new ConfigError("configuration", [
      {
        path: "ingest.mqtt.url",
        message:
          "a cluster node takes device data at its own broker's publish gate; ingest.mqtt.url is for the ingest run alone",
      },
    ]);
  }
  await preflight(config, { broker: true, ingest: true });
  const nodeId = config.cluster.nodeId ?? `${hostname()}-${process.pid}`;
  const nodeLog = log.child({ node: nodeId });
  makePrivate(config.dataDir);

  const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  stopOnSignal(nodeLog, stops);
  try {
    const pool = await openSharedDatabase(
      {
        url: database,
        ...(config.cluster.databaseSchema !== undefined
          ? { schema: config.cluster.databaseSchema }
          : {}),
      },
      { max: NODE_POOL_SIZE, applicationName: `citywatch-${nodeId}`.slice(0, 63), log: nodeLog },
    );
    // Ended last: every part below writes through it until it has stopped.
    stops.push({ name: "database", stop: () => pool.end() });
    const registryStore = new PostgresRegistryStore(pool);
    const watch = await PostgresRegistryWatch.open({ pool, store: registryStore, log: nodeLog });
    watch.start();
    stops.push({ name: "registry", stop: () => Promise.resolve(watch.close()) });

    const { broker, addresses } = await startBroker(config, nodeLog, registryStore, watch);
    stops.push({ name: "broker", stop: () => broker.stop() });

    const timeSeries = createInfluxStore(influxOptions(store), { log: nodeLog });
    await timeSeries.open().catch((error: unknown) => {
      // Start anyway: the messages wait in the shared inbox until the store answers.
      nodeLog.warn(
        { err: (error as Error).message, store: timeSeries.name },
        "store not reachable at start; holding messages until it is",
      );
    });
    stops.push({ name: "store", stop: () => timeSeries.close() });

    const ruleSet = new RuleSet({
      defaultPack: config.ingest.rules.defaultPack,
      directories: config.ingest.rules.directories,
    });
    const problems = ruleSet.reload();
    if (problems.length > 0) throw new RulesError(formatRuleProblems(problems));

    const taskMetrics = new Registry();
    const local = localBroker(broker, nodeLog);
    // The task service re-checks a deadline through the node's rules, started after it.
    const started: { node?: ClusterNode } = {};
    const tasks: SharedTaskSystem = asConfigError("evidence links", () =>
      buildSharedTaskSystem(
        {
          log: nodeLog,
          config: config.ingest.tasks,
          dataDir: config.dataDir,
          registry: watch.view(),
          metricsRegistry: taskMetrics,
          now: Date.now,
          publish: (topic, payload) => local.publish(topic, payload, { qos: 1, retain: false }),
          recheck: (task) =>
            started.node?.driver.recheck(task.rule.id, task.subject.type, task.subject.id) ??
            "no_data",
          keyring: evidenceKeyring(
            { config: config.ingest, dataDir: config.dataDir, log: nodeLog },
            Date.now,
          ),
          httpBase: `http://${config.http.host}:${config.http.port}`,
        },
        {
          tasks: new PostgresTaskStore(pool),
          tokens: new PostgresTokenStore(pool),
          holder: nodeId,
        },
      ),
    );
    tasks.start();
    stops.push({ name: "tasks", stop: () => tasks.stop() });

    const view = watch.view();
    const running = await startClusterNode({
      log: nodeLog,
      nodeId,
      pool,
      partitions: config.cluster.partitions,
      config: config.ingest,
      registry: view,
      // Devices on standby are not in service: no rule judges or watches them (standby.ts).
      rulesRegistry: rulesRegistry(view),
      store: timeSeries,
      broker: local,
      rules: ruleSet,
      region: config.ingest.rules.region,
      sink: tasks.service,
      ttlMs: config.cluster.leaseTtlMs,
      renewMs: config.cluster.leaseRenewMs,
    });
    started.node = running;
    // Stopped before the tasks (its last round hands decisions to them) and the broker.
    stops.push({ name: "node", stop: () => running.stop() });

    const placeholders = placeholderReport(
      ruleSet.rules,
      placeholderPlace(config.ingest.rules.region, view.sites()),
    );
    const api = buildApi({
      registry: watch.view(),
      state: {
        ledger: { all: () => running.state.allProgress() },
        deadLetters: running.state.deadLetters,
      },
      store: timeSeries,
      metrics: [broker.metrics.registry, running.metrics.registry, taskMetrics],
      health: () => nodeHealth(broker, running, timeSeries, placeholders),
      onlineIntervals: config.ingest.onlineIntervals,
      now: Date.now,
      tasks: tasks.api,
      readings: config.http.readings,
      trustProxy: config.http.trustProxy,
      sessions: apiSessions(config),
      registryAdmin: {
        registry: clusterRegistry(registryStore, watch),
        mqttPort: addresses.mqtt ?? config.broker.mqtt.port,
        map: config.console.map,
      },
      publicPage: config.console.public,
      rules: () => ruleSet.loaded,
      backtest: { rules: config.ingest.rules, retention: () => storeRetention(store) },
    });
    const httpPort = await listenApi(api, config.http.host, config.http.port);
    stops.push({ name: "api", stop: () => api.close() });

    const base = `http://${config.http.host}:${httpPort}`;
    nodeLog.info(
      { url: base, partitions: config.cluster.partitions },
      "cluster node up: API on /api/v1, metrics on /metrics, this node's leases on /healthz",
    );
    process.stdout.write(
      `\ncitywatch cluster node ${nodeId} is up.\n  MQTT       ${config.broker.host}:${addresses.mqtt ?? "-"}\n  API        ${base}/api/v1   (console ${base}/; users: citywatch users add --database-url …)\n  Health     ${base}/healthz   Metrics ${base}/metrics\n\n`,
    );
  } catch (error) {
    for (const { stop } of [...stops].reverse()) await stop().catch(() => undefined);
    throw error;
  }
}

/**
 * The console's registry routes on a node: changes written to PostgreSQL, then the node's copy
 * read again at once (this node's broker closes a revoked device's sessions now, the others
 * within a poll); sites read from the copy, their parties resolved.
 */
function clusterRegistry(
  store: PostgresRegistryStore,
  watch: PostgresRegistryWatch,
): DeviceRegistry {
  const view = watch.view();
  const written = async <T>(write: Promise<T>): Promise<T> => {
    const result = await write;
    await watch.refresh();
    return result;
  };
  return {
    addDevice: (input) => written(store.addDevice(input)),
    rotateSecret: (id) => written(store.rotateSecret(id)),
    setDeviceEnabled: (id, enabled) => written(store.setDeviceEnabled(id, enabled)),
    getDevice: (id) => store.getDevice(id),
    listSites: () => view.sites(),
    resolvedSite: (id) => view.site(id),
  };
}

/** The broker, its CONNECT checked against the shared registry, revocations from the watch. */
async function startBroker(
  config: CitywatchConfig,
  log: Logger,
  registry: PostgresRegistryStore,
  watch: PostgresRegistryWatch,
): Promise<{ broker: Broker; addresses: BrokerAddresses }> {
  const broker = buildBroker({
    log,
    config: config.broker,
    authenticate: async (username, secret) => {
      const outcome = await registry.authenticate(username, secret);
      if (outcome.ok && outcome.principal.type === "device") {
        if (outcome.leftStandby === true)
          log.info(
            { device: username },
            "device on standby connected: in service now, judged and watched by the rules",
          );
        // Registered a moment ago (on another node, or by the CLI): read the registry again
        // before the CONNECT is accepted, so the device's first reading is known here.
        if (!watch.knows(username) || outcome.leftStandby === true) await watch.refresh();
      }
      return outcome;
    },
    // Device data is acknowledged only once it is in the shared inbox (docs/protocol.md 6.1).
    durableData: true,
  });
  const addresses = await broker.start();
  watch.onRevoked(({ deviceId, why }) => broker.revoke(deviceId, why));
  return { broker, addresses };
}

function nodeHealth(
  broker: Broker,
  node: ClusterNode,
  store: TimeSeriesStore,
  placeholders: ReturnType<typeof placeholderReport>,
): { ok: boolean; detail: Record<string, unknown> } {
  const status = node.status();
  return {
    // A node without partitions is healthy: it receives messages for the others.
    ok: !broker.aedes.closed && status.running && !node.pipeline.failing,
    detail: {
      node: status.nodeId,
      connectedClients: broker.aedes.connectedClients,
      store: store.name,
      storeUp: !node.pipeline.failing,
      partitions: status.partitions,
      owned: status.owned,
      liveNodes: status.liveNodes,
      fairShare: status.fairShare,
      oldestLeaseAgeMs: status.oldestLeaseAgeMs,
      lastRoundAgeMs: status.lastRoundAgeMs,
      takeovers: status.takeovers,
      leasesLost: status.lost,
      rounds: status.rounds,
      messages: status.messages,
      rules: placeholderHealth(placeholders),
    },
  };
}
