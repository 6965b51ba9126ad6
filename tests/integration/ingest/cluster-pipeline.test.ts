import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import { partitionOf } from "../../../cluster/partition.js";
import { type Device, IngestConfig, type Site } from "../../../contracts/index.js";
import {
  ClusterPipeline,
  type ClusterPipelineDeps,
  splitByPartition,
} from "../../../ingest/cluster-pipeline.js";
import { ingestMetrics } from "../../../ingest/metrics.js";
import { metricValue } from "../../../infra/metrics.js";
import { PostgresIngestState } from "../../../ingest/state-postgres.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { dataTopic, noiseUplink } from "../../fault/flapping/all-in-one.js";
import { PARTITIONS, PATIENCE, TestCluster, type TestNode } from "../cluster/keepers.js";

/*
 * The ingest of cluster nodes (ingest/cluster-pipeline.ts, issue #21): the embedded pipeline's
 * rounds over the inbox and commit ledger the nodes share in PostgreSQL, each node handling the
 * partitions it holds a lease on. Real lease keepers, a real SQLite time-series store shared by
 * the nodes (as they share InfluxDB), messages appended by whichever node a device reached.
 */

const postgres = await requireService("the cluster ingest in PostgreSQL", providePostgres);

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const area = { district: "D", gridCell: "G" };
const SITES = 12;
const DEVICES = 24;

const sites: Site[] = Array.from({ length: SITES }, (_, i) => ({
  id: `site-${i}` as Site["id"],
  type: "ambient",
  name: `Site ${i}`,
  area,
  location: { lat: 30, lon: 104 },
}));
const devices: Device[] = Array.from({ length: DEVICES }, (_, i) => ({
  id: `noise-${i}` as Device["id"],
  kind: "noise",
  model: "M",
  serial: `S${i}`,
  location: { lat: 30, lon: 104 },
  area,
  siteId: `site-${i % SITES}` as Device["siteId"],
  expectedIntervalS: 60,
  enabled: true,
}));
const deviceById = new Map(devices.map((d) => [d.id as string, d]));
const siteById = new Map(sites.map((s) => [s.id as string, s]));
const registry = {
  device: (id: string) => deviceById.get(id),
  site: (id: string) => siteById.get(id),
};
/** A device's partition, as the node that receives its message computes it: its site's. */
const partitionOfDevice = (deviceId: string) =>
  partitionOf(deviceById.get(deviceId)?.siteId ?? deviceId, PARTITIONS);

/** When the devices' readings were taken: a re-sent message is the same message. */
const T0 = Date.now();

function uplink(deviceId: string, seq: number, now: number) {
  return {
    partition: partitionOfDevice(deviceId),
    topic: dataTopic(deviceId),
    receivedMs: now,
    payload: Buffer.from(
      noiseUplink(deviceId, seq, T0 - 60_000 + seq * 1_000, { LAeq: 50 + (seq % 20) }),
    ),
  };
}

interface Node {
  readonly test: TestNode;
  readonly state: PostgresIngestState;
  readonly pipeline: ClusterPipeline;
}

