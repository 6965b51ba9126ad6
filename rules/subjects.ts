import type {
  Condition,
  Device,
  QualityFlag,
  Rule,
  RuleSubject,
  Site,
} from "../contracts/index.js";
import {
  conditionRetention,
  type DeviceView,
  ruleApplies,
  Series,
  type SubjectView,
} from "./engine/index.js";
import type { RuleSet } from "./rule-set.js";

/*
 * The subject index: what the rules driver knows of the registry and the rules in force. Each
 * device's slot (its windows and data clock), the sites and their permits, and the subjects (a
 * rule and the device, site or segment it judges) each device's readings touch; rebuilt when the
 * rules change and whenever the registry is due to be read again.
 */

/** The registry as the driver reads it. */
export interface RulesRegistry {
  devices(): Device[];
  sites(): Site[];
}

/** What the index reads: the rules in force and the registry. */
export interface SubjectIndexDeps {
  readonly rules: RuleSet;
  readonly registry: RulesRegistry;
  /** The deployment's regulatory region (limit tables keyed by region). */
  readonly region: string;
  /** The registry is read again this often (devices added or changed while running). */
  readonly registryRefreshMs?: number;
}

export interface Slot {
  device: Device;
  /** Samples of each quantity a rule applying to the device reads (the others are not kept). */
  series: Record<string, Series>;
  /** Those quantities and how far back their rules look, ms (from the device's subjects). */
  keep: ReadonlyMap<string, number>;
  /** The same quantities with their series (made at the first value), for the per-reading loop. */
  kept: Array<{ readonly quantity: string; series: Series | undefined }>;
  /**
   * Every reading's instant, quality flag, replay flag, uplink seq and receive time, whatever its
   * quantities (a series with provenance), kept as far back as the longest window of `keep`
   * (`keepReadings`; the newest always): evidence packages cite the seq and receive time of each
   * reading they hold.
   */
  readonly readings: Series;
  /** How far back `readings` is kept, ms: the longest of `keep` (0: the newest only). */
  keepReadings: number;
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
  /**
   * The device as the engine sees it now (deviceView): one object, brought up to date in place
   * when the device's newest reading, flag or registration changes. Views are read at once and
   * never kept (a view of a past instant is an object of its own).
   */
  view?: Mutable<DeviceView> | undefined;
}

export interface Subject {
  readonly rule: Rule;
  readonly type: RuleSubject;
  readonly id: string;
  /** `type:id`, the subject part of the alarm key. */
  readonly key: string;
  /** `ruleId \0 type:id`: the alarm's key, built once. */
  readonly alarmKey: string;
  /** The index's shape of the subject, kept on it (SubjectIndex only). */
  shape?: SubjectShape | undefined;
  /** The driver's alarm of the subject, kept on it (RulesDriver only). */
  alarm?: object | undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A subject's site and permits, its devices' slots, and the view built last (subjectView). */
export interface SubjectShape {
  /** The index's generation it was made in: valid until the subjects are rebuilt. */
  readonly generation: number;
  readonly shell: SubjectView;
  readonly slots: readonly Slot[];
  view: SubjectView | undefined;
  readonly viewAt: (at?: number) => SubjectView;
  readonly permitEdge: (after: number) => number;
}

const NO_PERMITS: readonly string[] = [];
const NO_PERMITS_AT = (): readonly string[] => NO_PERMITS;
const NO_SUBJECTS: readonly Subject[] = [];

/** The quantities a condition reads. */
export function quantitiesOf(condition: Condition): string[] {
  if (condition.type === "state") return condition.terms.map((t) => t.quantity);
  return "quantity" in condition ? [condition.quantity] : [];
}

export class SubjectIndex {
  /** Every registered device's slot, by device id. */
  readonly slots = new Map<string, Slot>();
  private sites = new Map<string, Site>();
  /** Sites' permits valid at an instant, validity parsed once (sites without permits absent). */
  private permitsAt = new Map<string, (at: number) => readonly string[]>();
  /** Sites' permits' starts and ends, sorted (sites without permits absent). */
  private permitEdges = new Map<string, readonly number[]>();
  /** Every subject once (a site's subject is in each of its devices' lists), per rebuild. */
  private unique: readonly Subject[] | undefined;
  private devicesBySite = new Map<string, string[]>();
  private subjectsByDevice = new Map<string, Subject[]>();
  private rulesGeneration = -1;
  private lastRefresh = 0;
  /** Rebuilt with the subjects: what was computed of a subject before may be stale. */
  private built = 0;
  private readonly partSlotsBySubject = new Map<string, Slot[]>();
  /** Each subject's site, permits and devices, by alarm key, rebuilt with the subjects. */
  private readonly shapes = new Map<string, SubjectShape>();

