import type { QualityFlag } from "./quality.js";
import type { Rule, RuleSubject } from "./rules.js";
import type { Task } from "./tasks.js";

/*
 * The seam between the rules (which run the pure engine, persist alarm state and turn each
 * decision into an AlarmNotice) and the tasks (everything after the decision). In-process types:
 * nothing here crosses a process boundary as JSON, so they are interfaces, not zod schemas.
 */

/** What the alarm state machine of one (subject, rule) decided at one evaluation. */
export type AlarmDecision =
  | {
      readonly type: "raise";
      readonly alarmSeq: number;
      readonly level: string | undefined;
      readonly levelIndex: number;
      readonly startedAt: number;
      readonly at: number;
      readonly value: number | boolean | undefined;
      readonly limit: number | undefined;
      readonly deviceId: string | undefined;
      readonly detail: string;
      readonly replayed: boolean;
    }
  | {
      readonly type: "escalate-level";
      readonly alarmSeq: number;
      readonly from: string | undefined;
      readonly level: string | undefined;
      readonly levelIndex: number;
      readonly at: number;
      readonly value: number | boolean | undefined;
      readonly limit: number | undefined;
      readonly detail: string;
      readonly replayed: boolean;
    }
  | {
      readonly type: "attach-repeat";
      readonly alarmSeq: number;
      readonly at: number;
      readonly repeats: number;
      readonly detail: string;
      readonly replayed: boolean;
    }
  | {
      /** Emergency rules: the task was not acknowledged within `timing.escalateAfter`. */
      readonly type: "escalate-unacknowledged";
      readonly alarmSeq: number;
      readonly at: number;
      readonly count: number;
    }
  | {
      readonly type: "clear";
      readonly alarmSeq: number;
      readonly at: number;
      readonly raisedAt: number;
      readonly levelIndex: number;
      readonly level: string | undefined;
      readonly repeats: number;
      readonly replayed: boolean;
    };

/** One raw reading of an evidence window, as stored (numeric values only). */
export interface EvidenceReading {
  readonly deviceId: string;
  readonly ts: string;
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number>>;
}

export interface EvidenceInput {
  /** Raw readings of the rule's evidence window (from the store), every quality flag included, marked. */
  readonly readings: readonly EvidenceReading[];
  /** How the value was computed, e.g. "energy mean of LAeq over the clock hour 22:00-23:00 Asia/Shanghai". */
  readonly method: string;
  readonly windowStart: string;
  readonly windowEnd: string;
  readonly value?: number | boolean | undefined;
  readonly limit?: number | undefined;
}

export interface AlarmNotice {
  readonly rule: Rule;
  /** device | site | segment */
  readonly subjectType: RuleSubject;
  /** The device id or site id. */
  readonly subjectId: string;
  /** The site of the subject (a device's site). */
  readonly siteId?: string | undefined;
  /** Devices whose readings made the decision. */
  readonly deviceIds: readonly string[];
  readonly decision: AlarmDecision;
  /** Given on raise and escalate-level. */
  readonly evidence?: EvidenceInput | undefined;
}

export interface TaskSink {
  /** Synchronous: when it returns, the task change and its notifications are durably recorded (SQLite transaction). */
  handleAlarm(notice: AlarmNotice): void;
  /** Called when an operator acknowledges a task, so the alarm stops escalating. */
  onAcknowledged(listener: (ruleId: string, subjectId: string) => void): () => void;
}

/** The outcome of a re-check against sensor data at the rectification deadline. */
export type RecheckOutcome = "compliant" | "violating" | "no_data";

/** Looks at the data after the deadline (the lead wires it to the store and the engine). */
export type Recheck = (task: Task) => RecheckOutcome;
