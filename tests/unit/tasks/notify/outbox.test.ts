import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TaskEvent } from "../../../../contracts/index.js";
import { metricValue } from "../../../../infra/metrics.js";
import {
  backoffMs,
  Outbox,
  type OutboxDeps,
  type OutboxStore,
  type OutboxTarget,
} from "../../../../tasks/notify/outbox.js";
import { EvidenceKeyring } from "../../../../tasks/evidence-keys.js";
import { taskMetrics } from "../../../../tasks/metrics.js";
import { notifyMetrics, type NotifyMetrics } from "../../../../tasks/notify/metrics.js";
import { TaskService } from "../../../../tasks/service.js";
import { SQLITE_OUTBOX_TOKEN, TaskStore } from "../../../../tasks/store.js";
import { asyncTaskStore, type AsyncTaskStore } from "../../../../tasks/store-port.js";
import { until } from "../../../support/broker.js";
import { makeTempDir, removeTempDir } from "../../../support/process.js";
import {
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  tasksConfig,
} from "../fixtures.js";

describe("backoffMs", () => {
  it("doubles per attempt up to the cap, with equal jitter: in [ceiling/2, ceiling)", () => {
    expect([1, 2, 3, 4, 10].map((n) => backoffMs(n, 1_000, 5_000, () => 0))).toEqual([
      500, 1_000, 2_000, 2_500, 2_500,
    ]);
    expect(
      [1, 2, 3, 4, 10].map((n) => backoffMs(n, 1_000, 5_000, () => 1 - Number.EPSILON)),
    ).toEqual([999, 1_999, 3_999, 4_999, 4_999]);
    expect([1, 2, 3, 4, 10].map((n) => backoffMs(n, 1_000, 5_000, () => 1))).toEqual([
      1_000, 2_000, 4_000, 5_000, 5_000,
    ]);
  });
});