  constructor(private readonly deps: SubjectIndexDeps) {}

  /** Counts the rebuilds of the subjects (registry read again, rules changed). */
  get generation(): number {
    return this.built;
  }

  /** The slots a site or segment subject is judged over: its devices of the rule's kinds. */
  partSlots(subject: Subject): readonly Slot[] {
    let slots = this.partSlotsBySubject.get(subject.alarmKey);
    if (slots === undefined) {
      const kinds = subject.rule.scope.kinds;
      slots = this.slotsOf(subject).filter((s) => kinds.includes(s.device.kind));
      this.partSlotsBySubject.set(subject.alarmKey, slots);
    }
    return slots;
  }

  /** When the registry was last read (real time). */
  get lastRegistryRefresh(): number {
    return this.lastRefresh;
  }

  /** The subjects a device's readings touch (none for a device unknown or disabled). */
  subjectsOf(deviceId: string): readonly Subject[] {
    return this.subjectsByDevice.get(deviceId) ?? NO_SUBJECTS;
  }

  /** Every subject once (a site's subject is in each of its devices' lists), device by device. */
  subjects(): readonly Subject[] {
    if (this.unique === undefined) {
      const byKey = new Map<string, Subject>();
      for (const list of this.subjectsByDevice.values())
        for (const subject of list)
          if (!byKey.has(subject.alarmKey)) byKey.set(subject.alarmKey, subject);
      this.unique = [...byKey.values()];
    }
    return this.unique;
  }

  /** permitEdgeAfter of the subject, as a function kept per subject. */
  permitEdgeOf(subject: Subject): (after: number) => number {
    return this.shape(subject).permitEdge;
  }

  /** The first start or end of a permit of the subject's site after `after` (+Infinity: none). */
  permitEdgeAfter(subject: Subject, after: number): number {
    const siteId = this.siteIdOf(subject);
    const edges = siteId === undefined ? undefined : this.permitEdges.get(siteId);
    if (edges !== undefined) for (const t of edges) if (t > after) return t;
    return Number.POSITIVE_INFINITY;
  }

  /** The site of a subject: a device's site, or the site or segment itself. */
  siteIdOf(subject: Subject): string | undefined {
    return subject.type === "device" ? this.slots.get(subject.id)?.device.siteId : subject.id;
  }

  /** The slots of a subject's devices: the device, or every device of the site, of any kind. */
  slotsOf(subject: Subject): Slot[] {
    return (subject.type === "device" ? [subject.id] : (this.devicesBySite.get(subject.id) ?? []))
      .map((id) => this.slots.get(id))
      .filter((slot): slot is Slot => slot !== undefined);
  }

  /** Whether any device of the subject has sent a live reading (has a data clock). */
  hasData(subject: Subject): boolean {
    if (subject.type === "device") return this.slots.get(subject.id)?.lastSeenAt !== undefined;
    return (this.devicesBySite.get(subject.id) ?? []).some(
      (id) => this.slots.get(id)?.lastSeenAt !== undefined,
    );
  }

  /**
   * The instant a tick evaluates a subject at: its devices' data clock (newest reading time plus
   * the real time since it arrived), real time for a subject never heard from. For live devices
   * this is now; for data that lags real time it is the data's own time.
   */
  clockOf(subject: Subject, now: number): number {
    let clock: number | undefined;
    for (const slot of this.partSlots(subject)) {
      if (slot.lastSeenAt === undefined) continue;
      const c = slot.lastSeenAt + (now - slot.seenArrival);
      clock = clock === undefined ? c : Math.max(clock, c);
    }
    return clock ?? now;
  }

  /** The subject without its devices: its site, region and permits (a part's context). */
  subjectShell(subject: Subject): SubjectView {
    return this.shape(subject).shell;
  }

