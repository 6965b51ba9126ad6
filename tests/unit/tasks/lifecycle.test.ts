import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskState } from "../../../contracts/index.js";
import type { TransitionCheck } from "../../../tasks/lifecycle.js";
import { checkTransition } from "../../../tasks/lifecycle.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DEADMAN,
  fakeClock,
  MIN,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  T0,
} from "./fixtures.js";

const reasonOf = (check: TransitionCheck): string => (check.ok ? "(allowed)" : check.reason);

describe("checkTransition", () => {
  it("allows the lifecycle in order and nothing out of a closed task", () => {
    const path: TaskState[] = [
      "filed",
      "dispatched",
      "acknowledged",
      "in_progress",
      "handled",
      "verified",
    ];
    for (let i = 0; i + 1 < path.length; i++) {
      expect(checkTransition(path[i]!, path[i + 1]!, undefined)).toEqual({ ok: true });
    }
    expect(checkTransition("verified", "closed", "rectified")).toEqual({ ok: true });
    for (const to of TaskState.options) {
      const check = checkTransition("closed", to, to === "closed" ? "rectified" : undefined);
      expect(check.ok).toBe(false);
    }
  });

  it("names the allowed transitions when refusing", () => {
    const check = checkTransition("filed", "verified", undefined);
    expect(check).toEqual({
      ok: false,
      reason:
        "illegal transition filed → verified; allowed from filed: dispatched, acknowledged, closed",
    });
  });

  it("closes early only as false positive, sensor fault or exempt; rectified needs verification", () => {
    expect(checkTransition("filed", "closed", "false_positive").ok).toBe(true);
    expect(checkTransition("in_progress", "closed", "sensor_fault").ok).toBe(true);
    expect(checkTransition("dispatched", "closed", "exempt").ok).toBe(true);
    expect(checkTransition("handled", "closed", "rectified").ok).toBe(false);
    expect(reasonOf(checkTransition("in_progress", "closed", "rectified"))).toContain(
      "rectified needs a verified task",
    );
    expect(reasonOf(checkTransition("verified", "closed", undefined))).toContain(
      "closing needs a reason",
    );
    expect(reasonOf(checkTransition("filed", "dispatched", "rectified"))).toContain(
      "only when closing",
    );
  });
});

