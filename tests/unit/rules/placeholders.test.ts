import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { type Rule, RuleOverride } from "../../../contracts/model/rules.js";
import { unverifiedOf } from "../../../contracts/model/rule-confidence.js";
import { build } from "../../../rules/app.js";
import {
  logPlaceholders,
  placeholderGauge,
  placeholderHealth,
  placeholderPlace,
  placeholderReport,
  rulePlaceholders,
} from "../../../rules/placeholders.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { PACK, packRule, site } from "./engine/harness.js";

/** The pack as deployed in `region`, with no sites registered. */
const listed = (region: string, rules: readonly Rule[] = PACK) =>
  rulePlaceholders(rules, placeholderPlace(region));

const byId = (region: string, rules?: readonly Rule[]) =>
  Object.fromEntries(listed(region, rules).map((p) => [p.rule, p]));

/** The pack with `overrides` added to rule `id` (as a local file's top-level overrides would be). */
function withOverrides(id: string, ...overrides: Array<Record<string, unknown>>): Rule[] {
  return PACK.map((r) =>
    r.id === id
      ? { ...r, overrides: [...r.overrides, ...overrides.map((o) => RuleOverride.parse(o))] }
      : r,
  );
}

/** The placeholders (confidence: placeholder) and the verified rules with unverified parts. */
const DEFAULT_REGION: Record<string, [state: string, paths: string[]]> = {
  "cooking-fume.oil-fume": ["unverified", ["condition.nOfM", "schedule.periods.business"]],
  "cooking-fume.purifier-off": ["unverified", ["condition.for"]],
  "device.deadman": ["unverified", ["condition.factor"]],
  "noise.area.laeq": ["unverified", ["condition.window"]],
  "noise.construction.laeq": ["unverified", ["condition.window"]],
  "noise.construction.night-works": ["unverified", ["condition.raise", "condition.window"]],
  "tunnel.ch4": ["unverified", ["levels"]],
  "tunnel.o2-low": ["unverified", ["levels"]],
  "tunnel.o2-high": ["unverified", ["levels"]],
  "tunnel.h2s": ["unverified", ["levels"]],
  "tunnel.co": ["unverified", ["levels"]],
  "tunnel.temperature": ["unverified", ["levels"]],
  "tunnel.sump": ["unverified", ["limits"]],
  "water.river.stage": ["unverified", ["condition.raise"]],
  "water.underpass.ponding": ["unverified", ["levels"]],
  "water.ponding.rate-of-rise": ["unverified", ["limits"]],
};

const summary = (region: string, rules?: readonly Rule[]) =>
  Object.fromEntries(
    listed(region, rules).map((p) => [p.rule, [p.state, p.unverified.map((u) => u.path)]]),
  );

describe("unverifiedOf", () => {
  it("is the rule's unverified list, or for a placeholder that lists none what it stands for, with its note", () => {
    expect(unverifiedOf(packRule("noise.construction.night-works")).map((u) => u.path)).toEqual([
      "condition.raise",
      "condition.window",
    ]);
    expect(unverifiedOf(packRule("dust.pm10.default"))).toEqual([]);
    const sichuan = packRule("dust.pm10.sichuan");
    expect(unverifiedOf(sichuan)).toEqual([{ path: "limits", note: sichuan.note }]);
    expect(unverifiedOf(packRule("device.deadman"))).toEqual([
      { path: "condition.factor", note: packRule("device.deadman").note },
    ]);
  });
});

