import { describe, expect, it } from "vitest";
import type { RuleInput } from "../../../../contracts/index.js";
import {
  type AlarmDecision,
  type AlarmEvent,
  type AlarmState,
  initialAlarmState,
  stepAlarm,
} from "../../../../rules/engine/alarm.js";
import type { Evaluation } from "../../../../rules/engine/conditions.js";
import { MIN, night, parseRule, SEC } from "./harness.js";

const rule = (extra: Record<string, unknown> = {}, condition: Record<string, unknown> = {}) =>
  parseRule({
    id: "test.alarm",
    version: 1,
    title: "Test",
    clause: { standard: "test", section: "1" },
    confidence: "verified",
    taskKind: "emergency",
    scope: { kinds: ["water_level"], siteTypes: ["underpass"] },
    subject: "site",
    condition: {
      type: "threshold",
      quantity: "ponding",
      aggregate: "latest",
      op: ">=",
      raise: 15,
      ...condition,
    },
    levels: [
      { level: "IV", actions: ["a"] },
      { level: "III", raise: 25, actions: ["b"] },
    ],
    ...extra,
  } as unknown as RuleInput);

const ev = (active: boolean, levelIndex = 0): Evaluation => ({
  active,
  applicable: true,
  value: active ? 20 : 5,
  limit: 15,
  levelIndex,
  level: levelIndex === 0 ? "IV" : "III",
  deviceId: "u-1",
  detail: "",
});

/** Drive one rule through (time, active, level) steps; returns every decision. */
function drive(
  r: ReturnType<typeof rule>,
  steps: ReadonlyArray<[number, boolean, number?, AlarmEvent["type"]?]>,
  start: AlarmState = initialAlarmState(night("22:00")),
): { state: AlarmState; decisions: AlarmDecision[] } {
  let state = start;
  const decisions: AlarmDecision[] = [];
  for (const [at, active, level, type] of steps) {
    const event: AlarmEvent =
      type === "acknowledge"
        ? { type }
        : { type: type ?? "reading", evaluation: ev(active, level ?? 0) };
    const step = stepAlarm(r, state, event, at);
    state = step.state;
    decisions.push(...step.decisions);
  }
  return { state, decisions };
}

const t = (s: number) => night("22:00") + s * SEC;

describe("for: pending until the condition has held long enough", () => {
  const r = rule({}, { for: "30s" });

  it("a clock tick raises exactly when `for` has passed, with no new reading", () => {
    const { state, decisions } = drive(r, [
      [t(0), true],
      [t(29), true, 0, "tick"],
    ]);
    expect(state.phase).toBe("pending");
    expect(decisions).toEqual([]);
    const next = stepAlarm(r, state, { type: "tick", evaluation: ev(true) }, t(30));
    expect(next.decisions).toMatchObject([{ type: "raise", startedAt: t(0), at: t(30) }]);
  });

  it("a dip back to normal during pending restarts the count", () => {
    const { state, decisions } = drive(r, [
      [t(0), true],
      [t(20), false],
      [t(25), true],
      [t(50), true, 0, "tick"],
    ]);
    expect(decisions).toEqual([]);
    expect(state).toMatchObject({ phase: "pending", startedAt: t(25) });
  });

  it("the state survives a restart mid-duration (JSON round trip)", () => {
    const mid = drive(r, [[t(0), true]]).state;
    const restored = JSON.parse(JSON.stringify(mid)) as AlarmState;
    const after = stepAlarm(r, restored, { type: "tick", evaluation: ev(true) }, t(30));
    expect(after.decisions).toMatchObject([{ type: "raise" }]);
  });
});

