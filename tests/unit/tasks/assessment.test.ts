import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AssessmentPeriod, AssessmentQuery } from "../../../contracts/model/assessment.js";
import {
  assessFrom,
  csvField,
  localMidnight,
  reportsCsv,
  toCsv,
  type AssessmentSettings,
} from "../../../tasks/assessment.js";
import { previousMonth } from "../../../tasks/assessment-schedule.js";
import { calendarOf } from "../../../tasks/calendar/working-time.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  assessmentConfig,
  buildAssessmentFixture,
  EAST,
  local,
  XUHUI_TEAM,
  type AssessmentFixture,
} from "./assessment-fixture.js";
import { fakeClock, noiseEvidence, noiseNotice, raise, startSystem } from "./fixtures.js";

/*
 * The assessment report against a hand-computed fixture (issue #18, done when): ten tasks driven
 * through the real task service on a fake clock (assessment-fixture.ts has the timeline). Every
 * expected number below is a literal, computed by hand from that timeline, with why.
 *
 * Deadlines (shipped calendar, office hours 09-12 and 13-18 = 8 h a day, no November holiday):
 *   enforcement: handle within 24 working hours of filing; A (Mon 2 Nov 10:00) by Thu 5 Nov 10:00,
 *     B (Mon 9 Nov 10:00) by Thu 12 Nov 10:00, F (Wed 11 Nov 10:00) by Mon 16 Nov 10:00
 *   emergency: 2 calendar hours; C (14:00) by 16:00, D (20:00) by 22:00
 *   maintenance: 56 working hours; E (Fri 6 Nov 17:00) by Tue 17 Nov 17:00, K (Sun 1 Nov 00:00)
 *     by Tue 10 Nov 18:00; close within 80: E (handled Tue 10 Nov 17:00) by Tue 24 Nov 17:00
 * Handling times, filing → first handled (calendar h / working h):
 *   A 24 / 8 (Mon 10:00-12:00, 13:00-18:00 = 7, Tue 09:00-10:00 = 1); B 96 / 32 (Mon 7, Tue-Thu
 *   24, Fri 1); C 1⅓ / 1⅓ (14:00-15:20, office hours); E 96 / 16 (Fri 17:00-18:00 = 1, Mon 8,
 *   Tue 09:00-12:00 and 13:00-17:00 = 7); F 24 / 8 (as A)
 */

const NOVEMBER = { from: "2026-11-01", to: "2026-12-01" } as const;