  /**
   * What the engine sees of a subject at `at` (default: now, everything held): each device as of
   * its newest reading at or before `at` (its data clock and quality flag then), and the permits
   * of its site valid at any instant (a window is exempt by the permits where it lies). The view
   * built last is given again while it is the same (the same device views and permits): a
   * subject is looked at several times an instant, and at every instant of a batch.
   */
  subjectView(subject: Subject, at?: number): SubjectView {
    return this.viewOf(this.shape(subject), at);
  }

  private viewOf(shape: SubjectShape, at: number | undefined): SubjectView {
    const permits = at === undefined ? NO_PERMITS : shape.shell.permitsAt!(at);
    const kept = shape.view;
    // undefined while every device's view is the kept view's.
    let devices: DeviceView[] | undefined = kept?.permits === permits ? undefined : [];
    const slots = shape.slots;
    for (let i = 0; i < slots.length; i++) {
      const d = this.deviceView(slots[i] as Slot, at);
      if (devices === undefined) {
        if (kept!.devices[i] === d) continue;
        devices = kept!.devices.slice(0, i);
      }
      devices.push(d);
    }
    if (devices === undefined) return kept!;
    const { region, permitsAt, site } = shape.shell;
    return (shape.view = { region, permits, permitsAt, site, devices });
  }

  /** The subject's devices as the engine sees them at `at` (default: now): its view's devices. */
  deviceViews(subject: Subject, at?: number): readonly DeviceView[] {
    return this.subjectView(subject, at).devices;
  }

  /**
   * The subject's view at an instant (none: now, everything held), as a function kept per
   * subject (subjectView).
   */
  viewer(subject: Subject): (at?: number) => SubjectView {
    return this.shape(subject).viewAt;
  }

  /**
   * A subject's site and permits, and the slots of its devices as its views hold them (a device
   * subject: its own; a site or segment: its devices of the rule's kinds).
   */
  private shape(subject: Subject): SubjectShape {
    const kept = subject.shape;
    if (kept !== undefined && kept.generation === this.built) return kept;
    let shape = this.shapes.get(subject.alarmKey);
    if (shape === undefined) {
      const siteId = this.siteIdOf(subject);
      const slot = subject.type === "device" ? this.slots.get(subject.id) : undefined;
      shape = {
        generation: this.built,
        shell: {
          region: this.deps.region,
          site: siteId === undefined ? undefined : this.sites.get(siteId),
          permits: NO_PERMITS,
          permitsAt:
            (siteId === undefined ? undefined : this.permitsAt.get(siteId)) ?? NO_PERMITS_AT,
          devices: [],
        },
        slots:
          subject.type !== "device" ? this.partSlots(subject) : slot === undefined ? [] : [slot],
        view: undefined,
        viewAt: (at?: number) => this.viewOf(shape as SubjectShape, at),
        permitEdge: (after: number) => this.permitEdgeAfter(subject, after),
      };
      this.shapes.set(subject.alarmKey, shape);
    }
    subject.shape = shape;
    return shape;
  }

  /**
   * The device as the engine sees it at `at` (default: now): last seen at its newest reading at
   * or before `at`, with that reading's quality flag, so each instant of a batch is judged as if
   * the readings after it had not arrived yet.
   */
  deviceView(slot: Slot, at?: number): DeviceView {
    const current = at === undefined || slot.lastSeenAt === undefined || at >= slot.lastSeenAt;
    if (current) {
      // The same view, brought up to date (a subject's view holds it: subjectView).
      const kept = slot.view;
      if (kept !== undefined) {
        kept.lastSeenAt = slot.lastSeenAt;
        kept.lastQuality = slot.lastQuality;
        kept.device = slot.device;
        return kept;
      }
      return (slot.view = {
        device: slot.device,
        series: slot.series,
        lastSeenAt: slot.lastSeenAt,
        lastQuality: slot.lastQuality,
        watchedSince: slot.watchedSince,
      });
    }
    return {
      device: slot.device,
      series: slot.series,
      lastSeenAt: current ? slot.lastSeenAt : newestAtOrBefore(slot, at),
      lastQuality: current ? slot.lastQuality : (qualityAt(slot, at) ?? slot.lastQuality),
      watchedSince: slot.watchedSince,
    };
  }