describe("rule placeholders of the pack by region", () => {
  it("region default: every placeholder and unverified number in force, none of another region's", () => {
    expect(summary("default")).toEqual(DEFAULT_REGION);
    // Sichuan's dust rule and Chengdu's ponding row are not the default region's.
    expect(byId("default")["dust.pm10.sichuan"]).toBeUndefined();
    expect(byId("default")["dust.tsp.shaanxi"]).toBeUndefined();
  });

  it("region sichuan: the construction dust placeholder is listed disabled, with what to set and how", () => {
    expect(summary("sichuan")).toEqual({
      ...DEFAULT_REGION,
      "dust.pm10.sichuan": ["disabled", ["limits"]],
    });
    const dust = byId("sichuan")["dust.pm10.sichuan"];
    expect(dust).toMatchObject({
      title: expect.not.stringMatching(/PLACEHOLDER/i) as unknown,
      confidence: "placeholder",
      taskKind: "enforcement",
      standard: "DB51/2682-2020",
      disabled: true,
      dustRegions: ["sichuan"],
      unverified: [{ path: "limits", note: packRule("dust.pm10.sichuan").note, by: "override" }],
    });
    for (const phase of ["earthwork", "foundation", "structure", "decoration"]) {
      expect(dust?.set).toContain(
        `{ rule: dust.pm10.sichuan, at: city, when: { phase: ${phase} }, values: { limit: … }`,
      );
    }
    expect(dust?.set).toContain("from DB51/2682-2020");
    expect(dust?.set).toMatch(
      /then switch it on: \{ rule: dust.pm10.sichuan, at: city, enabled: true \}$/,
    );
  });

  it("a region's own rows count only there (Chengdu's 30 cm close level, Shaanxi's foundation row)", () => {
    expect(byId("chengdu")["water.underpass.ponding"]?.unverified.map((u) => u.path)).toEqual([
      "levels",
      "limits.rows.0",
    ]);
    const shaanxi = byId("shaanxi")["dust.tsp.shaanxi"];
    expect(shaanxi?.state).toBe("unverified");
    expect(shaanxi?.set).toContain("when: { phase: foundation }, values: { limit: … }");
    expect(shaanxi?.set).not.toContain("phase: earthwork");
  });

  it("takes the dust regions of registered construction sites as well as the region", () => {
    const place = placeholderPlace("default", [
      site("construction_site", { dustRegion: "sichuan" }),
      site("construction_site"),
    ]);
    expect(place).toEqual({ region: "default", dustRegions: ["default", "sichuan"] });
    expect(rulePlaceholders(PACK, place).map((p) => p.rule)).toContain("dust.pm10.sichuan");
  });

  it("gives the wording of what only a local rule can replace, in one step", () => {
    expect(byId("default")["noise.construction.night-works"]?.set).toBe(
      "set condition.raise, condition.window from Noise Pollution Prevention Law 2021 (or the city's local standard): not overridable, so switch the rule off ({ rule: noise.construction.night-works, at: city, enabled: false }) and define a local rule under a new id (docs/rules.md, Overrides)",
    );
    expect(byId("default")["device.deadman"]?.set).toContain(
      "from the city's own value (no standard sets it)",
    );
  });
});

describe("rule placeholders after the operator's overrides", () => {
  const sichuanDust = (...overrides: Array<Record<string, unknown>>) =>
    byId("sichuan", withOverrides("dust.pm10.sichuan", ...overrides))["dust.pm10.sichuan"];
  const clause = { standard: "DB51/2682-2020", section: "Table 1" };
  const phases = (limit: number) =>
    ["earthwork", "foundation", "structure", "decoration"].map((phase) => ({
      at: "city",
      when: { phase },
      values: { limit },
      clause,
    }));

  it("a number set by a city override everywhere the table supplies it is no longer listed", () => {
    const rules = withOverrides("water.ponding.rate-of-rise", {
      at: "city",
      values: { rise: 8 },
      clause: { standard: "City flood plan 2026", section: "§4" },
    });
    expect(byId("default", rules)["water.ponding.rate-of-rise"]).toBeUndefined();
  });

  it("a district or site override sets the number only there: still listed", () => {
    const rules = withOverrides(
      "water.ponding.rate-of-rise",
      { at: "district", id: "pudong", values: { rise: 8 } },
      { at: "site", id: "up-1", values: { rise: 8 } },
    );
    expect(byId("default", rules)["water.ponding.rate-of-rise"]?.state).toBe("unverified");
  });

  it("sichuan dust: numbers without switching on stay disabled; on without numbers runs unverified; both: gone", () => {
    expect(sichuanDust(...phases(80))).toMatchObject({ state: "disabled", unverified: [] });
    expect(sichuanDust(...phases(80))?.set).toBe(
      "then switch it on: { rule: dust.pm10.sichuan, at: city, enabled: true }",
    );
    expect(sichuanDust({ at: "city", enabled: true })).toMatchObject({
      state: "unverified",
      disabled: false,
      unverified: [{ path: "limits" }],
    });
    // Three phases set: the fourth is still the stand-in.
    const partial = sichuanDust(...phases(80).slice(0, 3), { at: "city", enabled: true });
    expect(partial?.set).toContain("when: { phase: decoration }");
    expect(partial?.set).not.toContain("when: { phase: earthwork }");
    expect(sichuanDust(...phases(80), { at: "city", enabled: true })).toBeUndefined();
  });

  it("a rule shipped on that a city override switches off is the operator's decision: not listed", () => {
    const rules = withOverrides("device.deadman", { at: "city", enabled: false });
    expect(byId("default", rules)["device.deadman"]).toBeUndefined();
    // A placeholder shipped off stays listed however often it is switched off.
    const off = withOverrides("dust.pm10.sichuan", { at: "city", enabled: false });
    expect(byId("sichuan", off)["dust.pm10.sichuan"]?.state).toBe("disabled");
  });

  it("a city override of the business period settles that part; nOfM stays", () => {
    const rules = withOverrides("cooking-fume.oil-fume", {
      at: "city",
      periods: { business: { from: "09:00", to: "23:00" } },
    });
    expect(byId("default", rules)["cooking-fume.oil-fume"]?.unverified.map((u) => u.path)).toEqual([
      "condition.nOfM",
    ]);
  });
});

