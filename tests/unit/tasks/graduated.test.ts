import Database from "better-sqlite3";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Task } from "../../../contracts/index.js";
import type { TaskSystem } from "../../../tasks/app.js";
import type { Recheck } from "../../../contracts/model/alarms.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { packRule } from "../rules/engine/harness.js";
import {
  DAY,
  fakeClock,
  HOUR,
  MIN,
  NOISE,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  T0,
  tasksConfig,
} from "./fixtures.js";

/**
 * A re-check as the lead wires it, over real readings in SQLite: the energy mean of LAeq in the
 * hour before the check, against the task's limit; no readings → no_data.
 */
function sqliteRecheck(db: Database.Database, now: () => number): Recheck {
  const query = db.prepare(
    "SELECT laeq FROM reading WHERE site_id = ? AND ts_ms > ? AND ts_ms <= ?",
  );
  return (task: Task) => {
    const rows = query.all(task.siteId, now() - HOUR, now()) as Array<{ laeq: number }>;
    if (rows.length === 0) return "no_data";
    const mean = 10 * Math.log10(rows.reduce((s, r) => s + 10 ** (r.laeq / 10), 0) / rows.length);
    return mean > (task.limit ?? Number.POSITIVE_INFINITY) ? "violating" : "compliant";
  };
}

const LAMAX = packRule("noise.construction.night-lamax");
const NIGHT_WORKS = packRule("noise.construction.night-works");

