import { describe, expect, it } from "vitest";
import type { Rule } from "../../../contracts/index.js";
import {
  constructionSite,
  device,
  local,
  MIN,
  reading,
  rule,
  SEC,
  series,
  ticks,
  tunnelSegment,
} from "../../support/differential-fixtures.js";
import {
  type ReferenceInput,
  referenceDecisions,
  referenceTrace,
  type RefReading,
} from "../../support/reference-evaluator.js";

/*
 * The reference evaluator checked on examples computed by hand from docs/rules.md (Time:
 * readings, periods and windows; Conditions; Timing): if it were wrong, the differential tests
 * would compare the engine with the wrong thing.
 */

const site = constructionSite("cs-1");
const noise = device("n1", "noise", "cs-1");

function decide(
  rules: Rule[],
  readings: RefReading[],
  extra: Partial<ReferenceInput> = {},
): Array<[string, string, string | undefined]> {
  return referenceDecisions({
    rules,
    devices: [noise],
    sites: [site],
    readings,
    ticks: [],
    watchedFrom: local("21:00"),
    ...extra,
  }).map((d) => [d.type, new Date(d.at).toISOString(), d.level]);
}

const iso = (hhmm: string) => new Date(local(hhmm)).toISOString();

/** An enforcement rule on one sensor kind. */
const enforcement = (kind: string, subject: string, fields: Record<string, unknown>) =>
  rule({ taskKind: "enforcement", scope: { kinds: [kind] }, subject, ...fields });

/** An emergency rule on a tunnel segment. */
const emergency = (fields: Record<string, unknown>) =>
  rule({
    taskKind: "emergency",
    scope: { kinds: ["utility_tunnel"], siteTypes: ["tunnel_segment"] },
    subject: "segment",
    ...fields,
  });

/** noise.construction.night-lamax as the pack has it (latest LAmax > 70 at night). */
const nightLamax = enforcement("noise", "site", {
  id: "t.night-lamax",
  condition: { type: "threshold", quantity: "LAmax", aggregate: "latest", op: ">", raise: 70 },
  schedule: { activeDuring: ["night"] },
});

describe("reference evaluator: readings belong to the period of their interval", () => {
  it("a 1-min reading stamped 22:00 is day; 22:01 is night", () => {
    expect(decide([nightLamax], [reading("n1", local("22:00"), { LAmax: 80 })])).toEqual([]);
    expect(
      decide(
        [nightLamax],
        [
          reading("n1", local("22:00"), { LAmax: 80 }),
          reading("n1", local("22:01"), { LAmax: 80 }),
        ],
      ),
    ).toEqual([["raise", iso("22:01"), undefined]]);
  });

  it("05:59 and 06:00 are night, 06:01 is day (an open alarm clears there)", () => {
    const rs = ["05:59", "06:00", "06:01"].map((t) => reading("n1", local(t), { LAmax: 80 }));
    expect(decide([nightLamax], rs)).toEqual([
      ["raise", iso("05:59"), undefined],
      ["clear", iso("06:01"), undefined],
    ]);
  });

  it("a 5-min reading stamped 22:02 measured 21:57–22:02: its midpoint 21:59:30 is day", () => {
    const five = device("n1", "noise", "cs-1", 300);
    const rs = [
      reading("n1", local("22:02"), { LAmax: 80 }),
      reading("n1", local("22:03"), { LAmax: 80 }),
    ];
    // 22:03 − 2.5 min = 22:00:30: night.
    expect(decide([nightLamax], rs, { devices: [five] })).toEqual([
      ["raise", iso("22:03"), undefined],
    ]);
  });

  it("an interval split exactly in half belongs to the later period", () => {
    const two = device("n1", "noise", "cs-1", 120);
    // 22:01 − 1 min = 22:00:00: night.
    expect(
      decide([nightLamax], [reading("n1", local("22:01"), { LAmax: 80 })], { devices: [two] }),
    ).toEqual([["raise", iso("22:01"), undefined]]);
  });
});