  /** Read the registry and the rules again when due or changed; rebuild the subjects. */
  refresh(now: number, force: boolean): void {
    const rulesChanged = this.deps.rules.generation !== this.rulesGeneration;
    const due = now - this.lastRefresh >= (this.deps.registryRefreshMs ?? 30_000);
    if (!force && !rulesChanged && !due) return;
    this.rulesGeneration = this.deps.rules.generation;
    this.lastRefresh = now;
    this.built++;
    this.partSlotsBySubject.clear();
    this.shapes.clear();
    this.unique = undefined;
    this.readSites();
    this.readDevices(now);
    this.subjectsByDevice = new Map();
    for (const slot of this.slots.values()) {
      if (!slot.device.enabled) continue;
      const subjects = this.subjectsFor(slot);
      this.subjectsByDevice.set(slot.device.id, subjects);
      keepWindows(slot, subjects);
    }
  }

  /** The sites, and their permits' validity parsed once. */
  private readSites(): void {
    this.sites = new Map(this.deps.registry.sites().map((s) => [s.id, s]));
    this.permitsAt = new Map();
    this.permitEdges = new Map();
    for (const site of this.sites.values()) {
      if (site.permits === undefined || site.permits.length === 0) continue;
      const permits = site.permits.map((p) => ({
        type: p.type,
        from: Date.parse(p.validFrom),
        to: Date.parse(p.validTo),
      }));
      this.permitEdges.set(
        site.id,
        permits.flatMap((p) => [p.from, p.to]).sort((a, b) => a - b),
      );
      this.permitsAt.set(site.id, (at) =>
        permits.filter((p) => p.from <= at && at < p.to).map((p) => p.type),
      );
    }
  }

  /** The devices: a slot for each new one, none for those gone; the devices of each site. */
  private readDevices(now: number): void {
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
          readings: new Series({ provenance: true }),
          keepReadings: 0,
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
  }

  /** The subjects of the rules that apply to a device. */
  private subjectsFor(slot: Slot): Subject[] {
    const device = slot.device;
    const site = this.sites.get(device.siteId);
    const subjects: Subject[] = [];
    for (const rule of this.deps.rules.forKind(device.kind)) {
      const view = this.deviceView(slot);
      const scope = { site, devices: [view], region: this.deps.region };
      if (!ruleApplies(rule, device.kind, view, scope)) continue;
      const type = rule.subject;
      const id = type === "device" ? device.id : device.siteId;
      const key = `${type}:${id}`;
      const alarmKey = `${rule.id}\u0000${key}`;
      subjects.push({ rule, type, id, key, alarmKey, shape: undefined, alarm: undefined });
    }
    return subjects;
  }
}

/**
 * Windows only for what the device's own rules read, as far back as they look, and for a reading
 * judged alone (latest, state) as far back as the rule holds it before raising (`for`): the
 * evidence of a decision holds every reading it rests on (rules/evidence.ts).
 */
function keepWindows(slot: Slot, subjects: readonly Subject[]): void {
  const keep = new Map<string, number>();
  for (const subject of subjects) {
    const c = subject.rule.condition;
    const back = Math.max(conditionRetention(c), "for" in c ? c.for : 0);
    for (const q of quantitiesOf(c)) keep.set(q, Math.max(keep.get(q) ?? 0, back));
  }
  slot.keep = keep;
  slot.keepReadings = Math.max(0, ...keep.values());
  for (const q of Object.keys(slot.series)) if (!keep.has(q)) delete slot.series[q];
  slot.kept = [...keep.keys()].map((quantity) => ({ quantity, series: slot.series[quantity] }));
}

/** The newest reading time at or before `at` (undefined: none kept). */
function newestAtOrBefore(slot: Slot, at: number): number | undefined {
  const i = slot.readings.firstAfter(at) - 1;
  return i >= 0 ? slot.readings.atOf(i) : undefined;
}

/** Quality flag of the newest reading at or before `at` (undefined: none kept). */
function qualityAt(slot: Slot, at: number): QualityFlag | undefined {
  const i = slot.readings.firstAfter(at) - 1;
  return i >= 0 ? slot.readings.qualityOf(i) : undefined;
}