describe("graduated response", () => {
  let dir: string;
  let system: TaskSystem;
  let db: Database.Database;
  const clock = fakeClock();
  const write = (siteId: string, fromMs: number, minutes: number, laeq: number) => {
    const insert = db.prepare("INSERT INTO reading (site_id, ts_ms, laeq) VALUES (?, ?, ?)");
    for (let i = 0; i < minutes; i++) insert.run(siteId, fromMs + i * MIN, laeq);
  };

  beforeEach(async () => {
    dir = await makeTempDir("cw-graduated-");
    clock.set(T0);
    db = new Database(join(dir, "readings.db"));
    db.exec("CREATE TABLE reading (site_id TEXT, ts_ms INTEGER, laeq REAL)");
    system = startSystem(dir, {
      now: clock.now,
      config: tasksConfig({
        graduated: {
          rectifyWithinMs: "2d",
          periodMs: "180d",
          recheckRetryMs: "1h",
          recheckAttempts: 2,
        },
      }),
      recheck: sqliteRecheck(db, clock.now),
    });
  });
  afterEach(async () => {
    await system.stop();
    db.close();
    await removeTempDir(dir);
  });

  const actions = async (id: string) => (await system.service.audit(id)).map((e) => e.action);

  it("warns a first offender with a deadline; a compliant re-check at the deadline keeps it a warning", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    const task = (await system.service.task("enf-000001"))!;
    expect(task.graduated).toMatchObject({
      stage: "warning",
      party: { key: "91310000MA1FL0AB1X", name: "Acme <Build> Co." },
      deadline: new Date(T0 + 2 * DAY).toISOString(),
      recheck: { dueAt: new Date(T0 + 2 * DAY).toISOString(), attempts: 0 },
    });
    expect(await actions(task.id)).toContain("warning_issued");

    clock.advance(2 * DAY - MIN);
    write("cs-1", clock.now() - 30 * MIN, 30, 50); // quiet nights after the warning
    await system.service.tick();
    expect((await system.service.task(task.id))!.graduated?.recheck?.outcome).toBeUndefined(); // not due yet

    clock.advance(MIN);
    await system.service.tick();
    expect((await system.service.task(task.id))!.graduated).toMatchObject({
      stage: "warning",
      recheck: { outcome: "compliant", attempts: 1 },
    });
    expect(await actions(task.id)).toContain("recheck_compliant");
    clock.advance(DAY);
    await system.service.tick();
    expect((await actions(task.id)).filter((a) => a.startsWith("recheck"))).toHaveLength(1); // checked once
  });

  it("refers the party for penalty when the re-check finds the violation continuing", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    clock.advance(2 * DAY);
    write("cs-1", clock.now() - 40 * MIN, 40, 63);
    await system.service.tick();
    expect((await system.service.task("enf-000001"))!.graduated).toMatchObject({
      stage: "referred",
      recheck: { outcome: "violating" },
    });
    expect(await actions("enf-000001")).toEqual(
      expect.arrayContaining(["recheck_violating", "referred_for_penalty"]) as unknown,
    );
  });

  it("retries a re-check without data, then asks for an inspection on site", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    clock.advance(2 * DAY);
    await system.service.tick();
    expect((await system.service.task("enf-000001"))!.graduated).toMatchObject({
      stage: "warning",
      recheck: { attempts: 1, dueAt: new Date(clock.now() + HOUR).toISOString() },
    });
    clock.advance(HOUR);
    await system.service.tick();
    expect((await system.service.task("enf-000001"))!.graduated).toMatchObject({
      stage: "inspection",
      recheck: { attempts: 2, outcome: "no_data" },
    });
    expect(await actions("enf-000001")).toEqual(
      expect.arrayContaining(["recheck_no_data", "inspection_needed"]) as unknown,
    );
  });

  /** Work the case through to closed as rectified (handled by one officer, verified by another). */
  const closeRectified = async (id: string) => {
    for (const [to, by] of [
      ["acknowledged", "officer"],
      ["handled", "officer"],
      ["verified", "supervisor"],
    ] as const) {
      expect((await system.service.transition(id, { to }, { name: by })).ok).toBe(true);
    }
    const closed = await system.service.transition(
      id,
      { to: "closed", reason: "rectified" },
      { name: "supervisor" },
    );
    expect(closed.ok).toBe(true);
  };

  it("files one case for co-occurring violations of several rules and sites of one party, with one warning", async () => {
    // Issue #18: one night of construction filed three cases in the same millisecond; the first
    // got a warning and the other two were referred as "repeat violations".
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    for (const [rule, site] of [
      [LAMAX, "cs-1"],
      [NIGHT_WORKS, "cs-1"],
      [NOISE, "cs-2"],
    ] as const) {
      await system.service.applyAlarm({ ...noiseNotice(site, raise(T0), noiseEvidence(T0)), rule });
    }
    const cases = system.store.listTasks({ limit: 10, kind: "enforcement" });
    expect(cases.map((c) => c.id)).toEqual(["enf-000001"]);
    const incident = cases[0]!;
    expect(incident.graduated?.stage).toBe("warning");
    expect(incident.violations?.map((v) => `${v.ruleId}@${v.subject.id}`)).toEqual([
      "noise.construction.laeq@cs-1",
      "noise.construction.night-lamax@cs-1",
      "noise.construction.night-works@cs-1",
      "noise.construction.laeq@cs-2",
    ]);
    expect((await actions("enf-000001")).filter((a) => a === "violation_attached")).toHaveLength(3);
    expect(await actions("enf-000001")).not.toContain("referred_for_penalty");
    // Later decisions of an attached (subject, rule) find the incident.
    await system.service.applyAlarm({
      ...noiseNotice("cs-2", {
        type: "clear",
        alarmSeq: 1,
        at: T0 + HOUR,
        raisedAt: T0,
        levelIndex: 0,
        level: undefined,
        repeats: 0,
        replayed: false,
      }),
      rule: NOISE,
    });
    expect((await system.service.task("enf-000001"))!.conditionClearedAt).toBeUndefined(); // cs-1's own alarm still holds
    expect(system.store.openTask("site", "cs-2", NOISE.id)?.id).toBe("enf-000001");
  });

  it("keeps a violation the data show before the deadline in the same episode: no referral", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    clock.advance(3 * HOUR);
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(clock.now(), { alarmSeq: 2 }), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000001"))!.graduated?.stage).toBe("warning");
    // Data from the same night arriving late (a replay) are judged on their own time, too.
    clock.advance(3 * DAY);
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(T0 + 2 * HOUR, { alarmSeq: 3 }), noiseEvidence(T0 + 2 * HOUR)),
    );
    expect((await system.service.task("enf-000001"))!.graduated?.stage).not.toBe("referred");
  });

  it("refers a warned party whose data show a violation after the deadline, pending legal review", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    clock.advance(2 * DAY + 2 * HOUR);
    await system.service.applyAlarm(
      noiseNotice("cs-1", raise(clock.now(), { alarmSeq: 2 }), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000001"))!.graduated).toMatchObject({
      stage: "referred",
      review: { status: "pending" },
      reason: expect.stringContaining("after the rectification deadline") as unknown,
    });
    expect(await actions("enf-000001")).toContain("referred_for_penalty");
  });

  it("refers a repeat offender's new case after an earlier case's deadline (any of its sites)", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await closeRectified("enf-000001");
    clock.advance(30 * DAY);
    await system.service.applyAlarm(
      noiseNotice("cs-2", raise(clock.now()), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000002"))!.graduated).toMatchObject({
      stage: "referred",
      review: { status: "pending" },
      repeatOf: "enf-000001",
    });
    expect(await actions("enf-000002")).toContain("referred_for_penalty");
    // Another party is still a first offender.
    await system.service.applyAlarm(
      noiseNotice("cs-3", raise(clock.now()), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000003"))!.graduated).toMatchObject({
      stage: "warning",
      party: { key: "site:cs-3" },
    });
  });

  it("shares the deadline of a case closed early when the data show a violation before it", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await closeRectified("enf-000001");
    clock.advance(DAY);
    await system.service.applyAlarm(
      noiseNotice("cs-2", raise(clock.now()), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000002"))!.graduated).toMatchObject({
      stage: "warning",
      deadline: new Date(T0 + 2 * DAY).toISOString(),
    });
  });

  it("does not count a case closed as a false positive as an earlier violation", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await system.service.transition(
      "enf-000001",
      { to: "closed", reason: "false_positive" },
      { name: "x" },
    );
    clock.advance(3 * DAY);
    await system.service.applyAlarm(
      noiseNotice("cs-2", raise(clock.now()), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000002"))!.graduated?.stage).toBe("warning");
  });

  it("warns again once the period has passed", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await closeRectified("enf-000001");
    clock.advance(181 * DAY);
    await system.service.applyAlarm(
      noiseNotice("cs-2", raise(clock.now()), noiseEvidence(clock.now())),
    );
    expect((await system.service.task("enf-000002"))!.graduated?.stage).toBe("warning");
  });
});