describe("reference evaluator: windows, periods and coverage", () => {
  /** noise.construction.laeq: rolling 20-min energy mean, 70 day / 55 night. */
  const laeq = enforcement("noise", "site", {
    id: "t.laeq",
    condition: {
      type: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      window: "20m",
      op: ">",
      raise: { byPeriod: { day: { from: "limits.day" }, night: { from: "limits.night" } } },
    },
    limits: { default: { day: 70, night: 55 } },
  });

  it("the 20-min night LAeq is first judged at 22:15 (15 of 20 night minutes)", () => {
    const rs = series("n1", local("21:30"), local("22:30"), MIN, () => ({ LAeq: 60 }));
    expect(decide([laeq], rs)).toEqual([["raise", iso("22:15"), undefined]]);
    const trace = referenceTrace(
      { rules: [laeq], devices: [noise], sites: [site], readings: rs, ticks: [], watchedFrom: 0 },
      "t.laeq",
    );
    const at = (hhmm: string) => trace.find((e) => e.at === local(hhmm))?.verdict.kind;
    expect([at("22:00"), at("22:01"), at("22:14"), at("22:15")]).toEqual([
      "judged",
      "gap",
      "gap",
      "judged",
    ]);
  });

  it("a night window holds no day reading: 80 dB before 22:00 does not raise the night", () => {
    const rs = series("n1", local("21:40"), local("22:20"), MIN, (t) => ({
      LAeq: t <= local("22:00") ? 69 : 50,
    }));
    expect(decide([laeq], rs)).toEqual([]);
  });

  it("a gap holds the alarm: coverage falls below 75 % on the ticks, nothing clears", () => {
    const rs = series("n1", local("22:00"), local("22:40"), MIN, () => ({ LAeq: 60 }));
    const input = { ticks: ticks(local("22:41"), local("23:30"), MIN) };
    // Raised at 22:15; after 22:40 the window empties; no verdict, no clear.
    expect(decide([laeq], rs, input)).toEqual([["raise", iso("22:15"), undefined]]);
    // With quiet readings after the silence, the first covered window clears: at 23:14 the
    // readings 23:00 … 23:14 cover (22:59, 23:14], 15 of the 20 minutes.
    const after = series("n1", local("23:00"), local("23:30"), MIN, () => ({ LAeq: 40 }));
    expect(decide([laeq], [...rs, ...after], input)).toEqual([
      ["raise", iso("22:15"), undefined],
      ["clear", iso("23:14"), undefined],
    ]);
  });

  it("clock hours are (from, to] and placed by their midpoint: the 21:00–22:00 hour is day", () => {
    const hourly = enforcement("noise", "device", {
      id: "t.hourly",
      condition: {
        type: "threshold",
        quantity: "LAeq",
        aggregate: "energy_mean",
        window: "1h",
        align: "clock",
        op: ">",
        raise: { byPeriod: { day: 60, night: 50 } },
      },
    });
    // 21:01 … 22:00 at 55 (day hour, under 60): no raise at 22:00. 22:01 … 23:00 at 55: night,
    // over 50, judged at 23:00 when the hour ends.
    const rs = series("n1", local("21:01"), local("23:00"), MIN, () => ({ LAeq: 55 }));
    expect(decide([hourly], rs)).toEqual([["raise", iso("23:00"), undefined]]);
    // The reading stamped 22:00 is the 21:00–22:00 hour's last: 90 dB there lifts that (day)
    // hour's energy mean to 72.3 dB, over 60, judged at 22:00.
    const loud = series("n1", local("21:01"), local("22:00"), MIN, (t) => ({
      LAeq: t === local("22:00") ? 90 : 55,
    }));
    expect(decide([hourly], loud)).toEqual([["raise", iso("22:00"), undefined]]);
  });
});

describe("reference evaluator: timing", () => {
  const timed = enforcement("noise", "device", {
    id: "t.timed",
    condition: {
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: 60,
      clear: 55,
      for: "2m",
    },
    timing: { minActive: "5m", clearHold: "2m" },
  });

  it("for, hysteresis, minActive and clearHold", () => {
    // 61 from 22:00: pending; raised at 22:02 (held 2 min). 57 from 22:03: still over the
    // clear level 55, active. 50 from 22:05: recovering; clearHold 2 min → 22:07, minActive
    // 5 min since 22:02 → 22:07: cleared at 22:07.
    const values: Record<string, number> = {
      "22:00": 61,
      "22:01": 61,
      "22:02": 61,
      "22:03": 57,
      "22:04": 57,
      "22:05": 50,
      "22:06": 50,
      "22:07": 50,
      "22:08": 50,
    };
    const rs = Object.entries(values).map(([t, v]) => reading("n1", local(t), { LAeq: v }));
    expect(decide([timed], rs)).toEqual([
      ["raise", iso("22:02"), undefined],
      ["clear", iso("22:07"), undefined],
    ]);
  });

  it("a pending alarm that stops holding never raises", () => {
    const rs = [61, 61, 50, 61, 61].map((v, i) =>
      reading("n1", local("22:00") + i * MIN, { LAeq: v }),
    );
    expect(decide([timed], rs)).toEqual([]);
  });

  it("the quality gate: a suppressed newest reading is a gap (enforcement suppresses fault)", () => {
    const plain = enforcement("noise", "device", {
      id: "t.plain",
      condition: { type: "threshold", quantity: "LAeq", aggregate: "latest", op: ">", raise: 60 },
    });
    const rs = [
      reading("n1", local("22:00"), { LAeq: 70 }),
      reading("n1", local("22:01"), { LAeq: 40 }, "fault"),
      reading("n1", local("22:02"), { LAeq: 40 }),
    ];
    expect(decide([plain], rs)).toEqual([
      ["raise", iso("22:00"), undefined],
      ["clear", iso("22:02"), undefined],
    ]);
  });
});

