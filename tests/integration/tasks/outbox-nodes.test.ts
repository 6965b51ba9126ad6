import { performance } from "node:perf_hooks";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { TaskEvent } from "../../../contracts/index.js";
import { metricValue } from "../../../infra/metrics.js";
import { notifyMetrics, type NotifyMetrics } from "../../../tasks/notify/metrics.js";
import { Outbox, type OutboxStore } from "../../../tasks/notify/outbox.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { until } from "../../support/broker.js";
import {
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { queueTask } from "../../unit/tasks/queue-fixture.js";

/*
 * Several nodes, each with an Outbox and a pool of its own, pumping one PostgreSQL outbox
 * (issue #21): one webhook-like target, whose receiver records every delivery (event id, the
 * node that sent it, when it started and ended). What must hold: each notification is delivered
 * once while the nodes live, in event order, one at a time (no two deliveries overlap, whichever
 * nodes send them); a killed holder's target is taken over once its lease expires, its
 * notification in flight sent once more and nothing lost; a delivery longer than the TTL keeps
 * its lease; a node paused past its lease cannot carry on once it wakes.
 */

const postgres = await requireService("outbox delivery shared by nodes", providePostgres);

const TTL_MS = 600;
const TARGET = "city-platform";
const NOW = Date.parse("2026-12-06T08:00:00.000Z");
const log = pino({ level: "silent" });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until `predicate` holds (checked every 10 ms), or throws after `timeoutMs`. */
async function eventually(
  predicate: () => Promise<boolean>,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Delivery {
  readonly eventId: number;
  readonly holder: string;
  readonly startMs: number;
  endMs: number;
}

/** What a node's process does: runs, is frozen (its calls wait), or is dead (they never answer). */
interface Life {
  dead: boolean;
  frozen: Promise<void> | undefined;
}

interface Node {
  readonly holder: string;
  readonly outbox: Outbox;
  readonly metrics: NotifyMetrics;
  readonly life: Life;
}

/** The node's store as its process sees it: frozen, a call waits; dead, it never answers. */
function storeOf(store: PostgresTaskStore, life: Life): OutboxStore {
  const run = async <T>(call: () => Promise<T>): Promise<T> => {
    if (life.frozen !== undefined) await life.frozen;
    return life.dead ? new Promise<never>(() => undefined) : call();
  };
  return {
    enqueue: (...args) => run(() => store.enqueue(...args)),
    outboxDepths: () => run(() => store.outboxDepths()),
    outboxHead: (target) => run(() => store.outboxHead(target)),
    event: (id) => run(() => store.event(id)),
    claimOutbox: (...args) => run(() => store.claimOutbox(...args)),
    releaseOutbox: (...args) => run(() => store.releaseOutbox(...args)),
    delivered: (...args) => run(() => store.delivered(...args)),
    retryLater: (...args) => run(() => store.retryLater(...args)),
    bury: (...args) => run(() => store.bury(...args)),
  };
}

const eventOf = (i: number): Omit<TaskEvent, "id"> => {
  const task = queueTask(i, { nowMs: NOW });
  return { type: "filed", at: task.filedAt, task, entries: [] };
};

/** The event ids in the order the receiver got them. */
const order = (deliveries: readonly Delivery[]) => deliveries.map((d) => d.eventId);

/** Deliveries sorted by start, each begun only after the one before it ended. */
function oneAtATime(deliveries: readonly Delivery[]): boolean {
  const sorted = [...deliveries].sort((a, b) => a.startMs - b.startMs);
  return sorted.every((d, i) => i === 0 || d.startMs >= (sorted[i - 1]?.endMs ?? Infinity));
}

describe.runIf(postgres)("the outbox shared by nodes on one PostgreSQL", () => {
  let schema: TestSchema | undefined;
  let producer: PostgresTaskStore;
  let admin: pg.Pool;
  const nodes: Node[] = [];
  /** Every delivery the receiver got, in order. */
  let received: Delivery[] = [];
  /** What the receiver does with a delivery of node `holder` (default: takes 0 to 3 ms). */
  let behaviour: (node: Node, event: TaskEvent, delivery: Delivery) => Promise<void>;

  afterEach(async () => {
    // A dead node is never stopped (its calls never answer): its pool goes with the schema.
    await Promise.all(nodes.filter((n) => !n.life.dead).map((n) => n.outbox.stop()));
    nodes.splice(0);
    await schema?.drop();
    schema = undefined;
  });

  async function setUp(
    holders: readonly string[],
    { maxAttempts = 5 }: { maxAttempts?: number } = {},
  ): Promise<Node[]> {
    const migrated = await createMigratedSchema(postgresUrl(postgres));
    schema = migrated.schema;
    admin = migrated.pool;
    producer = new PostgresTaskStore(admin);
    received = [];
    behaviour = () => sleep(Math.random() * 3);
    for (const holder of holders) {
      const life: Life = { dead: false, frozen: undefined };
      const metrics = notifyMetrics(new Registry());
      const store = storeOf(new PostgresTaskStore(await schema.pool(4)), life);
      const node: Node = {
        holder,
        life,
        metrics,
        outbox: new Outbox({
          store,
          targets: [
            {
              name: TARGET,
              deliver: async (event) => {
                const delivery: Delivery = {
                  eventId: event.id,
                  holder,
                  startMs: performance.now(),
                  endMs: Infinity,
                };
                received.push(delivery);
                await behaviour(node, event, delivery);
                delivery.endMs = performance.now();
              },
            },
          ],
          options: { maxPending: 10_000, maxAttempts, backoffBaseMs: 20, backoffMaxMs: 100 },
          metrics,
          log,
          now: Date.now,
          holder,
          leaseTtlMs: TTL_MS,
        }),
      };
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.outbox.start()));
    return nodes;
  }

  /** A task change committed on `node`: its event and outbox row in one transaction. */
  async function file(node: Node, i: number): Promise<number> {
    const event = await producer.transaction(async (tx) => {
      const appended = await tx.appendEvent(eventOf(i), NOW + i);
      await node.outbox.enqueue(appended, tx);
      return appended;
    });
    node.outbox.kick();
    return event.id;
  }

  /** Files events `from` … `to - 1`, each on the next living node in turn. */
  async function fileMany(from: number, to: number): Promise<number[]> {
    const ids: number[] = [];
    for (let i = from; i < to; i++) {
      const living = nodes.filter((n) => !n.life.dead && n.life.frozen === undefined);
      ids.push(await file(living[i % living.length] as Node, i));
    }
    return ids;
  }

  const deliveredAll = (ids: readonly number[]) => () => {
    const seen = new Set(order(received));
    return ids.every((id) => seen.has(id));
  };

  const outboxEmpty = async () => (await producer.outboxDepths()).size === 0;

  const lost = (node: Node) => metricValue(node.metrics.outboxLeaseLost, { target: TARGET });

  it("delivers each notification once, in order, one at a time; a killed holder's target is taken over after the TTL", async () => {
    await setUp(["node-a", "node-b", "node-c"]);

    // Three live nodes, events filed on each in turn (a node's kick wakes only itself).
    const first = await fileMany(0, 120);
    await until(deliveredAll(first), "the first 120 delivered", 30_000);
    await eventually(outboxEmpty, "the outbox empty");
    expect(order(received)).toEqual(first);
    expect(oneAtATime(received)).toBe(true);
    // Every node's count reaches 0, the holder's by draining, the others' read from the store.
    await until(() => nodes.every((n) => n.outbox.pending(TARGET) === 0), "counts at 0");
    const holders = nodes.filter((n) => n.outbox.leasesHeld().has(TARGET));
    expect(holders).toHaveLength(1);

    // The node that sends the 40th of the next 80 dies as the receiver takes it: no outcome
    // written, no release, its calls never answer.
    const delivered = received.length;
    let killed: { node: Node; eventId: number; atMs: number; token: number } | undefined;
    behaviour = async (node, event, delivery) => {
      await sleep(Math.random() * 3);
      if (killed === undefined && received.indexOf(delivery) === delivered + 39) {
        const token = node.outbox.leasesHeld().get(TARGET);
        if (token === undefined) throw new Error(`${node.holder} delivers without a lease`);
        killed = { node, eventId: event.id, atMs: performance.now(), token };
        node.life.dead = true;
      }
    };
    const second: number[] = [];
    second.push(...(await fileMany(120, 160)));
    second.push(...(await fileMany(160, 200)));
    await until(deliveredAll(second), "all 200 delivered", 30_000);
    // The receiver has them all; the last one's row goes once its sender records the outcome.
    await eventually(outboxEmpty, "the outbox empty");
    if (killed === undefined) throw new Error("no node was killed");
    const dead = killed;

    // Exactly one redelivery, of the notification in flight, and the order kept.
    const k = second.indexOf(dead.eventId);
    expect(order(received.slice(delivered))).toEqual([
      ...second.slice(0, k + 1),
      ...second.slice(k),
    ]);
    expect(oneAtATime(received)).toBe(true);
    const after = received.filter((d) => d.startMs > dead.atMs);
    expect(after.every((d) => d.holder !== dead.node.holder)).toBe(true);
    // No living node sent anything while the dead node's lease lasted, and one took over within
    // a TTL and a third (and some slack for a loaded machine).
    const takeover = (after[0]?.startMs ?? Infinity) - dead.atMs;
    expect(takeover).toBeGreaterThanOrEqual(TTL_MS / 2);
    expect(takeover).toBeLessThan(TTL_MS + TTL_MS / 3 + 2_000);
    const { rows } = await admin.query<{ holder: string; token: string }>(
      "SELECT holder, token FROM task_outbox_lease WHERE target = $1",
      [TARGET],
    );
    expect(rows[0]?.holder).not.toBe(dead.node.holder);
    expect(Number(rows[0]?.token)).toBeGreaterThan(dead.token);
    const survivors = nodes.filter((n) => n !== dead.node);
    expect(survivors.filter((n) => n.outbox.leasesHeld().has(TARGET))).toHaveLength(1);
    for (const node of survivors) expect(await lost(node)).toBe(0);
  });

  it("delivers in commit order when a change that drew its event first commits last", async () => {
    const [node] = await setUp(["node-a"]);
    // Node b's change draws its event id and is still writing (a slow seal, say) while node
    // a's change starts, draws the next id and commits.
    const other = new PostgresTaskStore(await schema!.pool(2));
    let finish: () => void = () => {};
    const slow = new Promise<void>((resolve) => (finish = resolve));
    const first = other.transaction(async (tx) => {
      const appended = await tx.appendEvent(eventOf(1), NOW + 1);
      await node!.outbox.enqueue(appended, tx);
      await slow;
      return appended.id;
    });
    await sleep(50);
    const second = file(node!, 2);
    await sleep(300);
    // The later change waits for the earlier to commit: nothing later than the open change is
    // visible (nor sent), whose event would otherwise arrive after it.
    expect(await producer.eventsAfter(0, 10)).toEqual([]);
    expect(received).toEqual([]);
    finish();
    const ids = [await first, await second];
    await until(deliveredAll(ids), "both delivered", 10_000);
    expect(order(received)).toEqual(ids);
    expect(ids[0]).toBeLessThan(ids[1]!);
  });

  it("keeps the lease through a delivery longer than the TTL: no other node sends meanwhile", async () => {
    await setUp(["node-a", "node-b"]);
    let slowId: number | undefined;
    behaviour = async (_, event, delivery) => {
      // The fifth takes four TTLs.
      if (received.indexOf(delivery) === 4) slowId = event.id;
      await sleep(event.id === slowId ? 4 * TTL_MS : Math.random() * 3);
    };
    const ids = await fileMany(0, 20);
    await until(deliveredAll(ids), "all 20 delivered", 30_000);
    await eventually(outboxEmpty, "the outbox empty");
    expect(order(received)).toEqual(ids);
    expect(oneAtATime(received)).toBe(true);
    for (const node of nodes) expect(await lost(node)).toBe(0);
  });

  it("stops a node paused past its lease: its outcome is refused when it wakes, the loss counted, and it sends nothing more", async () => {
    // One attempt each: a failed delivery is buried at once, so a stale node's bury would take
    // the notification from the node that holds the lease now.
    const [a, b] = await setUp(["node-a", "node-b"], { maxAttempts: 1 });
    if (a === undefined || b === undefined) throw new Error("no nodes");
    let resume: () => void = () => undefined;
    let finish: () => void = () => undefined;
    const otherMayFinish = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let sleeper: Node | undefined;
    let pausedId: number | undefined;
    let otherStarted = false;
    behaviour = async (node, event, delivery) => {
      if (sleeper === undefined && received.indexOf(delivery) === 4) {
        // The node's process stops mid-request (a long GC pause, say), its renewals too; when
        // it wakes, the request has failed.
        sleeper = node;
        pausedId = event.id;
        node.life.frozen = new Promise<void>((resolve) => {
          resume = resolve;
        });
        await node.life.frozen;
        throw new Error("HTTP 502: the answer came after a pause");
      }
      if (event.id === pausedId && node !== sleeper) {
        // The new holder's delivery of it is in flight while the paused node wakes.
        otherStarted = true;
        await otherMayFinish;
        return;
      }
      await sleep(Math.random() * 3);
    };
    const ids = await fileMany(0, 20);
    await until(() => otherStarted, "the other node takes the paused node's notification", 10_000);
    if (sleeper === undefined) throw new Error("no node was paused");
    const paused = sleeper;
    const other = paused === a ? b : a;
    expect(other.outbox.leasesHeld().has(TARGET)).toBe(true);

    paused.life.frozen = undefined;
    resume();
    const woken = performance.now();
    await eventually(async () => (await lost(paused)) === 1, "the loss counted");
    expect(paused.outbox.leasesHeld().size).toBe(0);
    finish();
    ids.push(...(await fileMany(20, 30)));
    await until(deliveredAll(ids), "all 30 delivered", 30_000);
    await eventually(outboxEmpty, "the outbox empty");

    // The paused node's bury was refused: the notification went out twice (at least once),
    // nothing is in the dead outbox, and only the holder sent anything after the pause.
    expect(await producer.deadCount()).toBe(0);
    const k = ids.indexOf(pausedId as number);
    expect(order(received)).toEqual([...ids.slice(0, k + 1), ...ids.slice(k)]);
    expect(received.filter((d) => d.startMs > woken).every((d) => d.holder === other.holder)).toBe(
      true,
    );
    expect(await lost(other)).toBe(0);
    expect(await metricValue(paused.metrics.deadNotifications)).toBe(0);
  });
});
