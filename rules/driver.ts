import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Device, Rule, RuleSubject } from "../contracts/index.js";
import type { AlarmNotice, RecheckOutcome, TaskSink } from "../contracts/model/alarms.js";
import {
  batchOf,
  type StoredBatch,
  type StoredReading,
} from "../contracts/model/stored-readings.js";
import type { AlarmStates, StoredAlarm } from "./alarm-store.js";
import { DeviceBatch, type InstantSource, SubjectBatch } from "./batch.js";
import {
  type AlarmDecision,
  type AlarmEvent,
  type AlarmState,
  type Evaluation,
  evaluateCondition,
  initialAlarmState,
  isOpen,
  judgedInParts,
  Series,
  stepAlarm,
  type SubjectView,
} from "./engine/index.js";
import { evidence } from "./evidence.js";
import { SubjectParts } from "./parts.js";
import { holdCheck, mayHold, nextMayHold, quietReading, quietUntil } from "./quiet.js";
import { WakeHeap } from "./wake-heap.js";
import { rulesMetrics, type RulesMetrics } from "./metrics.js";
import { type Slot, type Subject, SubjectIndex, type SubjectIndexDeps } from "./subjects.js";

export type { RulesRegistry } from "./subjects.js";

/*
 * The rules driver: runs the pure engine (engine/) on the readings the ingest has stored and on a
 * clock tick, keeps each device's recent samples in memory (bounded by the longest window a rule
 * in force needs), persists the alarm state of every (subject, rule) and hands every decision to
 * the task service. Nothing here decides anything the engine does not.
 */

/** What the driver reads and writes; the rules, the registry and the region as SubjectIndexDeps. */
export interface RulesDriverDeps extends SubjectIndexDeps {
  readonly log: Logger;
  /** Where alarm states are kept across restarts (read at start, written as they move). */
  readonly alarms: Pick<AlarmStates, "all" | "save"> &
    Partial<Pick<AlarmStates, "unsavedCount" | "droppedCount">>;
  /** Where decisions go (the task service). */
  readonly sink: TaskSink;
  readonly tickMs: number;
  readonly now: () => number;
  /** The ingest's metrics registry; the driver's metrics are added to it. */
  readonly metricsRegistry?: Registry;
  /**
   * Keep the parts of site and segment evaluations between instants (parts.ts; default true).
   * false evaluates every device at every instant: the tests compare the two.
   */
  readonly keepParts?: boolean;
  /**
   * Skip a subject's ticks while they cannot decide anything (quiet.ts; default false): the
   * backtest's replay. The same decisions at the same instants, fewer evaluations.
   */
  readonly quietTicks?: boolean;
  /**
   * Each reading arrives the instant it was taken (default false: when its batch is handed
   * over, now): the backtest's replay, whose batches are everything stored between two ticks.
   * A device's data clock then runs from its own newest reading, as live with no delay, and
   * never from another device's reading that happened to share its batch (a replay split by
   * site decides what one replay decides, rules/backtest/partition.ts).
   */
  readonly arrivalAtReading?: boolean;
  /** Past samples to start from after a restart (from the time-series store). */
  readonly backfill?: (device: Device, fromMs: number, toMs: number) => Promise<StoredReading[]>;
}

interface Alarm {
  state: AlarmState;
  /** Last instant evaluated: evaluations never go back in time. */
  lastAt: number;
  /** A site or segment's parts kept between instants (see parts.ts). */
  parts?: SubjectParts;
  /**
   * `lastAt` is on the subject's data clock. Until the subject's first reading it is real time
   * (deadman of a device never heard), and the first reading may set it back to the data's time.
   */
  clocked: boolean;
  /**
   * quietTicks: on the subject's data clock, the ticks before this may skip the subject
   * (undefined: not known since the last evaluation, which put the subject on `dirty`).
   */
  wake?: number | undefined;
  /** Counts the subject's turns asleep: a heap entry of an earlier turn is stale. */
  sleeps?: number;
  /** quietTicks: the instant of the subject's last evaluation (a reading skipped is none). */
  judgedAt?: number;
}

