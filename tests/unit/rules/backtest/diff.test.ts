import { describe, expect, it } from "vitest";
import type { BacktestRule, BacktestRun } from "../../../../contracts/model/backtest.js";
import { diffRuns, diffSummary } from "../../../../rules/backtest/diff.js";

/* Cases of two runs matched by rule, subject and overlapping time; the rest is more or fewer. */

const T = Date.UTC(2026, 10, 27);
const at = (minute: number) => new Date(T + minute * 60_000).toISOString();
const evidence = {
  value: 1,
  limit: 0,
  windowStart: at(0),
  windowEnd: at(0),
  readings: 1,
  method: "",
};

/** A rule whose cases are [raised, cleared | null] minutes, per subject id. */
function rule(id: string, cases: Record<string, Array<[number, number | null]>>): BacktestRule {
  const subjects = Object.entries(cases).map(([subject, spans]) => ({
    type: "device" as const,
    id: subject,
    siteId: null,
    raised: spans.length,
    escalated: 0,
    cleared: spans.filter(([, c]) => c !== null).length,
    openAtStart: 0,
    openAtEnd: spans.filter(([, c]) => c === null).length,
    cases: spans.map(([raised, cleared], i) => ({
      alarmSeq: i + 1,
      openAtStart: false,
      raisedAt: at(raised),
      level: null,
      evidence,
      escalations: [],
      unacknowledgedEscalations: 0,
      repeats: 0,
      clearedAt: cleared === null ? null : at(cleared),
    })),
  }));
  const sum = (k: "raised" | "cleared" | "openAtEnd") => subjects.reduce((n, s) => n + s[k], 0);
  return {
    id,
    version: 1,
    title: id,
    taskKind: "enforcement",
    raised: sum("raised"),
    escalated: 0,
    cleared: sum("cleared"),
    openAtStart: 0,
    openAtEnd: sum("openAtEnd"),
    subjects,
  };
}

const runOf = (...rules: BacktestRule[]): BacktestRun => ({
  rules: "test",
  ruleCount: rules.length,
  evaluations: 0,
  totals: { raised: 0, escalated: 0, cleared: 0, openAtStart: 0, openAtEnd: 0 },
  byRule: rules,
});

describe("backtest diff", () => {
  it("matches overlapping cases of the same subject; counts earlier and later raises", () => {
    const before = runOf(
      rule("r", {
        a: [
          [10, 20],
          [50, 60],
        ],
        b: [[10, 20]],
      }),
    );
    const after = runOf(
      rule("r", {
        a: [
          [5, 15],
          [30, 35],
          [55, null],
        ],
        b: [[30, 40]],
      }),
    );
    const diff = diffRuns(before, after, T + 120 * 60_000);
    expect(diff).toMatchObject({ more: 2, fewer: 1 });
    expect(diff.summary).toBe("this change would have raised 2 more cases and 1 fewer");
    expect(diff.byRule).toEqual([
      expect.objectContaining({
        ruleId: "r",
        same: 2,
        earlier: 1,
        later: 1,
        added: [
          { subject: "device:a", raisedAt: at(30), clearedAt: at(35) },
          { subject: "device:b", raisedAt: at(30), clearedAt: at(40) },
        ],
        removed: [{ subject: "device:b", raisedAt: at(10), clearedAt: at(20) }],
      }),
    ]);
  });

  it("a rule in one set only: all its cases more or fewer; rules that agree are left out", () => {
    const same = rule("same", { a: [[10, 20]] });
    const diff = diffRuns(
      runOf(same, rule("old", { a: [[1, 2]] })),
      runOf(same, rule("new", { a: [[1, 2]] })),
      T,
    );
    expect(
      diff.byRule.map((d) => [
        d.ruleId,
        d.more,
        d.fewer,
        d.baseline === null,
        d.candidate === null,
      ]),
    ).toEqual([
      ["new", 1, 0, true, false],
      ["old", 0, 1, false, true],
    ]);
  });

  it("says it in words", () => {
    expect(diffSummary(14, 3)).toBe("this change would have raised 14 more cases and 3 fewer");
    expect(diffSummary(0, 1)).toBe("this change would have raised 1 fewer case");
    expect(diffSummary(0, 0)).toBe("this change would have raised the same cases");
  });
});
