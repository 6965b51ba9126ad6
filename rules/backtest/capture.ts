import type { Rule, RuleSubject } from "../../contracts/index.js";
import type { AlarmNotice, EvidenceInput, TaskSink } from "../../contracts/model/alarms.js";
import type {
  BacktestCase,
  BacktestCounts,
  BacktestEvidence,
  BacktestRule,
  BacktestRun,
  BacktestSubject,
} from "../../contracts/model/backtest.js";

/*
 * The task sink of a backtest: files nothing, and keeps what the driver decided as cases per rule
 * and subject, with a summary of each evidence package (value, limit, window, readings count;
 * the readings themselves are let go at once). Decisions before the range (the warm-up) only
 * carry state in: an alarm raised then is a case open at the start.
 */

interface Escalation {
  readonly at: number;
  readonly from: string | undefined;
  readonly level: string | undefined;
  readonly evidence: BacktestEvidence;
}

interface CaseRecord {
  readonly alarmSeq: number;
  readonly raisedAt: number;
  level: string | undefined;
  readonly evidence: BacktestEvidence;
  readonly escalations: Escalation[];
  unacknowledged: number;
  repeats: number;
  clearedAt: number | undefined;
}

interface SubjectRecord {
  readonly type: RuleSubject;
  readonly id: string;
  readonly siteId: string | undefined;
  readonly cases: Map<number, CaseRecord>;
}

const iso = (ms: number) => new Date(ms).toISOString();

function summary(input: EvidenceInput | undefined, at: number): BacktestEvidence {
  return {
    value: input?.value ?? null,
    limit: input?.limit ?? null,
    windowStart: input?.windowStart ?? iso(at),
    windowEnd: input?.windowEnd ?? iso(at),
    readings: input?.readings.length ?? 0,
    method: input?.method ?? "",
  };
}

/** Counts of nothing. */
export function zeroCounts(): BacktestCounts {
  return { raised: 0, escalated: 0, cleared: 0, openAtStart: 0, openAtEnd: 0 };
}

/** `counts` added into `into`. */
export function addCounts(into: BacktestCounts, counts: BacktestCounts): void {
  into.raised += counts.raised;
  into.escalated += counts.escalated;
  into.cleared += counts.cleared;
  into.openAtStart += counts.openAtStart;
  into.openAtEnd += counts.openAtEnd;
}

/** A rule's part of a run: what it is, its counts, its subjects. */
export function ruleOut(
  rule: Pick<BacktestRule, "id" | "version" | "title" | "taskKind">,
  counts: BacktestCounts,
  subjects: BacktestSubject[],
): BacktestRule {
  const { id, version, title, taskKind } = rule;
  return { id, version, title, taskKind, ...counts, subjects };
}

export class CaptureSink implements TaskSink {
  readonly #rules = new Map<string, { rule: Rule; subjects: Map<string, SubjectRecord> }>();

  constructor(
    /** Where the range begins: decisions before it are the warm-up's. */
    private readonly fromMs: number,
    /** Which subjects the report is about (a device's scope replays its whole site). */
    private readonly accept: (notice: AlarmNotice) => boolean = () => true,
  ) {}

  onAcknowledged(): () => void {
    return () => undefined; // nobody acknowledges in a backtest
  }

  handleAlarm(notice: AlarmNotice): void {
    if (!this.accept(notice)) return;
    const decision = notice.decision;
    const subject = this.#subject(notice);
    if (decision.type === "raise") {
      subject.cases.set(decision.alarmSeq, {
        alarmSeq: decision.alarmSeq,
        raisedAt: decision.at,
        level: decision.level,
        evidence: summary(notice.evidence, decision.at),
        escalations: [],
        unacknowledged: 0,
        repeats: 0,
        clearedAt: undefined,
      });
      return;
    }
    const record = subject.cases.get(decision.alarmSeq);
    if (record === undefined) return; // raised before the driver started: not in a backtest
    const inRange = decision.at >= this.fromMs;
    switch (decision.type) {
      case "escalate-level":
        if (inRange) {
          record.escalations.push({
            at: decision.at,
            from: decision.from,
            level: decision.level,
            evidence: summary(notice.evidence, decision.at),
          });
        } else record.level = decision.level; // the level it is at when the range starts
        break;
      case "escalate-unacknowledged":
        if (inRange) record.unacknowledged += 1;
        break;
      case "attach-repeat":
        if (inRange) record.repeats = decision.repeats;
        break;
      case "clear":
        // Over before the range began: no case of the range.
        if (inRange) record.clearedAt = decision.at;
        else subject.cases.delete(decision.alarmSeq);
        break;
    }
  }

  #subject(notice: AlarmNotice): SubjectRecord {
    let rule = this.#rules.get(notice.rule.id);
    if (rule === undefined) {
      rule = { rule: notice.rule, subjects: new Map() };
      this.#rules.set(notice.rule.id, rule);
    }
    const key = `${notice.subjectType}:${notice.subjectId}`;
    let subject = rule.subjects.get(key);
    if (subject === undefined) {
      subject = {
        type: notice.subjectType,
        id: notice.subjectId,
        siteId: notice.siteId,
        cases: new Map(),
      };
      rule.subjects.set(key, subject);
    }
    return subject;
  }

  /** What the rules decided, per rule and subject, rules and subjects with no case left out. */
  run(label: string, ruleCount: number, evaluations: number): BacktestRun {
    const totals = zeroCounts();
    const byRule: BacktestRule[] = [];
    for (const { rule, subjects } of [...this.#rules.values()].sort((a, b) =>
      a.rule.id.localeCompare(b.rule.id),
    )) {
      const counts = zeroCounts();
      const outSubjects: BacktestSubject[] = [];
      for (const key of [...subjects.keys()].sort()) {
        const subject = subjects.get(key) as SubjectRecord;
        if (subject.cases.size === 0) continue;
        const out = this.#subjectOut(subject);
        addCounts(counts, out);
        outSubjects.push(out);
      }
      if (outSubjects.length === 0) continue;
      addCounts(totals, counts);
      byRule.push(ruleOut(rule, counts, outSubjects));
    }
    return { rules: label, ruleCount, evaluations, totals, byRule };
  }

  #subjectOut(subject: SubjectRecord): BacktestSubject {
    const counts = zeroCounts();
    const cases: BacktestCase[] = [];
    for (const c of [...subject.cases.values()].sort((a, b) => a.alarmSeq - b.alarmSeq)) {
      const openAtStart = c.raisedAt < this.fromMs;
      if (openAtStart) counts.openAtStart += 1;
      else counts.raised += 1;
      counts.escalated += c.escalations.length;
      if (c.clearedAt === undefined) counts.openAtEnd += 1;
      else counts.cleared += 1;
      cases.push({
        alarmSeq: c.alarmSeq,
        openAtStart,
        raisedAt: iso(c.raisedAt),
        level: c.level ?? null,
        evidence: c.evidence,
        escalations: c.escalations.map((e) => ({
          at: iso(e.at),
          from: e.from ?? null,
          level: e.level ?? null,
          evidence: e.evidence,
        })),
        unacknowledgedEscalations: c.unacknowledged,
        repeats: c.repeats,
        clearedAt: c.clearedAt === undefined ? null : iso(c.clearedAt),
      });
    }
    return { type: subject.type, id: subject.id, siteId: subject.siteId ?? null, ...counts, cases };
  }
}
