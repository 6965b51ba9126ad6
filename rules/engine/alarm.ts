import type { AlarmDecision } from "../../contracts/model/alarms.js";
import type { Rule } from "../../contracts/model/rules.js";
import { escalationAfter } from "../../contracts/model/rule-severity.js";
import { type Evaluation, isGap } from "./conditions.js";

/*
 * The alarm state machine of one (subject, rule). Pure: (state, event, now) → (state, decisions).
 * The state is a plain JSON-serialisable object, so it can be persisted and an alarm survives a
 * restart in the middle of a `for` or clearHold duration.
 *
 *   normal ──holds──▶ pending ──held `for`──▶ active ──stops holding──▶ recovering ──clearHold
 *     ▲                 │                       ▲  (minActive / clearHold)   │      and minActive──▶ cleared
 *     └──stops holding──┘                       └──holds again (repeat)─────┘
 *
 * `cleared` behaves as `normal` on the next event; it keeps the last alarm's id and times for
 * the caller to read. Severity only rises within one alarm.
 */

export type AlarmPhase = "normal" | "pending" | "active" | "recovering" | "cleared";

export interface AlarmState {
  readonly phase: AlarmPhase;
  /** When the current phase was entered, epoch ms. */
  readonly since: number;
  /** Sequence number of the current (or last) alarm of this (subject, rule); 0 before the first. */
  readonly alarmSeq: number;
  /** When the condition first held for the current alarm (start of pending). */
  readonly startedAt?: number | undefined;
  /** When the alarm became active (raise). */
  readonly raisedAt?: number | undefined;
  /** Highest level index reached by the current alarm. */
  readonly levelIndex: number;
  /** Times the condition held again while recovering (suppressed flaps). */
  readonly repeats: number;
  /** The alarm was raised, or some of its data was, from replayed (historical) readings. */
  readonly replayed: boolean;
  /** Last evaluation's value and limit, for the record. */
  readonly lastValue?: number | boolean | undefined;
  readonly lastLimit?: number | undefined;
  /** The task of the alarm was acknowledged (emergency escalation stops). */
  readonly acknowledged: boolean;
  /** Escalations on no acknowledgement sent for the current alarm. */
  readonly unacknowledgedEscalations: number;
}

export type AlarmEvent =
  /** A reading arrived (or a clock tick passed) and the condition was evaluated at `now`. */
  | {
      readonly type: "reading" | "tick";
      readonly evaluation: Evaluation;
      /** The triggering reading is historical (replay). */
      readonly replayed?: boolean | undefined;
    }
  /** The alarm's task was acknowledged by an operator. */
  | { readonly type: "acknowledge" };

export type { AlarmDecision };

export interface AlarmStep {
  readonly state: AlarmState;
  readonly decisions: readonly AlarmDecision[];
}

const NO_DECISIONS: readonly AlarmDecision[] = [];

/** The state of a (subject, rule) never evaluated. */
export function initialAlarmState(now: number): AlarmState {
  return {
    phase: "normal",
    since: now,
    alarmSeq: 0,
    levelIndex: 0,
    repeats: 0,
    replayed: false,
    acknowledged: false,
    unacknowledgedEscalations: 0,
  };
}

/** Whether the state holds an open alarm (active or recovering). */
export const isOpen = (state: AlarmState): boolean =>
  state.phase === "active" || state.phase === "recovering";

/** The `for` duration of a rule's condition (deadman: 0, its factor is the duration). */
export function holdFor(rule: Rule): number {
  const c = rule.condition;
  return c.type === "deadman" ? 0 : c.for;
}

/** Advance the alarm of one (subject, rule) by one event at `now`. */
export function stepAlarm(
  rule: Rule,
  state: AlarmState,
  event: AlarmEvent,
  now: number,
): AlarmStep {
  if (event.type === "acknowledge") {
    return { state: isOpen(state) ? { ...state, acknowledged: true } : state, decisions: [] };
  }
  const e = event.evaluation;
  const replayed = event.replayed === true;
  // The common case first, before anything is built for the rest: nothing open, nothing holds.
  if (!e.active && (state.phase === "normal" || state.phase === "cleared")) {
    const same = isGap(e) || (state.lastValue === e.value && state.lastLimit === e.limit);
    return {
      state: same ? state : { ...state, lastValue: e.value, lastLimit: e.limit },
      decisions: NO_DECISIONS,
    };
  }

  const x: Step = { rule, e, now, replayed, decisions: [] };
  const decisions = x.decisions;
  // A gap (no data in the window) neither raises nor clears: silence is the deadman rule's
  // business. Pending stays pending; only the unacknowledged-escalation clock keeps running.
  if (isGap(e)) {
    return { state: isOpen(state) ? unacknowledged(x, state) : state, decisions };
  }
  let s: AlarmState = { ...state, lastValue: e.value, lastLimit: e.limit };
  switch (state.phase) {
    case "normal":
    case "cleared": {
      if (!e.active) return { state: s, decisions };
      s = {
        ...s,
        phase: "pending",
        since: now,
        startedAt: now,
        alarmSeq: state.alarmSeq + 1,
        levelIndex: 0,
        repeats: 0,
        replayed,
        acknowledged: false,
        unacknowledgedEscalations: 0,
        raisedAt: undefined,
      };
      if (holdFor(rule) === 0) s = raise(x, s);
      return { state: s, decisions };
    }
    case "pending": {
      if (!e.active) {
        return { state: { ...s, phase: "normal", since: now, startedAt: undefined }, decisions };
      }
      s = { ...s, replayed: s.replayed || replayed };
      if (now - (s.startedAt ?? s.since) >= holdFor(rule)) s = raise(x, s);
      return { state: s, decisions };
    }
    case "active": {
      if (e.active) return { state: unacknowledged(x, escalate(x, s)), decisions };
      s = { ...s, phase: "recovering", since: now };
      if ((rule.timing.clearHold ?? 0) === 0 && mayClear(x, s)) s = clear(x, s);
      return { state: isOpen(s) ? unacknowledged(x, s) : s, decisions };
    }
    case "recovering": {
      if (e.active) {
        const repeats = s.repeats + 1;
        s = { ...s, phase: "active", since: now, repeats };
        decisions.push({
          type: "attach-repeat",
          alarmSeq: s.alarmSeq,
          at: now,
          repeats,
          detail: e.detail,
          replayed,
        });
        return { state: unacknowledged(x, escalate(x, s)), decisions };
      }
      if (mayClear(x, s)) s = clear(x, s);
      return { state: isOpen(s) ? unacknowledged(x, s) : s, decisions };
    }
  }
}