/**
 * Samples kept per device and quantity at most, whatever the windows say: a device reporting far
 * faster than its rules need cannot grow memory without bound. Past it the oldest are dropped
 * (counted in citywatch_rules_samples_dropped_total). A day of 5-s samples fits.
 */
export const MAX_SAMPLES_PER_SERIES = 20_000;

/** A reading of a device the driver does not know reads the registry again, at most this often. */
const NEW_DEVICE_REFRESH_MS = 1_000;

/**
 * After a restart each device's windows are read back at least this many expected intervals, so
 * its newest reading comes back even when no rule keeps a window (docs/rules.md, Time, rule 9).
 */
const RESTORE_NEWEST_INTERVALS = 10;

/**
 * A backfill reads this far past now as well: the ingest takes readings stamped up to
 * `maxFutureMs` (5 min by default) ahead of its clock, and a reading stamped at now itself must
 * come back too (the range's end is exclusive). A node taking partitions over reads the readings
 * the last owner had just judged.
 */
const BACKFILL_AHEAD_MS = 86_400_000;

/** Readings kept beyond the batch being judged when no window needs them: the newest only. */
const KEEP_NEWEST = 0;

/** Whether two states differ in a field worth a write (lastValue and lastLimit are not). */
function changedForStore(a: AlarmState, b: AlarmState): boolean {
  return (
    a.phase !== b.phase ||
    a.since !== b.since ||
    a.alarmSeq !== b.alarmSeq ||
    a.levelIndex !== b.levelIndex ||
    a.repeats !== b.repeats ||
    a.acknowledged !== b.acknowledged ||
    a.unacknowledgedEscalations !== b.unacknowledgedEscalations ||
    a.replayed !== b.replayed
  );
}

export class RulesDriver {
  /** The devices' slots and the subjects their readings touch. */
  private readonly index: SubjectIndex;
  private readonly alarms = new Map<string, Alarm>();
  /** Alarm states waiting for their decisions to be applied before they are saved (store()). */
  private readonly pendingSaves = new Map<string, Promise<void>>();
  /** Devices whose readings came while the registry read did not hold them (standby, gone). */
  private readonly missing = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private evaluations = 0;
  /** Counts the readings added without an evaluation (backfill): wakes computed before are stale. */
  private unjudgedData = 0;
  /** quietTicks: subjects evaluated since the last tick (their wake is not known yet). */
  private readonly dirty: Subject[] = [];
  /** quietTicks: the other subjects, by wake. */
  private readonly sleeping = new WakeHeap<{ subject: Subject; alarm: Alarm; turn: number }>();
  /** The subjects and data the sleeping subjects' wakes were computed on (see tick). */
  private sleepingStamp = Number.NaN;
  /** How far a device's data clock has run ahead of real time at most (future-stamped data). */
  private maxLead = 0;
  private readonly metrics: RulesMetrics | undefined;

  constructor(private readonly deps: RulesDriverDeps) {
    this.index = new SubjectIndex(deps);
    this.metrics =
      deps.metricsRegistry === undefined
        ? undefined
        : rulesMetrics(deps.metricsRegistry, {
            openAlarms: () => [...this.alarms.values()].filter((a) => isOpen(a.state)).length,
            windowSamples: () => this.windowSamples(),
            unsavedMoves: () => deps.alarms.unsavedCount?.() ?? 0,
            droppedMoves: () => deps.alarms.droppedCount?.() ?? 0,
          });
  }

