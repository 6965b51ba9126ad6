import {
  DeviceId,
  type QualityFlag,
  Rule,
  type RuleInput,
  Site,
} from "../../../../contracts/index.js";
import {
  type AlarmDecision,
  type AlarmState,
  initialAlarmState,
  isOpen,
  stepAlarm,
} from "../../../../rules/engine/alarm.js";
import {
  type DeviceView,
  type Evaluation,
  evaluateCondition,
} from "../../../../rules/engine/conditions.js";
import { addSample, retentionByQuantity, type Sample } from "../../../../rules/engine/window.js";
import { formatRuleProblems, loadRules } from "../../../../rules/load.js";

export const SEC = 1_000;
export const MIN = 60_000;
export const HOUR = 3_600_000;

/**
 * Instants of the test night in Asia/Shanghai (UTC+8): `night("21:59")` is 2026-11-26 21:59 local,
 * `night("05:59")` 2026-11-27 05:59 local (hours before noon are the next morning).
 */
export function night(hhmm: string): number {
  const day = Number(hhmm.slice(0, 2)) < 12 ? "27" : "26";
  const time = hhmm.length === 5 ? `${hhmm}:00` : hhmm;
  return Date.parse(`2026-11-${day}T${time}+08:00`);
}

const LOADED = (() => {
  const result = loadRules();
  if (!result.ok) throw new Error(formatRuleProblems(result.problems));
  return result.rules;
})();

export const PACK: readonly Rule[] = LOADED.map((l) => l.rule);

export function packRule(id: string): Rule {
  const rule = PACK.find((r) => r.id === id);
  if (rule === undefined) throw new Error(`no rule ${id} in the pack`);
  return rule;
}

export const parseRule = (input: RuleInput): Rule => Rule.parse(input);

/** The fields of a test rule around its condition. */
const TEST_RULE = {
  id: "test.rule",
  version: 1,
  title: "Test",
  clause: { standard: "test", section: "1" },
  confidence: "verified",
  taskKind: "enforcement",
  scope: { kinds: ["noise"] },
  subject: "device",
} as const;