describe.runIf(postgres)("cluster ingest: nodes share the inbox by partition", () => {
  let schema: TestSchema | undefined;
  let cluster: TestCluster | undefined;
  let dir: string | undefined;
  const pipelines: ClusterPipeline[] = [];

  afterEach(async () => {
    await Promise.all(pipelines.splice(0).map((p) => p.stop()));
    await cluster?.close();
    cluster = undefined;
    await schema?.drop();
    schema = undefined;
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A schema of the test's own with the keepers' tables, and a time-series store, open. */
  async function setUp(): Promise<TimeSeriesStore> {
    schema = await createTestSchema(postgresUrl(postgres));
    cluster = await TestCluster.create(schema);
    dir = mkdtempSync(join(tmpdir(), "cw-cluster-ingest-"));
    const store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    return store;
  }

  /** A node: its keeper and pipeline started, on the shared store; `deps` as the test needs. */
  async function startNode(
    id: string,
    deps: Pick<ClusterPipelineDeps, "store" | "config"> &
      Partial<Omit<ClusterPipelineDeps, "state" | "owned">>,
  ): Promise<Node> {
    const test = await (cluster as TestCluster).node(id);
    const state = new PostgresIngestState({
      pool: test.pool,
      fence: leaseFence(test.pool, test.keeper),
    });
    const pipeline = new ClusterPipeline({
      log,
      registry,
      metrics: ingestMetrics(),
      publishCommit: () => undefined,
      now: Date.now,
      ...deps,
      state,
      owned: () => test.keeper.owned(),
    });
    await test.keeper.start();
    pipeline.start();
    pipelines.push(pipeline);
    return { test, state, pipeline };
  }

  it("handles every message once and moves every commit to the end, across a node killed mid-stream", async () => {
    const store = await setUp();
    /** (device, seq) handed to the rules by any node: each must come exactly once. */
    const toRules = new Map<string, number>();
    const commits = new Map<string, number>();
    const node = (id: string) =>
      startNode(id, {
        store,
        config: IngestConfig.parse({ batch: { maxDelayMs: 5 }, gapTimeoutMs: 600_000 }),
        publishCommit: (deviceId, seq) =>
          commits.set(deviceId, Math.max(seq, commits.get(deviceId) ?? 0)),
        onStored: (batch) => {
          for (let i = 0; i < batch.length; i++) {
            const key = `${batch.deviceId(i)}#${batch.seq(i)}`;
            toRules.set(key, (toRules.get(key) ?? 0) + 1);
          }
        },
      });
    const a = await node("a");
    const b = await node("b");
    await vi.waitFor(() => cluster?.expectSettled([a.test, b.test]), PATIENCE);
    const owners = (node: Node) => new Set(node.test.keeper.owned().keys());
    const partitionsUsed = new Set(devices.map((d) => partitionOfDevice(d.id)));
    // The sites fall into partitions of both nodes: each node has work of its own.
    expect([...partitionsUsed].some((p) => owners(a).has(p))).toBe(true);
    expect([...partitionsUsed].some((p) => owners(b).has(p))).toBe(true);

    const SEQS = 30;
    /** Seqs 1..SEQS of every device, appended through the nodes given in turn, a few at a time. */
    const send = async (from: number, to: number, via: readonly Node[]) => {
      for (let seq = from; seq <= to; seq++) {
        const node = via[seq % via.length] as Node;
        await node.state.append(devices.map((d) => uplink(d.id, seq, Date.now())));
        node.pipeline.notify();
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await send(1, 12, [a, b]);
    await vi.waitFor(() => {
      // Both nodes committed something of their own partitions before one dies.
      for (const node of [a, b]) {
        const own = devices.filter((d) => owners(node).has(partitionOfDevice(d.id)));
        expect(own.some((d) => (commits.get(d.id) ?? 0) > 0)).toBe(true);
      }
    }, PATIENCE);
    await send(13, 18, [a, b]);

    // Node a dies (kill -9, as the database sees it: its connections go); b takes its partitions.
    await a.test.pool.end();
    await a.pipeline.stop();
    // The devices re-send what they saw no commit for (some of it handled by a before it died).
    await send(10, 18, [b]);
    await send(19, SEQS, [b]);

    await vi.waitFor(async () => {
      const { rows } = await (cluster as TestCluster).admin.query<{
        device_id: string;
        committed_seq: string;
      }>("SELECT device_id, committed_seq FROM ingest_progress");
      expect(rows).toHaveLength(DEVICES);
      for (const row of rows) expect(Number(row.committed_seq), row.device_id).toBe(SEQS);
      const { rows: left } = await (cluster as TestCluster).admin.query<{ n: string }>(
        "SELECT count(*) AS n FROM ingest_inbox",
      );
      expect(Number(left[0]?.n)).toBe(0);
    }, PATIENCE);
    // b took over every partition: it holds all of them now.
    expect(b.test.keeper.owned().size).toBe(PARTITIONS);
    expect((cluster as TestCluster).violations).toEqual([]);

    // Every reading stored, each once, and handed to the rules exactly once across the nodes.
    for (const d of devices) {
      const rows = await store.readings({
        deviceId: d.id,
        kind: "noise",
        fromMs: 0,
        toMs: Date.now() + 86_400_000,
        limit: 1_000,
      });
      expect(
        rows.map((r) => r.seq).sort((x, y) => (x ?? 0) - (y ?? 0)),
        d.id,
      ).toEqual(Array.from({ length: SEQS }, (_, i) => i + 1));
      expect(commits.get(d.id), `${d.id}'s last commit published`).toBe(SEQS);
    }
    expect(toRules.size).toBe(DEVICES * SEQS);
    const twice = [...toRules].filter(([, n]) => n !== 1);
    expect(twice, "readings handed to the rules more than once").toEqual([]);
    const { rows: letters } = await (cluster as TestCluster).admin.query(
      "SELECT * FROM ingest_dead_letters",
    );
    expect(letters).toEqual([]);
    await store.close();
  });

  it("times a gap from the takeover: a new owner does not close at once a gap the dead node saw open", async () => {
    const store = await setUp();
    let skew = 0;
    const clock = () => Date.now() + skew;
    const GAP_TIMEOUT = 60_000;
    const start = (id: string) =>
      startNode(id, {
        store,
        config: IngestConfig.parse({ batch: { maxDelayMs: 5 }, gapTimeoutMs: GAP_TIMEOUT }),
        now: clock,
      });
    const progress = async () => {
      const { rows } = await (cluster as TestCluster).admin.query<{ committed_seq: string }>(
        "SELECT committed_seq FROM ingest_progress WHERE device_id = 'noise-5'",
      );
      return Number(rows[0]?.committed_seq ?? -1);
    };
    const gapLetters = async () =>
      Number(
        (
          await (cluster as TestCluster).admin.query<{ n: string }>(
            "SELECT count(*) AS n FROM ingest_dead_letters WHERE reason = 'missing_seq'",
          )
        ).rows[0]?.n,
      );
    const a = await start("a");
    await vi.waitFor(() => expect(a.test.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    // Seq 2 never comes: 3 waits above the gap.
    await a.state.append([uplink("noise-5", 1, clock()), uplink("noise-5", 3, clock())]);
    a.pipeline.notify();
    await vi.waitFor(async () => expect(await progress()).toBe(1), PATIENCE);
    // Node a dies with the gap open; by the clock it has waited past the timeout since.
    await a.test.pool.end();
    await a.pipeline.stop();
    skew += 10 * GAP_TIMEOUT;
    const b = await start("b");
    // Which partitions b opens a fenced transaction on to close gaps: only those with a stale
    // gap (one query finds them), not all 64 every second.
    const closing: number[] = [];
    const close = b.state.closeStaleGaps.bind(b.state);
    b.state.closeStaleGaps = (partition, ...rest) => {
      closing.push(partition);
      return close(partition, ...rest);
    };
    await vi.waitFor(() => expect(b.test.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    // Several of b's idle rounds (each looks for stale gaps once a second): the gap stays open,
    // since the device may re-send into it now that its data has a live owner again.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await progress()).toBe(1);
    expect(await gapLetters()).toBe(0);
    expect(closing).toEqual([]);
    // The commit lag a node shows for its partitions: seq 3 handled, 1 committed.
    const mine = [...b.test.keeper.owned().keys()];
    expect(await b.state.commitLag(mine)).toEqual({ messages: 2, devices: 1 });
    const others = mine.filter((p) => p !== partitionOfDevice("noise-5"));
    expect(await b.state.commitLag(others)).toEqual({ messages: 0, devices: 0 });
    // A timeout after the takeover, it is closed: one missing_seq letter, the commit moves on.
    skew += GAP_TIMEOUT + 1_000;
    await vi.waitFor(async () => expect(await progress()).toBe(3), PATIENCE);
    expect(await gapLetters()).toBe(1);
    expect(new Set(closing)).toEqual(new Set([partitionOfDevice("noise-5")]));
    expect(await b.state.commitLag(mine)).toEqual({ messages: 0, devices: 0 });
    await store.close();
  });

  it("dead-letters a bad message in its device's partition and still moves the commit", async () => {
    const store = await setUp();
    const commits: Array<[string, number]> = [];
    const { state, pipeline } = await startNode("solo", {
      store,
      config: IngestConfig.parse({ batch: { maxDelayMs: 5 } }),
      publishCommit: (deviceId, seq) => commits.push([deviceId, seq]),
    });
    const now = Date.now();
    const bad = uplink("noise-3", 2, now);
    await state.append([
      uplink("noise-3", 1, now),
      // Seq 2 is readable but its reading is out of range: dead-lettered, and the commit moves on.
      {
        ...bad,
        payload: Buffer.from(bad.payload.toString("utf8").replace(/"LAeq":\d+/, '"LAeq":"loud"')),
      },
      uplink("noise-3", 3, now),
      // A device id with U+0000 in it, which PostgreSQL's text cannot hold: dead-lettered all the
      // same (the round is not refused again and again).
      {
        ...uplink("noise-3", 4, now),
        payload: Buffer.from(
          uplink("noise-3", 4, now)
            .payload.toString("utf8")
            .replace('"deviceId":"noise-3"', '"deviceId":"noise-3\\u0000"'),
        ),
      },
      // An unknown device: dead-lettered in the partition its topic names.
      uplink("ghost", 1, now),
    ]);
    pipeline.notify();
    await vi.waitFor(() => expect(commits).toContainEqual(["noise-3", 4]), PATIENCE);
    const { rows } = await (cluster as TestCluster).admin.query<{
      partition: number;
      device_id: string | null;
      seq: string | null;
    }>("SELECT partition, device_id, seq FROM ingest_dead_letters ORDER BY device_id, seq");
    expect(rows).toEqual([
      { partition: partitionOf("ghost", PARTITIONS), device_id: "ghost", seq: "1" },
      { partition: partitionOfDevice("noise-3"), device_id: "noise-3", seq: "2" },
      { partition: partitionOfDevice("noise-3"), device_id: "noise-3", seq: "4" },
    ]);
    const stored = await store.readings({
      deviceId: "noise-3",
      kind: "noise",
      fromMs: 0,
      toMs: Date.now() + 86_400_000,
      limit: 10,
    });
    expect(stored.map((r) => r.seq)).toEqual([1, 3]);
    await store.close();
  });

  it("keeps from its rules the readings of a partition whose lease went during the round", async () => {
    const store = await setUp();
    // The round's store write waits until the test lets it go.
    let letGo: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    let writing = false;
    const held = new Proxy(store, {
      get(target, prop) {
        if (prop === "write")
          return async (points: Parameters<TimeSeriesStore["write"]>[0]) => {
            writing = true;
            await gate;
            return target.write(points);
          };
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === "function" ? (value as () => unknown).bind(target) : value;
      },
    });
    const toRules: string[] = [];
    const commits = new Map<string, number>();
    const { test, state, pipeline } = await startNode("solo", {
      store: held,
      config: IngestConfig.parse({ batch: { maxDelayMs: 5 } }),
      publishCommit: (deviceId, seq) => commits.set(deviceId, seq),
      onStored: (batch) => {
        for (let i = 0; i < batch.length; i++)
          if (batch.isStored(i)) toRules.push(`${batch.deviceId(i)}#${batch.seq(i)}`);
      },
    });
    await vi.waitFor(() => expect(test.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    const lost = partitionOfDevice("noise-1");
    expect(partitionOfDevice("noise-2")).not.toBe(lost);
    const now = Date.now();
    await state.append([
      ...[1, 2, 3].map((seq) => uplink("noise-1", seq, now)),
      ...[1, 2, 3].map((seq) => uplink("noise-2", seq, now)),
    ]);
    pipeline.notify();
    await vi.waitFor(() => expect(writing).toBe(true), PATIENCE);
    // Another node takes noise-1's partition while the round writes; this node's keeper learns
    // of it only at its next renewal.
    await (cluster as TestCluster).admin.query(
      `UPDATE partition_leases SET owner = 'node-b', token = nextval('partition_lease_token'),
              expires_at = clock_timestamp() + interval '1 hour' WHERE partition = $1`,
      [lost],
    );
    letGo();
    await vi.waitFor(() => expect(commits.get("noise-2")).toBe(3), PATIENCE);
    // Refused at every round until the keeper hears of the loss (its next renewal).
    expect(pipeline.counts.refusedPartitions).toBeGreaterThanOrEqual(1);
    expect(commits.has("noise-1")).toBe(false);
    expect(toRules.sort()).toEqual(["noise-2#1", "noise-2#2", "noise-2#3"]);
    // The rows stay for the partition's owner.
    expect(await state.depth([lost])).toBe(3);
    await store.close();
  });

  it("sets aside the one message PostgreSQL refuses for its data, and takes the rest", async () => {
    const store = await setUp();
    const admin = (cluster as TestCluster).admin;
    // A message whose dead letter PostgreSQL cannot take (as text holding U+0000 once could not):
    // every round holding it is refused for its data.
    await admin.query(`CREATE FUNCTION refuse_garbage() RETURNS trigger AS $$
      BEGIN RAISE EXCEPTION 'invalid byte sequence' USING ERRCODE = '22021'; END $$ LANGUAGE plpgsql`);
    await admin.query(`CREATE TRIGGER refuse_garbage BEFORE INSERT ON ingest_dead_letters
      FOR EACH ROW WHEN (NEW.reason = 'not_json') EXECUTE FUNCTION refuse_garbage()`);
    const commits = new Map<string, number>();
    const metrics = ingestMetrics();
    const { state, pipeline } = await startNode("solo", {
      store,
      metrics,
      config: IngestConfig.parse({ batch: { maxDelayMs: 5 } }),
      publishCommit: (deviceId, seq) => commits.set(deviceId, seq),
    });
    const now = Date.now();
    await state.append([
      ...Array.from({ length: 40 }, (_, i) => uplink("noise-1", i + 1, now)),
      { ...uplink("noise-2", 1, now), payload: Buffer.from("{not json") },
      ...Array.from({ length: 30 }, (_, i) => uplink("noise-2", i + 1, now)),
      ...Array.from({ length: 40 }, (_, i) => uplink("noise-1", i + 41, now)),
    ]);
    pipeline.notify();
    await vi.waitFor(() => {
      expect(commits.get("noise-1")).toBe(80);
      expect(commits.get("noise-2")).toBe(30);
    }, PATIENCE);
    const { rows } = await admin.query<{ partition: number; device_id: string; reason: string }>(
      "SELECT partition, device_id, reason FROM ingest_dead_letters",
    );
    expect(rows).toEqual([
      { partition: partitionOfDevice("noise-2"), device_id: "noise-2", reason: "state_rejected" },
    ]);
    expect((await admin.query("SELECT 1 FROM ingest_inbox")).rowCount).toBe(0);
    const letters = await metricValue(
      metrics.registry.getSingleMetric("citywatch_ingest_dead_letters_total"),
      { reason: "state_rejected" },
    );
    expect(letters).toBe(1);
    // Whole rounds again once the message is set aside: 111 messages in far fewer rounds than
    // one round per message.
    expect(pipeline.counts.messages).toBe(110);
    expect(pipeline.counts.rounds).toBeLessThan(30);
    await store.close();
  });
});

describe("cluster ingest: a round's outcome by partition", () => {
  it("puts each row, handled seq and dead letter in its message's partition, with that lease's token", () => {
    const m = (id: number, deviceId: string, partition: number) => ({
      id,
      partition,
      topic: dataTopic(deviceId),
      payload: Buffer.alloc(0),
      receivedMs: 1,
    });
    const messages = [m(1, "d1", 3), m(2, "d2", 5), m(3, "d1", 3), m(4, "x", 7)];
    const batches = splitByPartition(
      messages,
      new Map([
        [3, 30],
        [5, 50],
        [7, 70],
      ]),
      {
        inboxIds: [1, 2, 3, 4],
        handled: [
          { deviceId: "d1", seq: 1, receivedMs: 1 },
          { deviceId: "d2", seq: 9, receivedMs: 1 },
          { deviceId: "d1", seq: 2, receivedMs: 1 },
        ],
        deadLetters: [
          {
            receivedMs: 1,
            topic: dataTopic("x"),
            deviceId: undefined,
            seq: undefined,
            reason: "unknown_device",
            detail: "",
            payload: Buffer.alloc(0),
          },
        ],
      },
    );
    expect(
      batches.map((b) => ({
        partition: b.partition,
        token: b.token,
        ids: b.outcome.inboxIds,
        seqs: b.outcome.handled.map((h) => `${h.deviceId}:${h.seq}`),
        letters: b.outcome.deadLetters.length,
      })),
    ).toEqual([
      { partition: 3, token: 30, ids: [1, 3], seqs: ["d1:1", "d1:2"], letters: 0 },
      { partition: 5, token: 50, ids: [2], seqs: ["d2:9"], letters: 0 },
      { partition: 7, token: 70, ids: [4], seqs: [], letters: 1 },
    ]);
  });
});