describe("assessment report", () => {
  let dir: string;
  let fixture: AssessmentFixture;
  let settings: AssessmentSettings;
  const report = (by: "district" | "street" | "team") =>
    assessFrom(fixture.system.store, { ...NOVEMBER, by }, settings, local("2026-12-06T08:00:00"));

  beforeAll(async () => {
    dir = await makeTempDir("cw-assessment-");
    fixture = await buildAssessmentFixture(dir);
    const config = assessmentConfig();
    settings = { sla: config.sla, calendar: calendarOf(config.calendar) };
  });
  afterAll(async () => {
    await fixture.system.stop();
    await removeTempDir(dir);
  });

  it("the fixture is what the timeline says (repeats referred, flags where the ticks ran)", () => {
    const { store } = fixture.system;
    const task = (letter: string) => store.task(fixture.ids[letter] ?? "?");
    expect(task("B")?.graduated).toMatchObject({ stage: "referred", repeatOf: fixture.ids["A"] });
    expect(task("G")?.graduated).toMatchObject({ stage: "referred", repeatOf: fixture.ids["F"] });
    expect(task("A")?.graduated?.stage).toBe("warning");
    expect(task("F")?.graduated?.stage).toBe("warning");
    expect(task("B")?.routing).toMatchObject({ district: "pudong", team: EAST });
    expect(task("C")?.routing).toMatchObject({ district: "pudong", team: XUHUI_TEAM });
    expect(task("K")?.routing).toMatchObject({ district: "xuhui", team: XUHUI_TEAM });
    const flagged = (letter: string) =>
      store.audit(fixture.ids[letter] ?? "?").filter((e) => e.action === "sla_flagged").length;
    expect(["A", "B", "C", "D", "E", "F", "G", "K"].map(flagged)).toEqual([0, 1, 0, 1, 1, 0, 0, 1]);
  });

  it("per district: the hand-computed numbers", async () => {
    const r = await report("district");
    expect(r.period).toEqual({
      from: "2026-11-01",
      to: "2026-12-01",
      timeZone: "Asia/Shanghai",
      // Local midnights of Shanghai (UTC+8).
      fromAt: "2026-10-31T16:00:00.000Z",
      toAt: "2026-11-30T16:00:00.000Z",
    });
    expect(r.rows.map((row) => row.group)).toEqual(["pudong", "xuhui"]);
    expect(r.rows[0]).toEqual({
      group: "pudong",
      // A, B, C, D, E (I was filed in October: left out).
      received: 5,
      // A, C, E dispatched; B acknowledged straight from filed (counts as reaching the team); D never.
      dispatched: 4,
      // A 11:00, B Tue 09:00, C 14:10, E Mon 09:30: each before its handle limit from filing.
      dispatchedOnTime: 4,
      // A, B, C, E (D was closed as a false positive without being handled).
      handled: 4,
      // A (Tue 3 ≤ Thu 5), C (15:20 ≤ 16:00), E (Tue 10 ≤ Tue 17); B first handled Fri 13 > Thu 12 10:00.
      handledOnTime: 3,
      // A, B, C, D (E is handled, not closed).
      closed: 4,
      // D.
      closedFalsePositive: 1,
      // 1 / 4.
      falsePositiveRate: 0.25,
      // B (not_handled, tick 12 Nov), D (not_handled, tick 4 Nov 22:30), E (not_closed, tick 30 Nov).
      overdue: 3,
      // B: verified → in_progress on 13 Nov.
      reopened: 1,
      averageHandlingHours: {
        // (24 + 96 + 1⅓ + 96) / 4 = 54.333…
        calendar: 54.33,
        // (8 + 32 + 1⅓ + 16) / 4 = 14.333…
        working: 14.33,
      },
      // Acme (B repeats A).
      repeatOffenders: 1,
    });
    expect(r.rows[1]).toEqual({
      group: "xuhui",
      // F, G, K.
      received: 3,
      // F only (G was acknowledged on 1 Dec, after the period's end; K never).
      dispatched: 1,
      dispatchedOnTime: 1,
      // F only (G handled on 1 Dec: after the cut-off).
      handled: 1,
      // F: Thu 12 Nov ≤ Mon 16 Nov 10:00.
      handledOnTime: 1,
      // F.
      closed: 1,
      closedFalsePositive: 0,
      // 0 / 1.
      falsePositiveRate: 0,
      // K (not_handled at the tick of 12 Nov).
      overdue: 1,
      // F: verified → in_progress on 12 Nov.
      reopened: 1,
      // F alone: 24 h, 8 working hours.
      averageHandlingHours: { calendar: 24, working: 8 },
      // Other Builder (G repeats F; keyed by its site, it has no credit code).
      repeatOffenders: 1,
    });
    expect(r.totals).toEqual({
      // 5 + 3.
      received: 8,
      dispatched: 5,
      dispatchedOnTime: 5,
      handled: 5,
      handledOnTime: 4,
      closed: 5,
      closedFalsePositive: 1,
      // 1 / 5.
      falsePositiveRate: 0.2,
      overdue: 4,
      reopened: 2,
      averageHandlingHours: {
        // (24 + 96 + 1⅓ + 96 + 24) / 5 = 48.2667
        calendar: 48.27,
        // (8 + 32 + 1⅓ + 16 + 8) / 5 = 13.0667
        working: 13.07,
      },
      // Acme and Other Builder.
      repeatOffenders: 2,
    });
  });

  it("per team: the hand-computed numbers (the tunnel is worked by the Xuhui team)", async () => {
    const r = await report("team");
    expect(r.rows.map((row) => row.group)).toEqual([EAST, XUHUI_TEAM]);
    expect(r.rows[0]).toEqual({
      group: EAST,
      // A, B, E.
      received: 3,
      dispatched: 3,
      dispatchedOnTime: 3,
      handled: 3,
      // A and E; not B.
      handledOnTime: 2,
      // A, B.
      closed: 2,
      closedFalsePositive: 0,
      falsePositiveRate: 0,
      // B and E.
      overdue: 2,
      // B.
      reopened: 1,
      // (24 + 96 + 96) / 3 = 72; (8 + 32 + 16) / 3 = 18.667.
      averageHandlingHours: { calendar: 72, working: 18.67 },
      // Acme.
      repeatOffenders: 1,
    });
    expect(r.rows[1]).toEqual({
      group: XUHUI_TEAM,
      // C, D, F, G, K.
      received: 5,
      // C, F.
      dispatched: 2,
      dispatchedOnTime: 2,
      // C, F.
      handled: 2,
      handledOnTime: 2,
      // C, D, F.
      closed: 3,
      // D.
      closedFalsePositive: 1,
      // 1 / 3.
      falsePositiveRate: 0.3333,
      // D, K.
      overdue: 2,
      // F.
      reopened: 1,
      // (1⅓ + 24) / 2 = 12.667; (1⅓ + 8) / 2 = 4.667.
      averageHandlingHours: { calendar: 12.67, working: 4.67 },
      // Other Builder.
      repeatOffenders: 1,
    });
    // The totals do not depend on the grouping.
    expect(r.totals).toEqual((await report("district")).totals);
  });

  it("per street: no site of the fixture has a street, so one row of tasks routed to none", async () => {
    const r = await report("street");
    expect(r.rows).toHaveLength(1);
    expect(r.rows[0]?.group).toBeNull();
    const { group: _group, ...numbers } = r.rows[0] ?? { group: null };
    expect(numbers).toEqual(r.totals);
  });

  it("a scoped caller gets the groups of their scope only", async () => {
    const scoped = await assessFrom(
      fixture.system.store,
      { ...NOVEMBER, by: "team" },
      settings,
      local("2026-12-06T08:00:00"),
      { cityWide: false, districts: ["xuhui"], streets: [], gridCells: [] },
    );
    expect(scoped.scope).toEqual({ districts: ["xuhui"], streets: [], gridCells: [] });
    // F, G, K only: all worked by the Xuhui team.
    expect(scoped.rows.map((r) => [r.group, r.received])).toEqual([[XUHUI_TEAM, 3]]);
    expect(scoped.totals.received).toBe(3);
  });

  it("a period cut at 16 Nov 00:00 counts what had happened by then", async () => {
    const r = await assessFrom(
      fixture.system.store,
      { from: "2026-11-01", to: "2026-11-16", by: "district" },
      settings,
      local("2026-12-06T08:00:00"),
    );
    // A, B, C, D, E filed; B was reopened and not yet closed (closed 16 Nov 12:00); E not yet
    // flagged not_closed (30 Nov).
    expect(r.rows[0]).toMatchObject({
      group: "pudong",
      received: 5,
      closed: 3,
      overdue: 2,
      reopened: 1,
    });
  });
});

