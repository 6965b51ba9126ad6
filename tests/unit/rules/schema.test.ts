import { describe, expect, it } from "vitest";
import { parseRuleText } from "../../../rules/load.js";
import { patched, ruleFile, VALID_RULE } from "./fixtures.js";

const FILE = "rules/test.yaml";

function problemsOf(rule: Record<string, unknown>) {
  return parseRuleText(FILE, ruleFile([VALID_RULE, rule])).problems;
}

const RIVER = {
  taskKind: "emergency",
  scope: { kinds: ["water_level"], siteTypes: ["river_station"] },
  condition: {
    type: "threshold",
    quantity: "stage",
    aggregate: "latest",
    window: undefined,
    op: ">=",
    raise: { from: "site.levels.warning" },
    clear: undefined,
  },
};

const TUNNEL_CO = {
  taskKind: "emergency",
  subject: "segment",
  scope: { kinds: ["utility_tunnel"], siteTypes: ["tunnel_segment"] },
  condition: {
    type: "threshold",
    quantity: "co",
    aggregate: "latest",
    window: undefined,
    op: ">=",
    raise: 30,
    clear: undefined,
  },
};

/** Each class of nonsense, the path it is reported at (in the second rule) and the message. */
const CASES: ReadonlyArray<{
  name: string;
  patch: Record<string, unknown>;
  path: string;
  message: string;
}> = [
  {
    name: "clear above raise for a rising condition",
    patch: { condition: { raise: 60, clear: 65 } },
    path: "rules.1.condition.clear",
    message: "clear 65 must be at or below raise 60",
  },
  {
    name: "clear below raise for a falling condition",
    patch: { condition: { op: "<", raise: 30, clear: 25 } },
    path: "rules.1.condition.clear",
    message: "clear 25 must be at or above raise 30",
  },
  {
    name: "clear on the wrong side in one row of the limit table only",
    patch: {
      condition: { raise: { from: "limits.limit" }, clear: { from: "limits.back" } },
      limits: {
        default: { limit: 60, back: 55 },
        rows: [{ when: { zoneClass: "2" }, values: { back: 62 } }],
      },
    },
    path: "rules.1.condition.clear",
    message: "(62 vs 60 for zoneClass 2)",
  },
  {
    name: "clear against a reference it cannot be compared with",
    patch: { ...RIVER, condition: { ...RIVER.condition, clear: 3 } },
    path: "rules.1.condition.clear",
    message: "cannot be compared with raise (site.levels.warning)",
  },
  {
    name: "levels not monotonic",
    patch: {
      ...TUNNEL_CO,
      levels: [
        { level: "IV", actions: ["ventilate"] },
        { level: "III", raise: 20, actions: ["evacuate"] },
      ],
    },
    path: "rules.1.levels.1.raise",
    message: "levels not monotonic: raise 20 must be above the level below (30)",
  },
  {
    name: "levels out of severity order",
    patch: {
      ...TUNNEL_CO,
      levels: [
        { level: "III", actions: ["ventilate"] },
        { level: "IV", raise: 200, actions: ["evacuate"] },
      ],
    },
    path: "rules.1.levels.1.level",
    message: "levels must rise in severity (IV < III < II < I); IV does not follow III",
  },
  {
    name: "first level with its own raise",
    patch: { ...TUNNEL_CO, levels: [{ level: "IV", raise: 30, actions: ["ventilate"] }] },
    path: "rules.1.levels.0.raise",
    message: "the first level raises at condition.raise; omit raise here",
  },
  {
    name: "emergency level names on an enforcement rule",
    patch: { levels: [{ level: "IV" }] },
    path: "rules.1.levels.0.level",
    message: "enforcement levels are warning, case; IV is not one",
  },
  {
    name: "an emergency rule without levels",
    patch: { ...TUNNEL_CO },
    path: "rules.1.levels",
    message: "an emergency rule needs levels",
  },
  {
    name: "unknown quantity for the kind",
    patch: { condition: { quantity: "pm10", aggregate: "mean" } },
    path: "rules.1.condition.quantity",
    message: 'unknown quantity "pm10" for kind noise; known: LAeq, LAmax',
  },
  {
    name: "a quantity missing from one of the scope's kinds",
    patch: {
      scope: { kinds: ["dust", "utility_tunnel"] },
      condition: { quantity: "pm10", aggregate: "mean", raise: 100, clear: 90 },
    },
    path: "rules.1.condition.quantity",
    message: 'unknown quantity "pm10" for kind utility_tunnel',
  },
  {
    name: "window shorter than 1 s",
    patch: { condition: { window: "500ms" } },
    path: "rules.1.condition.window",
    message: "500ms is shorter than the minimum 1s",
  },
  {
    name: "window as a bare number",
    patch: { condition: { window: 600 } },
    path: "rules.1.condition.window",
    message: "a bare number is ambiguous",
  },
  {
    name: "window longer than a day",
    patch: { condition: { window: "2d" } },
    path: "rules.1.condition.window",
    message: "2d is longer than the maximum 1d",
  },
  {
    name: "arithmetic mean of decibels",
    patch: { condition: { aggregate: "mean" } },
    path: "rules.1.condition.aggregate",
    message: "use energy_mean for LAeq",
  },
  {
    name: "energy mean of a concentration",
    patch: {
      scope: { kinds: ["dust"] },
      condition: { quantity: "pm10", raise: 150, clear: 150 },
    },
    path: "rules.1.condition.aggregate",
    message: "energy_mean applies to levels in dB(A); pm10 is in µg/m³",
  },
  {
    name: "a switch compared with a threshold",
    patch: {
      scope: { kinds: ["cooking_fume"] },
      condition: { quantity: "fanOn", aggregate: "latest", window: undefined },
    },
    path: "rules.1.condition.quantity",
    message: "fanOn is a switch (true/false); use a state condition",
  },
  {
    name: "a measured quantity in a state condition",
    patch: {
      scope: { kinds: ["cooking_fume"] },
      condition: {
        type: "state",
        quantity: undefined,
        aggregate: undefined,
        window: undefined,
        op: undefined,
        raise: undefined,
        clear: undefined,
        terms: [{ quantity: "oilFume", is: true }],
      },
    },
    path: "rules.1.condition.terms.0.quantity",
    message: "oilFume is a measured quantity, not a switch",
  },
  {
    name: "latest with a window",
    patch: { condition: { aggregate: "latest" } },
    path: "rules.1.condition.window",
    message: "aggregate latest uses the newest reading; remove window",
  },
  {
    name: "a mean without a window",
    patch: { condition: { window: undefined } },
    path: "rules.1.condition.window",
    message: 'aggregate energy_mean needs a window, e.g. "10m"',
  },
  {
    name: "N-of-M on rolling windows",
    patch: { condition: { nOfM: { n: 3, m: 3 } } },
    path: "rules.1.condition.nOfM",
    message: "nOfM counts complete clock intervals; set align: clock",
  },
  {
    name: "N greater than M",
    patch: { condition: { align: "clock", nOfM: { n: 4, m: 3 } } },
    path: "rules.1.condition.nOfM.n",
    message: "n must not exceed m",
  },
  {
    name: "a clock window that does not divide the day",
    patch: { condition: { align: "clock", window: "7m" } },
    path: "rules.1.condition.window",
    message: "a clock-aligned window must divide the day evenly; 7m does not",
  },
  {
    name: "a threshold beyond the plausible range",
    patch: { condition: { raise: 200, clear: 190 } },
    path: "rules.1.condition.raise",
    message: "200 is outside the plausible range 0..150 dB(A) of LAeq",
  },
  {
    name: "a reference to a limit the table does not define",
    patch: {
      condition: { raise: { from: "limits.nigth" }, clear: undefined },
      limits: { default: { night: 50 } },
    },
    path: "rules.1.condition.raise.from",
    message: "limits.nigth is not in the limits table (defined: night)",
  },
  {
    name: "a river-station level outside river stations",
    patch: {
      ...RIVER,
      scope: { kinds: ["water_level"] },
      levels: [{ level: "IV", actions: ["x"] }],
    },
    path: "rules.1.condition.raise.from",
    message: "site.levels.warning exists on river stations only",
  },
  {
    name: "a period that does not exist",
    patch: { schedule: { activeDuring: ["evening"] } },
    path: "rules.1.schedule.activeDuring.0",
    message: "unknown period evening; defined: day, night",
  },
  {
    name: "a per-period limit for a period that does not exist",
    patch: { condition: { raise: { byPeriod: { day: 60, evening: 55 } }, clear: undefined } },
    path: "rules.1.condition.raise.byPeriod.evening",
    message: "unknown period evening",
  },
  {
    name: "a period of no length",
    patch: { schedule: { periods: { business: { from: "10:00", to: "10:00" } } } },
    path: "rules.1.schedule.periods.business.to",
    message: "from and to must differ",
  },
  {
    name: "a time that is not HH:MM",
    patch: { schedule: { periods: { business: { from: "10:00", to: "24:00" } } } },
    path: "rules.1.schedule.periods.business.to",
    message: 'must be a time "HH:MM" between 00:00 and 23:59',
  },
  {
    name: "an unknown time zone",
    patch: { schedule: { timeZone: "Asia/Beijing" } },
    path: "rules.1.schedule.timeZone",
    message: 'unknown time zone "Asia/Beijing"',
  },
  {
    name: "a placeholder without a note",
    patch: { confidence: "placeholder" },
    path: "rules.1.note",
    message: "a placeholder rule must say in note what is unverified",
  },
  {
    name: "an unverified parameter that is not in the rule",
    patch: { unverified: [{ path: "condition.windw", note: "typo" }] },
    path: "rules.1.unverified.0.path",
    message: "condition.windw is not a field of this rule",
  },
  {
    name: "escalation on an enforcement rule",
    patch: { timing: { escalateAfter: "10m" } },
    path: "rules.1.timing.escalateAfter",
    message: "escalation on no acknowledgement applies to emergency rules only",
  },
  {
    name: "a quality condition filing enforcement cases",
    patch: {
      condition: {
        type: "quality",
        flags: ["fault"],
        quantity: undefined,
        aggregate: undefined,
        window: undefined,
        op: undefined,
        raise: undefined,
        clear: undefined,
      },
    },
    path: "rules.1.taskKind",
    message: "a quality condition is about the device itself and opens maintenance tasks only",
  },
  {
    name: "a segment subject outside tunnels",
    patch: { subject: "segment" },
    path: "rules.1.subject",
    message: "subject segment needs scope.siteTypes: [tunnel_segment]",
  },
  {
    name: "k-of-n voting on a single device",
    patch: { condition: { type: "k_of_n", k: 2 } },
    path: "rules.1.subject",
    message: "k_of_n votes across the devices of a site or segment",
  },
  {
    name: "neighbours as affected area outside a segment",
    patch: {
      ...TUNNEL_CO,
      subject: "site",
      levels: [{ level: "IV", actions: ["ventilate"], area: "subject_and_neighbours" }],
    },
    path: "rules.1.levels.0.area",
    message: "subject_and_neighbours needs subject: segment",
  },
  {
    name: "an unknown condition type",
    patch: { condition: { type: "thresh" } },
    path: "rules.1.condition.type",
    message: 'unknown condition type "thresh"; expected one of threshold, rate_of_rise',
  },
  {
    name: "an unknown field",
    patch: { severity: "high" },
    path: "rules.1",
    message: 'Unrecognized key: "severity"',
  },
  {
    name: "version 0",
    patch: { version: 0 },
    path: "rules.1.version",
    message: "version must be a whole number >= 1",
  },
  {
    name: "an id with capitals and spaces",
    patch: { id: "Noise Rule" },
    path: "rules.1.id",
    message: "rule id must be 1-64 characters of a-z 0-9 _ . -",
  },
  {
    name: "two rows for the same context",
    patch: {
      condition: { raise: { from: "limits.limit" }, clear: undefined },
      limits: {
        rows: [
          { when: { zoneClass: "2" }, values: { limit: 60 } },
          { when: { zoneClass: "2" }, values: { limit: 65 } },
        ],
      },
    },
    path: "rules.1.limits.rows.1.when",
    message: "same when as limits.rows.0",
  },
  {
    name: "an override of a limit the table does not define",
    patch: {
      condition: { raise: { from: "limits.limit" }, clear: undefined },
      limits: { default: { limit: 60 } },
      overrides: [{ at: "district", id: "Jinjiang", values: { limt: 55 } }],
    },
    path: "rules.1.overrides.0.values.limt",
    message: "limt is not in the limits table (defined: limit)",
  },
  {
    name: "a district override without the district",
    patch: {
      condition: { raise: { from: "limits.limit" }, clear: undefined },
      limits: { default: { limit: 60 } },
      overrides: [{ at: "district", values: { limit: 55 } }],
    },
    path: "rules.1.overrides.0.id",
    message: "a district override needs the district's id",
  },
  {
    name: "an override making clear cross raise",
    patch: {
      condition: { raise: { from: "limits.limit" }, clear: { from: "limits.back" } },
      limits: { default: { limit: 60, back: 55 } },
      overrides: [{ at: "site", id: "site-1", values: { limit: 50 } }],
    },
    path: "rules.1.condition.clear",
    message: "(55 vs 50 with the site site-1 override (overrides.0))",
  },
  {
    name: "a quality condition with the normal flag",
    patch: {
      taskKind: "maintenance",
      condition: {
        type: "quality",
        flags: ["normal"],
        quantity: undefined,
        aggregate: undefined,
        window: undefined,
        op: undefined,
        raise: undefined,
        clear: undefined,
      },
    },
    path: "rules.1.condition.flags",
    message: "normal is good data, not a quality problem",
  },
  {
    name: "a rise of zero",
    patch: {
      scope: { kinds: ["water_level"] },
      condition: {
        type: "rate_of_rise",
        quantity: "ponding",
        window: "5m",
        raise: 0,
        clear: undefined,
        aggregate: undefined,
        op: undefined,
      },
    },
    path: "rules.1.condition.raise",
    message: "a rise must be > 0 cm per window",
  },
];