/** pino lines written to memory. */
function memoryLog() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "info" }, stream), lines };
}

describe("reporting the placeholders", () => {
  it("one warn line per rule, a /healthz detail and a gauge per rule and state", async () => {
    const report = placeholderReport(PACK, placeholderPlace("sichuan"));
    const { log, lines } = memoryLog();
    logPlaceholders(log, report);
    expect(lines).toHaveLength(Object.keys(DEFAULT_REGION).length + 1);
    expect(lines.every((l) => l["level"] === 40)).toBe(true);
    expect(lines.find((l) => l["rule"] === "dust.pm10.sichuan")).toMatchObject({
      msg: "rule dust.pm10.sichuan is a disabled placeholder in region sichuan: it raises nothing until the operator sets it",
      region: "sichuan",
      state: "disabled",
      disabled: true,
      unverified: [{ path: "limits", note: packRule("dust.pm10.sichuan").note }],
      set: expect.stringContaining("enabled: true") as unknown,
    });
    expect(lines.find((l) => l["rule"] === "tunnel.sump")?.["msg"]).toBe(
      "rule tunnel.sump runs on unverified numbers in region sichuan: limits",
    );

    expect(placeholderHealth(report).placeholders).toContainEqual({
      rule: "dust.pm10.sichuan",
      title: packRule("dust.pm10.sichuan").title,
      state: "disabled",
      unverified: ["limits"],
      set: expect.stringContaining("DB51/2682-2020") as unknown,
    });

    const registry = new Registry();
    placeholderGauge(registry, () => report);
    const text = await registry.metrics();
    expect(text).toMatch(
      /^citywatch_rules_placeholders\{rule="dust.pm10.sichuan",state="disabled"\} 1$/m,
    );
    expect(text).toMatch(
      /^citywatch_rules_placeholders\{rule="tunnel.sump",state="unverified"\} 1$/m,
    );
    expect(text).not.toMatch(/rule="dust.pm10.default"/);
  });
});

describe("the rules component at start", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await removeTempDir(dir);
    dir = undefined;
  });

  const component = async (region: string, enabled = true) => {
    dir = await makeTempDir("cw-placeholders-");
    const { log, lines } = memoryLog();
    const metricsRegistry = new Registry();
    const rules = build({
      log,
      config: { enabled, defaultPack: true, directories: [], region, tickMs: 5_000 },
      dataDir: dir,
      registry: { devices: () => [], sites: () => [] },
      sink: { handleAlarm: () => undefined, onAcknowledged: () => () => undefined },
      now: Date.now,
      metricsRegistry,
      backfill: () => Promise.resolve([]),
    });
    return { rules, lines, metricsRegistry };
  };

  it("region sichuan: warns of the disabled dust placeholder, reports it and counts it", async () => {
    const { rules, lines, metricsRegistry } = await component("sichuan");
    expect(rules.placeholders().rules).toEqual([]); // found at start
    rules.start();
    try {
      const warned = lines.filter((l) => l["level"] === 40).map((l) => l["rule"]);
      expect(warned).toContain("dust.pm10.sichuan");
      expect(lines.find((l) => l["rule"] === "dust.pm10.sichuan")?.["module"]).toBe("rules");
      expect(rules.placeholders()).toMatchObject({ region: "sichuan" });
      expect(rules.placeholders().rules.map((p) => p.rule)).toEqual(warned);
      expect(await metricsRegistry.metrics()).toMatch(
        /^citywatch_rules_placeholders\{rule="dust.pm10.sichuan",state="disabled"\} 1$/m,
      );
    } finally {
      await rules.stop();
    }
  });

  it("rules switched off: no rule runs, so nothing is warned or counted", async () => {
    const { rules, lines, metricsRegistry } = await component("sichuan", false);
    rules.start();
    await rules.stop();
    expect(lines.filter((l) => l["level"] === 40)).toEqual([]);
    expect(await metricsRegistry.metrics()).not.toMatch(/^citywatch_rules_placeholders\{/m);
  });
});