describe("assessment: repeat offenders referred on an open case", () => {
  it("a warned party whose data show a new violation after the deadline counts as a repeat offender", async () => {
    const dir = await makeTempDir("cw-assessment-repeat-");
    const clock = fakeClock(local("2026-11-02T10:00:00"));
    const system = startSystem(dir, { now: clock.now, config: assessmentConfig() });
    await system.service.stop();
    try {
      const config = assessmentConfig();
      const settings = { sla: config.sla, calendar: calendarOf(config.calendar) };
      const repeaters = async () =>
        (await assessFrom(system.store, { ...NOVEMBER, by: "district" }, settings, clock.now()))
          .totals.repeatOffenders;
      await system.service.applyAlarm(
        noiseNotice("cs-1", raise(clock.now()), noiseEvidence(clock.now())),
      );
      // A first violation: a warning, no repeat.
      expect(await repeaters()).toBe(0);
      // Four days on, the case still open: the data show the noise again after the deadline.
      clock.set(local("2026-11-06T10:00:00"));
      await system.service.applyAlarm(
        noiseNotice("cs-1", raise(clock.now(), { alarmSeq: 2 }), noiseEvidence(clock.now())),
      );
      const [task] = system.store.listTasks({ limit: 1 });
      expect(task?.graduated).toMatchObject({ stage: "referred" });
      expect(task?.graduated?.repeatOf).toBeUndefined();
      expect(await repeaters()).toBe(1);
    } finally {
      await system.stop();
      await removeTempDir(dir);
    }
  });
});

