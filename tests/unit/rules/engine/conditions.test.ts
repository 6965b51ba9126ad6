import { describe, expect, it } from "vitest";
import { KOfNCondition } from "../../../../contracts/model/rule-conditions.js";
import {
  type DeviceView,
  evaluateCondition,
  type SubjectView,
} from "../../../../rules/engine/conditions.js";
import type { Sample } from "../../../../rules/engine/window.js";
import { device, MIN, night, sampleAt, SEC, site, testRule } from "./harness.js";

const rule = testRule;
const sample = sampleAt;

function subject(
  series: Record<string, Sample[]>,
  extra: Partial<DeviceView> = {},
  more: Partial<SubjectView> = {},
): SubjectView {
  return {
    site: site("ambient", { zoneClass: "2" }),
    devices: [{ device: device("d-1"), series, ...extra }],
    ...more,
  };
}

describe("threshold", () => {
  it("at exactly the limit: > does not hold, >= does", () => {
    const s = subject({ LAeq: [sample(night("23:00"), 60)] });
    const gt = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: 60,
    });
    const ge = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">=",
      raise: 60,
    });
    expect(evaluateCondition(gt, s, night("23:00"))).toMatchObject({ active: false, limit: 60 });
    expect(evaluateCondition(ge, s, night("23:00"))).toMatchObject({ active: true, value: 60 });
  });

  it("hysteresis: raises above 60, an active alarm holds until 55", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: 60,
      clear: 55,
    });
    const at = night("23:00");
    const s = (v: number) => subject({ LAeq: [sample(at, v)] });
    expect(evaluateCondition(r, s(58), at, false).active).toBe(false);
    expect(evaluateCondition(r, s(58), at, true)).toMatchObject({ active: true, limit: 55 });
    expect(evaluateCondition(r, s(55), at, true).active).toBe(false);
  });

  it("a reading belongs to the period of the interval it measured: 22:00 is day, 06:00 night", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: { byPeriod: { day: 60, night: 50 } },
    });
    // A 1-min reading stamped t measured (t - 1 min, t]: stamped 22:00 it is the 21:59-22:00 minute.
    const stamped = (t: string, intervalS = 60) =>
      evaluateCondition(
        r,
        subject(
          { LAeq: [sample(night(t), 55)] },
          { device: device("d-1", { expectedIntervalS: intervalS }) },
        ),
        night(t),
      );
    expect(stamped("21:59")).toMatchObject({ active: false, limit: 60 });
    expect(stamped("22:00")).toMatchObject({ active: false, limit: 60 });
    expect(stamped("22:01")).toMatchObject({ active: true, limit: 50 });
    expect(stamped("05:59")).toMatchObject({ active: true, limit: 50 });
    expect(stamped("06:00")).toMatchObject({ active: true, limit: 50 });
    expect(stamped("06:01")).toMatchObject({ active: false, limit: 60 });
    // Straddling the switch: the larger part decides, an exact half goes to the later period.
    expect(stamped("22:00:20")).toMatchObject({ limit: 60 }); // 21:59:20-22:00:20, mostly day
    expect(stamped("22:00:30")).toMatchObject({ limit: 50 }); // 21:59:30-22:00:30, half and half
    expect(stamped("22:00:40")).toMatchObject({ limit: 50 });
    // An old reading keeps its own period: a day reading judged at night is a day reading.
    const late = subject({ LAeq: [sample(night("21:00"), 55)] });
    expect(evaluateCondition(r, late, night("23:00"))).toMatchObject({ active: false, limit: 60 });
  });

  it("the schedule's time zone decides the period (UTC: 22:00 is 06:00 in Shanghai)", () => {
    const r = rule(
      {
        type: "threshold",
        quantity: "LAeq",
        aggregate: "latest",
        op: ">",
        raise: { byPeriod: { day: 60, night: 50 } },
      },
      { schedule: { timeZone: "UTC" } },
    );
    const at = (t: string) =>
      evaluateCondition(r, subject({ LAeq: [sample(night(t), 55)] }), night(t));
    expect(at("06:00")).toMatchObject({ active: false, limit: 60 });
    expect(at("06:01")).toMatchObject({ active: true, limit: 50 });
  });

  it("a district override of the night period (23:00-07:00) moves the switch", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: { byPeriod: { day: 60, night: 50 } },
    });
    const overridden = {
      ...r,
      overrides: [
        {
          at: "district" as const,
          id: "pudong",
          periods: {
            night: { from: "23:00", to: "07:00", holidays: "include" as const },
            day: { from: "07:00", to: "23:00", holidays: "include" as const },
          },
        },
      ],
    };
    const at = (t: string) =>
      evaluateCondition(overridden, subject({ LAeq: [sample(night(t), 55)] }), night(t));
    expect(at("22:30").active).toBe(false);
    expect(at("23:00").active).toBe(false);
    expect(at("23:01").active).toBe(true);
    expect(at("06:30").active).toBe(true);
    expect(at("07:01").active).toBe(false);
  });

  it("a window below its coverage is a gap; an empty one too (neither raise nor clear)", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "max",
      window: "5m",
      op: ">",
      raise: 60,
    });
    const minutes = ["22:56", "22:57", "22:58", "22:59", "23:00"];
    const s = subject({ LAeq: minutes.map((t) => sample(night(t), 90)) });
    expect(evaluateCondition(r, s, night("23:00"))).toMatchObject({ active: true, coverage: 1 });
    // (22:58, 23:03]: two of five minutes covered, 40 % < 75 %.
    expect(evaluateCondition(r, s, night("23:03"))).toMatchObject({
      active: false,
      applicable: false,
      reason: "coverage",
      coverage: 0.4,
    });
    // (22:57, 23:02]: 60 %; with minCoverage 0.5 the window is judged.
    const lenient = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "max",
      window: "5m",
      op: ">",
      raise: 60,
      minCoverage: 0.5,
    });
    expect(evaluateCondition(lenient, s, night("23:02"))).toMatchObject({ active: true });
    expect(evaluateCondition(r, s, night("23:05"))).toMatchObject({
      applicable: false,
      reason: "no_data",
    });
  });

  it("a per-period window holds only that period's readings", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      window: "20m",
      op: ">",
      raise: { byPeriod: { day: 70, night: 55 } },
    });
    const readings: Sample[] = [];
    // 70 dB (legal by day) until 22:00, 50 dB after it.
    for (let t = night("21:40"); t <= night("22:30"); t += MIN) {
      readings.push(sample(t, t <= night("22:00") ? 70 : 50));
    }
    const s = subject({ LAeq: readings });
    // 22:00 closes a day window of 70 dB: compliant with the day limit.
    expect(evaluateCondition(r, s, night("22:00"))).toMatchObject({ active: false, limit: 70 });
    // 22:05: the night window holds 22:01-22:05 only, 25 % covered: not judged.
    expect(evaluateCondition(r, s, night("22:05"))).toMatchObject({ reason: "coverage" });
    // 22:15: 15 of 20 night minutes, all 50 dB: compliant (the day's 70 dB never counts).
    const at = evaluateCondition(r, s, night("22:15"));
    expect(at).toMatchObject({ active: false, limit: 55, coverage: 0.75 });
    expect(at.value).toBeCloseTo(50, 6);
  });

  it("enforcement ignores flagged readings and devices with expired calibration", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: 60,
    });
    const flagged = subject({ LAeq: [sample(night("23:00"), 90, "maintenance")] });
    expect(evaluateCondition(r, flagged, night("23:00")).applicable).toBe(false);
    const expired: SubjectView = {
      devices: [
        {
          device: device("d-1", { calibrationDueOn: "2026-11-01" }),
          series: { LAeq: [sample(night("23:00"), 90)] },
        },
      ],
    };
    expect(evaluateCondition(r, expired, night("23:00")).active).toBe(false);
  });
});