describe("reference evaluator: permits", () => {
  it("a night_works permit exempts the windows it covers, by their place", () => {
    const works = enforcement("noise", "site", {
      id: "t.works",
      condition: { type: "threshold", quantity: "LAeq", aggregate: "latest", op: ">", raise: 55 },
      schedule: { activeDuring: ["night"] },
      permitExemption: { types: ["night_works"] },
    });
    const permitted = constructionSite("cs-1", [
      { type: "night_works", from: local("22:00"), to: local("22:30") },
    ]);
    // 22:30's reading measured 22:29–22:30 (midpoint 22:29:30): still permitted. 22:31 is not.
    const rs = series("n1", local("22:01"), local("22:35"), MIN, () => ({ LAeq: 60 }));
    expect(decide([works], rs, { sites: [permitted] })).toEqual([
      ["raise", iso("22:31"), undefined],
    ]);
  });
});

describe("reference evaluator: deadman", () => {
  const deadman = rule({
    id: "t.deadman",
    taskKind: "maintenance",
    scope: { kinds: ["noise"] },
    subject: "device",
    condition: { type: "deadman", factor: 3 },
  });

  it("judged on ticks; a reading ends the silence at its own instant", () => {
    const rs = [
      reading("n1", local("22:00"), { LAeq: 50 }),
      reading("n1", local("22:10"), { LAeq: 50 }),
    ];
    const ts = ticks(local("22:00"), local("22:12"), MIN);
    // Silent > 3 min after 22:00: the 22:04 tick (4 min) raises; the 22:10 reading clears.
    expect(decide([deadman], rs, { ticks: ts })).toEqual([
      ["raise", iso("22:04"), undefined],
      ["clear", iso("22:10"), undefined],
    ]);
    // Without ticks the silence inside the series raises nothing.
    expect(decide([deadman], rs)).toEqual([]);
  });

  it("a device never heard counts from when it was watched and is never cleared", () => {
    const ts = ticks(local("21:00"), local("21:10"), MIN);
    expect(decide([deadman], [], { ticks: ts })).toEqual([["raise", iso("21:04"), undefined]]);
  });
});