describe("task service lifecycle", () => {
  let dir: string;
  let system: TaskSystem;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-tasks-");
    clock.set(T0);
    system = startSystem(dir, { now: clock.now });
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  it("walks a case through every state with an audit entry per transition, actor and time", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    const [task] = system.store.listTasks({ limit: 10 });
    expect(task).toMatchObject({
      id: "enf-000001",
      kind: "enforcement",
      state: "filed",
      rule: { id: "noise.construction.laeq", version: 1 },
    });
    const steps: Array<[TaskState, string | undefined]> = [
      ["dispatched", undefined],
      ["acknowledged", undefined],
      ["in_progress", undefined],
      ["handled", undefined],
      ["verified", undefined],
      ["closed", "rectified"],
    ];
    for (const [to, reason] of steps) {
      clock.advance(MIN);
      const result = await system.service.transition(
        task!.id,
        {
          to,
          ...(reason === undefined ? {} : { reason: reason as "rectified" }),
          note: `step ${to}`,
        },
        // Whoever handled it does not verify it (separation of duties).
        {
          name:
            to === "verified" || to === "closed"
              ? "wang.fang (enforcement)"
              : "li.wei (enforcement)",
        },
      );
      expect(result.ok).toBe(true);
    }
    const closed = (await system.service.task(task!.id))!;
    expect(closed).toMatchObject({
      state: "closed",
      closure: { reason: "rectified", note: "step closed" },
    });
    expect(closed.acknowledgedAt).toBe(new Date(T0 + 2 * MIN).toISOString());
    const transitions = (await system.service.audit(task!.id)).filter(
      (e) => e.action === "transition",
    );
    expect(transitions.map((e) => `${e.from}→${e.to}`)).toEqual([
      "filed→dispatched",
      "dispatched→acknowledged",
      "acknowledged→in_progress",
      "in_progress→handled",
      "handled→verified",
      "verified→closed",
    ]);
    expect(transitions.map((e) => e.actor.split(" ")[0])).toEqual([
      "li.wei",
      "li.wei",
      "li.wei",
      "li.wei",
      "wang.fang",
      "wang.fang",
    ]);
    expect(transitions.at(-1)!.at).toBe(new Date(T0 + 6 * MIN).toISOString());
  });

  it("refuses an illegal transition with a clear error and changes nothing", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    const before = (await system.service.audit("enf-000001")).length;
    const result = await system.service.transition("enf-000001", { to: "handled" }, { name: "x" });
    expect(result).toMatchObject({ ok: false, error: "conflict" });
    expect(result.ok ? "" : result.message).toContain("illegal transition filed → handled");
    expect((await system.service.task("enf-000001"))!.state).toBe("filed");
    expect(await system.service.audit("enf-000001")).toHaveLength(before);
    expect(
      await system.service.transition("enf-404", { to: "dispatched" }, { name: "x" }),
    ).toMatchObject({ error: "not_found" });
  });

  it("keeps one open task per (subject, rule): repeats and new raises attach; after closing, a raise files a new one", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await system.service.applyAlarm(
      noiseNotice("cs-1", {
        type: "attach-repeat",
        alarmSeq: 1,
        at: T0 + 5 * MIN,
        repeats: 1,
        detail: "held again",
        replayed: false,
      }),
    );
    await system.service.applyAlarm(
      noiseNotice("cs-1", {
        type: "clear",
        alarmSeq: 1,
        at: T0 + 9 * MIN,
        raisedAt: T0,
        levelIndex: 0,
        level: undefined,
        repeats: 1,
        replayed: false,
      }),
    );
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(T0 + 30 * MIN, { alarmSeq: 2 }), noiseEvidence(T0 + 30 * MIN)),
    );
    let tasks = system.store.listTasks({ limit: 10 });
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({
      state: "filed",
      repeats: 2,
      evidenceCount: 2,
      conditionClearedAt: new Date(T0 + 9 * MIN).toISOString(),
    });
    const actions = (await system.service.audit(tasks[0]!.id)).map((e) => e.action);
    expect(actions).toContain("condition_cleared");
    expect(actions.filter((a) => a === "repeat_attached")).toHaveLength(2);

    // Another subject or another rule is another task.
    await system.service.applyAlarm(noiseNotice("cs-3", raise(T0), noiseEvidence(T0)));
    await system.service.applyAlarm({
      rule: DEADMAN,
      subjectType: "device",
      subjectId: "n-1",
      deviceIds: ["n-1"],
      decision: raise(T0, { detail: "silent" }),
    });
    expect(system.store.listTasks({ limit: 10, state: "open" })).toHaveLength(3);

    expect(
      (
        await system.service.transition(
          tasks[0]!.id,
          { to: "closed", reason: "false_positive" },
          { name: "x" },
        )
      ).ok,
    ).toBe(true);
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(T0 + 60 * MIN, { alarmSeq: 3 }), noiseEvidence(T0 + 60 * MIN)),
    );
    tasks = system.store.listTasks({
      limit: 10,
      siteId: "cs-1",
      ruleId: "noise.construction.laeq",
    });
    expect(tasks.map((t) => t.state).sort()).toEqual(["closed", "filed"]);
  });

  it("records nothing for a clear or an escalation when no task is open", async () => {
    await system.service.applyAlarm(
      noiseNotice("cs-1", {
        type: "clear",
        alarmSeq: 1,
        at: T0,
        raisedAt: T0,
        levelIndex: 0,
        level: undefined,
        repeats: 0,
        replayed: false,
      }),
    );
    expect(system.store.listTasks({ limit: 10 })).toEqual([]);
  });

  it("keeps the audit trail append-only in the database itself", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    const db = (system.store as unknown as { db: { prepare(sql: string): { run(): unknown } } }).db;
    expect(() => db.prepare("UPDATE audit SET actor = 'someone else'").run()).toThrow(
      /append-only/,
    );
    expect(() => db.prepare("DELETE FROM audit").run()).toThrow(/append-only/);
  });
});
