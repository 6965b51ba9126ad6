import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration, Rule } from "../../../../contracts/model/rules.js";
import { activePeriods, valueForPeriod } from "../../../../rules/engine/periods.js";
import {
  resolveEnabled,
  resolveLimits,
  resolvePeriods,
  resolveValue,
} from "../../../../rules/engine/resolve.js";
import { patched, VALID_RULE } from "../fixtures.js";

/** A rule with a zone-keyed table and overrides at every level, each for a different number. */
const LAYERED = Rule.parse(
  patched(VALID_RULE, {
    condition: {
      raise: { byPeriod: { day: { from: "limits.day" }, night: { from: "limits.night" } } },
      clear: undefined,
    },
    limits: {
      default: { day: 70, night: 55 },
      rows: [
        { when: { zoneClass: "2" }, values: { day: 60, night: 50 } },
        { when: { zoneClass: "2", region: "chengdu" }, values: { night: 48 } },
        { when: { region: "chengdu" }, values: { night: 52 } },
      ],
    },
    overrides: [
      // Listed device first on purpose: order in the list does not beat the level.
      { at: "device", id: "dev-1", values: { night: 40 } },
      { at: "site", id: "site-1", values: { night: 42 } },
      { at: "district", id: "Wuhou", values: { night: 44, day: 58 } },
      { at: "city", values: { night: 46 } },
      { at: "district", id: "Wuhou", when: { zoneClass: "2" }, values: { day: 57 } },
      {
        at: "district",
        id: "Jinjiang",
        periods: { night: { from: "23:00", to: "07:00" } },
        clause: { standard: "Jinjiang notice", section: "night 23-07" },
      },
      { at: "site", id: "site-off", enabled: false },
    ],
  }),
);

describe("limit precedence: table rows, then city → district → site → device", () => {
  it("uses the default when no row matches, then the city override", () => {
    expect(resolveLimits(LAYERED, {}).values).toEqual({ day: 70, night: 46 });
  });

  it("prefers more specific rows over less specific ones, whatever their order", () => {
    const noCity = { ...LAYERED, overrides: [] };
    expect(resolveLimits(noCity, { zoneClass: "2" }).values).toEqual({ day: 60, night: 50 });
    expect(resolveLimits(noCity, { region: "chengdu" }).values).toEqual({ day: 70, night: 52 });
    // Two matching rows of one key each: file order; the two-key row beats both.
    expect(resolveLimits(noCity, { zoneClass: "2", region: "chengdu" }).values).toEqual({
      day: 60,
      night: 48,
    });
  });

  it("lets each level override the one above it", () => {
    const zone2 = { zoneClass: "2" } as const;
    expect(resolveLimits(LAYERED, { ...zone2, district: "Wuhou" }).values).toEqual({
      day: 57,
      night: 44,
    });
    expect(
      resolveLimits(LAYERED, { ...zone2, district: "Wuhou", siteId: "site-1" }).values,
    ).toEqual({ day: 57, night: 42 });
    expect(
      resolveLimits(LAYERED, { ...zone2, district: "Wuhou", siteId: "site-1", deviceId: "dev-1" })
        .values,
    ).toEqual({ day: 57, night: 40 });
    // The zone-specific district override applies only where the zone matches.
    expect(resolveLimits(LAYERED, { zoneClass: "3", district: "Wuhou" }).values).toEqual({
      day: 58,
      night: 44,
    });
  });

  it("says where each value came from, for evidence", () => {
    const { origins } = resolveLimits(LAYERED, {
      zoneClass: "2",
      district: "Wuhou",
      siteId: "site-1",
    });
    expect(origins).toEqual({
      day: "overrides.4 (district Wuhou)",
      night: "overrides.1 (site site-1)",
    });
    const fume = resolveLimits(
      Rule.parse(
        patched(VALID_RULE, {
          condition: { raise: { from: "limits.limit" }, clear: undefined },
          limits: {
            default: { limit: 70 },
            rows: [
              {
                when: { region: "beijing" },
                values: { limit: 60 },
                clause: { standard: "DB11/1488-2018", section: "x" },
              },
            ],
          },
        }),
      ),
      { region: "beijing" },
    );
    expect(fume.origins.limit).toBe("limits.rows.0 (DB11/1488-2018 x)");
  });

  it("resolves references with their offset, and leaves missing limits undefined", () => {
    const limits = resolveLimits(LAYERED, { zoneClass: "2" });
    expect(resolveValue({ from: "limits.night", plus: 15 }, limits)).toBe(61);
    expect(resolveValue({ from: "limits.evening", plus: 0 }, limits)).toBeUndefined();
    expect(resolveValue(12, limits)).toBe(12);
    const station = { warning: 3, guaranteed: 4, historicalMax: 5 };
    expect(resolveValue({ from: "site.levels.guaranteed", plus: -0.5 }, limits, station)).toBe(3.5);
    expect(resolveValue({ from: "site.levels.guaranteed", plus: 0 }, limits)).toBeUndefined();
  });

  it("overrides periods per district and switches the rule per site", () => {
    expect(resolvePeriods(LAYERED, { district: "Jinjiang" }).night).toEqual({
      from: "23:00",
      to: "07:00",
      holidays: "include",
    });
    expect(resolvePeriods(LAYERED, { district: "Wuhou" }).night).toEqual({
      from: "22:00",
      to: "06:00",
      holidays: "include",
    });
    expect(resolveEnabled(LAYERED, { siteId: "site-off" })).toBe(false);
    expect(resolveEnabled(LAYERED, { siteId: "site-1" })).toBe(true);
    const off = { ...LAYERED, enabled: false };
    expect(
      resolveEnabled(
        { ...off, overrides: [{ at: "site" as const, id: "s", enabled: true }] },
        { siteId: "s" },
      ),
    ).toBe(true);
  });
});

