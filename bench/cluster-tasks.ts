/**
 * The task store's part of the cluster bench (bench/cluster.ts): what a task change costs in
 * PostgreSQL (tasks/store-postgres.ts) against the embedded tasks.db behind the same interface
 * (tasks/store-port.ts), on the same tasks in the same run. Round trips are counted on the pool's
 * connections (every statement, savepoint, BEGIN and COMMIT included).
 *
 * The changes are the task service's shapes (tasks/service.ts), one transaction each:
 * - filing: a task number, the (subject, rule) checked for an open task, the task, two audit
 *   entries, its evidence package, the event and two outbox rows (a webhook and MQTT);
 * - a transition: the task read, written back, an audit entry, the event, two outbox rows;
 * - the queue's first page: the 50 newest open tasks (a read, no transaction).
 * Then the task service itself (tasks/service.ts) on the same store: an alarm decision filed
 * (the locks of the shared store, a 20-reading package built, hashed and signed) and a person's
 * move, as `citywatch start` runs them.
 * BENCH_CLUSTER_TASKS (default 1,000) tasks, filed and moved one after the other.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import type { EvidencePackage, Task } from "../contracts/index.js";
import { TaskStore } from "../tasks/store.js";
import { type AsyncTaskStore, asyncTaskStore } from "../tasks/store-port.js";
import { PostgresTaskStore } from "../tasks/store-postgres.js";
import { EvidenceKeyring } from "../tasks/evidence-keys.js";
import { taskMetrics } from "../tasks/metrics.js";
import { TaskService } from "../tasks/service.js";
import {
  gasNotice,
  noiseEvidence,
  raise,
  registry,
  tasksConfig,
} from "../tests/unit/tasks/fixtures.js";
import { queueTask } from "../tests/unit/tasks/queue-fixture.js";
import { countQueries } from "../tests/support/postgres.js";

const NOW = Date.parse("2026-12-07T08:00:00Z");

export interface TaskStoreFigures {
  readonly store: string;
  readonly operation: string;
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly perSecond: number;
  /** Undefined for the embedded store (no network). */
  readonly roundTrips: number | undefined;
}

const quantile = (sorted: readonly number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;

/** One operation `count` times: its latency quantiles, rate and round trips per call. */
async function measure(
  store: string,
  operation: string,
  count: number,
  roundTrips: (() => number) | undefined,
  run: (i: number) => Promise<unknown>,
): Promise<TaskStoreFigures> {
  const times: number[] = [];
  const tripsBefore = roundTrips?.() ?? 0;
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await run(i);
    times.push(performance.now() - t);
  }
  const seconds = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return {
    store,
    operation,
    count,
    p50Ms: quantile(times, 0.5),
    p99Ms: quantile(times, 0.99),
    perSecond: count / seconds,
    roundTrips: roundTrips === undefined ? undefined : (roundTrips() - tripsBefore) / count,
  };
}

const evidence = (task: Task): EvidencePackage =>
  ({
    taskId: task.id,
    sequence: 1,
    hash: { algorithm: "sha256", value: "0".repeat(64) },
    readings: Array.from({ length: 60 }, (_, m) => ({ at: NOW - m * 60_000, LAeq: 58.5 })),
  }) as unknown as EvidencePackage;

