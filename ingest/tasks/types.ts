import type { Device, Site } from "../../contracts/registry.js";
import type { Rule, RuleSubject } from "../../contracts/rules.js";
import type { QualityFlag } from "../../contracts/quality.js";
import type { AlarmDecision } from "../rules/engine/alarm.js";

/*
 * The seam between the rules driver (which runs the pure engine, persists alarm state and turns
 * each AlarmDecision into an AlarmNotice) and the task service (everything after the decision).
 */

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

/** The registry as the task service reads it: devices and sites by id (the ingest's RegistryView is one). */
export interface RegistryLookup {
  device(id: string): Device | undefined;
  site(id: string): Site | undefined;
}