/** Milliseconds of a local time in Asia/Shanghai (UTC+8, no daylight saving). */
const shanghai = (local: string) => Date.parse(`${local}+08:00`);

describe("schedule periods", () => {
  const schedule = LAYERED.schedule;
  const at = (local: string) => activePeriods(schedule.periods, schedule, shanghai(local));

  it("switches to night at 22:00 exactly and back to day at 06:00 exactly", () => {
    expect(at("2026-03-02T21:59:59")).toEqual(["day"]);
    expect(at("2026-03-02T22:00:00")).toEqual(["night"]);
    expect(at("2026-03-03T05:59:59")).toEqual(["night"]);
    expect(at("2026-03-03T06:00:00")).toEqual(["day"]);
    expect(at("2026-03-03T00:00:00")).toEqual(["night"]);
  });

  it("uses the schedule's time zone, not the host's", () => {
    // 14:00 UTC is 22:00 in Shanghai.
    expect(activePeriods(schedule.periods, schedule, Date.parse("2026-03-02T14:00:00Z"))).toEqual([
      "night",
    ]);
    const utc = { ...schedule, timeZone: "UTC" };
    expect(activePeriods(schedule.periods, utc, Date.parse("2026-03-02T14:00:00Z"))).toEqual([
      "day",
    ]);
  });

  it("counts an overnight period's weekday and holiday on the day it started", () => {
    const periods = {
      weeknight: { from: "22:00", to: "06:00", days: ["mon", "tue", "wed", "thu", "fri"] as const },
      examNight: { from: "22:00", to: "06:00", holidays: "only" as const },
      business: { from: "10:00", to: "22:00", holidays: "exclude" as const },
    };
    const parsed = Rule.parse(
      patched(VALID_RULE, { schedule: { periods, holidays: ["2026-06-07"] } }),
    ).schedule;
    const own = Object.fromEntries(
      Object.entries(parsed.periods).filter(([name]) => name in periods),
    );
    const when = (local: string) => activePeriods(own, parsed, shanghai(local));
    // Friday 2026-03-06 23:00 and Saturday 03:00 belong to Friday night; Saturday 23:00 does not.
    expect(when("2026-03-06T23:00:00")).toEqual(["weeknight"]);
    expect(when("2026-03-07T03:00:00")).toEqual(["weeknight"]);
    expect(when("2026-03-07T23:00:00")).toEqual([]);
    // 2026-06-07 (a Sunday) is a holiday: its night counts until 06:00 on the 8th; no business hours.
    expect(when("2026-06-08T05:00:00")).toEqual(["examNight"]);
    expect(when("2026-06-07T12:00:00")).toEqual([]);
    expect(when("2026-06-08T12:00:00")).toEqual(["business"]);
  });

  it("picks a per-period value by the first active period listed", () => {
    const c = LAYERED.condition;
    if (c.type !== "threshold") throw new Error("threshold expected");
    expect(valueForPeriod(c.raise, ["night"])).toEqual({ from: "limits.night", plus: 0 });
    expect(valueForPeriod(c.raise, ["business"])).toBeUndefined();
    expect(valueForPeriod(60, [])).toBe(60);
  });
});

describe("durations", () => {
  it("parses and prints the rule file notation", () => {
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("10ms")).toBe(10);
    expect(parseDuration("1d")).toBe(86_400_000);
    expect(parseDuration("90")).toBeUndefined();
    expect(parseDuration("")).toBeUndefined();
    expect(parseDuration("1m1h")).toBeUndefined();
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(0)).toBe("0s");
  });

  it("gives conditions milliseconds and defaults `for` to 0", () => {
    const rule = Rule.parse(VALID_RULE);
    expect(rule.condition).toMatchObject({ window: 600_000, for: 0, align: "rolling" });
    expect(rule.timing).toEqual({});
    expect(rule.evidence).toEqual({ window: 600_000 });
  });
});