  /** Load persisted alarms and the registry, start the clock; backfill windows in the background. */
  start(): Promise<void> {
    const now = this.deps.now();
    this.adopt(this.deps.alarms.all());
    this.index.refresh(now, true);
    this.unsubscribe = this.deps.sink.onAcknowledged((ruleId, subjectId) =>
      this.acknowledge(ruleId, subjectId),
    );
    this.timer = setInterval(() => this.tick(), this.deps.tickMs);
    this.timer.unref();
    return this.backfill(now);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  /**
   * The work this driver owns changed (a cluster node took partitions over or lost them,
   * docs/cluster.md): the registry (deps.registry) answers with the devices and sites in scope
   * now. Reads it again; forgets the alarm states of the subjects out of scope (their new owner
   * has them from the shared store), and the windows of the devices out of scope; takes
   * `states`, the stored states of the subjects taken over, in place of whatever it held for
   * them; and reads back the windows of the devices taken over from the time-series store, as
   * after a restart (docs/rules.md, Time, rule 9). A pending alarm's timer, a recovering one's
   * hold and an escalation's count continue from the state the last owner stored.
   */
  async rescope(states: readonly StoredAlarm[]): Promise<void> {
    const now = this.deps.now();
    const before = new Set(this.index.slots.keys());
    this.narrow();
    this.adopt(states);
    // Subjects keep the alarm they found; the ones replaced or forgotten must be found again.
    for (const subject of this.index.subjects()) subject.alarm = undefined;
    const taken = [...this.index.slots.values()].filter((slot) => !before.has(slot.device.id));
    await this.backfillSlots(taken, now);
  }

  /** Samples held in the windows of every device and quantity. */
  windowSamples(): number {
    let samples = 0;
    for (const slot of this.index.slots.values())
      for (const quantity in slot.series) samples += (slot.series[quantity] as Series).length;
    return samples;
  }

  /** Evaluations made so far (metrics, tests). */
  get evaluationCount(): number {
    return this.evaluations;
  }

  /** Readings the store acknowledged: into the windows, then every subject they touch evaluated. */
  onStored(readings: readonly StoredReading[]): void {
    this.onStoredBatch(batchOf(readings));
  }

  /** The same, over the pipeline's columns (no object per reading). */
  onStoredBatch(readings: StoredBatch): void {
    const now = this.deps.now();
    this.index.refresh(now, false);
    // Per device first (a message's readings come together), then per subject: a site's
    // subject is evaluated once per instant for all its devices' readings. Every instant of the
    // batch, in time order, each seeing only the readings up to it: the same decisions at the
    // same instants however the device batched its readings (docs/rules.md, Time).
    const batches = this.collect(readings, now);
    const { subjects, sources } = this.bySubject(batches);
    for (let s = 0; s < subjects.length; s++) {
      const subject = subjects[s] as Subject;
      const { at, replayed } = (sources[s] as InstantSource).instants();
      for (let i = 0; i < at.length; i++) {
        this.evaluate(subject, "reading", at[i] as number, replayed[i] === true);
      }
    }
    // Pruned only now: each instant of the batch needed its own samples.
    for (const batch of batches.values()) if (batch !== null) this.pruneSlot(batch.slot);
  }

  /** Each stored reading into its device's windows and batch (null: a device not registered). */
  private collect(readings: StoredBatch, now: number): Map<string, DeviceBatch | null> {
    const batches = new Map<string, DeviceBatch | null>();
    // A message's readings come together: the previous reading's device is the likely one.
    let lastDevice: string | undefined;
    let current: DeviceBatch | null | undefined;
    for (let i = 0; i < readings.length; i++) {
      if (!readings.isStored(i)) continue;
      const deviceId = readings.deviceId(i);
      if (deviceId !== lastDevice) {
        lastDevice = deviceId;
        current = batches.get(deviceId);
        if (current === undefined) {
          current = this.deviceBatch(deviceId, now);
          batches.set(deviceId, current);
        }
      }
      if (current === null || current === undefined) continue;
      // Not pruned yet: each instant of the batch needs its own samples.
      this.addReading(current.slot, readings, i, now, false, current);
    }
    return batches;
  }

  /** A new batch of the device's readings (null: the device is not registered). */
  private deviceBatch(deviceId: string, now: number): DeviceBatch | null {
    let slot = this.index.slots.get(deviceId);
    if (
      slot === undefined &&
      (!this.missing.has(deviceId) || now - this.index.lastRegistryRefresh >= NEW_DEVICE_REFRESH_MS)
    ) {
      // A device registered (or put in service) since the last refresh: read the registry now,
      // not in 30 s, so its first reading is judged. A device still missing after that read
      // waits for the next one (at most every NEW_DEVICE_REFRESH_MS).
      this.index.refresh(now, true);
      slot = this.index.slots.get(deviceId);
      if (slot === undefined) this.missing.add(deviceId);
      else this.missing.delete(deviceId);
    }
    return slot === undefined ? null : new DeviceBatch(slot);
  }

  /**
   * The batch as each subject its devices' readings touch sees it, the subjects in the order
   * their first device's readings came: a device subject its device's batch, a site or segment
   * its devices' batches merged (no object per subject and batch where one device reported).
   */
  private bySubject(batches: ReadonlyMap<string, DeviceBatch | null>): {
    subjects: Subject[];
    sources: InstantSource[];
  } {
    const subjects: Subject[] = [];
    const sources: InstantSource[] = [];
    /** Site and segment subjects' places in the lists. */
    const shared = new Map<string, number>();
    for (const [deviceId, batch] of batches) {
      if (batch === null) continue;
      for (const subject of this.index.subjectsOf(deviceId)) {
        if (subject.type !== "device") {
          const at = shared.get(subject.alarmKey);
          if (at !== undefined) {
            const source = sources[at] as InstantSource;
            if (source instanceof SubjectBatch) source.add(batch);
            else sources[at] = new SubjectBatch(source, batch);
            continue;
          }
          shared.set(subject.alarmKey, subjects.length);
        }
        subjects.push(subject);
        sources.push(batch);
      }
    }
    return { subjects, sources };
  }

  /** The clock: every subject evaluated at now, so silence and steady values move alarms too. */
  tick(): void {
    const now = this.deps.now();
    this.index.refresh(now, false);
    if (this.deps.quietTicks === true) {
      this.quietTick(now);
      return;
    }
    for (const subject of this.index.subjects()) {
      this.evaluate(subject, "tick", this.index.clockOf(subject, now), false);
    }
  }

  /**
   * A tick that judges only the subjects due (quiet.ts): those evaluated since the last tick whose
   * wake has come, and the sleeping ones whose wake has. After the subjects were rebuilt (registry,
   * rules) or readings came without an evaluation (backfill), every subject.
   */
  private quietTick(now: number): void {
    const stamp = this.index.generation * 1_000_003 + this.unjudgedData;
    if (stamp !== this.sleepingStamp) {
      this.sleepingStamp = stamp;
      this.sleeping.clear();
      this.dirty.length = 0;
      for (const subject of this.index.subjects()) {
        // Each goes on `dirty` as it is evaluated.
        const alarm = this.alarmOf(subject);
        if (alarm !== undefined) alarm.wake = Number.NEGATIVE_INFINITY;
        this.evaluate(subject, "tick", this.index.clockOf(subject, now), false);
      }
      return;
    }
    const due: Subject[] = this.dirty.splice(0);
    // A subject's data clock is at most maxLead ahead of now.
    while (this.sleeping.peek() <= now + this.maxLead) {
      const entry = this.sleeping.pop();
      // Evaluated since it went to sleep: it is on `dirty` (or was, and sleeps again).
      if (entry !== undefined && entry.alarm.sleeps === entry.turn) due.push(entry.subject);
    }
    for (const subject of due) {
      const alarm = this.alarmOf(subject);
      if (alarm === undefined) continue;
      const at = this.index.clockOf(subject, now);
      let wake = (alarm.wake ??= this.wakeOf(subject, alarm));
      if (at >= wake) wake = alarm.wake = this.deadlineAt(subject, alarm, at);
      if (at < wake) {
        const turn = (alarm.sleeps ?? 0) + 1;
        alarm.sleeps = turn;
        this.sleeping.push(wake, { subject, alarm, turn });
      } else this.evaluate(subject, "tick", at, false);
    }
  }

  /**
   * A deadman subject whose alarm is normal (or cleared), woken at the deadline of the reading
   * it last saw: the readings since (not judged, quiet.ts) moved the deadline later, and while
   * the new one is ahead the tick would find no silence past its limit and decide nothing. The
   * new deadline, or -Infinity (judge it now). Measured over the backtest bench's city: 39,307
   * of the 5-s tick's 354,143 evaluations. Likewise a subject whose condition cannot hold at the
   * tick (quiet.ts, mayHold), woken by a wake its skipped readings moved (a window's oldest
   * reading leaving it, a k_of_n device's silence): it sleeps again until the condition may hold
   * (nextMayHold), which spared some 32,000 such wakes over the bench city's 5-s tick.
   */
  private deadlineAt(subject: Subject, alarm: Alarm, at: number): number {
    const state = alarm.state;
    const rule = subject.rule;
    const deadman = rule.condition.type === "deadman";
    if ((!deadman && !holdCheck(rule)) || isOpen(state) || state.phase === "pending") {
      return Number.NEGATIVE_INFINITY;
    }
    const view = this.index.subjectView(subject, at);
    const permitEdge = this.index.permitEdgeOf(subject);
    if (deadman) return quietUntil(rule, view, at, state, permitEdge);
    // The same for a condition that cannot hold at `at` (quiet.ts, mayHold): an evaluation there
    // would decide nothing, and the subject sleeps until it may hold (nextMayHold).
    if (mayHold(rule, view, at)) return Number.NEGATIVE_INFINITY;
    return nextMayHold(rule, view, at, permitEdge);
  }

  /** When ticks must judge the subject again after its last evaluation (quiet.ts). */
  private wakeOf(subject: Subject, alarm: Alarm): number {
    // After the last evaluation, on the data it saw (nothing new since, or it would have run).
    const rule = subject.rule;
    const at = alarm.lastAt;
    const view = this.index.subjectView(subject, at);
    const permitEdge = this.index.permitEdgeOf(subject);
    const state = alarm.state;
    // Normal (or cleared) where the condition cannot hold: until it may (quiet.ts, nextMayHold).
    if (
      (state.phase === "normal" || state.phase === "cleared") &&
      holdCheck(rule) &&
      !mayHold(rule, view, at)
    ) {
      return nextMayHold(rule, view, at, permitEdge);
    }
    return quietUntil(rule, view, at, state, permitEdge);
  }

  /** The alarm's task was acknowledged: emergency escalation stops. */
  acknowledge(ruleId: string, subjectId: string): void {
    const rule = this.deps.rules.get(ruleId);
    if (rule === undefined) return;
    const subjectKey = `${rule.subject}:${subjectId}`;
    const alarm = this.alarms.get(`${ruleId}\u0000${subjectKey}`);
    if (alarm === undefined) return;
    const now = this.deps.now();
    const step = stepAlarm(rule, alarm.state, { type: "acknowledge" }, now);
    this.store(rule, subjectKey, alarm, step.state, now);
  }

  /**
   * Graduated response's re-check at a rectification deadline: is the alarm of (rule, subject)
   * still open, and does the subject have recent data at all?
   */
  recheck(ruleId: string, subjectType: RuleSubject, subjectId: string): RecheckOutcome {
    // Fresh data first: an alarm left open by data that ended long ago is no finding (a re-check
    // 40 h after the data stopped referred two parties on such alarms; issue #18).
    const alarm = this.alarms.get(`${ruleId}\u0000${subjectType}:${subjectId}`);
    const rule = this.deps.rules.get(ruleId);
    if (rule === undefined) return "no_data";
    const key = `${subjectType}:${subjectId}`;
    const subject = {
      rule,
      type: subjectType,
      id: subjectId,
      key,
      alarmKey: `${ruleId}\u0000${key}`,
    };
    const view = this.index.subjectView(subject);
    const now = this.deps.now();
    const fresh = view.devices.some(
      (d) =>
        d.lastSeenAt !== undefined && now - d.lastSeenAt <= 3 * d.device.expectedIntervalS * 1_000,
    );
    if (!fresh) return "no_data";
    if (alarm !== undefined && isOpen(alarm.state)) return "violating";
    const at = this.index.clockOf(subject, now);
    const evaluation = evaluateCondition(rule, this.index.subjectView(subject, at), at, false);
    return evaluation.applicable && evaluation.active ? "violating" : "compliant";
  }

  private addReading(
    slot: Slot,
    readings: StoredBatch,
    i: number,
    now: number,
    prune = true,
    /** The device's batch being judged, which records the reading's instant too. */
    batch?: DeviceBatch,
  ): void {
    const timeMs = readings.timeMs(i);
    const quality = readings.quality(i);
    const replay = readings.replay(i);
    batch?.add(timeMs, replay);
    // Only what the device's rules read (the flag and instant of every reading are kept too,
    // in slot.readings).
    for (const kept of slot.kept) {
      const value = readings.value(i, kept.quantity);
      if (value === undefined) continue;
      const series = (kept.series ??= slot.series[kept.quantity] = new Series());
      series.insert(timeMs, value, quality, replay);
      if (prune) this.prune(slot, series, kept.quantity);
    }
    // Its provenance (uplink seq, receive time) once per reading, for evidence.
    slot.readings.insert(
      timeMs,
      0,
      quality,
      replay,
      readings.seq(i) ?? Number.NaN,
      readings.receivedMs(i) ?? Number.NaN,
    );
    if (prune) this.prune(slot, slot.readings, undefined);
    // Replayed readings count too: they fill the data's own timeline (a link outage whose data
    // came later is no gap in it); the real time since they arrived still shows a dead link.
    if (slot.lastSeenAt === undefined || timeMs > slot.lastSeenAt) {
      slot.lastSeenAt = timeMs;
      slot.seenArrival = this.deps.arrivalAtReading === true ? timeMs : now;
      if (timeMs - now > this.maxLead) this.maxLead = timeMs - now;
    }
    if (slot.lastQuality === undefined || !replay) slot.lastQuality = quality;
  }

  /** Every window of the device pruned (after a batch was judged). */
  private pruneSlot(slot: Slot): void {
    const series = slot.series;
    for (const quantity in series) this.prune(slot, series[quantity] as Series, quantity);
    this.prune(slot, slot.readings, undefined);
  }

  /**
   * Drop what no window needs any more (in the data's own time: a night replayed today keeps its
   * windows), and past the per-series bound the oldest.
   */
  private prune(slot: Slot, series: Series, quantity: string | undefined): void {
    const keep =
      (quantity === undefined ? slot.keepReadings : slot.keep.get(quantity)) ?? KEEP_NEWEST;
    const newest = series.length - 1;
    if (newest < 0) return;
    const horizon = series.atOf(newest) - keep;
    // The usual case after a batch: nothing held is that old.
    if (series.atOf(0) > horizon && newest < MAX_SAMPLES_PER_SERIES) return;
    // Everything at or before the horizon, but never the newest.
    let drop = Math.min(series.firstAfter(horizon), newest);
    const over = series.length - drop - MAX_SAMPLES_PER_SERIES;
    if (over > 0) {
      drop += over;
      if (quantity !== undefined) this.metrics?.samplesDropped.inc(over);
    }
    if (drop > 0) series.dropOldest(drop);
  }

  /**
   * The subject's alarm, kept on the subject once found (alarms are only ever added: a subject
   * made by the index after start() finds the stored ones).
   */
  private alarmOf(subject: Subject): Alarm | undefined {
    const kept = subject.alarm as Alarm | undefined;
    if (kept !== undefined) return kept;
    const alarm = this.alarms.get(subject.alarmKey);
    if (alarm !== undefined) subject.alarm = alarm;
    return alarm;
  }

  private evaluate(
    subject: Subject,
    type: "reading" | "tick",
    at: number,
    replayed: boolean,
  ): void {
    let alarm = this.alarmOf(subject);
    if (alarm === undefined) {
      alarm = {
        state: initialAlarmState(at),
        lastAt: at,
        clocked: false,
        wake: Number.NEGATIVE_INFINITY,
      };
      this.alarms.set(subject.alarmKey, alarm);
      subject.alarm = alarm;
    }
    if (!alarm.clocked && this.index.hasData(subject)) {
      alarm.lastAt = at;
      alarm.clocked = true;
    }
    const when = Math.max(at, alarm.lastAt);
    alarm.lastAt = when;
    if (
      type === "reading" &&
      this.deps.quietTicks === true &&
      // Scheduled: on `dirty` (wake unknown) or asleep; a new alarm is neither yet.
      alarm.wake !== Number.NEGATIVE_INFINITY &&
      quietReading(subject.rule, alarm.state, this.index.viewer(subject), when, at, alarm.judgedAt)
    ) {
      return;
    }
    if (this.deps.quietTicks === true && alarm.wake !== undefined) {
      this.dirty.push(subject);
      alarm.sleeps = (alarm.sleeps ?? 0) + 1; // awake: a heap entry of its sleep is stale
    }
    alarm.wake = undefined;
    // Silence is judged on the clock (docs/rules.md, Time): a reading only ends it.
    if (type === "reading" && subject.rule.condition.type === "deadman" && !isOpen(alarm.state)) {
      return;
    }
    alarm.judgedAt = when;
    const previouslyActive = isOpen(alarm.state);
    let view: SubjectView | undefined;
    let evaluation: Evaluation;
    if (subject.type !== "device" && this.deps.keepParts !== false && judgedInParts(subject.rule)) {
      alarm.parts ??= new SubjectParts();
      evaluation = alarm.parts.evaluate(this.index, subject, when, previouslyActive);
    } else {
      view = this.index.subjectView(subject, when);
      evaluation = evaluateCondition(subject.rule, view, when, previouslyActive);
    }
    this.evaluations++;
    this.metrics?.evaluations.inc();
    if (evaluation.degraded !== undefined) this.metrics?.degraded.inc({ rule: subject.rule.id });
    const event: AlarmEvent = { type, evaluation, replayed };
    const step = stepAlarm(subject.rule, alarm.state, event, when);
    for (const decision of step.decisions) {
      this.metrics?.decisions.inc({ type: decision.type });
      view ??= this.index.subjectView(subject, when);
      this.deliver(subject, view, evaluation, decision);
    }
    this.store(subject.rule, subject.key, alarm, step.state, when, step.decisions.length > 0);
  }

  /**
   * Keep the alarm's new state, and save it. A state whose step handed decisions over is saved
   * only once the task service has applied them (TaskSink.handled): a process killed between
   * the two then finds the state it had before and decides again (a repeat of a task already
   * filed is attached to it), where saving first would lose a task nobody filed. Until then,
   * later states of the same alarm wait with it, and the save writes the state as it is then.
   */
  private store(
    rule: Rule,
    subjectKey: string,
    alarm: Alarm,
    next: AlarmState,
    now: number,
    decided = false,
  ) {
    const changed = changedForStore(next, alarm.state);
    alarm.state = next;
    if (!changed) return;
    const key = { ruleId: rule.id, subject: subjectKey };
    const id = `${rule.id}\u0000${subjectKey}`;
    const gate = decided ? this.deps.sink.handled?.() : undefined;
    if (gate === undefined) {
      // With a save waiting for this alarm's decisions, that save writes this state too.
      if (!this.pendingSaves.has(id)) this.deps.alarms.save(key, next, now);
      return;
    }
    const saving: Promise<void> = gate.then(() => {
      if (this.pendingSaves.get(id) !== saving) return; // a later decision's save replaced it
      this.pendingSaves.delete(id);
      // Forgotten meanwhile (its partition went to another node): the new owner has it.
      if (this.alarms.get(id) !== alarm) return;
      this.deps.alarms.save(key, alarm.state, this.deps.now());
    });
    this.pendingSaves.set(id, saving);
  }

  /** Resolves once the states waiting for their decisions to be applied are saved (stop). */
  async saved(): Promise<void> {
    while (this.pendingSaves.size > 0) await Promise.all([...this.pendingSaves.values()]);
  }

  private deliver(
    subject: Subject,
    view: SubjectView,
    evaluation: Evaluation,
    decision: AlarmDecision,
  ): void {
    const rule = subject.rule;
    const deviceIds = view.devices.map((d) => d.device.id as string);
    const siteId = this.index.siteIdOf(subject);
    const notice: AlarmNotice = {
      rule,
      subjectType: subject.type,
      subjectId: subject.id,
      siteId,
      deviceIds,
      decision,
      ...(decision.type === "raise" || decision.type === "escalate-level"
        ? { evidence: evidence(rule, view, evaluation, decision, this.index.slots) }
        : {}),
    };
    try {
      this.deps.sink.handleAlarm(notice);
    } catch (error) {
      // The task store failed (disk): log loudly; the alarm state still moves, and an open
      // alarm is raised again on restart only if its state was not saved either.
      this.deps.log.error(
        {
          err: (error as Error).message,
          rule: rule.id,
          subject: subject.key,
          decision: decision.type,
        },
        "task service refused an alarm decision",
      );
    }
  }

  /** Stored states as the alarms held, in place of any held for the same (rule, subject). */
  private adopt(states: readonly StoredAlarm[]): void {
    for (const stored of states) {
      this.alarms.set(`${stored.ruleId}\u0000${stored.subject}`, {
        state: stored.state,
        lastAt: stored.state.since,
        clocked: true,
      });
    }
  }

  /**
   * The scope shrank (a partition lost): reads the registry again and forgets the alarm states
   * and windows of the subjects out of scope, at once (nothing is read from a store).
   */
  narrow(): void {
    this.index.refresh(this.deps.now(), true);
    const inScope = new Set(this.index.subjects().map((s) => s.alarmKey));
    for (const key of this.alarms.keys()) if (!inScope.has(key)) this.alarms.delete(key);
  }

  /** Windows after a restart: each device's recent stored readings, oldest first. */
  private backfill(now: number): Promise<void> {
    return this.backfillSlots([...this.index.slots.values()], now);
  }

  /** The windows of `slots` read back from the time-series store. */
  private async backfillSlots(slots: readonly Slot[], now: number): Promise<void> {
    const backfill = this.deps.backfill;
    if (backfill === undefined) return;
    for (const slot of slots) {
      // As far back as the device's own rules look, and at least far enough to find its newest
      // reading (a latest value, a quality flag, the data clock) unless it has been silent for
      // longer than RESTORE_NEWEST_INTERVALS expected intervals.
      const longest = Math.max(
        RESTORE_NEWEST_INTERVALS * slot.device.expectedIntervalS * 1_000,
        ...slot.keep.values(),
      );
      try {
        const heard = slot.lastSeenAt;
        const readings = await backfill(slot.device, now - longest, now + BACKFILL_AHEAD_MS);
        const batch = batchOf(readings.map((r) => ({ ...r, replay: false })));
        for (let i = 0; i < batch.length; i++) this.addReading(slot, batch, i, now);
        if (batch.length > 0) this.unjudgedData++;
        // The data clock continues from the newest stored reading, as if it had arrived when it
        // was measured (a restart changes nothing: docs/rules.md, Time); readings that arrived
        // live during the backfill keep their own clock.
        if (heard === undefined && slot.lastSeenAt !== undefined) {
          slot.seenArrival = Math.min(slot.lastSeenAt, now);
        }
      } catch (error) {
        this.deps.log.warn(
          { err: (error as Error).message, device: slot.device.id },
          "could not read back the device's recent readings; its windows start empty",
        );
      }
    }
  }
}
