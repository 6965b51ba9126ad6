import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { type CommitLag, commitLagMetrics } from "../../../cluster/metrics.js";

/*
 * A cluster node's commit-lag gauges (cluster/metrics.ts commitLagMetrics): both read with one
 * query per scrape (a read in flight is shared), the last values kept when PostgreSQL cannot answer. The query itself is tested
 * on PostgreSQL (tests/integration/ingest/cluster-pipeline.test.ts).
 */

const log = pino({ level: "silent" });

function setUp(answers: Array<CommitLag | Error>) {
  const registry = new Registry();
  let reads = 0;
  commitLagMetrics(
    registry,
    () => {
      reads += 1;
      const next = answers.shift();
      return next instanceof Error || next === undefined
        ? Promise.reject(next ?? new Error("no answer"))
        : Promise.resolve(next);
    },
    log,
  );
  return {
    scrape: () => registry.metrics(),
    reads: () => reads,
  };
}

describe("cluster commit-lag metrics", () => {
  it("shows the lag and the devices behind, read once for both gauges", async () => {
    const node = setUp([{ messages: 7, devices: 2 }]);
    const text = await node.scrape();
    expect(text).toMatch(/^citywatch_cluster_commit_lag_messages 7$/m);
    expect(text).toMatch(/^citywatch_cluster_devices_behind 2$/m);
    expect(node.reads()).toBe(1);
  });

  it("reads again at the next scrape, and keeps the last values when the read fails", async () => {
    const node = setUp([
      { messages: 7, devices: 2 },
      { messages: 3, devices: 1 },
      new Error("connection terminated"),
    ]);
    await node.scrape();
    expect(await node.scrape()).toMatch(/^citywatch_cluster_commit_lag_messages 3$/m);
    const text = await node.scrape();
    expect(node.reads()).toBe(3);
    expect(text).toMatch(/^citywatch_cluster_commit_lag_messages 3$/m);
    expect(text).toMatch(/^citywatch_cluster_devices_behind 1$/m);
  });
});