describe("assessment periods", () => {
  it("local dates are local midnights of the zone", () => {
    expect(new Date(localMidnight("2026-11-01", "Asia/Shanghai")).toISOString()).toBe(
      "2026-10-31T16:00:00.000Z",
    );
    // Across a DST change: midnight of 30 March 2026 in Berlin is 22:00 UTC (UTC+2).
    expect(new Date(localMidnight("2026-03-30", "Europe/Berlin")).toISOString()).toBe(
      "2026-03-29T22:00:00.000Z",
    );
    expect(new Date(localMidnight("2026-03-29", "Europe/Berlin")).toISOString()).toBe(
      "2026-03-28T23:00:00.000Z",
    );
  });

  it("bad periods are refused with clear errors", () => {
    const problems = (input: unknown) => {
      const r = AssessmentQuery.safeParse(input);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };
    expect(problems({ from: "2026-11-01", to: "2026-12-01", by: "team" })).toEqual([]);
    expect(problems({ from: "2026-11-01", to: "2026-11-01", by: "team" })).toEqual([
      "to: to must be after from (the period is [from, to))",
    ]);
    expect(problems({ from: "2025-01-01", to: "2026-12-01", by: "team" })).toEqual([
      "to: a report covers at most 366 days",
    ]);
    expect(problems({ from: "2026-02-30", to: "2026-12-01", by: "team" })).toEqual([
      "from: is not a date of the calendar",
    ]);
    expect(problems({ from: "1.11.2026", to: "2026-12-01", by: "grid" })).toEqual([
      "from: must be a date YYYY-MM-DD",
      "by: by must be district, street or team",
    ]);
    expect(problems({ from: "2026-11-01", to: "2026-12-01", by: "team", format: "xlsx" })).toEqual([
      "format: format must be json or csv",
    ]);
    expect(AssessmentPeriod.safeParse({ from: "2026-11-01", to: "2026-12-01" }).success).toBe(
      false,
    );
  });

  it("the month before a local date, across a year", () => {
    expect(previousMonth("2026-12-01")).toEqual({
      month: "2026-11",
      from: "2026-11-01",
      to: "2026-12-01",
    });
    expect(previousMonth("2027-01-15")).toEqual({
      month: "2026-12",
      from: "2026-12-01",
      to: "2027-01-01",
    });
  });
});

describe("assessment CSV (RFC 4180)", () => {
  it("quotes a field with a comma, a quote or a line break, doubling inner quotes", () => {
    expect(csvField('Team "East", Pudong')).toBe('"Team ""East"", Pudong"');
    expect(csvField("a\r\nb")).toBe('"a\r\nb"');
    expect(csvField("plain")).toBe("plain");
    expect(csvField(" padded")).toBe('" padded"');
    expect(csvField(null)).toBe("");
    expect(csvField(0.25)).toBe("0.25");
    expect(
      toCsv([
        ["a", 1],
        ["b,c", null],
      ]),
    ).toBe('a,1\r\n"b,c",\r\n');
  });

  it("defuses text a spreadsheet would run as a formula", () => {
    expect(csvField("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvField("+1")).toBe("'+1");
    expect(csvField("@x,y")).toBe(`"'@x,y"`);
    expect(csvField(-3)).toBe("-3");
  });

  it("a report as CSV: a header, a row per group, the totals; a team with a comma and quotes", async () => {
    const dir = await makeTempDir("cw-assessment-csv-");
    const fixture = await buildAssessmentFixture(dir);
    try {
      const config = assessmentConfig();
      const r = await assessFrom(
        fixture.system.store,
        { ...NOVEMBER, by: "team" },
        { sla: config.sla, calendar: calendarOf(config.calendar) },
        local("2026-12-06T08:00:00"),
      );
      const lines = reportsCsv([r]).split("\r\n");
      expect(lines[0]).toBe(
        "row,by,group,received,dispatched,dispatched_on_time,handled,handled_on_time,closed,closed_false_positive,false_positive_rate,overdue,reopened,avg_handling_hours_calendar,avg_handling_hours_working,repeat_offenders,period_from,period_to,time_zone",
      );
      expect(lines[1]).toBe(
        'group,team,"Team ""East"", Pudong",3,3,3,3,2,2,0,0,2,1,72,18.67,1,2026-11-01,2026-12-01,Asia/Shanghai',
      );
      expect(lines[2]).toBe(
        "group,team,Xuhui team,5,2,2,2,2,3,1,0.3333,2,1,12.67,4.67,1,2026-11-01,2026-12-01,Asia/Shanghai",
      );
      expect(lines[3]).toBe(
        "total,team,,8,5,5,5,4,5,1,0.2,4,2,48.27,13.07,2,2026-11-01,2026-12-01,Asia/Shanghai",
      );
      expect(lines[4]).toBe("");
      expect(lines).toHaveLength(5);
    } finally {
      await fixture.system.stop();
      await removeTempDir(dir);
    }
  });
});
