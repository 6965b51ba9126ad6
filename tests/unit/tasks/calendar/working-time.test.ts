import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  CalendarError,
  loadCalendarFile,
  WorkingCalendar,
} from "../../../../tasks/calendar/working-time.js";

const SHIPPED = fileURLToPath(new URL("../../../../tasks/calendar/cn-2026.yaml", import.meta.url));
const HOUR = 3_600_000;
const at = (local: string) => Date.parse(`${local}+08:00`);
const dir = mkdtempSync(join(tmpdir(), "cw-calendar-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the working-time calendar", () => {
  const cal = loadCalendarFile(SHIPPED);

  it("knows the 2026 holidays and make-up working days of the shipped example", () => {
    expect(cal.isWorkingDay("2026-10-01")).toBe(false); // National Day, Thursday
    expect(cal.isWorkingDay("2026-10-10")).toBe(true); // make-up day, Saturday
    expect(cal.isWorkingDay("2026-02-14")).toBe(true); // Saturday before Spring Festival
    expect(cal.isWorkingDay("2026-02-23")).toBe(false); // Monday of Spring Festival
    expect(cal.isWorkingDay("2026-12-05")).toBe(false); // an ordinary Saturday
    expect(cal.isWorkingDay("2026-12-07")).toBe(true); // an ordinary Monday
  });

  it("counts only office hours: Friday 17:00 plus 2 working hours is Monday 10:00", () => {
    expect(cal.add(at("2026-12-04T17:00:00"), 2 * HOUR)).toBe(at("2026-12-07T10:00:00"));
    // Filed at night: the clock starts at 09:00; the lunch break is not counted.
    expect(cal.add(at("2026-12-07T22:30:00"), 4 * HOUR)).toBe(at("2026-12-08T14:00:00"));
    expect(cal.between(at("2026-12-04T17:00:00"), at("2026-12-07T10:00:00"))).toBe(2 * HOUR);
    expect(cal.between(at("2026-12-07T10:00:00"), at("2026-12-07T10:00:00"))).toBe(0);
  });

  it("skips a holiday: 16 working hours from the eve of National Day end on the make-up days", () => {
    // Wed 30 Sep 18:00 → Thu 1 … Wed 7 Oct off; Thu 8, Fri 9 worked; Sat 10 Oct worked (make-up).
    const due = cal.add(at("2026-09-30T18:00:00"), 16 * HOUR);
    expect(new Date(due).toISOString()).toBe(new Date(at("2026-10-09T18:00:00")).toISOString());
    expect(cal.add(at("2026-09-30T18:00:00"), 17 * HOUR)).toBe(at("2026-10-10T10:00:00"));
    expect(cal.between(at("2026-09-30T12:00:00"), at("2026-10-08T12:00:00"))).toBe(8 * HOUR);
  });

  it("refuses a broken calendar file with every problem named", () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, 'hours: ["18:00-09:00"]\nholidays: [2026-13-01x]\nextra: 1\n');
    expect(() => loadCalendarFile(bad)).toThrow(CalendarError);
    expect(() => loadCalendarFile(bad)).toThrow(/hours\.0: office hours must end after they start/);
    expect(() => loadCalendarFile(bad)).toThrow(/holidays\.0: a date is YYYY-MM-DD/);
    writeFileSync(bad, 'hours: ["09:00-12:00"\n');
    expect(() => loadCalendarFile(bad)).toThrow(/calendar .*bad\.yaml/);
    expect(
      () =>
        new WorkingCalendar({
          timeZone: "Asia/Shanghai",
          hours: ["09:00-12:00"],
          holidays: ["2026-10-10"],
          workdays: ["2026-10-10"],
        }),
    ).toThrow(/both a holiday and a workday/);
    expect(() => loadCalendarFile(join(dir, "missing.yaml"))).toThrow(CalendarError);
  });
});