describe("rate_of_rise", () => {
  const r = rule(
    { type: "rate_of_rise", quantity: "ponding", window: "5m", raise: 5, clear: 2 },
    {
      scope: { kinds: ["water_level"] },
      taskKind: "emergency",
      levels: [{ level: "IV", actions: ["x"] }],
    },
  );
  it("rise exactly at the limit raises; below does not; one reading is not a rise", () => {
    const at = night("02:05");
    const s = (a: number, b: number) =>
      subject({ ponding: [sample(night("02:00:01"), a), sample(at, b)] });
    expect(evaluateCondition(r, s(10, 15), at)).toMatchObject({ active: true, value: 5 });
    expect(evaluateCondition(r, s(10, 14.9), at).active).toBe(false);
    expect(evaluateCondition(r, s(10, 13), at, true).active).toBe(true); // clear side 2
    expect(evaluateCondition(r, subject({ ponding: [sample(at, 30)] }), at)).toMatchObject({
      active: false,
      value: 0,
    });
  });
});

describe("state", () => {
  const r = (match: "all" | "any") =>
    rule(
      {
        type: "state",
        match,
        terms: [
          { quantity: "fanOn", is: true },
          { quantity: "purifierOn", is: false },
        ],
      },
      { scope: { kinds: ["cooking_fume"] } },
    );
  const at = night("12:00");
  it("all / any on the newest value of each switch; a switch never reported is false", () => {
    const both = subject({ fanOn: [sample(at, true)], purifierOn: [sample(at, false)] });
    const fanOnly = subject({ fanOn: [sample(at, true)] });
    expect(evaluateCondition(r("all"), both, at).active).toBe(true);
    expect(evaluateCondition(r("all"), fanOnly, at).active).toBe(false);
    expect(evaluateCondition(r("any"), fanOnly, at).active).toBe(true);
    const later = subject({
      fanOn: [sample(at, true)],
      purifierOn: [sample(at, false), sample(at + MIN, true)],
    });
    expect(evaluateCondition(r("all"), later, at + MIN).active).toBe(false);
  });
});

