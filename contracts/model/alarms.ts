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

/** One raw reading of an evidence window, as stored (numeric values only; switch on = 1). */
export interface EvidenceReading {
  readonly deviceId: string;
  readonly ts: string;
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number>>;
  /** When the ingest received the message that carried it, UTC ISO (absent: not recorded). */
  readonly receivedAt?: string | undefined;
  /** The uplink message (per-device seq) that carried it (absent: not recorded). */
  readonly seq?: number | undefined;
  /** Sent late from the edge agent's log after an outage. */
  readonly replay?: boolean | undefined;
  /** The reading that tipped the decision (see rules/evidence.ts for each condition type). */
  readonly trigger?: boolean | undefined;
}

/** One device's part in a k-of-n decision. */
export interface EvidenceVote {
  readonly deviceId: string;
  /** Its window's value; null: it did not vote (no usable data, silent, off). */
  readonly value: number | null;
  readonly quality: QualityFlag | null;
  /** It voted for the alarm (its value is over the limit). */
  readonly votes: boolean;
}

export interface EvidenceInput {
  /** Raw readings the computation used (the gate's rejects included, marked by their flag). */
  readonly readings: readonly EvidenceReading[];
  /** How the value was computed, e.g. "energy mean of LAeq over the clock hour 22:00-23:00 Asia/Shanghai". */
  readonly method: string;
  readonly windowStart: string;
  readonly windowEnd: string;
  readonly value?: number | boolean | undefined;
  readonly limit?: number | undefined;
  /** The device whose readings gave the value. */
  readonly deviceId?: string | undefined;
  /** Window length (ms) and alignment of a windowed value; absent: the latest reading. */
  readonly windowMs?: number | undefined;
  readonly align?: "rolling" | "clock" | undefined;
  /** Period names whose readings alone count ("" or absent: any). */
  readonly period?: string | undefined;
  /** Share of the window the readings covered (0..1). */
  readonly coverage?: number | undefined;
  /** k-of-n: k (after a degraded lowering), the devices voting, and each device's vote. */
  readonly vote?:
    | {
        readonly k: number;
        readonly n: number;
        /** The limit each device's value is compared with (the raise side). */
        readonly threshold: number | null;
        readonly devices: readonly EvidenceVote[];
      }
    | undefined;
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
  /**
   * Hands a decision over without waiting. The task service applies decisions in the order they
   * were handed over, each in one transaction of the task store, from a bounded queue that
   * retries a store that does not answer (tasks/alarm-queue.ts); a decision it cannot keep is
   * logged and counted, and the alarm's next repeat raises it again.
   */
  handleAlarm(notice: AlarmNotice): void;
  /**
   * Resolves once every decision handed over before the call has been applied (or given up).
   * The rules save an alarm's state only after its decisions were applied, so a process killed
   * in between decides them again rather than losing them. Absent: the state is saved at once.
   */
  handled?(): Promise<void>;
  /** Called when an operator acknowledges a task, so the alarm stops escalating. */
  onAcknowledged(listener: (ruleId: string, subjectId: string) => void): () => void;
}

/** The outcome of a re-check against sensor data at the rectification deadline. */
export type RecheckOutcome = "compliant" | "violating" | "no_data";

/** Looks at the data after the deadline (the lead wires it to the store and the engine). */
export type Recheck = (task: Task) => RecheckOutcome;
