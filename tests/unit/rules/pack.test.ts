import { describe, expect, it } from "vitest";
import { QualityFlag } from "../../../contracts/index.js";
import { DEFAULT_PERIODS, type Rule } from "../../../contracts/model/rules.js";
import { valueForPeriod } from "../../../rules/engine/periods.js";
import {
  type ResolutionContext,
  resolveLimits,
  resolveValue,
  type StationLevels,
} from "../../../rules/engine/resolve.js";
import { formatRuleProblems, loadRules } from "../../../rules/load.js";

function loadPack() {
  const result = loadRules();
  if (!result.ok) throw new Error(formatRuleProblems(result.problems));
  return result.rules;
}

const LOADED = loadPack();
const pack = (): readonly Rule[] => LOADED.map((r) => r.rule);
const packFiles = () => new Map(LOADED.map((r) => [r.rule.id, r.file]));

const byId = (id: string): Rule => {
  const rule = pack().find((r) => r.id === id);
  if (rule === undefined) throw new Error(`no rule ${id} in the pack`);
  return rule;
};

/**
 * Every default rule: its file, the standard it cites, its task kind and confidence. Adding a
 * rule to the pack means adding it here (and to the numbers below).
 */
const CATALOGUE: Record<
  string,
  { file: string; standard: string; taskKind: string; confidence: string }