/*
 * The steps of one stepAlarm call, at module level: closures made at every call (the usual case
 * of an open alarm's tick) cost an allocation each, and under tsx a __name call too; about 5 % of
 * a backtest replay's CPU time on the bench city.
 */

/** One stepAlarm call: the rule, the evaluation and instant, the decisions made. */
interface Step {
  readonly rule: Rule;
  readonly e: Evaluation;
  readonly now: number;
  readonly replayed: boolean;
  readonly decisions: AlarmDecision[];
}

const levelName = (rule: Rule, i: number) => rule.levels?.[i]?.level;

function raise(x: Step, from: AlarmState): AlarmState {
  const { e, now } = x;
  const next: AlarmState = {
    ...from,
    lastValue: e.value,
    lastLimit: e.limit,
    phase: "active",
    since: now,
    raisedAt: now,
    levelIndex: e.levelIndex,
    replayed: from.replayed || x.replayed,
  };
  x.decisions.push({
    type: "raise",
    alarmSeq: next.alarmSeq,
    level: levelName(x.rule, e.levelIndex),
    levelIndex: e.levelIndex,
    startedAt: next.startedAt ?? now,
    at: now,
    value: e.value,
    limit: e.limit,
    deviceId: e.deviceId,
    detail: e.detail,
    replayed: next.replayed,
  });
  return next;
}

/** Severity rises within an open alarm and never falls. */
function escalate(x: Step, s: AlarmState): AlarmState {
  const e = x.e;
  if (!e.active || e.levelIndex <= s.levelIndex) return s;
  x.decisions.push({
    type: "escalate-level",
    alarmSeq: s.alarmSeq,
    from: levelName(x.rule, s.levelIndex),
    level: levelName(x.rule, e.levelIndex),
    levelIndex: e.levelIndex,
    at: x.now,
    value: e.value,
    limit: e.limit,
    detail: e.detail,
    replayed: x.replayed,
  });
  return { ...s, levelIndex: e.levelIndex };
}

function unacknowledged(x: Step, s: AlarmState): AlarmState {
  const after = escalationAfter(x.rule);
  if (after === undefined || s.acknowledged || s.raisedAt === undefined) return s;
  const due = s.raisedAt + after * (s.unacknowledgedEscalations + 1);
  if (x.now < due) return s;
  const count = s.unacknowledgedEscalations + 1;
  x.decisions.push({ type: "escalate-unacknowledged", alarmSeq: s.alarmSeq, at: x.now, count });
  return { ...s, unacknowledgedEscalations: count };
}

function clear(x: Step, s: AlarmState): AlarmState {
  const now = x.now;
  x.decisions.push({
    type: "clear",
    alarmSeq: s.alarmSeq,
    at: now,
    raisedAt: s.raisedAt ?? now,
    levelIndex: s.levelIndex,
    level: levelName(x.rule, s.levelIndex),
    repeats: s.repeats,
    replayed: s.replayed || x.replayed,
  });
  return { ...s, lastValue: x.e.value, lastLimit: x.e.limit, phase: "cleared", since: now };
}

function mayClear(x: Step, s: AlarmState): boolean {
  const now = x.now;
  return (
    now - (s.raisedAt ?? now) >= (x.rule.timing.minActive ?? 0) &&
    (s.phase !== "recovering" || now - s.since >= (x.rule.timing.clearHold ?? 0))
  );
}

/**
 * Whether to evaluate the condition on its clear side (hysteresis): pass this as
 * `previouslyActive` to evaluateCondition.
 */
export function previouslyActive(state: AlarmState): boolean {
  return isOpen(state);
}
