import { describe, expect, it } from "vitest";
import { initialAlarmState, type AlarmState } from "../../../../rules/engine/alarm.js";
import type { SubjectView } from "../../../../rules/engine/conditions.js";
import { periodClockOf } from "../../../../rules/engine/in-force.js";
import type { Sample } from "../../../../rules/engine/window.js";
import { nextMayHold, quietReading, quietUntil } from "../../../../rules/quiet.js";
import { device, MIN, night, packRule, sampleAt, SEC, site, testRule } from "./harness.js";

/*
 * When ticks may skip a subject (rules/quiet.ts), by hand. The differential tests and the
 * backtest comparison check the skipping against judging every tick; these pin the instants.
 */

const rule = testRule;
const sample = (at: number, value: number): Sample => sampleAt(at, value);
const NO_PERMITS = () => Number.POSITIVE_INFINITY;
const NORMAL: AlarmState = initialAlarmState(0);
/** A 10-minute LAeq over 60 dB(A), rolling or clock-aligned. */
const tenMinutes = (
  align: "rolling" | "clock",
  condition: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) =>
  rule(
    {
      type: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      window: "10m",
      align,
      op: ">",
      raise: 60,
      ...condition,
    },
    extra,
  );

function view(samples: Sample[], lastSeenAt?: number): SubjectView {
  return {
    site: site("ambient", { zoneClass: "2" }),
    devices: [
      {
        device: device("d-1"),
        series: { LAeq: samples },
        lastSeenAt,
        watchedSince: night("20:00"),
      },
    ],
  };
}

