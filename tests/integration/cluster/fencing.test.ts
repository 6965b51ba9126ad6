import type pg from "pg";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { fencedWrite, LeaseLostError } from "../../../cluster/fencing.js";
import { createTestSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { PARTITIONS, PATIENCE, TestCluster } from "./keepers.js";

// cluster/fencing.ts: a node that lost a partition cannot write for it (docs/cluster.md).
const postgres = await requireService("cluster: fenced writes", providePostgres);

describe.runIf(postgres)("fenced writes", () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = await TestCluster.create(await createTestSchema(postgresUrl(postgres)));
    await cluster.admin.query("CREATE TABLE work (partition integer, note text)");
  });
  afterEach(async () => {
    await cluster.close();
    expect(cluster.violations).toEqual([]);
  });

  const note = (partition: number, text: string) => (client: pg.PoolClient) =>
    client.query("INSERT INTO work VALUES ($1, $2)", [partition, text]);

  async function notes(): Promise<string[]> {
    const { rows } = await cluster.admin.query<{ note: string }>(
      "SELECT note FROM work ORDER BY note",
    );
    return rows.map((r) => r.note);
  }

  /** Resolves once partition 0's lease has expired by the database's clock. */
  async function expiredInDatabase(partition: number): Promise<void> {
    await vi.waitFor(async () => {
      const row = (await cluster.leases())[partition];
      expect(row?.valid).toBe(false);
    }, PATIENCE);
  }

  it("refuses a stale token: after expiry, and after a takeover; the new token writes", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.tokenOf(0)).toBeDefined(), PATIENCE);
    const old = a!.keeper.tokenOf(0)!;
    await fencedWrite(cluster.admin, 0, old, note(0, "a while owner"));

    await a!.pool.end(); // kill -9
    await expiredInDatabase(0);
    const write = vi.fn(note(0, "a after expiry"));
    const expired = await fencedWrite(cluster.admin, 0, old, write).catch((e: Error) => e);
    expect(expired).toBeInstanceOf(LeaseLostError);
    expect(expired).toMatchObject({ partition: 0, token: old });
    expect(write).not.toHaveBeenCalled();

    const [b] = await cluster.start("node-b");
    await vi.waitFor(() => expect(b!.keeper.tokenOf(0)).toBeGreaterThan(old), PATIENCE);
    await expect(fencedWrite(cluster.admin, 0, old, note(0, "a after takeover"))).rejects.toThrow(
      LeaseLostError,
    );
    await fencedWrite(cluster.admin, 0, b!.keeper.tokenOf(0)!, note(0, "b as owner"));
    expect(await notes()).toEqual(["a while owner", "b as owner"]);
  });

  it("holds a takeover back until the old owner's write in flight has committed", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    const old = a!.keeper.tokenOf(7)!;

    // A write begins while the lease is valid and stays open past the lease's expiry.
    let finish!: () => void;
    const holding = new Promise<void>((resolve) => (finish = resolve));
    let started!: () => void;
    const begun = new Promise<void>((resolve) => (started = resolve));
    const inFlight = fencedWrite(cluster.admin, 7, old, async (client) => {
      started();
      await holding;
      await note(7, "a, begun in time")(client);
    });
    await begun;

    await a!.pool.end(); // kill -9: no renewal any more
    await expiredInDatabase(7);
    const [b] = await cluster.start("node-b");
    // b takes everything else; partition 7 it must pass by while the write holds its row.
    await vi.waitFor(() => expect(b!.keeper.owned().size).toBe(PARTITIONS - 1), PATIENCE);
    expect(b!.keeper.tokenOf(7)).toBeUndefined();

    finish();
    await inFlight;
    await vi.waitFor(() => expect(b!.keeper.tokenOf(7)).toBeGreaterThan(old), PATIENCE);
    await fencedWrite(cluster.admin, 7, b!.keeper.tokenOf(7)!, note(7, "b, after takeover"));
    expect(await notes()).toEqual(["a, begun in time", "b, after takeover"]);
  });

  it("rolls the write back when it fails, and reuses a connection it is given", async () => {
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.tokenOf(3)).toBeDefined(), PATIENCE);
    const token = a!.keeper.tokenOf(3)!;
    const client = await cluster.admin.connect();
    try {
      await expect(
        fencedWrite(client, 3, token, async (c) => {
          await note(3, "rolled back")(c);
          throw new Error("store failed");
        }),
      ).rejects.toThrow("store failed");
      await fencedWrite(client, 3, token, note(3, "kept"));
      await expect(fencedWrite(client, 3, token + 1_000, note(3, "refused"))).rejects.toThrow(
        LeaseLostError,
      );
      // The connection is out of any transaction again: this statement starts its own.
      const { rows } = await client.query<{ fresh: boolean }>(
        "SELECT now() = statement_timestamp() AS fresh",
      );
      expect(rows[0]?.fresh).toBe(true);
    } finally {
      client.release();
    }
    expect(await notes()).toEqual(["kept"]);
  });
});
