import type {
  BacktestCase,
  BacktestCounts,
  BacktestDiff,
  BacktestRule,
  BacktestRuleDiff,
  BacktestRun,
} from "../../contracts/model/backtest.js";

/*
 * The difference two rule sets make over the same history. A case of one run is the same case in
 * the other when the same rule and subject had an alarm open at overlapping times in both (raised
 * at the same instant or not); what is left over is a case one run has and the other has not.
 */

interface Span {
  readonly subject: string;
  readonly from: number;
  /** Still open at the end: open to the end of the range. */
  readonly to: number;
  readonly raisedAt: string;
  readonly clearedAt: string | null;
}

function spans(rule: BacktestRule | undefined, endMs: number): Span[] {
  if (rule === undefined) return [];
  return rule.subjects.flatMap((s) =>
    s.cases.map((c: BacktestCase) => ({
      subject: `${s.type}:${s.id}`,
      from: Date.parse(c.raisedAt),
      to: c.clearedAt === null ? endMs : Date.parse(c.clearedAt),
      raisedAt: c.raisedAt,
      clearedAt: c.clearedAt,
    })),
  );
}

const ref = (s: Span) => ({ subject: s.subject, raisedAt: s.raisedAt, clearedAt: s.clearedAt });

function counts(rule: BacktestRule | undefined): BacktestCounts | null {
  if (rule === undefined) return null;
  const { raised, escalated, cleared, openAtStart, openAtEnd } = rule;
  return { raised, escalated, cleared, openAtStart, openAtEnd };
}

function ruleDiff(
  ruleId: string,
  baseline: BacktestRule | undefined,
  candidate: BacktestRule | undefined,
  endMs: number,
): BacktestRuleDiff {
  const before = spans(baseline, endMs);
  // The baseline's cases not matched yet, per subject, in time order.
  const open = new Map<string, Span[]>();
  for (const span of before) open.set(span.subject, [...(open.get(span.subject) ?? []), span]);
  const added: Span[] = [];
  let earlier = 0;
  let later = 0;
  for (const span of spans(candidate, endMs)) {
    // The first case of the subject open at an overlapping time (closed intervals: a clear and
    // a raise at the same instant overlap).
    const list = open.get(span.subject) ?? [];
    const at = list.findIndex((b) => b.from <= span.to && span.from <= b.to);
    const match = list[at];
    if (match === undefined) {
      added.push(span);
      continue;
    }
    list.splice(at, 1);
    if (span.from < match.from) earlier += 1;
    else if (span.from > match.from) later += 1;
  }
  const removed = [...open.values()].flat();
  return {
    ruleId,
    baseline: counts(baseline),
    candidate: counts(candidate),
    more: added.length,
    fewer: removed.length,
    same: before.length - removed.length,
    earlier,
    later,
    added: added.map(ref),
    removed: removed.map(ref),
  };
}

const casesWord = (n: number) => (n === 1 ? "case" : "cases");

/** "this change would have raised 14 more cases and 3 fewer". */
export function diffSummary(more: number, fewer: number): string {
  if (more === 0 && fewer === 0) return "this change would have raised the same cases";
  if (fewer === 0) return `this change would have raised ${more} more ${casesWord(more)}`;
  if (more === 0) return `this change would have raised ${fewer} fewer ${casesWord(fewer)}`;
  return `this change would have raised ${more} more ${casesWord(more)} and ${fewer} fewer`;
}

/** What `candidate` would have raised more and fewer than `baseline`, per rule. */
export function diffRuns(
  baseline: BacktestRun,
  candidate: BacktestRun,
  toMs: number,
): BacktestDiff {
  const before = new Map(baseline.byRule.map((r) => [r.id, r]));
  const after = new Map(candidate.byRule.map((r) => [r.id, r]));
  const ids = [...new Set([...before.keys(), ...after.keys()])].sort();
  const byRule = ids
    .map((id) => ruleDiff(id, before.get(id), after.get(id), toMs))
    .filter(
      (d) =>
        d.more > 0 ||
        d.fewer > 0 ||
        d.earlier > 0 ||
        d.later > 0 ||
        JSON.stringify(d.baseline) !== JSON.stringify(d.candidate),
    );
  const more = byRule.reduce((n, d) => n + d.more, 0);
  const fewer = byRule.reduce((n, d) => n + d.fewer, 0);
  return { summary: diffSummary(more, fewer), more, fewer, byRule };
}
