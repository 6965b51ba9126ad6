import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { scrapedGauge } from "../infra/metrics.js";
import type { LeaseStatus } from "./leases.js";

/*
 * A node's share of the work as Prometheus metrics (issue #21, docs/cluster.md, Status): read from
 * the lease keeper's status() at every scrape. The counters follow the keeper's own counts since
 * start; a keeper started again (a new process) starts them from zero, as Prometheus expects of a
 * restarted target.
 */

/** Registers the cluster metrics of the keeper whose status `status` reads. */
export function clusterMetrics(registry: Registry, status: () => LeaseStatus): void {
  const seconds = (ms: number | null) => (ms === null ? Number.NaN : ms / 1000);
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_partitions",
      help: "Work partitions of the deployment (the same on every node).",
    },
    () => status().partitions,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_partitions_owned",
      help: "Work partitions this node holds a lease on now.",
    },
    () => status().owned,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_fair_share",
      help: "Partitions a node holds at most: the partitions over the live nodes, rounded up.",
    },
    () => status().fairShare,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_live_nodes",
      help: "Nodes whose heartbeat was live at this node's last round (this one included).",
    },
    () => status().liveNodes,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_oldest_lease_age_seconds",
      help: "Since the acquisition of the longest-held lease of this node (NaN: none held).",
    },
    () => seconds(status().oldestLeaseAgeMs),
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_cluster_last_round_age_seconds",
      help: "Since this node's last lease round completed (NaN: none yet). Past the lease TTL, its leases are gone.",
    },
    () => seconds(status().lastRoundAgeMs),
  );
  const counted = (name: string, help: string, read: (s: LeaseStatus) => number) => {
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const count = read(status());
        if (count > reported) this.inc(count - reported);
        reported = count;
      },
    });
  };
  counted(
    "citywatch_cluster_leases_acquired_total",
    "Leases this node acquired since it started.",
    (s) => s.acquired,
  );
  counted(
    "citywatch_cluster_takeovers_total",
    "Acquisitions of a partition whose lease another node had let expire (a dead node's work taken over).",
    (s) => s.takeovers,
  );
  counted(
    "citywatch_cluster_leases_lost_total",
    "Leases this node gave up or lost since it started (rebalanced, expired, stopped).",
    (s) => s.lost,
  );
}

/** Sums over a node's partitions, read from PostgreSQL (PostgresIngestState.commitLag). */
export interface CommitLag {
  readonly messages: number;
  readonly devices: number;
}

/**
 * The commit lag of the devices in this node's partitions, read from PostgreSQL at a scrape (one
 * query for both gauges: a read in flight is shared). A failed read keeps the last values, logged:
 * a scrape does not fail because PostgreSQL is out of reach.
 */
export function commitLagMetrics(
  registry: Registry,
  read: () => Promise<CommitLag>,
  log: Logger,
): void {
  let last: CommitLag = { messages: 0, devices: 0 };
  let reading: Promise<CommitLag> | undefined;
  const current = (): Promise<CommitLag> =>
    (reading ??= read()
      .then(
        (lag) => (last = lag),
        (error: unknown) => {
          log.warn({ err: (error as Error).message }, "commit lag not read; last values kept");
          return last;
        },
      )
      .finally(() => {
        reading = undefined;
      }));
  new Gauge({
    name: "citywatch_cluster_commit_lag_messages",
    help: "Over the devices of this node's partitions: sum of (last seq handled - committed seq), messages waiting above a gap or set aside.",
    registers: [registry],
    async collect() {
      this.set((await current()).messages);
    },
  });
  new Gauge({
    name: "citywatch_cluster_devices_behind",
    help: "Devices of this node's partitions whose commit is behind the last seq handled.",
    registers: [registry],
    async collect() {
      this.set((await current()).devices);
    },
  });
}