describe("quiet ticks", () => {
  it("an open or pending alarm on the newest reading wakes at its timer", () => {
    const r = rule(
      { type: "threshold", quantity: "LAeq", aggregate: "latest", op: ">", raise: 60, for: "2m" },
      { timing: { minActive: "10m", clearHold: "5m" } },
    );
    const at = night("21:00");
    const pending = { ...NORMAL, phase: "pending" as const, since: at, startedAt: at };
    expect(quietUntil(r, view([]), at, pending, NO_PERMITS)).toBe(night("21:02"));
    // Enforcement: no escalation for want of acknowledgement; nothing moves an active alarm.
    const active = { ...NORMAL, phase: "active" as const, since: at, raisedAt: at };
    expect(quietUntil(r, view([]), at, active, NO_PERMITS)).toBe(Number.POSITIVE_INFINITY);
    // Recovering: cleared once both minActive (from the raise) and clearHold have run out.
    const recovering = { ...active, since: night("21:03"), phase: "recovering" as const };
    expect(quietUntil(r, view([]), night("21:04"), recovering, NO_PERMITS)).toBe(night("21:10"));
    const late = { ...recovering, since: night("21:08") };
    expect(quietUntil(r, view([]), night("21:09"), late, NO_PERMITS)).toBe(night("21:13"));
  });

  it("an open emergency alarm wakes at its next escalation for want of acknowledgement", () => {
    const r = packRule("tunnel.o2-low"); // the newest reading, re-sent every 10 minutes
    const raised = { ...NORMAL, phase: "active" as const, since: night("21:00") };
    const active = { ...raised, raisedAt: night("21:00"), unacknowledgedEscalations: 1 };
    expect(quietUntil(r, view([]), night("21:15"), active, NO_PERMITS)).toBe(night("21:20"));
    const acknowledged = { ...active, acknowledged: true };
    expect(quietUntil(r, view([]), night("21:20"), acknowledged, NO_PERMITS)).toBe(
      Number.POSITIVE_INFINITY,
    );
  });

  it("an open alarm on a rate of rise wakes when its oldest reading leaves the window", () => {
    const rise = rule(
      { type: "rate_of_rise", quantity: "LAeq", window: "10m", raise: 5 },
      { timing: { minActive: "10m", clearHold: "5m" } },
    );
    const samples = [night("20:49"), night("20:52"), night("20:59")].map((t) => sample(t, 50));
    for (const phase of ["active", "recovering"] as const) {
      // Timers: none (active), 21:09 (recovering).
      const state = { ...NORMAL, phase, raisedAt: night("20:59"), since: night("20:59") };
      // At 21:00 the window (20:50, 21:00] holds 20:52 first: it leaves at 21:02.
      expect(quietUntil(rise, view(samples), night("21:00"), state, NO_PERMITS)).toBe(
        night("21:02"),
      );
    }
  });

  it("an open alarm on a rolling window wakes where its coverage may fall below the minimum", () => {
    const r = tenMinutes(
      "rolling",
      { for: "2m" },
      { timing: { minActive: "10m", clearHold: "5m" } },
    );
    // Timers at 21:01 (pending), 21:09 (recovering) or none (active). 1-minute readings 20:53
    // to 21:00 cover (20:52, 21:00]: 80 % of (20:50, 21:00]. Sliding on, the window may lose
    // coverage as fast as it moves: 75 % (the default minimum) is safe for 30 s, before the
    // oldest reading (20:53) leaves it at 21:03.
    const samples = Array.from({ length: 8 }, (_, i) => sample(night("20:53") + i * MIN, 70));
    for (const phase of ["pending", "active", "recovering"] as const) {
      const at = night("20:59");
      const state = { ...NORMAL, phase, startedAt: at, raisedAt: at, since: at };
      expect(quietUntil(r, view(samples), night("21:00"), state, NO_PERMITS)).toBe(
        night("21:00") + 30 * SEC - 1,
      );
    }
    // Below the minimum already (a gap): it stays one until a reading; the oldest leaving wakes it.
    const few = samples.slice(3);
    const active = { ...NORMAL, phase: "active" as const, raisedAt: night("20:50") };
    expect(quietUntil(r, view(few), night("21:00"), active, NO_PERMITS)).toBe(night("21:06"));
  });

  it("an open alarm on a clock window wakes when the next interval completes", () => {
    const r = tenMinutes("clock");
    const active = { ...NORMAL, phase: "active" as const, raisedAt: night("21:00") };
    expect(quietUntil(r, view([]), night("21:03"), active, NO_PERMITS)).toBe(night("21:10"));
  });

  it("an open deadman wakes only at limits still ahead", () => {
    const r = rule({ type: "deadman", factor: 3 }, { taskKind: "maintenance" });
    const active = { ...NORMAL, phase: "active" as const, raisedAt: night("21:00") };
    // device d-1 reports every minute (harness): silent since 20:50, past its 3-minute limit.
    expect(quietUntil(r, view([], night("20:50")), night("21:20"), active, NO_PERMITS)).toBe(
      Number.POSITIVE_INFINITY,
    );
  });

  it("a rolling window wakes when its oldest reading leaves it", () => {
    const r = tenMinutes("rolling");
    const samples = [night("20:49"), night("20:50"), night("20:51"), night("20:59")].map((t) =>
      sample(t, 50),
    );
    // At 21:00 the window (20:50, 21:00] holds 20:51 first: it leaves at 21:01.
    expect(quietUntil(r, view(samples), night("21:00"), NORMAL, NO_PERMITS)).toBe(night("21:01"));
  });

  it("a window with day and night limits wakes where its place crosses 22:00 and 06:00", () => {
    const clock = periodClockOf(packRule("noise.area.laeq"), view([]).devices[0]!, view([]));
    expect(clock?.nextChange(night("21:30"))).toBe(night("22:00"));
    expect(clock?.nextChange(night("23:00"))).toBe(night("06:00"));
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      window: "30m",
      op: ">",
      raise: { byPeriod: { day: 60, night: 50 } },
    });
    const samples = [sample(night("21:50"), 55)];
    // Placed at the middle of the 60-s interval it ends on: the place reaches 22:00 at 22:00:30,
    // long before 21:50 leaves the window (22:20).
    expect(quietUntil(r, view(samples), night("21:58"), NORMAL, NO_PERMITS)).toBe(
      night("22:00") + 30 * SEC,
    );
  });

  it("a clock window wakes at the next interval", () => {
    const r = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      window: "10m",
      align: "clock",
      op: ">",
      raise: 60,
    });
    expect(quietUntil(r, view([]), night("21:03"), NORMAL, NO_PERMITS)).toBe(night("21:10"));
  });

  it("a deadman wakes when the silence passes its limit", () => {
    const r = rule({ type: "deadman", factor: 3 });
    expect(quietUntil(r, view([], night("21:00")), night("21:01"), NORMAL, NO_PERMITS)).toBe(
      night("21:00") + 3 * MIN,
    );
    // Never heard: counted from when the engine started watching.
    expect(quietUntil(r, view([]), night("21:01"), NORMAL, NO_PERMITS)).toBe(
      night("20:00") + 3 * MIN,
    );
  });

  it("a windowed k_of_n that may lower its k is judged at every tick", () => {
    const r = rule(
      {
        type: "k_of_n",
        k: 2,
        quantity: "LAeq",
        aggregate: "energy_mean",
        window: "2m",
        op: ">",
        raise: 55,
        degraded: "lower_k",
      },
      { subject: "site" },
    );
    expect(quietUntil(r, view([]), night("21:00"), NORMAL, NO_PERMITS)).toBe(
      Number.NEGATIVE_INFINITY,
    );
  });
});

