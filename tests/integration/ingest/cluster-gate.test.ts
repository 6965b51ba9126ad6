import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import { partitionOf } from "../../../cluster/partition.js";
import { ClusterInbox } from "../../../ingest/cluster-inbox.js";
import { InboxGate } from "../../../ingest/gate.js";
import { ingestMetrics } from "../../../ingest/metrics.js";
import { PostgresIngestState } from "../../../ingest/state-postgres.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { dataTopic } from "../../fault/flapping/all-in-one.js";
import { PARTITIONS, PATIENCE, TestCluster } from "../cluster/keepers.js";

/*
 * The receiving side of a cluster node (ingest/cluster-inbox.ts): the broker's publish gate
 * writing device data to the inbox the nodes share in PostgreSQL before it acknowledges, each
 * message with its partition, and holding publishers while the shared inbox is full.
 */

const postgres = await requireService("the cluster inbox in PostgreSQL", providePostgres);

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
/** Each device on a site of its own name: the partition is the site's. */
const partitionOfTopic = (topic: string) => partitionOf(`site-of-${topic}`, PARTITIONS);

/** Messages another node received and the owners have not handled yet. */
const receivedElsewhere = (state: PostgresIngestState, ids: number[]) =>
  state.append(
    ids.map((i) => ({
      partition: 0,
      topic: dataTopic(`elsewhere-${i}`),
      payload: Buffer.from(`x${i}`),
      receivedMs: Date.now(),
    })),
  );

describe.runIf(postgres)("cluster inbox: the publish gate on the shared inbox", () => {
  let schema: TestSchema | undefined;
  let cluster: TestCluster | undefined;
  let gate: InboxGate | undefined;

  afterEach(async () => {
    gate?.close();
    gate = undefined;
    await cluster?.close();
    cluster = undefined;
    await schema?.drop();
    schema = undefined;
  });

  async function setUp(inboxMaxMessages: number) {
    schema = await createTestSchema(postgresUrl(postgres));
    cluster = await TestCluster.create(schema);
    const node = await cluster.node("receiver");
    const state = new PostgresIngestState({
      pool: node.pool,
      fence: leaseFence(node.pool, node.keeper),
    });
    const inbox = new ClusterInbox({ log, state, partitionOfTopic, now: Date.now });
    await inbox.refresh();
    let notified = 0;
    gate = new InboxGate({
      log,
      inbox,
      metrics: ingestMetrics(),
      now: Date.now,
      inboxMaxMessages,
      onMessages: () => notified++,
      holdMaxMs: 1_500,
    });
    const outcomes: Array<string | null> = [];
    const accept = (topic: string, n: number) =>
      (gate as InboxGate).accept(topic, Buffer.from(`m${n}`), (error) =>
        outcomes.push(error?.message ?? null),
      );
    const rows = async () =>
      (
        await (cluster as TestCluster).admin.query<{
          partition: number;
          topic: string;
          payload: Buffer;
        }>("SELECT partition, topic, payload FROM ingest_inbox ORDER BY id")
      ).rows.map((r) => ({ ...r, payload: r.payload.toString() }));
    return { node, state, inbox, outcomes, accept, rows, notified: () => notified };
  }

  it("acknowledges a data message only once its row is in the shared inbox, with its partition", async () => {
    const { outcomes, accept, rows, notified } = await setUp(100);
    accept(dataTopic("noise-1"), 1);
    accept(dataTopic("dust-7"), 2);
    accept("citywatch/v1/devices/noise-1/status", 3);
    // The status at once; the data when PostgreSQL has it.
    expect(outcomes).toEqual([null]);
    await vi.waitFor(() => expect(outcomes).toEqual([null, null, null]), PATIENCE);
    expect(await rows()).toEqual([
      {
        partition: partitionOfTopic(dataTopic("noise-1")),
        topic: dataTopic("noise-1"),
        payload: "m1",
      },
      {
        partition: partitionOfTopic(dataTopic("dust-7")),
        topic: dataTopic("dust-7"),
        payload: "m2",
      },
    ]);
    expect(notified()).toBe(1);
  });

  it("holds publishers while the shared inbox is full (any node's rows), lets them in as it drains, refuses past the hold", async () => {
    const { state, inbox, outcomes, accept, rows } = await setUp(3);
    // Another node received three messages the owners have not handled yet.
    await receivedElsewhere(state, [1, 2, 3]);
    await inbox.refresh();
    accept(dataTopic("noise-1"), 10);
    accept(dataTopic("noise-1"), 11);
    await new Promise((r) => setTimeout(r, 400));
    expect(outcomes).toEqual([]); // held, unacknowledged
    // The owners handle the rows: the held publishers come in, in order.
    await (cluster as TestCluster).admin.query("DELETE FROM ingest_inbox");
    await vi.waitFor(() => expect(outcomes).toEqual([null, null]), PATIENCE);
    expect((await rows()).map((r) => r.payload)).toEqual(["m10", "m11"]);

    // Full again: a publisher held past the hold is refused, unacknowledged.
    await receivedElsewhere(state, [4, 5, 6]);
    await inbox.refresh();
    accept(dataTopic("noise-1"), 99);
    await vi.waitFor(() => expect(outcomes).toEqual([null, null, "ingest inbox full"]), PATIENCE);
    expect((await rows()).map((r) => r.payload)).not.toContain("m99");
  });

  it("refuses, unacknowledged, what it cannot write (PostgreSQL out of reach)", async () => {
    const { node, outcomes, accept, rows } = await setUp(100);
    await node.pool.end();
    accept(dataTopic("noise-1"), 1);
    await vi.waitFor(() => expect(outcomes).toEqual(["ingest inbox unavailable"]), PATIENCE);
    expect(await rows()).toEqual([]);
  });
});
