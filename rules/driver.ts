import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type {
  Condition,
  Device,
  QualityFlag,
  Rule,
  RuleSubject,
  Site,
} from "../contracts/index.js";
import { formatDuration } from "../contracts/model/rules.js";
import type {
  AlarmNotice,
  EvidenceReading,
  RecheckOutcome,
  TaskSink,
} from "../contracts/model/alarms.js";
import {
  batchOf,
  type StoredBatch,
  type StoredReading,
} from "../contracts/model/stored-readings.js";
import type { AlarmStore } from "./alarm-store.js";
import {
  type AlarmDecision,
  type AlarmEvent,
  type AlarmState,
  type DeviceView,
  type Evaluation,
  evaluateCondition,
  initialAlarmState,
  isOpen,
  conditionRetention,
  ruleApplies,
  Series,
  stepAlarm,
  type SubjectView,
} from "./engine/index.js";
import { rulesMetrics, type RulesMetrics } from "./metrics.js";
import type { RuleSet } from "./rule-set.js";

/*
 * The rules driver: runs the pure engine (engine/) on the readings the ingest has stored and on a
 * clock tick, keeps each device's recent samples in memory (bounded by the longest window a rule
 * in force needs), persists the alarm state of every (subject, rule) and hands every decision to
 * the task service. Nothing here decides anything the engine does not.
 */

/** The registry as the driver reads it. */
export interface RulesRegistry {
  devices(): Device[];
  sites(): Site[];
}

export interface RulesDriverDeps {
  readonly log: Logger;
  readonly rules: RuleSet;
  readonly registry: RulesRegistry;
  readonly alarms: AlarmStore;
  /** Where decisions go (the task service). */
  readonly sink: TaskSink;
  /** The deployment's regulatory region (limit tables keyed by region). */
  readonly region: string;
  readonly tickMs: number;
  readonly now: () => number;
  /** The registry is read again this often (devices added or changed while running). */
  readonly registryRefreshMs?: number;
  /** The ingest's metrics registry; the driver's metrics are added to it. */
  readonly metricsRegistry?: Registry;
  /** Past samples to start from after a restart (from the time-series store). */
  readonly backfill?: (device: Device, fromMs: number, toMs: number) => Promise<StoredReading[]>;
}

interface Slot {
  device: Device;
  /** Samples of each quantity a rule applying to the device reads (the others are not kept). */
  series: Record<string, Series>;
  /** Those quantities and how far back their rules look, ms (from the device's subjects). */
  keep: ReadonlyMap<string, number>;
  /** The same quantities with their series (made at the first value), for the per-reading loop. */
  kept: Array<{ readonly quantity: string; series: Series | undefined }>;
  /** Every reading's instant and quality flag, whatever its quantities (newest only, kept). */
  readonly readings: Series;
  /**
   * Newest measurement time of the device's live (not replayed) readings: the device's data
   * clock, and "last seen" for the deadman. For a live device it is the arrival time; for a
   * device whose data lags (a simulator replaying a night, a backlog) it keeps the engine in the
   * data's own time, so windows hold the readings they are about.
   */
  lastSeenAt: number | undefined;
  /** Real time at which `lastSeenAt` arrived: the data clock runs on from there. */
  seenArrival: number;
  lastQuality: QualityFlag | undefined;
  readonly watchedSince: number;
}

interface Subject {
  readonly rule: Rule;
  readonly type: RuleSubject;
  readonly id: string;
  /** `type:id`, the subject part of the alarm key. */
  readonly key: string;
  /** `ruleId \0 type:id`: the alarm's key, built once. */
  readonly alarmKey: string;
  /**
   * Evaluated at the telling instants of a batch (a short look-back on few devices), not only
   * at its newest (see PER_READING_LOOKBACK_MS and PER_READING_MAX_DEVICES).
   */
  readonly perReading: boolean;
}

/** One device's readings in a stored batch: the instants, or only the newest. */
class DeviceBatch {
  newest = Number.NEGATIVE_INFINITY;
  /** Every reading at `newest` is replayed. */
  newestReplayed = true;
  /** Whether every instant is kept (a subject of the device evaluates per reading). */
  readonly #keep: boolean;
  /** Instants in arrival order, with each reading's replay mark and quality flag. */
  readonly #at: number[] = [];
  readonly #replayed: boolean[] = [];
  readonly #quality: QualityFlag[] = [];
  /** The instants arrived strictly in time order (the usual case: no sorting, no maps). */
  #ordered = true;
  /** The device's quality flag before the batch. */
  readonly #qualityBefore: QualityFlag | undefined;
  #sorted: Array<[number, boolean]> | undefined;
  #changes: Set<number> | undefined;

