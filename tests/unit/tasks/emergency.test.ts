import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { fakeClock, gasNotice, MIN, raise, startSystem, T0 } from "./fixtures.js";

describe("emergency tasks", () => {
  let dir: string;
  let system: TaskSystem;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-emergency-");
    clock.set(T0);
    system = startSystem(dir, { now: clock.now });
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  const ch4 = (at: number) =>
    raise(at, { level: "IV", deviceId: "g-1", value: 22, limit: 20, detail: "CH4 22 %LEL >= 20" });

  it("carries the level, the segment and its neighbours, and the recommended actions", async () => {
    await system.service.applyAlarm(gasNotice(ch4(T0)));
    expect(await system.service.task("emg-000001")).toMatchObject({
      kind: "emergency",
      level: "IV",
      levelIndex: 0,
      affectedSites: ["ts-2", "ts-1", "ts-3"],
      actions: [
        expect.stringContaining("Alarm in the segment"),
        expect.stringContaining("Accident ventilation"),
      ] as unknown,
      routing: { department: "emergency-management-bureau" },
    });
  });

  it("raises the level and adds its actions; a lower level never lowers it", async () => {
    await system.service.applyAlarm(gasNotice(ch4(T0)));
    clock.advance(MIN);
    const up = {
      type: "escalate-level" as const,
      alarmSeq: 1,
      from: "IV",
      level: "III",
      levelIndex: 1,
      at: clock.now(),
      value: 26,
      limit: 25,
      detail: "CH4 26 %LEL >= 25",
      replayed: false,
    };
    await system.service.applyAlarm(gasNotice(up));
    let task = (await system.service.task("emg-000001"))!;
    expect(task).toMatchObject({ level: "III", levelIndex: 1 });
    expect(task.actions).toEqual(
      expect.arrayContaining([
        expect.stringContaining("Cut the gas supply"),
        expect.stringContaining("Accident ventilation"),
      ]) as unknown,
    );
    await system.service.applyAlarm(
      gasNotice({ ...up, level: "IV", levelIndex: 0, at: clock.now() + MIN }),
    );
    await system.service.applyAlarm(
      gasNotice(raise(clock.now() + 2 * MIN, { alarmSeq: 2, level: "IV" })),
    );
    task = (await system.service.task("emg-000001"))!;
    expect(task).toMatchObject({ level: "III", levelIndex: 1, repeats: 1 });
    const raised = (await system.service.audit(task.id)).filter((e) => e.action === "level_raised");
    expect(raised.map((e) => e.detail)).toEqual(["level IV → III"]);
  });

  it("records every escalation on no acknowledgement and notifies again; acknowledging tells the alarm", async () => {
    const heard: string[] = [];
    const events: string[] = [];
    system.service.onAcknowledged((ruleId, subjectId) => heard.push(`${ruleId}/${subjectId}`));
    system.service.onEvent((e) => events.push(e.type));
    await system.service.applyAlarm(gasNotice(ch4(T0)));
    await system.service.applyAlarm(
      gasNotice({ type: "escalate-unacknowledged", alarmSeq: 1, at: T0 + 15 * MIN, count: 1 }),
    );
    await system.service.applyAlarm(
      gasNotice({ type: "escalate-unacknowledged", alarmSeq: 1, at: T0 + 30 * MIN, count: 2 }),
    );
    expect((await system.service.task("emg-000001"))!.escalations).toBe(2);
    expect(events).toEqual(["filed", "escalated_unacknowledged", "escalated_unacknowledged"]);
    expect(system.outbox.pending("mqtt")).toBe(0); // no publisher wired in this test: no MQTT target
    expect(heard).toEqual([]);
    await system.service.transition(
      "emg-000001",
      { to: "acknowledged" },
      { name: "duty officer (emergency)" },
    );
    expect(heard).toEqual(["tunnel.ch4/ts-2"]);
  });

  it("lets a person lower or lift the level with a reason; the history and audit keep every step", async () => {
    await system.service.applyAlarm(gasNotice(ch4(T0)));
    clock.advance(MIN);
    await system.service.applyAlarm(
      gasNotice({
        type: "escalate-level",
        alarmSeq: 1,
        from: "IV",
        level: "II",
        levelIndex: 2,
        at: clock.now(),
        value: 41,
        limit: 40,
        detail: "CH4 41 %LEL",
        replayed: false,
      }),
    );
    const duty = { name: "duty officer (emergency)", roles: ["emergency" as const] };
    const same = await system.service.changeLevel("emg-000001", { to: "II", reason: "x" }, duty);
    expect(same).toMatchObject({ ok: false, error: "conflict" });
    expect(same.ok ? "" : same.message).toContain("lower to IV, III, lifted");
    clock.advance(MIN);
    const lowered = await system.service.changeLevel(
      "emg-000001",
      { to: "IV", reason: "gas source isolated, ventilation running" },
      duty,
    );
    expect(lowered.ok).toBe(true);
    expect(await system.service.task("emg-000001")).toMatchObject({ level: "IV", levelIndex: 0 });
    clock.advance(MIN);
    expect(
      (
        await system.service.changeLevel(
          "emg-000001",
          { to: "lifted", reason: "CH4 below 1 %LEL for 30 min" },
          duty,
        )
      ).ok,
    ).toBe(true);
    const task = (await system.service.task("emg-000001"))!;
    expect(task.level).toBeUndefined();
    expect(task.state).not.toBe("closed");
    expect(task.levelHistory?.map((h) => `${h.level ?? "lifted"} by ${h.by}`)).toEqual([
      "IV by system",
      "II by system",
      "IV by duty officer (emergency)",
      "lifted by duty officer (emergency)",
    ]);
    expect((await system.service.audit("emg-000001")).map((e) => e.action)).toEqual(
      expect.arrayContaining(["level_lowered", "level_lifted"]) as unknown,
    );
    // The rules raise it again when the data call for it.
    await system.service.applyAlarm(gasNotice(ch4(clock.now() + MIN)));
    expect(await system.service.task("emg-000001")).toMatchObject({ level: "IV", levelIndex: 0 });
  });
});
