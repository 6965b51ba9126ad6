import { describe, expect, it } from "vitest";
import { formatRuleProblems, loadRules } from "../../../rules/load.js";
import { patched, ruleDirectory, ruleFile, VALID_RULE } from "./fixtures.js";

/*
 * The legal basis of a rule (the law articles a penalty rests on, beside the clause of the limit
 * standard): loaded from rule files, defaulting to none, and in the shipped pack only where
 * docs/standards.md verifies it.
 */

const ART_41 = {
  law: "Administrative Penalty Law of the PRC 2021",
  article: "Art. 41",
  summary: "Device data may be used only if the devices meet the standards.",
  confidence: "verified",
};

describe("rule legal basis", () => {
  it("loads from a rule file and defaults to none", () => {
    const dir = ruleDirectory({
      "a.yaml": ruleFile([
        patched(VALID_RULE, { id: "local.cited", legalBasis: [ART_41] }),
        patched(VALID_RULE, { id: "local.bare" }),
      ]),
    });
    const result = loadRules({ directories: [dir], defaultPack: false });
    if (!result.ok) throw new Error(formatRuleProblems(result.problems));
    const [cited, bare] = result.rules.map((r) => r.rule);
    expect(cited?.legalBasis).toEqual([ART_41]);
    expect(bare?.legalBasis).toEqual([]);
  });

  it("refuses an empty article and a placeholder that does not say it is one", () => {
    const dir = ruleDirectory({
      "a.yaml": ruleFile([
        patched(VALID_RULE, { id: "local.empty", legalBasis: [{ ...ART_41, article: "" }] }),
        patched(VALID_RULE, {
          id: "local.silent",
          legalBasis: [{ ...ART_41, article: "Art. 77", confidence: "placeholder" }],
        }),
        patched(VALID_RULE, {
          id: "local.honest",
          legalBasis: [
            {
              ...ART_41,
              article: "Art. 77",
              summary: "Penalty article: a placeholder, not verified in the law's text.",
              confidence: "placeholder",
            },
          ],
        }),
      ]),
    });
    const result = loadRules({ directories: [dir], defaultPack: false });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const lines = formatRuleProblems(result.problems);
    expect(lines).toContain(
      "rules/a.yaml: rules.0.legalBasis.0.article: article must not be empty",
    );
    expect(lines).toContain(
      "rules/a.yaml: rules.1.legalBasis.0.summary: a placeholder legal basis must say in its summary that it is a placeholder (not verified)",
    );
    expect(lines).not.toContain("rules.2");
  });

  it("the shipped pack cites Art. 41 on every enforcement rule, Art. 43 on night works, nothing unverified", () => {
    const result = loadRules({});
    if (!result.ok) throw new Error(formatRuleProblems(result.problems));
    const rules = result.rules.map((r) => r.rule);
    for (const rule of rules) {
      const articles = rule.legalBasis.map((b) => `${b.law} ${b.article}`);
      if (rule.taskKind === "enforcement") {
        expect(articles, rule.id).toContain("Administrative Penalty Law of the PRC 2021 Art. 41");
      } else {
        expect(articles, rule.id).toEqual([]);
      }
      expect(
        rule.legalBasis.every((b) => b.confidence === "verified"),
        rule.id,
      ).toBe(true);
    }
    const works = rules.find((r) => r.id === "noise.construction.night-works");
    expect(works?.legalBasis.map((b) => b.article)).toEqual(["Art. 41", "Art. 43"]);
    expect(rules.filter((r) => r.legalBasis.some((b) => b.article === "Art. 43"))).toHaveLength(1);
  });
});