  constructor(
    readonly slot: Slot,
    keepInstants: boolean,
  ) {
    this.#keep = keepInstants;
    this.#qualityBefore = slot.lastQuality;
  }

  add(at: number, replayed: boolean, quality: QualityFlag): void {
    if (at > this.newest) {
      this.newest = at;
      this.newestReplayed = replayed;
    } else if (at === this.newest) this.newestReplayed &&= replayed;
    if (!this.#keep) return;
    const last = this.#at[this.#at.length - 1];
    if (last !== undefined && at <= last) this.#ordered = false;
    this.#at.push(at);
    this.#replayed.push(replayed);
    this.#quality.push(quality);
  }

  /**
   * The distinct instants in time order, each replayed only if every reading at it is (built
   * once, shared by the device's subjects).
   */
  instants(): ReadonlyArray<[number, boolean]> {
    if (this.#sorted !== undefined) return this.#sorted;
    if (this.#ordered) {
      this.#sorted = this.#at.map((at, i) => [at, this.#replayed[i] === true]);
    } else {
      const merged = new Map<number, boolean>();
      this.#at.forEach((at, i) =>
        merged.set(at, (merged.get(at) ?? true) && this.#replayed[i] === true),
      );
      this.#sorted = [...merged].sort((x, y) => x[0] - y[0]);
    }
    return this.#sorted;
  }

  /**
   * Instants whose quality flag differs from the device's reading before (in time order); built
   * once, shared by the device's quality rules.
   */
  qualityChanges(): ReadonlySet<number> {
    if (this.#changes !== undefined) return this.#changes;
    const into = (this.#changes = new Set<number>());
    let before = this.#qualityBefore;
    if (this.#ordered) {
      this.#at.forEach((at, i) => {
        const quality = this.#quality[i];
        if (quality !== before) into.add(at);
        before = quality;
      });
      return into;
    }
    // Out of order: the last reading to arrive at an instant is the one kept (Series.insert).
    const byTime = new Map<number, QualityFlag>();
    this.#at.forEach((at, i) => byTime.set(at, this.#quality[i] as QualityFlag));
    for (const [at] of this.instants()) {
      const quality = byTime.get(at);
      if (quality !== before) into.add(at);
      before = quality;
    }
    return into;
  }
}

/** The batch as one subject sees it: its devices' readings together. */
class SubjectBatch {
  readonly #devices: DeviceBatch[];

  constructor(
    readonly subject: Subject,
    first: DeviceBatch,
  ) {
    this.#devices = [first];
  }

  add(batch: DeviceBatch): void {
    this.#devices.push(batch);
  }

  get newest(): number {
    let newest = Number.NEGATIVE_INFINITY;
    for (const d of this.#devices) newest = Math.max(newest, d.newest);
    return newest;
  }

  /** Every reading at the newest instant is replayed. */
  get newestReplayed(): boolean {
    const newest = this.newest;
    return this.#devices.every((d) => d.newest !== newest || d.newestReplayed);
  }

  /** Instants at which a device's quality flag changed. */
  qualityChanges(): ReadonlySet<number> {
    if (this.#devices.length === 1) return (this.#devices[0] as DeviceBatch).qualityChanges();
    const changes = new Set<number>();
    for (const d of this.#devices) for (const at of d.qualityChanges()) changes.add(at);
    return changes;
  }

  /** Every instant of the subject's readings, in time order. */
  instants(): ReadonlyArray<[number, boolean]> {
    if (this.#devices.length === 1) return (this.#devices[0] as DeviceBatch).instants();
    const merged = new Map<number, boolean>();
    for (const d of this.#devices)
      for (const [at, replayed] of d.instants())
        merged.set(at, (merged.get(at) ?? true) && replayed);
    return [...merged].sort((a, b) => a[0] - b[0]);
  }
}

interface Alarm {
  state: AlarmState;
  /** Last instant evaluated: evaluations never go back in time. */
  lastAt: number;
  /**
   * `lastAt` is on the subject's data clock. Until the subject's first reading it is real time
   * (deadman of a device never heard), and the first reading may set it back to the data's time.
   */
  clocked: boolean;
}

/**
 * Samples kept per device and quantity at most, whatever the windows say: a device reporting far
 * faster than its rules need cannot grow memory without bound. Past it the oldest are dropped
 * (counted in citywatch_rules_samples_dropped_total). A day of 5-s samples fits.
 */
export const MAX_SAMPLES_PER_SERIES = 20_000;

/** A reading of a device the driver does not know reads the registry again, at most this often. */
const NEW_DEVICE_REFRESH_MS = 1_000;

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

/** One line on how the deciding value is computed, for the evidence package. */
export function describeCondition(condition: Condition, timeZone: string): string {
  const over = (c: { window?: number | undefined; align: string }) =>
    c.window === undefined
      ? "the latest reading"
      : `${c.align === "clock" ? `clock-aligned ${formatDuration(c.window)} intervals (${timeZone})` : `a rolling ${formatDuration(c.window)} window`}`;
  switch (condition.type) {
    case "threshold": {
      const how =
        condition.aggregate === "energy_mean"
          ? "energy mean 10·log10(mean(10^(L/10)))"
          : condition.aggregate;
      const count =
        condition.nOfM !== undefined
          ? `; ${condition.nOfM.n} of the last ${condition.nOfM.m} intervals`
          : condition.exceedances !== undefined
            ? `; more than ${condition.exceedances.allowedPerDay} violating intervals per local day`
            : "";
      return `${how} of ${condition.quantity} over ${over(condition)}${count}`;
    }
    case "k_of_n":
      return `${condition.aggregate} of ${condition.quantity} over ${over(condition)} on each device; at least ${condition.k} devices voting`;
    case "rate_of_rise":
      return `rise of ${condition.quantity} (newest minus oldest) within ${formatDuration(condition.window)}`;
    case "state":
      return `latest ${condition.terms.map((t) => `${t.quantity} is ${String(t.is)}`).join(condition.match === "all" ? " and " : " or ")}`;
    case "deadman":
      return `no reading for more than ${condition.factor} expected intervals`;
    case "quality":
      return `newest reading flagged ${condition.flags.join(" or ") || "(none)"}${condition.calibrationExpired ? " or calibration expired" : ""}`;
  }
}

/**
 * Conditions that look back this far at most are evaluated at every reading of a batch, in
 * order: a short spike or a fast rise inside one edge batch must not be missed. Longer windows
 * (hourly means, daily counts) see the whole batch from its newest instant, and evaluating them
 * per reading would walk the window once per reading.
 */
const PER_READING_LOOKBACK_MS = 10 * 60_000;

/**
 * A site or segment with more devices than this is evaluated once per batch: each evaluation
 * walks every device, so per reading it would cost devices × readings (a tunnel segment has a
 * few detectors; a site of fifty devices would spend the ingest's time here).
 */
const PER_READING_MAX_DEVICES = 8;

const NO_PERMITS: readonly string[] = [];

/** Instants of one batch evaluated at most for one subject (see RulesDriver.telling). */
const TELLING_INSTANTS = 4;

function quantitiesOf(condition: Condition): string[] {
  if (condition.type === "state") return condition.terms.map((t) => t.quantity);
  return "quantity" in condition ? [condition.quantity] : [];
}

export class RulesDriver {
  private readonly slots = new Map<string, Slot>();
  private sites = new Map<string, Site>();
  /** Sites' permits with their validity parsed once (sites without permits absent). */
  private permits = new Map<string, Array<{ type: string; from: number; to: number }>>();
  private devicesBySite = new Map<string, string[]>();
  private subjectsByDevice = new Map<string, Subject[]>();
  /** Devices with a subject evaluated per reading: their batches keep every instant. */
  private instantDevices = new Set<string>();
  private readonly alarms = new Map<string, Alarm>();
  private rulesGeneration = -1;
  private lastRegistryRefresh = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private evaluations = 0;
  private readonly metrics: RulesMetrics | undefined;

  constructor(private readonly deps: RulesDriverDeps) {
    this.metrics =
      deps.metricsRegistry === undefined
        ? undefined
        : rulesMetrics(deps.metricsRegistry, {
            openAlarms: () => [...this.alarms.values()].filter((a) => isOpen(a.state)).length,
            windowSamples: () => this.windowSamples(),
          });
  }

  /** Load persisted alarms and the registry, start the clock; backfill windows in the background. */
  start(): Promise<void> {
    const now = this.deps.now();
    for (const stored of this.deps.alarms.all()) {
      this.alarms.set(`${stored.ruleId}\u0000${stored.subject}`, {
        state: stored.state,
        lastAt: stored.state.since,
        clocked: true,
      });
    }
    this.refresh(now, true);
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

  /** Samples held in the windows of every device and quantity. */
  windowSamples(): number {
    let samples = 0;
    for (const slot of this.slots.values())
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
    this.refresh(now, false);
    // Per device first (a message's readings come together), then per subject: a site's
    // subject is evaluated once per instant for all its devices' readings. A subject evaluated
    // per reading (see Subject.perReading) needs every instant of the batch; the others only
    // the newest.
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
          let slot = this.slots.get(deviceId);
          if (slot === undefined && now - this.lastRegistryRefresh >= NEW_DEVICE_REFRESH_MS) {
            // A device registered since the last refresh: read the registry now, not in 30 s.
            this.refresh(now, true);
            slot = this.slots.get(deviceId);
          }
          current =
            slot === undefined ? null : new DeviceBatch(slot, this.instantDevices.has(deviceId));
          batches.set(deviceId, current);
        }
      }
      if (current === null || current === undefined) continue;
      // Pruned after the evaluations below: each instant of the batch needs its own samples.
      this.addReading(current.slot, readings, i, now, false, current);
    }
    const touched = new Map<string, SubjectBatch>();
    for (const [deviceId, batch] of batches) {
      if (batch === null) continue;
      for (const subject of this.subjectsByDevice.get(deviceId) ?? []) {
        const entry = touched.get(subject.alarmKey);
        if (entry === undefined) touched.set(subject.alarmKey, new SubjectBatch(subject, batch));
        else entry.add(batch);
      }
    }
    for (const entry of touched.values()) {
      const subject = entry.subject;
      if (subject.perReading) {
        for (const [at, replayed] of this.telling(entry))
          this.evaluate(subject, "reading", at, replayed);
      } else this.evaluate(subject, "reading", entry.newest, entry.newestReplayed);
    }
    for (const batch of batches.values()) {
      if (batch === null) continue;
      const series = batch.slot.series;
      for (const quantity in series) this.prune(batch.slot, series[quantity] as Series, quantity);
      this.prune(batch.slot, batch.slot.readings, undefined);
    }
  }

  /** The clock: every subject evaluated at now, so silence and steady values move alarms too. */
  tick(): void {
    const now = this.deps.now();
    this.refresh(now, false);
    const seen = new Set<string>();
    for (const subjects of this.subjectsByDevice.values()) {
      for (const subject of subjects) {
        const key = subject.alarmKey;
        if (seen.has(key)) continue;
        seen.add(key);
        this.evaluate(subject, "tick", this.clockOf(subject, now), false);
      }
    }
  }

  /**
   * The instant a tick evaluates a subject at: its devices' data clock (newest reading time plus
   * the real time since it arrived), real time for a subject never heard from. For live devices
   * this is now; for data that lags real time it is the data's own time.
   */
  private clockOf(subject: Subject, now: number): number {
    let clock: number | undefined;
    for (const d of this.subjectView(subject).devices) {
      const slot = this.slots.get(d.device.id);
      if (slot?.lastSeenAt === undefined) continue;
      const c = slot.lastSeenAt + (now - slot.seenArrival);
      clock = clock === undefined ? c : Math.max(clock, c);
    }
    return clock ?? now;
  }

  /**
   * The instants of a batch worth evaluating, in time order: all of them when few, otherwise the
   * newest and the ones that can decide — the most extreme values on the raising side (a spike),
   * the longest gaps (deadman), the changes of state or quality flag. Each evaluation walks the
   * subject's windows, so one per reading of a long batch would cost the ingest its throughput.
   */
  private telling(batch: SubjectBatch): ReadonlyArray<[number, boolean]> {
    const subject = batch.subject;
    const instants = batch.instants();
    if (instants.length <= TELLING_INSTANTS) return instants;
    const c = subject.rule.condition;
    const slots = (
      subject.type === "device" ? [subject.id] : (this.devicesBySite.get(subject.id) ?? [])
    )
      .map((id) => this.slots.get(id))
      .filter((slot): slot is Slot => slot !== undefined);
    // Only the batch's own span of each series is read (the windows can be long).
    const first = instants[0]?.[0] ?? 0;
    const valuesAt = (quantity: string) => {
      const byTime = new Map<number, number>();
      for (const slot of slots) {
        const series = slot.series[quantity];
        if (series === undefined) continue;
        for (let i = series.firstAtOrAfter(first); i < series.length; i++) {
          const at = series.atOf(i);
          byTime.set(at, Math.max(byTime.get(at) ?? -Infinity, series.numberOf(i)));
        }
      }
      return byTime;
    };
    let score: (at: number, i: number) => number;
    switch (c.type) {
      case "deadman": {
        // Only a silence longer than the limit can raise (the newest instant clears): the gap
        // before each instant within the batch. Not the one before its first: rounds are stored
        // concurrently, so the readings just before a batch may be in another round still in
        // flight (the clock tick judges silence between batches, in real time).
        const interval = Math.min(...slots.map((slot) => slot.device.expectedIntervalS));
        const limit = c.factor * interval * 1_000;
        score = (at, i) => {
          const gap = at - (instants[i - 1]?.[0] ?? at);
          return gap > limit ? gap : -Infinity;
        };
        break;
      }
      case "threshold":
      case "k_of_n":
      case "rate_of_rise": {
        const values = valuesAt(c.quantity);
        const sign = c.type !== "rate_of_rise" && (c.op === "<" || c.op === "<=") ? -1 : 1;
        score = (at) => {
          const value = values.get(at);
          return value === undefined ? -Infinity : sign * value;
        };
        break;
      }
      case "quality": {
        // A reading whose flag differs from the device's reading before it can move the alarm.
        const changes = batch.qualityChanges();
        score = (at) => (changes.has(at) ? 1 : -Infinity);
        break;
      }
      case "state": {
        // A change of switch states from the reading before: one pass over the batch's span of
        // the terms' series gives each instant's states, then neighbours are compared.
        const keys = new Map<number, string>();
        const quantities = c.terms.map((t) => t.quantity);
        for (const slot of slots) {
          for (const quantity of quantities) {
            const series = slot.series[quantity];
            if (series === undefined) continue;
            for (let i = series.firstAtOrAfter(first); i < series.length; i++) {
              const at = series.atOf(i);
              const part = `${slot.device.id}:${quantity}=${String(series.valueOf(i))}`;
              keys.set(at, `${keys.get(at) ?? ""}|${part}`);
            }
          }
        }
        score = (at, i) => {
          const before = instants[i - 1]?.[0];
          return before === undefined || keys.get(before) !== keys.get(at) ? 1 : -Infinity;
        };
        break;
      }
    }
    // The newest, and the TELLING_INSTANTS - 1 best scores of the others (earliest wins a tie);
    // an instant scored -Infinity cannot move the alarm and is never picked.
    const last = instants.length - 1;
    const best: number[] = [];
    const scores: number[] = [];
    for (let i = 0; i < last; i++) {
      const at = (instants[i] as [number, boolean])[0];
      const value = score(at, i);
      if (value === -Infinity) continue;
      let j = best.length;
      while (j > 0 && (scores[j - 1] as number) < value) j--;
      if (j >= TELLING_INSTANTS - 1) continue;
      best.splice(j, 0, i);
      scores.splice(j, 0, value);
      if (best.length > TELLING_INSTANTS - 1) {
        best.pop();
        scores.pop();
      }
    }
    best.sort((a, b) => a - b);
    best.push(last);
    return best.map((i) => instants[i] as [number, boolean]);
  }

  /** Whether any device of the subject has sent a live reading (has a data clock). */
  private hasData(subject: Subject): boolean {
    if (subject.type === "device") return this.slots.get(subject.id)?.lastSeenAt !== undefined;
    return (this.devicesBySite.get(subject.id) ?? []).some(
      (id) => this.slots.get(id)?.lastSeenAt !== undefined,
    );
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
    const alarm = this.alarms.get(`${ruleId}\u0000${subjectType}:${subjectId}`);
    if (alarm !== undefined && isOpen(alarm.state)) return "violating";
    const rule = this.deps.rules.get(ruleId);
    if (rule === undefined) return "no_data";
    const key = `${subjectType}:${subjectId}`;
    const subject = {
      rule,
      type: subjectType,
      id: subjectId,
      key,
      alarmKey: `${ruleId}\u0000${key}`,
      perReading: false,
    };
    const view = this.subjectView(subject);
    const now = this.deps.now();
    const fresh = view.devices.some(
      (d) =>
        d.lastSeenAt !== undefined && now - d.lastSeenAt <= 3 * d.device.expectedIntervalS * 1_000,
    );
    if (!fresh) return "no_data";
    const at = this.clockOf(subject, now);
    const evaluation = evaluateCondition(rule, this.subjectView(subject, at), at, false);
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
    batch?.add(timeMs, replay, quality);
    // Only what the device's rules read (the flag and instant of every reading are kept too,
    // in slot.readings).
    for (const kept of slot.kept) {
      const value = readings.value(i, kept.quantity);
      if (value === undefined) continue;
      const series = (kept.series ??= slot.series[kept.quantity] = new Series());
      series.insert(timeMs, value, quality, replay);
      if (prune) this.prune(slot, series, kept.quantity);
    }
    slot.readings.insert(timeMs, 0, quality, replay);
    if (prune) this.prune(slot, slot.readings, undefined);
    // Replayed readings count too: they fill the data's own timeline (a link outage whose data
    // came later is no gap in it); the real time since they arrived still shows a dead link.
    if (slot.lastSeenAt === undefined || timeMs > slot.lastSeenAt) {
      slot.lastSeenAt = timeMs;
      slot.seenArrival = now;
    }
    if (slot.lastQuality === undefined || !replay) slot.lastQuality = quality;
  }

  /**
   * Drop what no window needs any more (in the data's own time: a night replayed today keeps its
   * windows), and past the per-series bound the oldest.
   */
  private prune(slot: Slot, series: Series, quantity: string | undefined): void {
    const keep = (quantity === undefined ? undefined : slot.keep.get(quantity)) ?? KEEP_NEWEST;
    const newest = series.length - 1;
    if (newest < 0) return;
    // Everything at or before the horizon, but never the newest.
    let drop = Math.min(series.firstAfter(series.atOf(newest) - keep), newest);
    const over = series.length - drop - MAX_SAMPLES_PER_SERIES;
    if (over > 0) {
      drop += over;
      if (quantity !== undefined) this.metrics?.samplesDropped.inc(over);
    }
    if (drop > 0) series.dropOldest(drop);
  }

  private evaluate(
    subject: Subject,
    type: "reading" | "tick",
    at: number,
    replayed: boolean,
  ): void {
    const key = subject.alarmKey;
    let alarm = this.alarms.get(key);
    if (alarm === undefined) {
      alarm = { state: initialAlarmState(at), lastAt: at, clocked: false };
      this.alarms.set(key, alarm);
    }
    if (!alarm.clocked && this.hasData(subject)) {
      alarm.lastAt = at;
      alarm.clocked = true;
    }
    const when = Math.max(at, alarm.lastAt);
    alarm.lastAt = when;
    // Deadman on a reading: the silence is the gap before it, in the data's own time. Not for
    // readings older than what was judged already (a round stored after a later one, a replay):
    // they fill a gap, they cannot open one.
    const gapBefore =
      type === "reading" && subject.rule.condition.type === "deadman" && at === when;
    const view = this.subjectView(subject, when, gapBefore);
    const evaluation = evaluateCondition(subject.rule, view, when, isOpen(alarm.state));
    this.evaluations++;
    this.metrics?.evaluations.inc();
    const event: AlarmEvent = { type, evaluation, replayed };
    const step = stepAlarm(subject.rule, alarm.state, event, when);
    for (const decision of step.decisions) {
      this.metrics?.decisions.inc({ type: decision.type });
      this.deliver(subject, view, evaluation, decision);
    }
    this.store(subject.rule, subject.key, alarm, step.state, when);
  }

  private store(rule: Rule, subjectKey: string, alarm: Alarm, next: AlarmState, now: number) {
    const changed = changedForStore(next, alarm.state);
    alarm.state = next;
    if (changed) this.deps.alarms.save({ ruleId: rule.id, subject: subjectKey }, next, now);
  }

  private deliver(
    subject: Subject,
    view: SubjectView,
    evaluation: Evaluation,
    decision: AlarmDecision,
  ): void {
    const rule = subject.rule;
    const deviceIds = view.devices.map((d) => d.device.id as string);
    const siteId =
      subject.type === "device" ? this.slots.get(subject.id)?.device.siteId : subject.id;
    const notice: AlarmNotice = {
      rule,
      subjectType: subject.type,
      subjectId: subject.id,
      siteId,
      deviceIds,
      decision,
      ...(decision.type === "raise" || decision.type === "escalate-level"
        ? { evidence: this.evidence(rule, view, evaluation, decision) }
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

  /** The raw readings of the rule's evidence window, from the windows in memory. */
  private evidence(
    rule: Rule,
    view: SubjectView,
    evaluation: Evaluation,
    decision: Extract<AlarmDecision, { type: "raise" | "escalate-level" }>,
  ) {
    const from =
      (decision.type === "raise" ? decision.startedAt : decision.at) - rule.evidence.window;
    const to = decision.at;
    const quantities = quantitiesOf(rule.condition);
    const readings: EvidenceReading[] = [];
    for (const d of view.devices) {
      const byTime = new Map<number, { quality: QualityFlag; values: Record<string, number> }>();
      for (const q of quantities) {
        const series = this.slots.get(d.device.id)?.series[q];
        if (series === undefined) continue;
        for (let i = series.firstAfter(from); i < series.length && series.atOf(i) <= to; i++) {
          const at = series.atOf(i);
          const row = byTime.get(at) ?? { quality: series.qualityOf(i), values: {} };
          // Switch states are recorded as 1 (on) and 0 (off).
          row.values[q] = series.numberOf(i);
          byTime.set(at, row);
        }
      }
      for (const [at, row] of [...byTime].sort((a, b) => a[0] - b[0])) {
        readings.push({
          deviceId: d.device.id,
          ts: new Date(at).toISOString(),
          quality: row.quality,
          values: row.values,
        });
      }
    }
    return {
      readings,
      method: `${describeCondition(rule.condition, rule.schedule.timeZone)}; ${evaluation.detail}`,
      windowStart: new Date(from).toISOString(),
      windowEnd: new Date(to).toISOString(),
      value: decision.value,
      limit: decision.limit,
    };
  }

  /**
   * What the engine sees of a subject; `at` selects the permits valid then. `gapBefore`: each
   * device was last seen at its newest reading before `at` (the gap that ends at `at`).
   */
  private subjectView(subject: Subject, at?: number, gapBefore = false): SubjectView {
    const siteId =
      subject.type === "device" ? this.slots.get(subject.id)?.device.siteId : subject.id;
    const site = siteId === undefined ? undefined : this.sites.get(siteId);
    const sitePermits = siteId === undefined ? undefined : this.permits.get(siteId);
    const permits =
      at === undefined || sitePermits === undefined
        ? NO_PERMITS
        : sitePermits.filter((p) => p.from <= at && at < p.to).map((p) => p.type);
    const common = { region: this.deps.region, permits };
    if (subject.type === "device") {
      const slot = this.slots.get(subject.id);
      const seenBefore = gapBefore && at !== undefined ? at : undefined;
      return {
        ...common,
        site,
        devices: slot === undefined ? [] : [this.deviceView(slot, seenBefore, at)],
      };
    }
    const kinds = subject.rule.scope.kinds;
    const devices = (this.devicesBySite.get(subject.id) ?? [])
      .map((id) => this.slots.get(id))
      .filter((s): s is Slot => s !== undefined && kinds.includes(s.device.kind))
      .map((s) => this.deviceView(s, gapBefore ? at : undefined, at));
    return { ...common, site, devices };
  }

  /**
   * The device as the engine sees it at `at` (default: now): its quality flag is that of its
   * newest reading at or before `at`, so an earlier instant of a batch sees its own flag.
   */
  private deviceView(slot: Slot, seenBefore?: number, at?: number): DeviceView {
    return {
      device: slot.device,
      series: slot.series,
      lastSeenAt: seenBefore === undefined ? slot.lastSeenAt : newestBefore(slot, seenBefore),
      lastQuality:
        at === undefined || slot.lastSeenAt === undefined || at >= slot.lastSeenAt
          ? slot.lastQuality
          : (qualityAt(slot, at) ?? slot.lastQuality),
      watchedSince: slot.watchedSince,
    };
  }

  /** Read the registry and the rules again when due or changed; rebuild the subjects. */
  private refresh(now: number, force: boolean): void {
    const rulesChanged = this.deps.rules.generation !== this.rulesGeneration;
    const due = now - this.lastRegistryRefresh >= (this.deps.registryRefreshMs ?? 30_000);
    if (!force && !rulesChanged && !due) return;
    this.rulesGeneration = this.deps.rules.generation;
    this.lastRegistryRefresh = now;
    this.sites = new Map(this.deps.registry.sites().map((s) => [s.id, s]));
    this.permits = new Map();
    for (const site of this.sites.values()) {
      if (site.permits === undefined || site.permits.length === 0) continue;
      this.permits.set(
        site.id,
        site.permits.map((p) => ({
          type: p.type,
          from: Date.parse(p.validFrom),
          to: Date.parse(p.validTo),
        })),
      );
    }
    const devices = this.deps.registry.devices();
    const present = new Set(devices.map((d) => d.id as string));
    for (const id of this.slots.keys()) if (!present.has(id)) this.slots.delete(id);
    this.devicesBySite = new Map();
    for (const device of devices) {
      const slot = this.slots.get(device.id);
      if (slot === undefined) {
        this.slots.set(device.id, {
          device,
          series: {},
          keep: new Map(),
          kept: [],
          readings: new Series(),
          lastSeenAt: undefined,
          seenArrival: now,
          lastQuality: undefined,
          watchedSince: now,
        });
      } else slot.device = device;
      const onSite = this.devicesBySite.get(device.siteId);
      if (onSite === undefined) this.devicesBySite.set(device.siteId, [device.id]);
      else onSite.push(device.id);
    }
    this.subjectsByDevice = new Map();
    this.instantDevices = new Set();
    for (const slot of this.slots.values()) {
      const device = slot.device;
      if (!device.enabled) continue;
      const site = this.sites.get(device.siteId);
      const subjects: Subject[] = [];
      for (const rule of this.deps.rules.forKind(device.kind)) {
        const view = this.deviceView(slot);
        const scope = { site, devices: [view], region: this.deps.region };
        if (!ruleApplies(rule, device.kind, view, scope)) continue;
        const type = rule.subject;
        const id = type === "device" ? device.id : device.siteId;
        const key = `${type}:${id}`;
        const size = type === "device" ? 1 : (this.devicesBySite.get(id)?.length ?? 0);
        const perReading =
          conditionRetention(rule.condition) <= PER_READING_LOOKBACK_MS &&
          size <= PER_READING_MAX_DEVICES;
        if (perReading) this.instantDevices.add(device.id);
        subjects.push({ rule, type, id, key, alarmKey: `${rule.id}\u0000${key}`, perReading });
      }
      this.subjectsByDevice.set(device.id, subjects);
      // Windows only for what the device's own rules read, as far back as they look.
      const keep = new Map<string, number>();
      for (const subject of subjects) {
        const c = subject.rule.condition;
        for (const q of quantitiesOf(c))
          keep.set(q, Math.max(keep.get(q) ?? 0, conditionRetention(c)));
      }
      slot.keep = keep;
      for (const q of Object.keys(slot.series)) if (!keep.has(q)) delete slot.series[q];
      slot.kept = [...keep.keys()].map((quantity) => ({ quantity, series: slot.series[quantity] }));
    }
  }

  /** Windows after a restart: each device's recent stored readings, oldest first. */
  private async backfill(now: number): Promise<void> {
    const backfill = this.deps.backfill;
    if (backfill === undefined) return;
    for (const slot of [...this.slots.values()]) {
      // As far back as the device's own rules look; nothing for a device whose rules keep none.
      const longest = Math.max(0, ...slot.keep.values());
      if (longest === 0) continue;
      try {
        const readings = await backfill(slot.device, now - longest, now);
        const batch = batchOf(readings.map((r) => ({ ...r, replay: false })));
        for (let i = 0; i < batch.length; i++) this.addReading(slot, batch, i, now);
        // What was stored before the restart says nothing of the link now.
        slot.lastSeenAt = undefined;
        slot.seenArrival = now;
      } catch (error) {
        this.deps.log.warn(
          { err: (error as Error).message, device: slot.device.id },
          "could not read back the device's recent readings; its windows start empty",
        );
      }
    }
  }
}

/** The newest reading time strictly before `at` (undefined: none kept). */
function newestBefore(slot: Slot, at: number): number | undefined {
  const i = slot.readings.firstAtOrAfter(at) - 1;
  return i >= 0 ? slot.readings.atOf(i) : undefined;
}

/** Quality flag of the newest reading at or before `at` (undefined: none kept). */
function qualityAt(slot: Slot, at: number): QualityFlag | undefined {
  const i = slot.readings.firstAfter(at) - 1;
  return i >= 0 ? slot.readings.qualityOf(i) : undefined;
}