describe("quiet readings", () => {
  const r = tenMinutes("clock");
  const devices = () => view([]);

  it("a reading after a clock window's newest complete interval is skipped while it is the newest", () => {
    // Last judged at 21:03 (the interval 20:50–21:00): a reading at 21:04 or 21:09 changes nothing.
    const judged = night("21:03");
    for (const t of [night("21:04"), night("21:09")]) {
      expect(quietReading(r, NORMAL, devices, t, t, judged)).toBe(true);
    }
    // At 21:10 the interval 21:00–21:10 is complete; a late reading at 21:00 lies in the one judged.
    expect(quietReading(r, NORMAL, devices, night("21:10"), night("21:10"), judged)).toBe(false);
    expect(quietReading(r, NORMAL, devices, judged, night("21:00"), judged)).toBe(false);
    // Never judged, or open: evaluated.
    expect(quietReading(r, NORMAL, devices, night("21:04"), night("21:04"), undefined)).toBe(false);
    const active = { ...NORMAL, phase: "active" as const };
    expect(quietReading(r, active, devices, night("21:04"), night("21:04"), judged)).toBe(false);
  });

  it("a rolling window's reading is skipped while no reading of the window reaches the limit", () => {
    const rolling = tenMinutes("rolling");
    const t = night("21:04");
    const window =
      (...values: number[]) =>
      () =>
        view(values.map((v, i) => sample(t - (values.length - 1 - i) * MIN, v)));
    // Every aggregate of 59.9 and 50 is at most 59.9: not over 60.
    expect(quietReading(rolling, NORMAL, window(59.9, 50), t, t, night("21:03"))).toBe(true);
    // 60.5 in the window: its energy mean may pass 60 (it does not here: judged anyway).
    expect(quietReading(rolling, NORMAL, window(60.5, 40), t, t, night("21:03"))).toBe(false);
    // At the limit, within rounding: judged.
    expect(quietReading(rolling, NORMAL, window(60, 60), t, t, night("21:03"))).toBe(false);
    // A reading of 70 older than the window (21:04 − 10 min) does not count.
    const old = () => view([sample(night("20:54"), 70), sample(t, 50)]);
    expect(quietReading(rolling, NORMAL, old, t, t, night("21:03"))).toBe(true);
    // An open alarm judges every reading.
    const active = { ...NORMAL, phase: "active" as const };
    expect(quietReading(rolling, active, window(50), t, t, night("21:03"))).toBe(false);
  });

  it("a rate of rise's reading is skipped while its window cannot rise as far as the limit", () => {
    const rise = rule({ type: "rate_of_rise", quantity: "LAeq", window: "10m", raise: 5 });
    const t = night("21:04");
    const at = (values: Array<[string, number]>) => () =>
      view(values.map(([hhmm, v]) => sample(night(hhmm), v)));
    expect(
      quietReading(
        rise,
        NORMAL,
        at([
          ["20:58", 50],
          ["21:04", 54.9],
        ]),
        t,
        t,
        undefined,
      ),
    ).toBe(true);
    // Falling then rising: the rise is at most the highest less the lowest.
    expect(
      quietReading(
        rise,
        NORMAL,
        at([
          ["20:58", 56],
          ["21:00", 51],
          ["21:04", 50],
        ]),
        t,
        t,
        undefined,
      ),
    ).toBe(false);
  });

  it("a reading on the newest reading alone is skipped while no device's newest passes the raise limit", () => {
    const latest = rule({
      type: "threshold",
      quantity: "LAeq",
      aggregate: "latest",
      op: ">",
      raise: 60,
      clear: 58,
    });
    const t = night("21:04");
    const at = (values: Array<[number, number]>) => () =>
      view(values.map(([when, v]) => sample(when, v)));
    // 59.9 and 60 do not pass "> 60"; the older 70 is not the newest.
    expect(quietReading(latest, NORMAL, at([[night("21:03"), 59.9]]), t, t, undefined)).toBe(true);
    expect(
      quietReading(
        latest,
        NORMAL,
        at([
          [night("21:03"), 70],
          [t, 60],
        ]),
        t,
        t,
        undefined,
      ),
    ).toBe(true);
    // 60.1 passes it; so does a newer reading judged at its own instant.
    expect(quietReading(latest, NORMAL, at([[t, 60.1]]), t, t, undefined)).toBe(false);
    expect(
      quietReading(
        latest,
        NORMAL,
        at([
          [t, 59],
          [night("21:05"), 61],
        ]),
        night("21:05"),
        night("21:05"),
        undefined,
      ),
    ).toBe(false);
    // A flagged reading the gate suppresses is no newest reading; no reading at all holds nothing.
    const suppressed = () =>
      view([
        { ...sample(night("21:03"), 59), quality: "normal" },
        { ...sample(t, 80), quality: "maintenance" },
      ]);
    expect(latest.qualityGate.suppressFlags).toContain("maintenance");
    expect(quietReading(latest, NORMAL, suppressed, t, t, undefined)).toBe(true);
    expect(quietReading(latest, NORMAL, at([]), t, t, undefined)).toBe(true);
    // An open or pending alarm judges every reading.
    for (const phase of ["pending", "active", "recovering"] as const) {
      expect(quietReading(latest, { ...NORMAL, phase }, at([[t, 50]]), t, t, undefined)).toBe(
        false,
      );
    }
  });

  it("a k_of_n on the newest readings is skipped while no device's newest passes the raise limit", () => {
    const kOfN = rule(
      {
        type: "k_of_n",
        k: 2,
        quantity: "LAeq",
        aggregate: "latest",
        op: ">=",
        raise: 60,
      },
      { subject: "site" },
    );
    const t = night("21:04");
    const two = (a: number, b: number) => (): SubjectView => {
      const one = view([sample(t, a)]);
      const d = one.devices[0]!;
      return {
        ...one,
        devices: [d, { ...d, device: device("d-2"), series: { LAeq: [sample(t, b)] } }],
      };
    };
    expect(quietReading(kOfN, NORMAL, two(59, 59.9), t, t, undefined)).toBe(true);
    // One vote at the limit: not enough for k = 2 here, but a vote that violates is judged.
    expect(quietReading(kOfN, NORMAL, two(59, 60), t, t, undefined)).toBe(false);
  });

  it("a condition that cannot hold waits for a reading, or for its window's limit to change", () => {
    const t = night("21:50");
    const lamax = rule({
      type: "threshold",
      quantity: "LAmax",
      aggregate: "latest",
      op: ">",
      raise: 70,
    });
    expect(nextMayHold(lamax, view([]), t, NO_PERMITS)).toBe(Number.POSITIVE_INFINITY);
    // A rolling window with day and night limits: its limit changes where its place (the middle
    // of the 60-s interval it ends on) crosses 22:00; its readings leaving it change nothing.
    const dayNight = tenMinutes("rolling", { raise: { byPeriod: { day: 60, night: 50 } } });
    const samples = [sample(night("21:45"), 55), sample(t, 55)];
    expect(nextMayHold(dayNight, view(samples), t, NO_PERMITS)).toBe(night("22:00") + 30 * SEC);
    // A permit's start or end, likewise (the rule exempts while it is valid).
    const exempt = tenMinutes("rolling", {}, { permitExemption: { types: ["night_works"] } });
    const edge = (after: number) =>
      after < night("23:30") ? night("23:30") : Number.POSITIVE_INFINITY;
    expect(nextMayHold(exempt, view(samples), t, edge)).toBe(night("23:30") + 30 * SEC);
  });
});