describe("deadman and quality", () => {
  const dead = rule({ type: "deadman", factor: 3 }, { taskKind: "maintenance" });
  it("silence longer than factor × interval, not equal to it", () => {
    const s = subject({}, { lastSeenAt: night("22:00") });
    expect(evaluateCondition(dead, s, night("22:03")).active).toBe(false);
    expect(evaluateCondition(dead, s, night("22:03") + 1).active).toBe(true);
  });
  it("quality flags of the newest reading", () => {
    const q = rule({ type: "quality", flags: ["fault"] }, { taskKind: "maintenance" });
    expect(evaluateCondition(q, subject({}, { lastQuality: "fault" }), 0).active).toBe(true);
    expect(evaluateCondition(q, subject({}, { lastQuality: "normal" }), 0).active).toBe(false);
  });
});

describe("k_of_n", () => {
  const r = (k: number, degraded: "lower_k" | "keep_k") =>
    rule(
      {
        type: "k_of_n",
        k,
        quantity: "ch4",
        aggregate: "latest",
        op: ">=",
        raise: 20,
        degraded,
      },
      {
        scope: { kinds: ["utility_tunnel"], siteTypes: ["tunnel_segment"] },
        subject: "segment",
        taskKind: "emergency",
        levels: [{ level: "IV", actions: ["x"] }],
      },
    );
  const at = night("23:00");
  const devices = (...values: number[]): SubjectView => ({
    devices: values.map((v, i) => ({
      device: device(`g-${i}`),
      series: { ch4: [sample(at - SEC, v)] },
    })),
  });
  it("needs k violating devices", () => {
    expect(evaluateCondition(r(2, "lower_k"), devices(25, 5, 5), at).active).toBe(false);
    expect(evaluateCondition(r(2, "lower_k"), devices(25, 21, 5), at).active).toBe(true);
  });
  it("a silent device does not vote with its stale value", () => {
    const s = devices(25, 5);
    const views = s.devices.map((d, i) => ({ ...d, lastSeenAt: i === 0 ? at - 4 * MIN : at }));
    expect(evaluateCondition(r(1, "keep_k"), { devices: views }, at).active).toBe(false);
    expect(evaluateCondition(r(1, "keep_k"), s, at).active).toBe(true);
  });

  it("degraded: lower_k votes with k = n and says so, keep_k (the default) cannot raise", () => {
    const lowered = evaluateCondition(r(2, "lower_k"), devices(25), at);
    expect(lowered).toMatchObject({ active: true, degraded: { k: 2, voting: 1 } });
    expect(lowered.detail).toContain("DEGRADED from k = 2: only 1 vote");
    expect(evaluateCondition(r(2, "keep_k"), devices(25), at)).toMatchObject({
      active: false,
      applicable: false,
    });
    // Unsaid, a rule keeps its k: it degrades only where its file says it may.
    const unsaid = KOfNCondition.parse({
      type: "k_of_n",
      k: 2,
      quantity: "ch4",
      aggregate: "latest",
      op: ">=",
      raise: 20,
    });
    expect(unsaid.degraded).toBe("keep_k");
  });

  it("a stuck, fault-flagged detector alone neither raises nor keeps a degraded vote", () => {
    const s = devices(30);
    const flagged: SubjectView = {
      devices: s.devices.map((d) => ({ ...d, series: { ch4: [sample(at - SEC, 30, "fault")] } })),
    };
    expect(evaluateCondition(r(2, "lower_k"), flagged, at)).toMatchObject({ active: false });
    expect(evaluateCondition(r(2, "lower_k"), flagged, at).detail).toContain("g-0=30 (fault)");
  });
});