/** The service's three shapes through one store. */
async function changes(
  label: string,
  store: AsyncTaskStore,
  count: number,
  roundTrips: (() => number) | undefined,
): Promise<TaskStoreFigures[]> {
  const tasks: Task[] = [];
  const filing = await measure(label, "file a task", count, roundTrips, (i) =>
    store.transaction(async (tx) => {
      const fixture = queueTask(i, { nowMs: NOW });
      const id = await tx.nextTaskId(fixture.kind);
      await tx.openTask(fixture.subject.type, fixture.subject.id, fixture.rule.id);
      const task = { ...fixture, id, state: "filed" as const };
      await tx.saveTask(task, {});
      const at = new Date(NOW).toISOString();
      await tx.appendAudit({
        taskId: id,
        atMs: NOW,
        actor: "rules",
        action: "filed",
        detail: "filed",
      });
      await tx.appendAudit({
        taskId: id,
        atMs: NOW,
        actor: "rules",
        action: "routed",
        detail: "routed",
      });
      await tx.addEvidence(evidence(task), NOW);
      const event = await tx.appendEvent({ type: "filed", at, task, entries: [] }, NOW);
      await tx.enqueue(event.id, "webhook:city", NOW);
      await tx.enqueue(event.id, "mqtt", NOW);
      tasks.push(task);
    }),
  );
  const transition = await measure(label, "move a task", count, roundTrips, (i) =>
    store.transaction(async (tx) => {
      const id = (tasks[i] as Task).id;
      const task = await tx.task(id);
      if (task === undefined) throw new Error(`${id} is gone`);
      const moved = { ...task, state: "dispatched" as const };
      await tx.saveTask(moved, {});
      await tx.appendAudit({
        taskId: id,
        atMs: NOW + 1,
        actor: "officer",
        action: "transition",
        from: "filed",
        to: "dispatched",
        detail: "dispatched",
      });
      const at = new Date(NOW + 1).toISOString();
      const event = await tx.appendEvent(
        { type: "transition", at, task: moved, entries: [] },
        NOW + 1,
      );
      await tx.enqueue(event.id, "webhook:city", NOW + 1);
      await tx.enqueue(event.id, "mqtt", NOW + 1);
    }),
  );
  const queue = await measure(
    label,
    "the queue's first page (50)",
    Math.min(count, 500),
    roundTrips,
    () => store.queryTasks({ state: "open", limit: 50 }),
  );
  return [filing, transition, queue, ...(await serviceChanges(label, store, count, roundTrips))];
}

/** The task service's own filing and move on `store`: what a decision and a click cost end to end. */
async function serviceChanges(
  label: string,
  store: AsyncTaskStore,
  count: number,
  roundTrips: (() => number) | undefined,
): Promise<TaskStoreFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-service-"));
  try {
    const service = new TaskService({
      log: pino({ level: "silent" }),
      config: tasksConfig(),
      store,
      registry,
      metrics: taskMetrics(new Registry()),
      now: Date.now,
      keyring: EvidenceKeyring.open(join(dir, "evidence-keys.json"), { create: true }),
    });
    const filed: string[] = [];
    service.onEvent((event) => {
      if (event.type === "filed") filed.push(event.task.id);
    });
    const at = Date.now();
    const filing = await measure(label, "service: file an alarm, sealed", count, roundTrips, (i) =>
      service.applyAlarm({
        ...gasNotice(raise(at, { level: "IV", deviceId: "g-1" })),
        subjectId: `bench-segment-${i}`,
        evidence: noiseEvidence(at),
      }),
    );
    if (filed.length !== count) throw new Error(`${filed.length} of ${count} alarms filed`);
    const move = await measure(label, "service: move a task", count, roundTrips, async (i) => {
      const moved = await service.transition(
        filed[i] as string,
        { to: "dispatched" },
        { name: "officer" },
      );
      if (!moved.ok) throw new Error(moved.message);
    });
    await service.stop();
    return [filing, move];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The embedded tasks.db, behind the asynchronous interface. */
export async function taskStoreOnSqlite(count: number): Promise<TaskStoreFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), "cw-bench-tasks-"));
  const store = asyncTaskStore(new TaskStore(join(dir, "tasks.db")));
  try {
    return await changes("SQLite tasks.db", store, count, undefined);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** PostgreSQL, on a pool of the bench's schema (migrated), its task tables emptied first. */
export async function taskStoreOnPostgres(
  pool: pg.Pool,
  count: number,
): Promise<TaskStoreFigures[]> {
  const counter = countQueries(pool);
  try {
    return await changes("PostgreSQL", new PostgresTaskStore(pool), count, counter.count);
  } finally {
    counter.stop();
  }
}
