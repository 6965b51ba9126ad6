import type pg from "pg";
import { pino } from "pino";
import { expect } from "vitest";
import { LeaseKeeper, type LeaseKeeperOptions, type LossReason } from "../../../cluster/leases.js";
import { migrate } from "../../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../../infra/postgres/schema.js";
import type { TestSchema } from "../../support/services.js";

/*
 * Lease keepers for the cluster suites, each on its own pool (a node of its own) in one test
 * schema. All keepers live in this process, so their owned() maps read in one synchronous block
 * are one instant of the whole cluster: a sampler checks at every tick that no partition is
 * believed owned by two keepers at once.
 */

export const PARTITIONS = 64;
/** Short, so takeovers happen within the test; tests wait on conditions, never on durations. */
export const TTL_MS = 1_000;
export const RENEW_MS = 250;
/** How long a condition may take to hold: many TTLs, for a loaded machine. */
export const PATIENCE = { timeout: 20_000, interval: 25 };

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });

/** How long a lease lasts and how often it is renewed. */
export interface KeeperTiming {
  readonly ttlMs: number;
  readonly renewMs: number;
}

export type KeeperEvent =
  | { kind: "acquired"; partition: number; token: number }
  | { kind: "lost"; partition: number; reason: LossReason };

export interface TestNode {
  readonly keeper: LeaseKeeper;
  /** The node's own pool; ending it is a kill -9 as far as the database can tell. */
  readonly pool: pg.Pool;
  readonly events: KeeperEvent[];
}

export interface LeaseRow {
  partition: number;
  owner: string | null;
  token: number | null;
  valid: boolean;
}

export class TestCluster {
  readonly nodes: TestNode[] = [];
  /** Instants at which two keepers believed they owned the same partition. */
  readonly violations: string[] = [];
  readonly #sampler: NodeJS.Timeout;

  private constructor(
    readonly schema: TestSchema,
    /** A pool of the test's own, for looking at and meddling with the tables. */
    readonly admin: pg.Pool,
    readonly timing: KeeperTiming,
  ) {
    this.#sampler = setInterval(() => this.#sample(), 5);
  }

  /** A migrated schema, ready for keepers (leases of TTL_MS renewed every RENEW_MS, unless told). */
  static async create(
    schema: TestSchema,
    timing: KeeperTiming = { ttlMs: TTL_MS, renewMs: RENEW_MS },
  ): Promise<TestCluster> {
    const admin = await schema.pool();
    await migrate(admin, CITYWATCH_MIGRATIONS);
    return new TestCluster(schema, admin, timing);
  }

  /** A keeper on a pool of its own, not started; `hooks` hear its events too. */
  async node(
    nodeId: string,
    hooks: Pick<LeaseKeeperOptions, "onAcquired" | "onLost"> = {},
  ): Promise<TestNode> {
    const pool = await this.schema.pool(2);
    const events: KeeperEvent[] = [];
    const keeper = new LeaseKeeper({
      nodeId,
      pool,
      partitions: PARTITIONS,
      ttlMs: this.timing.ttlMs,
      renewMs: this.timing.renewMs,
      log,
      onAcquired: (partition, token) => {
        events.push({ kind: "acquired", partition, token });
        hooks.onAcquired?.(partition, token);
      },
      onLost: (partition, reason) => {
        events.push({ kind: "lost", partition, reason });
        hooks.onLost?.(partition, reason);
      },
    });
    const node = { keeper, pool, events };
    this.nodes.push(node);
    return node;
  }

  /** Started keepers, all at the same moment. */
  async start(...nodeIds: string[]): Promise<TestNode[]> {
    const nodes = await Promise.all(nodeIds.map((id) => this.node(id)));
    await Promise.all(nodes.map((n) => n.keeper.start()));
    return nodes;
  }

  async leases(): Promise<LeaseRow[]> {
    const { rows } = await this.admin.query<{
      partition: number;
      owner: string | null;
      token: string | null;
      valid: boolean;
    }>(
      `SELECT partition, owner, token, expires_at > clock_timestamp() AS valid
         FROM partition_leases ORDER BY partition`,
    );
    return rows.map((r) => ({ ...r, token: r.token === null ? null : Number(r.token) }));
  }

  /**
   * Throws unless `nodes` share all partitions fairly: each holds at most ceil(P / n), none twice,
   * together all of them, and the table agrees with every keeper's owned() (owner, token, valid).
   * For vi.waitFor, once the cluster has had time to settle.
   */
  async expectSettled(nodes: readonly TestNode[]): Promise<void> {
    const share = Math.ceil(PARTITIONS / nodes.length);
    const owners = new Map<number, { nodeId: string; token: number }>();
    for (const { keeper } of nodes) {
      const owned = keeper.owned();
      expect(owned.size, `${keeper.nodeId} holds at most its share`).toBeLessThanOrEqual(share);
      for (const [partition, token] of owned) {
        expect(owners.has(partition), `partition ${partition} owned twice`).toBe(false);
        owners.set(partition, { nodeId: keeper.nodeId, token });
      }
    }
    expect(owners.size, "every partition has an owner").toBe(PARTITIONS);
    const rows = await this.leases();
    expect(rows).toHaveLength(PARTITIONS);
    for (const row of rows) {
      const owner = owners.get(row.partition);
      expect(row, `partition ${row.partition} in the table`).toEqual({
        partition: row.partition,
        owner: owner?.nodeId,
        token: owner?.token,
        valid: true,
      });
    }
  }

  #sample(): void {
    const seen = new Map<number, string>();
    for (const { keeper } of this.nodes) {
      for (const partition of keeper.owned().keys()) {
        const other = seen.get(partition);
        if (other !== undefined) {
          this.violations.push(`partition ${partition}: ${other} and ${keeper.nodeId}`);
        }
        seen.set(partition, keeper.nodeId);
      }
    }
  }

  /** Stops every keeper (tolerant of ended pools), then drops the schema with its pools. */
  async close(): Promise<void> {
    clearInterval(this.#sampler);
    await Promise.all(this.nodes.map((n) => n.keeper.stop()));
    await this.schema.drop();
  }
}

/** Partitions whose lease a node reported lost, by reason. */
export function lossesOf(node: TestNode, reason: LossReason): number[] {
  return node.events
    .filter((e) => e.kind === "lost" && e.reason === reason)
    .map((e) => e.partition)
    .sort((a, b) => a - b);
}
