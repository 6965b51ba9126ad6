import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LeaseKeeper } from "../../../cluster/leases.js";
import { createTestSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { lossesOf, PARTITIONS, PATIENCE, TestCluster, type TestNode } from "./keepers.js";

// cluster/leases.ts: partitions shared by lease keepers on one PostgreSQL (docs/cluster.md).
const postgres = await requireService("cluster: partition leases", providePostgres);

describe.runIf(postgres)("partition leases", () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = await TestCluster.create(await createTestSchema(postgresUrl(postgres)));
  });
  afterEach(async () => {
    await cluster.close();
    // Checked after the keepers stopped, so it covers the whole test.
    expect(cluster.violations).toEqual([]);
  });

  it("two keepers split 64 partitions 32/32, none owned twice", async () => {
    const nodes = await cluster.start("node-a", "node-b");
    await vi.waitFor(() => cluster.expectSettled(nodes), PATIENCE);
    expect(nodes.map((n) => n.keeper.owned().size)).toEqual([32, 32]);
    // A keeper whose first round ran before the other registered counted one live node; its
    // next round counts two.
    await vi.waitFor(() => {
      for (const { keeper } of nodes) {
        expect(keeper.status()).toMatchObject({ liveNodes: 2, fairShare: 32, owned: 32 });
      }
    }, PATIENCE);
  });

  it("three keepers split 64 partitions 22/22/20, none owned twice", async () => {
    const nodes = await cluster.start("node-a", "node-b", "node-c");
    await vi.waitFor(() => cluster.expectSettled(nodes), PATIENCE);
    const sizes = nodes.map((n) => n.keeper.owned().size).sort((a, b) => b - a);
    expect(sizes).toEqual([22, 22, 20]);
  });

  it("reports every acquisition and loss through its callbacks", async () => {
    const [a] = await cluster.start("node-a");
    const node = a!;
    await vi.waitFor(() => expect(node.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    // Replaying the events gives owned() exactly.
    const replayed = new Map<number, number>();
    for (const event of node.events) {
      if (event.kind === "acquired") replayed.set(event.partition, event.token);
      else replayed.delete(event.partition);
    }
    expect(replayed).toEqual(node.keeper.owned());
    await node.keeper.stop();
    expect(node.keeper.owned().size).toBe(0);
    expect(lossesOf(node, "stopped")).toHaveLength(PARTITIONS);
  });

  it("rebalances when nodes join: 64 → 32/32 → 22/22/20, the newcomers under larger tokens", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => cluster.expectSettled([a!]), PATIENCE);
    const firstTokens = new Map(a!.keeper.owned());

    const [b] = await cluster.start("node-b");
    await vi.waitFor(() => cluster.expectSettled([a!, b!]), PATIENCE);
    expect(lossesOf(a!, "rebalanced")).toHaveLength(32);
    for (const [partition, token] of b!.keeper.owned()) {
      expect(token).toBeGreaterThan(firstTokens.get(partition) ?? Infinity);
    }

    const [c] = await cluster.start("node-c");
    await vi.waitFor(() => cluster.expectSettled([a!, b!, c!]), PATIENCE);
    expect(c!.keeper.owned().size).toBeGreaterThanOrEqual(20);
    // Released partitions were free, not taken from a live node: no takeover anywhere.
    expect([a, b, c].map((n) => n!.keeper.status().takeovers)).toEqual([0, 0, 0]);
  });

  it("a killed keeper's partitions go to the others after the TTL, under larger tokens", async () => {
    const nodes = await cluster.start("node-a", "node-b", "node-c");
    await vi.waitFor(() => cluster.expectSettled(nodes), PATIENCE);
    const [victim, ...survivors] = nodes as [TestNode, TestNode, TestNode];
    const before = new Map(victim.keeper.owned());

    // kill -9 as the database sees it: the node stops renewing and releases nothing.
    await victim.pool.end();
    // The victim notices at its next round and stops working on all of them at once (before
    // their deadline: the failed round's rejection is handled ahead of the watchdog's timer).
    await vi.waitFor(
      () =>
        expect(lossesOf(victim, "database-error")).toEqual(
          [...before.keys()].sort((a, b) => a - b),
        ),
      PATIENCE,
    );
    expect(victim.keeper.owned().size).toBe(0);

    await vi.waitFor(() => cluster.expectSettled(survivors), PATIENCE);
    const after = new Map(survivors.flatMap((n) => [...n.keeper.owned()]));
    for (const [partition, token] of before) {
      expect(after.get(partition), `partition ${partition}`).toBeGreaterThan(token);
    }
    const takeovers = survivors.map((n) => n.keeper.status().takeovers);
    expect(takeovers[0]! + takeovers[1]!).toBe(before.size);
  });

  it("stop() hands the partitions over at once: released, not taken over", async () => {
    const [a, b] = await cluster.start("node-a", "node-b");
    await vi.waitFor(() => cluster.expectSettled([a!, b!]), PATIENCE);
    const released = [...b!.keeper.owned().keys()];

    await b!.keeper.stop();
    const rows = await cluster.leases();
    for (const partition of released) {
      expect(rows[partition]).toMatchObject({ owner: null, valid: false });
    }
    const { rows: nodes } = await cluster.admin.query<{ node_id: string }>(
      "SELECT node_id FROM cluster_nodes ORDER BY node_id",
    );
    expect(nodes.map((n) => n.node_id)).toEqual(["node-a"]);

    await vi.waitFor(() => cluster.expectSettled([a!]), PATIENCE);
    expect(a!.keeper.status().takeovers).toBe(0);
  });

  it("a lease changed under a keeper is reported lost at its next round", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    // Someone else holds partition 5 now, with a fresh token and a long lease.
    await cluster.admin.query(
      `UPDATE partition_leases SET owner = 'intruder', token = nextval('partition_lease_token'),
              expires_at = clock_timestamp() + interval '1 hour' WHERE partition = 5`,
    );
    await vi.waitFor(() => expect(lossesOf(a!, "lease-gone")).toEqual([5]), PATIENCE);
    expect(a!.keeper.tokenOf(5)).toBeUndefined();
    expect(a!.keeper.owned().size).toBe(PARTITIONS - 1);
  });

  it("gives its leases up at their deadline while a statement hangs, then takes them back", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    const before = new Map(a!.keeper.owned());

    // The renewal blocks behind this lock: the database neither answers nor refuses.
    const blocker = await cluster.admin.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE partition_leases IN ACCESS EXCLUSIVE MODE");
      // While the lock is still held, the keeper has stopped working on every partition and
      // said so. (owned() empties at the deadline itself; the callbacks come with the watchdog.)
      await vi.waitFor(() => {
        expect(a!.keeper.owned().size).toBe(0);
        expect(lossesOf(a!, "expired")).toHaveLength(PARTITIONS);
      }, PATIENCE);
    } finally {
      await blocker.query("ROLLBACK");
      blocker.release();
    }

    await vi.waitFor(() => cluster.expectSettled([a!]), PATIENCE);
    for (const [partition, token] of a!.keeper.owned()) {
      expect(token).toBeGreaterThan(before.get(partition) ?? Infinity);
    }
  });

  it("refuses to start on tables laid out for another partition count", async () => {
    await cluster.start("node-a");
    const other = new LeaseKeeper({ nodeId: "node-b", pool: cluster.admin, partitions: 32 });
    await expect(other.start()).rejects.toThrow(
      /holds partitions 0 to 63, but this node is configured for 32/,
    );
  });

  it("refuses to start before the migrations ran", async () => {
    const bare = await createTestSchema(postgresUrl(postgres));
    try {
      const keeper = new LeaseKeeper({ nodeId: "node-a", pool: await bare.pool() });
      await expect(keeper.start()).rejects.toThrow(/run the PostgreSQL migrations/);
    } finally {
      await bare.drop();
    }
  });
});
