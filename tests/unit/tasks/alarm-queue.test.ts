import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AlarmQueue, type AlarmQueueOptions } from "../../../tasks/alarm-queue.js";
import { EvidenceKeyring } from "../../../tasks/evidence-keys.js";
import { taskMetrics } from "../../../tasks/metrics.js";
import { TaskService } from "../../../tasks/service.js";
import { asyncTaskStore, type AsyncTaskStore } from "../../../tasks/store-port.js";
import { TaskStore } from "../../../tasks/store.js";
import { metricValue } from "../../../infra/metrics.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DAY,
  fakeClock,
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  T0,
  tasksConfig,
} from "./fixtures.js";

const log = pino({ level: "silent" });

/** A queue of numbers whose `apply` is the test's, with what it dropped and why. */
function queueOf(apply: (n: number) => Promise<void>, options: Partial<AlarmQueueOptions> = {}) {
  const dropped: string[] = [];
  const queue = new AlarmQueue<number>({
    apply,
    describe: (n) => ({ n }),
    log,
    dropped: (reason) => dropped.push(reason),
    options: { retryBaseMs: 1, retryMaxMs: 2, ...options },
    random: () => 0,
  });
  return { queue, dropped };
}

/** A promise and its resolver: holds `apply` until the test lets it go. */
function gate() {
  let open: () => void = () => {};
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe("AlarmQueue", () => {
  it("applies decisions one at a time, in the order they were handed over", async () => {
    const events: string[] = [];
    let running = 0;
    const { queue } = queueOf(async (n) => {
      running++;
      expect(running).toBe(1);
      events.push(`start ${n}`);
      await new Promise((r) => setTimeout(r, n % 3));
      events.push(`end ${n}`);
      running--;
    });
    for (let n = 0; n < 20; n++) expect(queue.push(n)).toBe(true);
    expect(queue.depth()).toBe(20);
    await queue.settled();
    expect(queue.depth()).toBe(0);
    expect(events).toEqual(Array.from({ length: 20 }, (_, n) => [`start ${n}`, `end ${n}`]).flat());
  });

  it("handled() waits for the decisions handed over before it, not for later ones", async () => {
    const gates = [gate(), gate(), gate()];
    const { queue, dropped } = queueOf(
      async (n) => {
        await gates[n]?.promise;
        if (n === 1) throw new Error("store out of reach");
      },
      { maxAttempts: 1 },
    );
    // Nothing handed over yet: handled at once.
    await queue.handled();
    queue.push(0);
    queue.push(1);
    const firstTwo = queue.handled().then(() => "handled");
    queue.push(2);
    const all = queue.handled().then(() => "handled");
    const tick = () => new Promise((r) => setTimeout(r, 5));
    gates[0]?.open();
    await tick();
    expect(await Promise.race([firstTwo, tick().then(() => "pending")])).toBe("pending");
    // The second is given up (one attempt): done with, so the first two are handled.
    gates[1]?.open();
    expect(await firstTwo).toBe("handled");
    expect(dropped).toEqual(["failed"]);
    expect(await Promise.race([all, tick().then(() => "pending")])).toBe("pending");
    gates[2]?.open();
    expect(await all).toBe("handled");
  });

  it("takes a decision handed over from inside an apply (no item slips between drains)", async () => {
    const applied: number[] = [];
    const { queue } = queueOf((n) => {
      applied.push(n);
      if (n < 5) queue.push(n + 1);
      return Promise.resolve();
    });
    queue.push(0);
    await queue.settled();
    expect(applied).toEqual([0, 1, 2, 3, 4, 5]);
    // After the drain ended, a new decision starts a new one.
    queue.push(9);
    await queue.settled();
    expect(applied.at(-1)).toBe(9);
  });

  it("refuses a decision beyond its bound and counts it; those waiting are applied", async () => {
    const hold = gate();
    const applied: number[] = [];
    const { queue, dropped } = queueOf(
      async (n) => {
        await hold.promise;
        applied.push(n);
      },
      { maxPending: 3 },
    );
    expect([1, 2, 3, 4].map((n) => queue.push(n))).toEqual([true, true, true, false]);
    expect(dropped).toEqual(["full"]);
    hold.open();
    await queue.settled();
    expect(applied).toEqual([1, 2, 3]);
  });

  it("tries a refused decision again, the later ones waiting behind it, and gives up after maxAttempts", async () => {
    const attempts = new Map<number, number>();
    const applied: number[] = [];
    const { queue, dropped } = queueOf(
      (n) => {
        const a = (attempts.get(n) ?? 0) + 1;
        attempts.set(n, a);
        // 1 fails twice then goes through; 2 always fails; 3 goes at once.
        if ((n === 1 && a <= 2) || n === 2) return Promise.reject(new Error("database away"));
        applied.push(n);
        return Promise.resolve();
      },
      { maxAttempts: 4 },
    );
    queue.push(1);
    queue.push(2);
    queue.push(3);
    await queue.settled();
    expect(applied).toEqual([1, 3]);
    expect(Object.fromEntries(attempts)).toEqual({ 1: 3, 2: 4, 3: 1 });
    expect(dropped).toEqual(["failed"]);
  });

  it("on stop refuses new decisions and applies those waiting without retry waits", async () => {
    const hold = gate();
    const attempts: number[] = [];
    const { queue, dropped } = queueOf(
      async (n) => {
        attempts.push(n);
        await hold.promise;
        if (n === 2) throw new Error("database away");
      },
      // A retry would wait an hour: stop must not.
      { maxAttempts: 5, retryBaseMs: 3_600_000, retryMaxMs: 3_600_000 },
    );
    queue.push(1);
    queue.push(2);
    queue.push(3);
    const stopped = queue.stop();
    expect(queue.push(4)).toBe(false);
    hold.open();
    await stopped;
    expect(attempts).toEqual([1, 2, 3]);
    expect(dropped).toEqual(["full", "failed"]);
  });

  it("a stop while the head waits to retry cuts the wait short", async () => {
    let calls = 0;
    const { queue, dropped } = queueOf(
      () => {
        calls++;
        return Promise.reject(new Error("database away"));
      },
      { maxAttempts: 5, retryBaseMs: 3_600_000, retryMaxMs: 3_600_000 },
    );
    queue.push(1);
    await new Promise((r) => setTimeout(r, 10));
    expect(calls).toBe(1);
    await queue.stop();
    expect(calls).toBe(2);
    expect(dropped).toEqual(["failed"]);
  });
});

describe("the task service's hand-over from the rules driver", () => {
  let dir: string;
  let store: TaskStore;

  beforeEach(async () => {
    dir = await makeTempDir("cw-alarm-queue-");
    store = new TaskStore(join(dir, "tasks.db"));
  });
  afterEach(async () => {
    store.close();
    await removeTempDir(dir);
  });

  /** The service over the task store, whose transactions fail while `failing` says so. */
  function serviceOver(failing: () => boolean) {
    const inner = asyncTaskStore(store);
    const flaky: AsyncTaskStore = {
      ...inner,
      transaction: (work) =>
        failing() ? Promise.reject(new Error("connection refused")) : inner.transaction(work),
    };
    const metrics = taskMetrics(new Registry());
    const service = new TaskService({
      log,
      config: tasksConfig(),
      store: flaky,
      registry,
      metrics,
      now: Date.now,
      keyring: EvidenceKeyring.open(join(dir, "evidence-keys.json"), { create: true }),
      alarmQueue: { retryBaseMs: 2, retryMaxMs: 4 },
    });
    return { service, metrics };
  }

  it("files handed-over decisions in order once the store answers again, each once", async () => {
    let refusals = 3;
    const { service, metrics } = serviceOver(() => refusals-- > 0);
    const at = Date.now();
    service.handleAlarm(noiseNotice("cs-1", raise(at), noiseEvidence(at)));
    service.handleAlarm(gasNotice(raise(at, { level: "IV" })));
    service.handleAlarm(noiseNotice("cs-1", raise(at, { alarmSeq: 2 }), noiseEvidence(at)));
    await service.settled();
    const tasks = store.listTasks({ limit: 10 });
    expect(tasks.map((t) => t.id).sort()).toEqual(["emg-000002", "enf-000001"]);
    expect(store.task("enf-000001")?.repeats).toBe(1);
    expect(await metricValue(metrics.alarmsDropped)).toBe(0);
    await service.stop();
  });

  it("an SLA tick does not undo a repeat applied between its list of open tasks and its change", async () => {
    const clock = fakeClock(T0);
    const inner = asyncTaskStore(store);
    const race: { between?: () => Promise<void> } = {};
    let lists = 0;
    // The tick lists the open tasks for its SLA round (its second list), then a repeat lands
    // (the queue runs between the tick's steps).
    const racing: AsyncTaskStore = {
      ...inner,
      openTasks: async () => {
        const listed = await inner.openTasks();
        if (++lists === 2) await race.between?.();
        return listed;
      },
    };
    const service = new TaskService({
      log,
      config: tasksConfig(),
      store: racing,
      registry,
      metrics: taskMetrics(new Registry()),
      now: clock.now,
      keyring: EvidenceKeyring.open(join(dir, "evidence-keys.json"), {
        create: true,
        now: clock.now,
      }),
    });
    await service.applyAlarm(gasNotice(raise(T0, { level: "IV", deviceId: "g-1" })));
    clock.advance(2 * DAY);
    race.between = () =>
      service.applyAlarm(
        gasNotice(raise(clock.now(), { alarmSeq: 2, level: "IV", deviceId: "g-1" })),
      );
    await service.tick();
    const task = store.task("emg-000001");
    expect(task?.repeats).toBe(1);
    expect(task?.sla.flags).toEqual(["not_handled"]);
    const actions = store.audit("emg-000001").map((e) => e.action);
    expect(actions).toContain("repeat_attached");
    expect(actions).toContain("sla_flagged");
    await service.stop();
  });

  it("counts a decision the store refused on every attempt, and goes on with the next", async () => {
    let calls = 0;
    // The first decision's six attempts fail; the second goes through.
    const { service, metrics } = serviceOver(() => ++calls <= 6);
    const at = Date.now();
    service.handleAlarm(noiseNotice("cs-1", raise(at), noiseEvidence(at)));
    service.handleAlarm(gasNotice(raise(at, { level: "IV" })));
    await service.settled();
    expect(store.listTasks({ limit: 10 }).map((t) => t.kind)).toEqual(["emergency"]);
    expect(await metricValue(metrics.alarmsDropped, { reason: "failed" })).toBe(1);
    await service.stop();
  });
});