describe("Outbox", () => {
  let dir: string;
  let store: TaskStore;
  let metrics: NotifyMetrics;
  let outbox: Outbox | undefined;
  const log = pino({ level: "silent" });

  beforeEach(async () => {
    dir = await makeTempDir("cw-outbox-");
    store = new TaskStore(join(dir, "tasks.db"));
    metrics = notifyMetrics(new Registry());
  });
  afterEach(async () => {
    await outbox?.stop();
    store.close();
    await removeTempDir(dir);
  });

  /**
   * A service writing through an outbox with the given targets; `outboxStore` is what the outbox
   * sees of the store (default: the store itself).
   */
  function service(
    targets: OutboxTarget[],
    maxAttempts = 3,
    lease: Pick<OutboxDeps, "holder" | "leaseTtlMs"> & {
      outboxStore?: (shared: AsyncTaskStore) => OutboxStore;
    } = {},
  ) {
    const shared = asyncTaskStore(store);
    const { outboxStore, ...names } = lease;
    outbox = new Outbox({
      store: outboxStore?.(shared) ?? shared,
      targets,
      options: { maxPending: 100, maxAttempts, backoffBaseMs: 5, backoffMaxMs: 10 },
      metrics,
      log,
      now: Date.now,
      ...names,
    });
    const s = new TaskService({
      log,
      config: tasksConfig(),
      store: shared,
      registry,
      metrics: taskMetrics(new Registry()),
      now: Date.now,
      enqueue: (e, tx) => outbox!.enqueue(e, tx),
      keyring: EvidenceKeyring.open(join(dir, "evidence-keys.json"), { create: true }),
    });
    s.onEvent(() => outbox!.kick());
    void outbox.start();
    return s;
  }

  it("delivers in order per target, each target only the kinds it asks for", async () => {
    const seen: Record<string, string[]> = { all: [], emergency: [] };
    const target = (name: string, kinds?: TaskEvent["task"]["kind"][]): OutboxTarget => ({
      name,
      kinds,
      deliver: async (e) => {
        await new Promise((r) => setTimeout(r, 5)); // slower than the producer
        seen[name]!.push(`${e.id}:${e.task.id}`);
      },
    });
    const s = service([target("all"), target("emergency", ["emergency"])]);
    await s.applyAlarm(noiseNotice("cs-1", raise(Date.now()), noiseEvidence(Date.now())));
    await s.applyAlarm(gasNotice(raise(Date.now(), { level: "IV" })));
    await s.transition("enf-000001", { to: "dispatched" }, { name: "x" });
    await until(
      () => outbox!.pending("all") === 0 && outbox!.pending("emergency") === 0,
      "drained",
    );
    expect(seen).toEqual({
      all: ["1:enf-000001", "2:emg-000002", "3:enf-000001"],
      emergency: ["2:emg-000002"],
    });
  });

  it("gives up after maxAttempts, keeps the notification in the dead outbox and moves on", async () => {
    let calls = 0;
    const s = service(
      [
        {
          name: "flaky",
          deliver: (e) => {
            calls++;
            return e.id === 1 ? Promise.reject(new Error("HTTP 500")) : Promise.resolve();
          },
        },
      ],
      3,
    );
    // Handed over as the rules driver does: the queue applies them in order.
    s.handleAlarm(noiseNotice("cs-1", raise(Date.now()), noiseEvidence(Date.now())));
    s.handleAlarm(noiseNotice("cs-3", raise(Date.now()), noiseEvidence(Date.now())));
    await s.settled();
    await until(() => outbox!.pending("flaky") === 0, "drained");
    expect(calls).toBe(4); // three attempts of the first, one of the second
    expect(store.deadCount()).toBe(1);
    expect((await metrics.deadNotifications.get()).values).toEqual([
      expect.objectContaining({ value: 1, labels: { target: "flaky", reason: "max_attempts" } }),
    ]);
    expect((await metrics.deliveryFailures.get()).values[0]?.value).toBe(3);
  });

  describe("delivery leases", () => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const file = (s: TaskService, site: string) =>
      s.applyAlarm(noiseNotice(site, raise(Date.now()), noiseEvidence(Date.now())));

    it("pumps every target under the embedded store's one token, and releases the leases on stop", async () => {
      const seen: number[] = [];
      const s = service([
        { name: "all", deliver: (e) => Promise.resolve(void seen.push(e.id)) },
        { name: "emergency", kinds: ["emergency"], deliver: () => Promise.resolve() },
      ]);
      await file(s, "cs-1");
      await until(() => seen.length === 1 && outbox!.leasesHeld().size === 2, "both targets held");
      expect(outbox!.leasesHeld()).toEqual(
        new Map([
          ["all", SQLITE_OUTBOX_TOKEN],
          ["emergency", SQLITE_OUTBOX_TOKEN],
        ]),
      );
      expect(await metricValue(metrics.outboxLeasesHeld)).toBe(2);
      await outbox!.stop();
      expect(outbox!.leasesHeld().size).toBe(0);
      expect(await metricValue(metrics.outboxLeasesHeld)).toBe(0);
      expect(await metricValue(metrics.outboxLeaseLost)).toBe(0);
    });

    it("delivers nothing while another node holds the lease, claims again every third of the TTL, and delivers once granted", async () => {
      const seen: number[] = [];
      let granted = false;
      let claims = 0;
      const s = service(
        [{ name: "all", deliver: (e) => Promise.resolve(void seen.push(e.id)) }],
        3,
        {
          leaseTtlMs: 300,
          outboxStore: (shared) => ({
            ...shared,
            claimOutbox: (target, holder, ttlMs) => {
              claims += 1;
              return granted
                ? shared.claimOutbox(target, holder, ttlMs)
                : Promise.resolve(undefined);
            },
          }),
        },
      );
      await file(s, "cs-1");
      await file(s, "cs-3");
      const before = claims;
      await sleep(450);
      expect(seen).toEqual([]);
      expect(claims - before).toBeGreaterThanOrEqual(3);
      expect(claims - before).toBeLessThanOrEqual(6);
      expect(outbox!.leasesHeld().size).toBe(0);
      expect(outbox!.pending("all")).toBe(2);
      granted = true;
      await until(() => seen.length === 2, "delivered once granted", 1_000);
      expect(seen).toEqual([1, 2]);
    });

    it("stops delivering a target whose lease another node took, and counts the loss", async () => {
      const seen: number[] = [];
      let takenOver = false;
      const s = service(
        [
          {
            name: "all",
            deliver: (e) => {
              seen.push(e.id);
              takenOver = true;
              return Promise.resolve();
            },
          },
        ],
        3,
        {
          holder: "node-a",
          leaseTtlMs: 300,
          outboxStore: (shared) => ({
            ...shared,
            claimOutbox: (target, holder, ttlMs) =>
              takenOver ? Promise.resolve(undefined) : shared.claimOutbox(target, holder, ttlMs),
          }),
        },
      );
      expect(outbox!.holder).toBe("node-a");
      await file(s, "cs-1");
      await until(() => seen.length === 1, "the first delivered");
      await file(s, "cs-3");
      await file(s, "cs-4");
      await sleep(300);
      expect(seen).toEqual([1]);
      expect(await metricValue(metrics.outboxLeaseLost, { target: "all" })).toBe(1);
      expect(outbox!.leasesHeld().size).toBe(0);
      expect(outbox!.pending("all")).toBe(2);
    });

    it("refuses an empty holder and a TTL under 100 ms", () => {
      const deps = {
        store: asyncTaskStore(store),
        targets: [],
        options: { maxPending: 1, maxAttempts: 1, backoffBaseMs: 1, backoffMaxMs: 1 },
        metrics,
        log,
        now: Date.now,
      };
      expect(() => new Outbox({ ...deps, holder: "" })).toThrow(/holder/);
      expect(() => new Outbox({ ...deps, leaseTtlMs: 99 })).toThrow(/leaseTtlMs/);
    });
  });
});