describe("rule schema: nonsense is rejected with a precise message", () => {
  it("accepts the valid base rule", () => {
    expect(parseRuleText(FILE, ruleFile([VALID_RULE])).problems).toEqual([]);
  });

  for (const c of CASES) {
    it(`rejects ${c.name}`, () => {
      const problems = problemsOf(patched(VALID_RULE, { id: "test.bad", ...c.patch }));
      const hit = problems.find((p) => p.path === c.path && p.message.includes(c.message));
      expect(hit, JSON.stringify(problems, null, 2)).toBeDefined();
      expect(hit?.file).toBe(FILE);
      expect(hit?.line).toBeGreaterThan(1);
      // The first rule is valid and nothing is blamed on it.
      expect(problems.filter((p) => p.path.startsWith("rules.0"))).toEqual([]);
    });
  }

  it("reports every problem of every rule, not just the first", () => {
    const text = ruleFile([
      patched(VALID_RULE, { id: "a.one", condition: { clear: 70 } }),
      patched(VALID_RULE, { id: "a.two", condition: { quantity: "pm10", aggregate: "max" } }),
      patched(VALID_RULE, { id: "a.three", version: 0 }),
    ]);
    const paths = parseRuleText(FILE, text).problems.map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "rules.0.condition.clear",
        "rules.1.condition.quantity",
        "rules.2.version",
      ]),
    );
  });

  it("points at the line and column of the offending field", () => {
    const text = [
      "rules:",
      "  - id: test.lines",
      "    version: 1",
      "    title: Lines",
      "    clause: { standard: GB 3096-2008, section: '§5' }",
      "    confidence: verified",
      "    taskKind: enforcement",
      "    scope: { kinds: [noise] }",
      "    subject: device",
      "    condition:",
      "      type: threshold",
      "      quantity: LAeq",
      "      aggregate: energy_mean",
      "      window: 10m",
      "      op: '>'",
      "      raise: 60",
      "      clear: 65",
      "",
    ].join("\n");
    const [problem] = parseRuleText(FILE, text).problems;
    expect(problem).toMatchObject({
      file: FILE,
      path: "rules.0.condition.clear",
      line: 17,
      column: 7,
    });
  });

  it("reports YAML syntax errors with line and column", () => {
    const problems = parseRuleText(FILE, "rules:\n  - id: a\n    title: [unclosed\n").problems;
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]?.file).toBe(FILE);
    expect(problems[0]?.path).toMatch(/^line \d+, column \d+$/);
    expect(problems[0]?.line).toBeGreaterThan(0);
  });

  it("reports duplicate keys as a YAML error", () => {
    const problems = parseRuleText(FILE, "rules: []\nrules: []\n").problems;
    expect(problems[0]?.message).toMatch(/unique/i);
  });

  it("refuses a file that is not a mapping", () => {
    const problems = parseRuleText(FILE, "- a\n- b\n").problems;
    expect(problems).toEqual([
      expect.objectContaining({
        path: "(root)",
        message: expect.stringContaining("mapping") as unknown,
      }),
    ]);
  });
});
