import type pg from "pg";
import type { Logger } from "pino";
import { leaseFence } from "../../cluster/fencing.js";
import { LeaseKeeper, type LeaseStatus } from "../../cluster/leases.js";
import { clusterMetrics, commitLagMetrics } from "../../cluster/metrics.js";
import { partitionOf } from "../../cluster/partition.js";
import { type IngestConfig, parseTopic } from "../../contracts/index.js";
import type { TaskSink } from "../../contracts/model/alarms.js";
import {
  commitPublisher,
  DEAD_LETTER_PRUNE_MS,
  type LocalBroker,
  notePruned,
  type RegistryView,
} from "../../ingest/app.js";
import { ClusterInbox } from "../../ingest/cluster-inbox.js";
import { ClusterPipeline } from "../../ingest/cluster-pipeline.js";
import { InboxGate } from "../../ingest/gate.js";
import { ingestMetrics, type IngestMetrics } from "../../ingest/metrics.js";
import { PostgresIngestState } from "../../ingest/state-postgres.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import { PostgresAlarmStore } from "../../rules/alarm-store-postgres.js";
import { RulesDriver, type RulesRegistry } from "../../rules/driver.js";
import type { RuleSet } from "../../rules/rule-set.js";
import { RulesScope } from "./cluster-rules.js";
import { readBack } from "./history.js";

/*
 * One node of a cluster, from the broker's publish gate to the rules (docs/cluster.md, A node):
 *
 *   broker ──gate──▶ ClusterInbox (ingest_inbox, any partition) ──▶ PUBACK
 *   lease keeper ──owned partitions──▶ ClusterPipeline (take, dedupe, store, applyRound)
 *     ──commits──▶ broker (retained)      ──readings──▶ RulesDriver (scoped by RulesScope,
 *                                                       alarm states in PostgreSQL, fenced)
 *                                                         ──alarm notices──▶ sink
 *
 * Every write of shared state (the ingest's rounds, the alarm states) is fenced by the lease of
 * its partition. The partition of a message is its device's site's, computed here (the only
 * place that knows both the registry and the cluster), as `citywatch migrate` computes it.
 */

export interface ClusterNodeDeps {
  readonly log: Logger;
  readonly nodeId: string;
  /** A pool on the migrated schema; the node's own (ending it is the node's death to the others). */
  readonly pool: pg.Pool;
  /** The deployment's partition count (every node the same). */
  readonly partitions: number;
  readonly config: IngestConfig;
  readonly registry: RegistryView;
  /** The registry as the rules read it (the devices on standby left out); default `registry`. */
  readonly rulesRegistry?: RulesRegistry;
  /** The time-series store the nodes share (InfluxDB). */
  readonly store: TimeSeriesStore;
  /** This node's broker: device data through its publish gate, commits published on it. */
  readonly broker: LocalBroker;
  readonly rules: RuleSet;
  readonly region: string;
  /** Where the rules' decisions go. */
  readonly sink: TaskSink;
  readonly now?: () => number;
  /** The leases' time to live and renewal period (LeaseKeeper's defaults: 6 s and 2 s). */
  readonly ttlMs?: number;
  readonly renewMs?: number;
}

export interface ClusterNode {
  readonly keeper: LeaseKeeper;
  readonly driver: RulesDriver;
  readonly pipeline: ClusterPipeline;
  /** The shared inbox, commit ledger and dead letters (the API reads progress and dead letters). */
  readonly state: PostgresIngestState;
  /** The ingest's and rules' metrics and the cluster's (citywatch_cluster_*), one registry. */
  readonly metrics: IngestMetrics;
  /** What /healthz shows of the node: its leases, and the rounds it handled. */
  status(): LeaseStatus & { readonly rounds: number; readonly messages: number };
  /** Stop taking messages, finish the round in flight, write the alarm states, give the leases up. */
  stop(): Promise<void>;
}

