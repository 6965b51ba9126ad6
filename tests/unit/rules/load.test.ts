import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveLimits } from "../../../rules/engine/resolve.js";
import { formatRuleProblems, loadRules } from "../../../rules/load.js";
import { RuleSet } from "../../../rules/rule-set.js";
import { patched, ruleDirectory, ruleFile, VALID_RULE } from "./fixtures.js";

const rule = (id: string, patch: Record<string, unknown> = {}) =>
  patched(VALID_RULE, { id, ...patch });

describe("loading rule directories", () => {
  it("loads every *.yaml file of a directory after the default pack", () => {
    const dir = ruleDirectory({
      "a.yaml": ruleFile([rule("local.a")]),
      "b.yml": ruleFile([rule("local.b")]),
      "notes.txt": "not a rule file",
    });
    const result = loadRules({ directories: [dir] });
    if (!result.ok) throw new Error(formatRuleProblems(result.problems));
    const ids = result.rules.map((r) => r.rule.id);
    expect(ids).toContain("noise.area.laeq");
    expect(ids.slice(-2)).toEqual(["local.a", "local.b"]);
    expect(result.rules.at(-1)?.file).toBe("rules/b.yml");
    expect(Object.isFrozen(result.rules.at(-1)?.rule.condition)).toBe(true);
  });

  it("names file and path for every problem in every file", () => {
    const dir = ruleDirectory({
      "noise.yaml": ruleFile([rule("local.ok"), rule("local.bad", { condition: { clear: 65 } })]),
      "dust.yaml": ruleFile([rule("local.dust", { scope: { kinds: ["dust"] } })]),
      "broken.yaml": "rules:\n  - id: x\n   bad indentation: [\n",
    });
    const result = loadRules({ directories: [dir], defaultPack: false });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const lines = formatRuleProblems(result.problems);
    expect(lines).toContain(
      "rules/noise.yaml: rules.1.condition.clear: clear 65 must be at or below raise 60",
    );
    expect(lines).toContain(
      'rules/dust.yaml: rules.0.condition.quantity: unknown quantity "LAeq" for kind dust',
    );
    expect(
      result.problems.some((p) => p.file === "rules/broken.yaml" && /^line \d+/.test(p.path)),
    ).toBe(true);
  });

  it("catches duplicate rule ids across files, naming both places", () => {
    const dir = ruleDirectory({
      "a.yaml": ruleFile([rule("local.same")]),
      "b.yaml": ruleFile([rule("local.other"), rule("local.same")]),
    });
    const result = loadRules({ directories: [dir], defaultPack: false });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems).toEqual([
      expect.objectContaining({
        file: "rules/b.yaml",
        path: "rules.1.id",
        message: "duplicate rule id local.same; first defined in rules/a.yaml at rules.0",
      }),
    ]);
  });

  it("catches a local rule reusing a pack rule's id", () => {
    const dir = ruleDirectory({ "mine.yaml": ruleFile([rule("noise.area.laeq")]) });
    const result = loadRules({ directories: [dir] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems[0]?.message).toBe(
      "duplicate rule id noise.area.laeq; first defined in pack/noise.yaml at rules.0",
    );
  });

  it("reports a directory that cannot be read", () => {
    const result = loadRules({ directories: ["/nonexistent/citywatch-rules"], defaultPack: false });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems[0]).toMatchObject({ file: "citywatch-rules", path: "(directory)" });
  });

  it("attaches file-level overrides to pack rules, stamped with their file", () => {
    const dir = ruleDirectory({
      "chengdu.yaml": ruleFile(
        [],
        [
          {
            rule: "noise.construction.laeq",
            at: "district",
            id: "Wuhou",
            values: { night: 50 },
            clause: { standard: "Wuhou district notice 2024", section: "night works" },
          },
        ],
      ),
    });
    const result = loadRules({ directories: [dir] });
    if (!result.ok) throw new Error(formatRuleProblems(result.problems));
    const construction = result.rules.find((r) => r.rule.id === "noise.construction.laeq");
    expect(construction?.rule.overrides).toEqual([
      expect.objectContaining({ at: "district", id: "Wuhou", source: "rules/chengdu.yaml" }),
    ]);
    if (construction === undefined) return;
    expect(resolveLimits(construction.rule, { district: "Wuhou" }).values).toEqual({
      day: 70,
      night: 50,
    });
    expect(resolveLimits(construction.rule, { district: "Jinjiang" }).values).toEqual({
      day: 70,
      night: 55,
    });
  });

  it("refuses overrides of unknown rules or unknown limits, and those that break the rule", () => {
    const dir = ruleDirectory({
      "local.yaml": ruleFile(
        [],
        [
          { rule: "noise.nope", at: "city", values: { night: 50 } },
          { rule: "noise.construction.laeq", at: "city", values: { nigth: 50 } },
          { rule: "dust.pm10.default", at: "site", id: "site-9", values: { resume: 250 } },
        ],
      ),
    });
    const result = loadRules({ directories: [dir] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const text = formatRuleProblems(result.problems);
    expect(text).toContain(
      "rules/local.yaml: overrides.0.rule: no rule with id noise.nope in any loaded file",
    );
    expect(text).toContain(
      "rules/local.yaml: overrides.1.values.nigth: rule noise.construction.laeq: nigth is not in the rule's limits table (defined: day, night)",
    );
    expect(text).toContain(
      "rules/local.yaml: overrides.2: with this override, rule dust.pm10.default condition.clear: clear limits.resume must be at or below raise limits.warning (250 vs 150",
    );
  });
});

describe("RuleSet", () => {
  function setup() {
    const dir = ruleDirectory({ "local.yaml": ruleFile([rule("local.one")]) });
    const rules = new RuleSet({ directories: [dir] });
    return { dir, rules };
  }

  it("is empty before the first load and holds the rules after it", () => {
    const { rules } = setup();
    expect(rules.generation).toBe(0);
    expect(rules.rules).toEqual([]);
    expect(rules.reload()).toEqual([]);
    expect(rules.generation).toBe(1);
    expect(rules.get("local.one")?.version).toBe(1);
    expect(rules.source("local.one")).toMatchObject({ file: "rules/local.yaml", index: 0 });
    expect(rules.forKind("noise").map((r) => r.id)).toContain("local.one");
    expect(rules.forKind("utility_tunnel").map((r) => r.id)).toContain("tunnel.ch4");
  });

  it("keeps the previous rules in force when a reload fails, and reports the problems", () => {
    const { dir, rules } = setup();
    expect(rules.reload()).toEqual([]);
    const before = rules.rules;
    writeFileSync(
      join(dir, "local.yaml"),
      ruleFile([rule("local.one", { version: 2, condition: { clear: 99 } })]),
    );
    writeFileSync(join(dir, "extra.yaml"), "rules: [\n");
    const problems = rules.reload();
    expect(problems.map((p) => `${p.file}: ${p.path}`)).toEqual(
      expect.arrayContaining([
        "rules/local.yaml: rules.0.condition.clear",
        expect.stringMatching(/^rules\/extra\.yaml: line \d+/),
      ]),
    );
    expect(rules.rules).toBe(before);
    expect(rules.get("local.one")?.version).toBe(1);
    expect(rules.generation).toBe(1);
  });

  it("takes a fixed file on the next reload", () => {
    const { dir, rules } = setup();
    rules.reload();
    writeFileSync(join(dir, "local.yaml"), "rules: [\n");
    expect(rules.reload().length).toBeGreaterThan(0);
    writeFileSync(
      join(dir, "local.yaml"),
      ruleFile([rule("local.one", { version: 2, condition: { raise: 65 } })]),
    );
    expect(rules.reload()).toEqual([]);
    expect(rules.get("local.one")?.version).toBe(2);
    expect(rules.generation).toBe(2);
  });

  it("refuses a changed rule whose version did not rise", () => {
    const { dir, rules } = setup();
    rules.reload();
    writeFileSync(
      join(dir, "local.yaml"),
      ruleFile([rule("local.one", { condition: { raise: 65 } })]),
    );
    expect(rules.reload()).toEqual([
      {
        file: "rules/local.yaml",
        path: "rules.0.version",
        message:
          "rule local.one changed but its version is still 1; set version: 2 (evidence cites id and version)",
      },
    ]);
    expect(rules.get("local.one")?.condition).toMatchObject({ raise: 60 });
  });

  it("refuses a version going down", () => {
    const dir = ruleDirectory({ "local.yaml": ruleFile([rule("local.one", { version: 3 })]) });
    const rules = new RuleSet({ directories: [dir], defaultPack: false });
    rules.reload();
    writeFileSync(join(dir, "local.yaml"), ruleFile([rule("local.one", { version: 2 })]));
    expect(rules.reload()[0]?.message).toBe(
      "rule local.one version went down from 3 to 2; versions only rise",
    );
  });

  it("accepts an unchanged rule written with its keys in another order", () => {
    const { dir, rules } = setup();
    rules.reload();
    const { id, version, ...rest } = rule("local.one");
    writeFileSync(join(dir, "local.yaml"), ruleFile([{ ...rest, version, id }]));
    expect(rules.reload()).toEqual([]);
  });

  it("keeps the rules when the directory disappears", () => {
    const { dir, rules } = setup();
    rules.reload();
    rmSync(dir, { recursive: true });
    expect(rules.reload()[0]?.path).toBe("(directory)");
    expect(rules.get("local.one")).toBeDefined();
  });
});