describe("reference evaluator: k_of_n, levels and trusted readings", () => {
  const segment = tunnelSegment("seg-1");
  const gas = ["g1", "g2"].map((id) => device(id, "utility_tunnel", "seg-1", 10));
  const ch4 = (k: number, degraded: "keep_k" | "lower_k") =>
    emergency({
      id: `t.ch4-${k}-${degraded}`,
      condition: {
        type: "k_of_n",
        k,
        quantity: "ch4",
        aggregate: "latest",
        op: ">=",
        raise: 20,
        degraded,
      },
      levels: [
        { level: "IV", actions: ["ventilate"] },
        { level: "III", raise: 25, actions: ["cut the gas"] },
      ],
    });
  const run = (r: Rule, readings: RefReading[], extra: Partial<ReferenceInput> = {}) =>
    referenceDecisions({
      rules: [r],
      devices: gas,
      sites: [segment],
      readings,
      ticks: [],
      watchedFrom: local("23:00"),
      ...extra,
    }).map((d) => [d.type, d.at - local("23:00"), d.level]);

  it("k = 2 needs both; a level is reached when k devices pass it", () => {
    const rs = [
      reading("g1", local("23:00:10"), { ch4: 21 }),
      reading("g2", local("23:00:10"), { ch4: 5 }),
      reading("g2", local("23:00:20"), { ch4: 26 }),
      reading("g1", local("23:00:30"), { ch4: 30 }),
    ];
    expect(run(ch4(2, "keep_k"), rs)).toEqual([
      ["raise", 20 * SEC, "IV"],
      ["escalate-level", 30 * SEC, "III"],
    ]);
  });

  it("a silent device does not vote: keep_k holds, lower_k votes with the one left", () => {
    // g2 last reported at 23:00:10; at 23:00:50 it has been silent 40 s > 3 × 10 s.
    const rs = [
      reading("g1", local("23:00:10"), { ch4: 5 }),
      reading("g2", local("23:00:10"), { ch4: 5 }),
      reading("g1", local("23:00:50"), { ch4: 22 }),
    ];
    expect(run(ch4(2, "keep_k"), rs)).toEqual([]);
    expect(run(ch4(2, "lower_k"), rs)).toEqual([["raise", 50 * SEC, "IV"]]);
  });

  it("a fault-flagged vote counts only beside a trusted violating one", () => {
    const alone = [
      reading("g1", local("23:00:10"), { ch4: 30 }, "fault"),
      reading("g2", local("23:00:10"), { ch4: 5 }),
    ];
    expect(run(ch4(1, "keep_k"), alone)).toEqual([]);
    const beside = [...alone, reading("g2", local("23:00:20"), { ch4: 21 })];
    // Level at most the trusted vote's: IV, not III.
    expect(run(ch4(1, "keep_k"), beside)).toEqual([["raise", 20 * SEC, "IV"]]);
  });

  it("an emergency threshold holds on a flagged newest reading", () => {
    const co = emergency({
      id: "t.co",
      condition: { type: "threshold", quantity: "co", aggregate: "latest", op: ">=", raise: 30 },
      levels: [{ level: "IV", actions: ["ventilate"] }],
    });
    const rs = [
      reading("g1", local("23:00:10"), { co: 40 }),
      reading("g1", local("23:00:20"), { co: 5 }, "fault"),
      reading("g1", local("23:00:30"), { co: 5 }),
    ];
    expect(run(co, rs, { devices: [gas[0]!] })).toEqual([
      ["raise", 10 * SEC, "IV"],
      ["clear", 30 * SEC, undefined],
    ]);
  });
});

describe("reference evaluator: clock intervals counted", () => {
  it("nOfM: three consecutive 10-min means, within business hours only", () => {
    const fume = enforcement("cooking_fume", "device", {
      id: "t.fume",
      condition: {
        type: "threshold",
        quantity: "oilFume",
        aggregate: "mean",
        window: "10m",
        align: "clock",
        op: ">",
        raise: 2,
        nOfM: { n: 3, m: 3 },
      },
      schedule: {
        periods: { business: { from: "10:00", to: "22:00" } },
        activeDuring: ["business"],
      },
    });
    const hood = device("f1", "cooking_fume", "cs-1");
    const rs = series("f1", local("21:11"), local("22:30"), MIN, () => ({ oilFume: 3 }));
    // Intervals (21:10, 21:20], (21:20, 21:30], (21:30, 21:40] violate: raised at 21:40. The
    // (21:50, 22:00] interval (midpoint 21:55) is business; (22:00, 22:10] is not: cleared at 22:10.
    expect(
      referenceDecisions({
        rules: [fume],
        devices: [hood],
        sites: [site],
        readings: rs,
        ticks: [],
        watchedFrom: local("21:00"),
      }).map((d) => [d.type, new Date(d.at).toISOString()]),
    ).toEqual([
      ["raise", iso("21:40")],
      ["clear", iso("22:10")],
    ]);
  });

  it("exceedances: the third violating hour of the local day raises", () => {
    const hebei = enforcement("dust", "device", {
      id: "t.hebei",
      condition: {
        type: "threshold",
        quantity: "pm10",
        aggregate: "mean",
        window: "1h",
        align: "clock",
        op: ">",
        raise: 80,
        exceedances: { allowedPerDay: 2 },
      },
    });
    const dust = device("d1", "dust", "cs-1");
    const rs = series("d1", local("20:01"), local("23:00"), MIN, () => ({ pm10: 100 }));
    expect(
      referenceDecisions({
        rules: [hebei],
        devices: [dust],
        sites: [site],
        readings: rs,
        // After midnight the newest complete hour is still 23:00–00:00 (the 26th): no clear.
        ticks: [local("23:30"), local("23:59"), local("00:00"), local("00:30")],
        watchedFrom: local("20:00"),
      }).map((d) => [d.type, new Date(d.at).toISOString()]),
    ).toEqual([["raise", iso("23:00")]]);
  });
});