describe("clearing, flap suppression, steady values", () => {
  it("without timing an alarm clears on the first compliant evaluation", () => {
    const { state, decisions } = drive(rule(), [
      [t(0), true],
      [t(10), false],
    ]);
    expect(decisions.map((d) => d.type)).toEqual(["raise", "clear"]);
    expect(state.phase).toBe("cleared");
  });

  it("steady violating values and ticks keep one alarm without new decisions", () => {
    const steps: Array<[number, boolean, number?, AlarmEvent["type"]?]> = [];
    for (let i = 0; i < 60; i += 1) steps.push([t(i * 10), true, 0, i % 2 ? "tick" : "reading"]);
    expect(drive(rule(), steps).decisions.map((d) => d.type)).toEqual(["raise"]);
  });

  it("clearHold: a flap back within the hold attaches a repeat, no new alarm", () => {
    const r = rule({ timing: { clearHold: "5m", minActive: "1m" } });
    const { state, decisions } = drive(r, [
      [t(0), true],
      [t(10), false], // recovering
      [t(70), true], // back within the hold: repeat
      [t(80), false],
      [t(80) + 5 * MIN - 1, false, 0, "tick"],
    ]);
    expect(decisions.map((d) => d.type)).toEqual(["raise", "attach-repeat"]);
    expect(state).toMatchObject({ phase: "recovering", repeats: 1, alarmSeq: 1 });
    const cleared = stepAlarm(r, state, { type: "tick", evaluation: ev(false) }, t(80) + 5 * MIN);
    expect(cleared.decisions).toMatchObject([{ type: "clear", repeats: 1, alarmSeq: 1 }]);
  });

  it("minActive: the alarm stays open at least that long even when it recovers at once", () => {
    const r = rule({ timing: { minActive: "2m" } });
    const { decisions } = drive(r, [
      [t(0), true],
      [t(10), false],
      [t(119), false, 0, "tick"],
      [t(120), false, 0, "tick"],
    ]);
    expect(decisions).toMatchObject([{ type: "raise" }, { type: "clear", at: t(120) }]);
  });

  it("a new violation after the clear opens a new alarm", () => {
    const { decisions } = drive(rule(), [
      [t(0), true],
      [t(10), false],
      [t(20), true],
    ]);
    expect(decisions.map((d) => `${d.type}#${d.alarmSeq}`)).toEqual([
      "raise#1",
      "clear#1",
      "raise#2",
    ]);
  });
});

describe("severity", () => {
  it("rises within one alarm and never silently falls", () => {
    const { state, decisions } = drive(rule(), [
      [t(0), true, 0],
      [t(10), true, 1],
      [t(20), true, 0],
      [t(30), true, 1],
    ]);
    expect(decisions.map((d) => d.type)).toEqual(["raise", "escalate-level"]);
    expect(state.levelIndex).toBe(1);
    const cleared = stepAlarm(rule(), state, { type: "reading", evaluation: ev(false) }, t(40));
    expect(cleared.decisions).toMatchObject([{ type: "clear", level: "III" }]);
  });

  it("raises straight at the higher level when the first value is already there", () => {
    expect(drive(rule(), [[t(0), true, 1]]).decisions).toMatchObject([
      { type: "raise", level: "III" },
    ]);
  });
});

describe("replay and acknowledgement", () => {
  it("an alarm raised from replayed readings is marked", () => {
    const step = stepAlarm(
      rule(),
      initialAlarmState(t(0)),
      { type: "reading", evaluation: ev(true), replayed: true },
      t(0),
    );
    expect(step.decisions).toMatchObject([{ type: "raise", replayed: true }]);
    expect(step.state.replayed).toBe(true);
  });

  it("escalateAfter: escalates while unacknowledged, stops once acknowledged", () => {
    const r = rule({ timing: { escalateAfter: "5m" } });
    const { decisions } = drive(r, [
      [t(0), true],
      [t(0) + 5 * MIN - 1, true, 0, "tick"],
      [t(0) + 5 * MIN, true, 0, "tick"],
      [t(0) + 6 * MIN, true, 0, "acknowledge"],
      [t(0) + 10 * MIN, true, 0, "tick"],
    ]);
    expect(decisions.map((d) => d.type)).toEqual(["raise", "escalate-unacknowledged"]);
  });

  it("escalates an emergency rule that names no escalateAfter after the 15-minute default", () => {
    const { decisions } = drive(rule(), [
      [t(0), true],
      [t(0) + 15 * MIN - 1, true, 0, "tick"],
      [t(0) + 15 * MIN, true, 0, "tick"],
      [t(0) + 30 * MIN, true, 0, "tick"],
    ]);
    expect(decisions.map((d) => d.type)).toEqual([
      "raise",
      "escalate-unacknowledged",
      "escalate-unacknowledged",
    ]);
  });
});

describe("gaps", () => {
  it("a window without data neither clears an open alarm nor raises a pending one", () => {
    const r = rule({}, { for: "1m" });
    const gap: Evaluation = {
      ...ev(false),
      applicable: false,
      reason: "no_data",
      value: undefined,
    };
    let step = stepAlarm(
      r,
      initialAlarmState(t(0)),
      { type: "reading", evaluation: ev(true) },
      t(0),
    );
    step = stepAlarm(r, step.state, { type: "tick", evaluation: gap }, t(120));
    expect(step).toMatchObject({ state: { phase: "pending" }, decisions: [] });
    step = stepAlarm(r, step.state, { type: "reading", evaluation: ev(true) }, t(130));
    expect(step.decisions).toMatchObject([{ type: "raise" }]);
    step = stepAlarm(r, step.state, { type: "tick", evaluation: gap }, t(600));
    expect(step).toMatchObject({ state: { phase: "active" }, decisions: [] });
  });
});