export async function startClusterNode(deps: ClusterNodeDeps): Promise<ClusterNode> {
  const now = deps.now ?? Date.now;
  const { log, pool, partitions } = deps;
  const metrics = ingestMetrics();
  // The keeper reports nothing before start(), by which time the scope exists.
  const keeper: LeaseKeeper = new LeaseKeeper({
    nodeId: deps.nodeId,
    pool,
    partitions,
    ...(deps.ttlMs !== undefined ? { ttlMs: deps.ttlMs } : {}),
    ...(deps.renewMs !== undefined ? { renewMs: deps.renewMs } : {}),
    log,
    onAcquired: () => scope.acquired(),
    onLost: (partition) => scope.lost(partition),
  });
  // The node's partitions, lease age and takeovers on its /metrics, read at every scrape.
  clusterMetrics(metrics.registry, () => keeper.status());
  const fence = leaseFence(pool, keeper);
  const scope = new RulesScope({
    pool,
    partitions,
    owned: () => keeper.owned(),
    registry: deps.rulesRegistry ?? deps.registry,
    log,
  });
  const alarms = await PostgresAlarmStore.open({
    pool,
    partitionOf: scope.partitionOfSubject,
    fence,
    // The scope reads the states of each partition as it is taken.
    partitions: [],
  });
  const driver = new RulesDriver({
    log,
    rules: deps.rules,
    registry: scope.registry,
    alarms,
    sink: deps.sink,
    region: deps.region,
    tickMs: deps.config.rules.tickMs,
    now,
    metricsRegistry: metrics.registry,
    backfill: (device, fromMs, toMs) => readBack(deps.store)(device, fromMs, toMs, 10_000),
  });
  const state = new PostgresIngestState({
    pool,
    fence,
    generationOf: (id) => deps.registry.device(id)?.generation,
    deadLetterLimits: deps.config.deadLetters,
  });
  const partitionOfTopic = (topic: string): number => {
    const parsed = parseTopic(topic);
    if (!parsed.ok || parsed.topic.type !== "device") return 0;
    const { deviceId } = parsed.topic;
    return partitionOf(deps.registry.device(deviceId)?.siteId ?? deviceId, partitions);
  };
  const publishCommit = commitPublisher(deps.broker, now);
  const pipeline = new ClusterPipeline({
    log,
    config: deps.config,
    state,
    store: deps.store,
    registry: deps.registry,
    metrics,
    owned: () => keeper.owned(),
    publishCommit,
    onStored: (batch) => driver.onStoredBatch(batch),
    now,
  });
  const inbox = new ClusterInbox({ log, state, partitionOfTopic, now });
  const gate = new InboxGate({
    log,
    inbox,
    metrics,
    now,
    inboxMaxMessages: deps.config.inboxMaxMessages,
    onMessages: () => pipeline.notify(),
  });

  metrics.observe({ inbox: () => inbox.depth() });
  // The embedded ingest's per-device commit lag, summed over the node's partitions.
  commitLagMetrics(metrics.registry, () => state.commitLag([...keeper.owned().keys()]), log);
  // Any node may prune the shared dead letters (past their age; the bounds are kept at insert).
  const prune = () =>
    void state.deadLetters.prune(now(), deps.config.deadLetters).then(
      (pruned) => notePruned(metrics, log, pruned, deps.config.deadLetters.maxBytes),
      (error: unknown) =>
        log.error({ err: (error as Error).message }, "dead letters could not be pruned"),
    );

  await driver.start();
  await scope.attach(driver);
  await keeper.start();
  await inbox.refresh();
  pipeline.start();
  deps.broker.setPublishGate(gate.accept);
  const ticks = setInterval(() => driver.tick(), deps.config.rules.tickMs);
  ticks.unref();
  prune();
  const pruning = setInterval(prune, DEAD_LETTER_PRUNE_MS);
  pruning.unref();
  log.info({ node: deps.nodeId, partitions }, "cluster node started");

  return {
    keeper,
    driver,
    pipeline,
    state,
    metrics,
    status: () => ({
      ...keeper.status(),
      rounds: pipeline.counts.rounds,
      messages: pipeline.counts.messages,
    }),
    async stop() {
      deps.broker.setPublishGate(undefined);
      gate.close();
      clearInterval(ticks);
      clearInterval(pruning);
      await pipeline.stop();
      scope.stop();
      driver.stop();
      // States waiting for their decisions to be applied (the sink is still running).
      await driver.saved();
      await alarms.close();
      await keeper.stop();
    },
  };
}