> = {
  "noise.area.laeq": {
    file: "noise.yaml",
    standard: "GB 3096-2008",
    taskKind: "environmental",
    confidence: "verified",
  },
  "noise.area.night-lamax": {
    file: "noise.yaml",
    standard: "GB 3096-2008",
    taskKind: "environmental",
    confidence: "verified",
  },
  "noise.construction.laeq": {
    file: "noise.yaml",
    standard: "GB 12523-2011",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "noise.construction.night-lamax": {
    file: "noise.yaml",
    standard: "GB 12523-2011",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "noise.construction.night-works": {
    file: "noise.yaml",
    standard: "Noise Pollution Prevention Law 2021",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "noise.commercial.laeq": {
    file: "noise.yaml",
    standard: "GB 22337-2008",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "dust.pm10.default": {
    file: "dust.yaml",
    standard: "Wuhan construction dust practice 2017",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "dust.pm10.hebei": {
    file: "dust.yaml",
    standard: "DB13/2934-2019",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "dust.tsp.shaanxi": {
    file: "dust.yaml",
    standard: "DB61/1078-2017",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "dust.pm10.sichuan": {
    file: "dust.yaml",
    standard: "DB51/2682-2020",
    taskKind: "enforcement",
    confidence: "placeholder",
  },
  "cooking-fume.oil-fume": {
    file: "cooking-fume.yaml",
    standard: "GB 18483-2001",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "cooking-fume.purifier-off": {
    file: "cooking-fume.yaml",
    standard: "GB 18483-2001; DB11/1488-2018",
    taskKind: "enforcement",
    confidence: "verified",
  },
  "water.river.stage": {
    file: "water.yaml",
    standard: "Water ministry flood warning-signal rules",
    taskKind: "emergency",
    confidence: "verified",
  },
  "water.underpass.ponding": {
    file: "water.yaml",
    standard: "City practice (Shanghai, Shenyang)",
    taskKind: "emergency",
    confidence: "verified",
  },
  "water.ponding.rate-of-rise": {
    file: "water.yaml",
    standard: "none (no standard sets a rate of rise)",
    taskKind: "emergency",
    confidence: "placeholder",
  },
  "tunnel.ch4": {
    file: "utility-tunnel.yaml",
    standard: "GB 50838-2015",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.o2-low": {
    file: "utility-tunnel.yaml",
    standard: "GB 51354-2019; instrument practice",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.o2-high": {
    file: "utility-tunnel.yaml",
    standard: "GB 51354-2019; instrument practice",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.h2s": {
    file: "utility-tunnel.yaml",
    standard: "GB 51354-2019",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.co": {
    file: "utility-tunnel.yaml",
    standard: "GBZ 2.1; instrument practice",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.temperature": {
    file: "utility-tunnel.yaml",
    standard: "GB 51354-2019",
    taskKind: "emergency",
    confidence: "verified",
  },
  "tunnel.sump": {
    file: "utility-tunnel.yaml",
    standard: "none (no standard sets a sump level)",
    taskKind: "emergency",
    confidence: "placeholder",
  },
  "device.deadman": {
    file: "devices.yaml",
    standard: "citywatch design (no external standard)",
    taskKind: "maintenance",
    confidence: "placeholder",
  },
  "device.quality-flag": {
    file: "devices.yaml",
    standard: "HJ 212-2017; Administrative Penalty Law 2021",
    taskKind: "maintenance",
    confidence: "verified",
  },
  "device.calibration-expired": {
    file: "devices.yaml",
    standard: "Administrative Penalty Law 2021",
    taskKind: "maintenance",
    confidence: "verified",
  },
};

const STATION: StationLevels = { warning: 30, guaranteed: 32, historicalMax: 34.5 };

/** The thresholds a rule applies in a context: condition.raise, then each further level's raise. */
function thresholds(
  rule: Rule,
  place: ResolutionContext,
  period?: string,
): Array<number | undefined> {
  const limits = resolveLimits(rule, place);
  const c = rule.condition;
  if (c.type !== "threshold" && c.type !== "k_of_n" && c.type !== "rate_of_rise") return [];
  const first = valueForPeriod(c.raise, period === undefined ? [] : [period]);
  const out = [first === undefined ? undefined : resolveValue(first, limits, STATION)];
  for (const level of rule.levels?.slice(1) ?? []) {
    out.push(level.raise === undefined ? undefined : resolveValue(level.raise, limits, STATION));
  }
  return out;
}

/** Numbers from docs/standards.md, per rule, context and period. */
const NUMBERS: ReadonlyArray<{
  id: string;
  place?: ResolutionContext;
  period?: string;
  expect: number[];
}> = [
  // GB 3096-2008 §5, Table 1: LAeq day / night per zone class.
  ...(
    [
      ["0", 50, 40],
      ["1", 55, 45],
      ["2", 60, 50],
      ["3", 65, 55],
      ["4a", 70, 55],
      ["4b", 70, 60],
    ] as const
  ).flatMap(([zoneClass, day, night]) => [
    { id: "noise.area.laeq", place: { zoneClass }, period: "day", expect: [day] },
    { id: "noise.area.laeq", place: { zoneClass }, period: "night", expect: [night] },
    // GB 3096-2008: night LAmax <= night limit + 15.
    { id: "noise.area.night-lamax", place: { zoneClass }, expect: [night + 15] },
  ]),
  // GB 22337-2008 Table 1 (class 4 covers 4a and 4b).
  ...(
    [
      ["0", 50, 40],
      ["1", 55, 45],
      ["2", 60, 50],
      ["3", 65, 55],
      ["4a", 70, 55],
      ["4b", 70, 55],
    ] as const
  ).flatMap(([zoneClass, day, night]) => [
    { id: "noise.commercial.laeq", place: { zoneClass }, period: "day", expect: [day] },
    { id: "noise.commercial.laeq", place: { zoneClass }, period: "night", expect: [night] },
  ]),
  // GB 12523-2011 Table 1 and note 1.
  { id: "noise.construction.laeq", period: "day", expect: [70] },
  { id: "noise.construction.laeq", period: "night", expect: [55] },
  { id: "noise.construction.night-lamax", expect: [70] },
  { id: "noise.construction.night-works", expect: [55] },
  // Construction dust.
  { id: "dust.pm10.default", expect: [150, 200] },
  { id: "dust.pm10.hebei", expect: [80] },
  { id: "dust.tsp.shaanxi", place: { phase: "earthwork" }, expect: [800] },
  { id: "dust.tsp.shaanxi", place: { phase: "structure" }, expect: [700] },
  { id: "dust.tsp.shaanxi", place: { phase: "decoration" }, expect: [700] },
  { id: "dust.pm10.sichuan", place: { phase: "earthwork" }, expect: [200] },
  // Cooking fume: GB 18483-2001 Table 2; stricter local standards.
  { id: "cooking-fume.oil-fume", expect: [2.0] },
  { id: "cooking-fume.oil-fume", place: { region: "beijing" }, expect: [1.0] },
  { id: "cooking-fume.oil-fume", place: { region: "shanghai" }, expect: [1.0] },
  { id: "cooking-fume.oil-fume", place: { region: "chongqing" }, expect: [1.0] },
  { id: "cooking-fume.oil-fume", place: { region: "guangzhou" }, expect: [2.0] },
  // Water: blue near warning (placeholder 0.5 m below), yellow warning, orange guaranteed, red historical.
  { id: "water.river.stage", expect: [29.5, 30, 32, 34.5] },
  { id: "water.underpass.ponding", expect: [15, 25] },
  { id: "water.underpass.ponding", place: { region: "chengdu" }, expect: [15, 30] },
  { id: "water.ponding.rate-of-rise", expect: [5] },
  // Utility tunnel.
  { id: "tunnel.ch4", expect: [20, 25] },
  { id: "tunnel.o2-low", expect: [19.5] },
  { id: "tunnel.o2-high", expect: [23.5] },
  { id: "tunnel.h2s", expect: [10] },
  { id: "tunnel.co", expect: [30, 200] },
  { id: "tunnel.temperature", expect: [40] },
  { id: "tunnel.sump", expect: [50] },
];

describe("default rule pack", () => {
  it("loads with zero problems", () => {
    const result = loadRules();
    expect(result.ok ? [] : formatRuleProblems(result.problems)).toEqual([]);
  });

  it("holds exactly the catalogued rules, each in its domain's file, citing its standard", () => {
    const files = packFiles();
    const rules = pack();
    expect(rules.map((r) => r.id).sort()).toEqual(Object.keys(CATALOGUE).sort());
    for (const rule of rules) {
      const entry = CATALOGUE[rule.id];
      expect({
        id: rule.id,
        file: files.get(rule.id),
        standard: rule.clause.standard,
        taskKind: rule.taskKind,
        confidence: rule.confidence,
      }).toEqual({
        id: rule.id,
        file: `pack/${entry?.file}`,
        standard: entry?.standard,
        taskKind: entry?.taskKind,
        confidence: entry?.confidence,
      });
      expect(rule.clause.section.length, rule.id).toBeGreaterThan(0);
      // The area rules are version 2: environmental-quality alerts, no longer enforcement cases.
      expect(rule.version, rule.id).toBe(rule.id.startsWith("noise.area.") ? 2 : 1);
    }
  });

  it("marks every placeholder by its confidence and a note, not in the title; enforcement ones disabled", () => {
    const placeholders = pack().filter((r) => r.confidence === "placeholder");
    expect(placeholders.map((r) => [r.id, r.enabled])).toEqual([
      ["device.deadman", true],
      ["dust.pm10.sichuan", false],
      ["tunnel.sump", true],
      ["water.ponding.rate-of-rise", true],
    ]);
    for (const rule of placeholders) {
      expect(rule.note, rule.id).toMatch(/placeholder|not retrieved|No standard/i);
      expect(rule.title, rule.id).not.toMatch(/PLACEHOLDER/i);
      if (rule.taskKind === "enforcement") expect(rule.enabled, rule.id).toBe(false);
    }
    for (const rule of pack().filter((r) => r.confidence === "verified")) {
      expect(rule.enabled, rule.id).toBe(true);
      expect(rule.title, rule.id).not.toMatch(/PLACEHOLDER/);
    }
  });

  it("names the unverified parameters of verified rules (placeholders of docs/standards.md and product defaults)", () => {
    const unverified = Object.fromEntries(
      pack().map((r) => [r.id, r.unverified.map((u) => u.path)]),
    );
    expect(unverified).toMatchObject({
      "noise.construction.laeq": ["condition.window"],
      "noise.construction.night-works": ["condition.raise", "condition.window"],
      "cooking-fume.oil-fume": ["condition.nOfM", "schedule.periods.business"],
      "cooking-fume.purifier-off": ["condition.for"],
      "water.river.stage": ["condition.raise"],
      "tunnel.ch4": ["levels"],
    });
  });

  for (const n of NUMBERS) {
    const where = [n.place ? JSON.stringify(n.place) : "", n.period ?? ""]
      .filter(Boolean)
      .join(" ");
    it(`${n.id} ${where} raises at ${n.expect.join(" / ")}`, () => {
      expect(thresholds(byId(n.id), n.place ?? {}, n.period)).toEqual(n.expect);
    });
  }

  it("covers every numeric pack rule in the numbers table", () => {
    const numeric = pack().filter((r) =>
      ["threshold", "k_of_n", "rate_of_rise"].includes(r.condition.type),
    );
    const covered = new Set(NUMBERS.map((n) => n.id));
    expect(numeric.map((r) => r.id).filter((id) => !covered.has(id))).toEqual([]);
  });

  it("uses the standards' windows, comparisons and schedules", () => {
    const c = (id: string) => byId(id).condition;
    expect(c("noise.area.laeq")).toMatchObject({
      aggregate: "energy_mean",
      op: ">",
      window: 3_600_000,
      align: "clock",
    });
    expect(c("noise.construction.laeq")).toMatchObject({
      aggregate: "energy_mean",
      window: 1_200_000,
    });
    expect(c("noise.commercial.laeq")).toMatchObject({ aggregate: "energy_mean", window: 60_000 });
    expect(c("noise.area.night-lamax")).toMatchObject({ quantity: "LAmax", aggregate: "latest" });
    expect(byId("noise.area.night-lamax").schedule.activeDuring).toEqual(["night"]);
    expect(byId("noise.construction.night-works").permitExemption).toEqual({
      types: ["night_works"],
    });
    expect(c("dust.pm10.default")).toMatchObject({
      aggregate: "mean",
      window: 3_600_000,
      clear: { from: "limits.resume" },
    });
    expect(resolveLimits(byId("dust.pm10.default"), {}).values.resume).toBe(150);
    expect(c("dust.pm10.hebei")).toMatchObject({ exceedances: { allowedPerDay: 2 } });
    expect(c("cooking-fume.oil-fume")).toMatchObject({
      window: 600_000,
      align: "clock",
      nOfM: { n: 3, m: 3 },
    });
    expect(byId("cooking-fume.oil-fume").schedule.activeDuring).toEqual(["business"]);
    expect(c("cooking-fume.purifier-off")).toMatchObject({
      type: "state",
      match: "all",
      terms: [
        { quantity: "fanOn", is: true },
        { quantity: "purifierOn", is: false },
      ],
    });
    expect(c("tunnel.ch4")).toMatchObject({ type: "k_of_n", k: 1, op: ">=" });
    expect(c("tunnel.o2-low")).toMatchObject({ op: "<" });
    expect(c("tunnel.h2s")).toMatchObject({ op: ">" });
    expect(byId("tunnel.ch4").levels?.map((l) => l.area)).toEqual([
      "subject_and_neighbours",
      "subject_and_neighbours",
    ]);
    expect(byId("tunnel.ch4").scope.compartments).toEqual(["gas"]);
    expect(byId("water.river.stage").levels?.map((l) => l.level)).toEqual(["IV", "III", "II", "I"]);
    expect(byId("water.underpass.ponding").levels?.[1]?.actions).toContain(
      "Close the road through the underpass",
    );
    expect(c("device.deadman")).toEqual({ type: "deadman", factor: 3 });
    expect(c("device.quality-flag")).toMatchObject({
      flags: ["fault", "calibration", "maintenance"],
    });
    expect(c("device.calibration-expired")).toMatchObject({ calibrationExpired: true });
  });

  it("uses day 06:00-22:00 and night 22:00-06:00 in Asia/Shanghai by default", () => {
    for (const rule of pack()) {
      expect(rule.schedule.timeZone, rule.id).toBe("Asia/Shanghai");
      expect(rule.schedule.periods.day, rule.id).toEqual(DEFAULT_PERIODS.day);
      expect(rule.schedule.periods.night, rule.id).toEqual(DEFAULT_PERIODS.night);
    }
    expect(DEFAULT_PERIODS).toEqual({
      day: { from: "06:00", to: "22:00", holidays: "include" },
      night: { from: "22:00", to: "06:00", holidays: "include" },
    });
  });

  it("gates enforcement on good data and keeps emergencies fail-safe", () => {
    for (const rule of pack()) {
      const gate = rule.qualityGate;
      // Environmental-quality alerts judge by the same evidence rules as enforcement cases.
      if (rule.taskKind === "enforcement" || rule.taskKind === "environmental") {
        expect(gate.suppressFlags, rule.id).toEqual(
          QualityFlag.options.filter((f) => f !== "normal"),
        );
        expect(gate.suppressOnExpiredCalibration, rule.id).toBe(true);
      } else if (rule.taskKind === "emergency") {
        expect(gate, rule.id).toEqual({
          suppressFlags: ["maintenance", "calibration"],
          suppressOnExpiredCalibration: false,
        });
      } else {
        expect(gate, rule.id).toEqual({ suppressFlags: [], suppressOnExpiredCalibration: false });
      }
    }
  });

  it("gives every emergency level an action, and enforcement evidence a window", () => {
    for (const rule of pack()) {
      if (rule.taskKind === "emergency") {
        for (const level of rule.levels ?? [])
          expect(level.actions.length, `${rule.id} ${level.level}`).toBeGreaterThan(0);
      }
    }
    expect(byId("noise.area.laeq").evidence.window).toBe(3_600_000);
    expect(byId("cooking-fume.oil-fume").evidence).toMatchObject({
      window: 1_800_000,
      statement: expect.stringContaining("lead for on-site inspection") as unknown,
    });
    expect(byId("dust.pm10.hebei").evidence.window).toBe(86_400_000);
    expect(byId("noise.area.night-lamax").evidence.window).toBe(0);
  });
});
