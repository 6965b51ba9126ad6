import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { clusterMetrics } from "../../../cluster/metrics.js";
import { createTestSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { PARTITIONS, PATIENCE, TestCluster } from "./keepers.js";

// cluster/metrics.ts: a node's share of the work as Prometheus metrics (docs/cluster.md, Status).
const postgres = await requireService("cluster: metrics", providePostgres);

/** The metric's value in the registry's exposition text (its first series). */
async function valueOf(registry: Registry, name: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`${name} is not exposed:\n${text}`);
  return Number(line.slice(name.length + 1));
}

describe.runIf(postgres)("cluster metrics", () => {
  let cluster: TestCluster;
  beforeEach(async () => {
    cluster = await TestCluster.create(await createTestSchema(postgresUrl(postgres)));
  });
  afterEach(async () => {
    await cluster.close();
    expect(cluster.violations).toEqual([]);
  });

  it("show the partitions owned, the lease age and the takeovers of a dead node's share", async () => {
    const [a, b] = await cluster.start("node-a", "node-b");
    await vi.waitFor(() => cluster.expectSettled([a!, b!]), PATIENCE);
    const registry = new Registry();
    clusterMetrics(registry, () => b!.keeper.status());
    await vi.waitFor(async () => {
      expect(await valueOf(registry, "citywatch_cluster_live_nodes")).toBe(2);
    }, PATIENCE);
    expect(await valueOf(registry, "citywatch_cluster_partitions")).toBe(PARTITIONS);
    expect(await valueOf(registry, "citywatch_cluster_partitions_owned")).toBe(PARTITIONS / 2);
    expect(await valueOf(registry, "citywatch_cluster_fair_share")).toBe(PARTITIONS / 2);
    expect(await valueOf(registry, "citywatch_cluster_oldest_lease_age_seconds")).toBeGreaterThan(
      0,
    );
    expect(await valueOf(registry, "citywatch_cluster_last_round_age_seconds")).toBeLessThan(5);
    const acquired = await valueOf(registry, "citywatch_cluster_leases_acquired_total");
    expect(acquired).toBeGreaterThanOrEqual(PARTITIONS / 2);
    expect(await valueOf(registry, "citywatch_cluster_takeovers_total")).toBe(0);

    await a!.pool.end(); // kill -9
    await vi.waitFor(async () => {
      expect(await valueOf(registry, "citywatch_cluster_partitions_owned")).toBe(PARTITIONS);
    }, PATIENCE);
    // Node a's half was taken over once its leases expired.
    expect(await valueOf(registry, "citywatch_cluster_takeovers_total")).toBe(PARTITIONS / 2);
    expect(await valueOf(registry, "citywatch_cluster_leases_acquired_total")).toBe(
      acquired + PARTITIONS / 2,
    );
    await vi.waitFor(async () => {
      expect(await valueOf(registry, "citywatch_cluster_live_nodes")).toBe(1);
    }, PATIENCE);
  }, 60_000);
});