/** A verified enforcement rule on noise devices with this condition (and fields over it). */
export const testRule = (condition: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  parseRule({ ...TEST_RULE, condition, ...extra } as unknown as RuleInput);

export const sampleAt = (
  at: number,
  value: number | boolean,
  quality: Sample["quality"] = "normal",
): Sample => ({ at, value, quality });

const AREA = { district: "pudong", gridCell: "g1" };
const PARTY = { name: "Test Co." };

type SiteType = Site["type"];
/** A valid site of a type, with the fields that type requires. */
export function site(type: SiteType, extra: Record<string, unknown> = {}): Site {
  const required: Partial<Record<SiteType, Record<string, unknown>>> = {
    construction_site: { regulatedParty: PARTY, phase: "structure" },
    restaurant: { regulatedParty: PARTY, size: "medium" },
    commercial_venue: { regulatedParty: PARTY },
    tunnel_segment: { tunnel: "t1", compartment: "gas", neighbours: [] },
  };
  return Site.parse({
    id: `site-${type}`,
    name: type,
    area: AREA,
    location: { lat: 31.2, lon: 121.5 },
    type,
    ...required[type],
    ...extra,
  });
}

export function device(
  id: string,
  extra: Partial<DeviceView["device"]> = {},
): DeviceView["device"] {
  return { id: DeviceId.parse(id), expectedIntervalS: 60, area: AREA, ...extra };
}

interface DeviceSlot {
  device: DeviceView["device"];
  series: Record<string, Sample[]>;
  lastSeenAt?: number;
  lastQuality?: QualityFlag;
  watchedSince: number;
}

/**
 * A test driver around the pure engine: keeps each device's samples (bounded by the rule's
 * retention), evaluates the rule on every reading and every clock tick, steps the alarm and
 * collects the decisions. Ticks come every `tickMs` between events.
 */
export class Harness {
  readonly rule: Rule;
  readonly site: Site | undefined;
  readonly devices = new Map<string, DeviceSlot>();
  readonly decisions: AlarmDecision[] = [];
  readonly evaluations: Evaluation[] = [];
  state: AlarmState;
  now: number;
  readonly tickMs: number;
  region: string | undefined;
  permits: string[] = [];
  readonly #retention: Map<string, number>;

  constructor(
    rule: Rule,
    options: {
      site?: Site;
      devices: ReadonlyArray<DeviceView["device"]>;
      start: number;
      tickMs?: number;
      region?: string;
    },
  ) {
    this.rule = rule;
    this.site = options.site;
    this.now = options.start;
    this.tickMs = options.tickMs ?? 10 * SEC;
    this.region = options.region;
    this.state = initialAlarmState(options.start);
    this.#retention = retentionByQuantity([rule]);
    for (const d of options.devices) {
      this.devices.set(d.id, { device: d, series: {}, watchedSince: options.start });
    }
  }

  #view() {
    return {
      site: this.site,
      region: this.region,
      permits: this.permits,
      devices: [...this.devices.values()].map((d): DeviceView => ({
        device: d.device,
        series: d.series,
        lastSeenAt: d.lastSeenAt,
        lastQuality: d.lastQuality,
        watchedSince: d.watchedSince,
      })),
    };
  }

  #step(type: "reading" | "tick", at: number, replayed = false): AlarmDecision[] {
    const evaluation = evaluateCondition(this.rule, this.#view(), at, isOpen(this.state));
    this.evaluations.push(evaluation);
    const step = stepAlarm(this.rule, this.state, { type, evaluation, replayed }, at);
    this.state = step.state;
    this.decisions.push(...step.decisions);
    return [...step.decisions];
  }

  /** Clock ticks up to (and not including) `to`. */
  advance(to: number): AlarmDecision[] {
    const out: AlarmDecision[] = [];
    let t = Math.floor(this.now / this.tickMs) * this.tickMs + this.tickMs;
    while (t < to) {
      out.push(...this.#step("tick", t));
      t += this.tickMs;
    }
    this.now = Math.max(this.now, to);
    return out;
  }

  /** Tick up to and including `to`. */
  tick(to: number): AlarmDecision[] {
    const out = this.advance(to);
    out.push(...this.#step("tick", to));
    return out;
  }

  reading(
    deviceId: string,
    at: number,
    values: Record<string, number | boolean>,
    options: { quality?: QualityFlag; replayed?: boolean } = {},
  ): AlarmDecision[] {
    const out = options.replayed === true ? [] : this.advance(at);
    const slot = this.devices.get(deviceId);
    if (slot === undefined) throw new Error(`no device ${deviceId}`);
    const quality = options.quality ?? "normal";
    for (const [q, value] of Object.entries(values)) {
      const sample: Sample = {
        at,
        value,
        quality,
        ...(options.replayed ? { replayed: true } : {}),
      };
      slot.series[q] = addSample(slot.series[q] ?? [], sample, this.#retention.get(q) ?? 0, at);
    }
    slot.lastSeenAt = at;
    slot.lastQuality = quality;
    out.push(...this.#step("reading", at, options.replayed === true));
    return out;
  }

  /** One reading every `everyMs` from `from` (inclusive) to `to` (exclusive). */
  series(
    deviceId: string,
    from: number,
    to: number,
    everyMs: number,
    values: (at: number, i: number) => Record<string, number | boolean>,
    options: { quality?: QualityFlag } = {},
  ): AlarmDecision[] {
    const out: AlarmDecision[] = [];
    for (let t = from, i = 0; t < to; t += everyMs, i += 1) {
      out.push(...this.reading(deviceId, t, values(t, i), options));
    }
    return out;
  }

  types(): string[] {
    return this.decisions.map((d) => d.type);
  }

  raised(): AlarmDecision[] {
    return this.decisions.filter((d) => d.type === "raise");
  }
}
