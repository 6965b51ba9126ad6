import type { AlarmNotice, EvidenceReading } from "../contracts/model/alarms.js";
import type { EvidencePackageV2, EvidenceWarning } from "../contracts/model/evidence.js";
import type { Device, Site } from "../contracts/model/registry.js";
import { unverifiedOf } from "../contracts/model/rule-confidence.js";
import type { Rule } from "../contracts/model/rules.js";
import { QUANTITIES, type QuantitySpec } from "../contracts/model/sensors.js";
import type { Attachment, AuditEntry } from "../contracts/model/tasks.js";
import { recompute } from "./evidence-recompute.js";
import type { RegistryLookup } from "./types.js";

/*
 * The content of a task's evidence package, format `citywatch-evidence/2`
 * (contracts/model/evidence.ts): what an enforcement case must carry to stand in a hearing
 * (Administrative Penalty Law 2021 Art. 41: data of legally set up, technically reviewed devices,
 * true, accurate and complete, and the party told). `buildEvidenceBody` fills every member but
 * the seal (`hash`, `signature`, `previous`), which tasks/evidence-seal.ts adds. Local times are
 * in the rule's schedule time zone (default Asia/Shanghai) with their offset, beside UTC.
 */

export interface EvidenceContext {
  readonly taskId: string;
  readonly sequence: number;
  /** UTC ISO. */
  readonly createdAt: string;
  readonly notice: AlarmNotice;
  readonly registry: RegistryLookup;
  /** The task's audit trail at sealing, this change's entries included. */
  readonly audit: readonly AuditEntry[];
  /** The task's attachments at sealing (listed by hash in the package when there are any). */
  readonly attachments?: readonly Attachment[] | undefined;
}

/** A package before sealing. */
export type EvidenceBody = Omit<EvidencePackageV2, "hash" | "signature" | "previous">;

// ---------------------------------------------------------------------------------------------
// Local time

const wallClocks = new Map<string, Intl.DateTimeFormat>();

function wallClock(timeZone: string): Intl.DateTimeFormat {
  let format = wallClocks.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    wallClocks.set(timeZone, format);
  }
  return format;
}

const pad = (n: number, width = 2): string => String(Math.abs(n)).padStart(width, "0");

/**
 * An instant as ISO 8601 local time in `timeZone` with its offset, e.g.
 * `2026-12-05T22:10:00+08:00` (milliseconds only when the instant has them).
 */
export function localIso(instant: string | number, timeZone: string): string {
  const t = typeof instant === "number" ? instant : Date.parse(instant);
  if (!Number.isFinite(t)) throw new RangeError(`not an instant: ${String(instant)}`);
  const parts: Record<string, number> = {};
  for (const p of wallClock(timeZone).formatToParts(t)) {
    if (p.type !== "literal") parts[p.type] = Number(p.value);
  }
  const millis = ((t % 1_000) + 1_000) % 1_000;
  const wall = Date.UTC(
    parts["year"] as number,
    (parts["month"] as number) - 1,
    parts["day"],
    parts["hour"],
    parts["minute"],
    parts["second"],
    millis,
  );
  const offsetMin = Math.round((wall - t) / 60_000);
  const sign = offsetMin < 0 ? "-" : "+";
  const date = `${pad(parts["year"] as number, 4)}-${pad(parts["month"] as number)}-${pad(parts["day"] as number)}`;
  const time = `${pad(parts["hour"] as number)}:${pad(parts["minute"] as number)}:${pad(parts["second"] as number)}${millis === 0 ? "" : `.${pad(millis, 3)}`}`;
  return `${date}T${time}${sign}${pad(Math.trunc(Math.abs(offsetMin) / 60))}:${pad(Math.abs(offsetMin) % 60)}`;
}

/** The local calendar date `YYYY-MM-DD` of an instant. */
export function localDate(instant: string | number, timeZone: string): string {
  return localIso(instant, timeZone).slice(0, 10);
}

// ---------------------------------------------------------------------------------------------
// Units and rounding

/** The unit of a quantity of any of the kinds (the sensor catalogue), null for switches. */
export function unitOf(quantity: string, kinds: readonly string[]): string | null {
  for (const kind of kinds) {
    const specs = (QUANTITIES as Record<string, Record<string, QuantitySpec>>)[kind];
    const spec = specs?.[quantity];
    if (spec !== undefined) return spec.type === "number" ? spec.unit : null;
  }
  return null;
}

/**
 * Decimals a value is reported with, by unit (docs: "Evidence package", reported values): sound
 * levels to 0.1 dB (GB 3096-2008, GB 12523-2011 report LAeq and LAmax to 0.1 dB); dust
 * concentrations in whole µg/m³ (as HJ 653/HJ 663 report PM10 and TSP); mg/m³ (oil fume, H2S,
 * CO), %LEL, %vol, °C, % and cm to 0.1; river stage in m to 0.01 (a centimetre, as stages are
 * read); a silence in whole ms; anything else to 0.01.
 */
export function decimalsOf(unit: string | null): number {
  switch (unit) {
    case "dB(A)":
    case "mg/m³":
    case "%LEL":
    case "%vol":
    case "°C":
    case "%":
    case "cm":
    case "m/s":
      return 1;
    case "µg/m³":
    case "ms":
    case "°":
      return 0;
    case "m":
      return 2;
    default:
      return 2;
  }
}

/**
 * `value` rounded to `decimals` as GB/T 8170-2008 rounds (half to even on an exact half:
 * 64.25 → 64.2, 64.35 → 64.4; otherwise to the nearest), as text with exactly that many decimals.
 */
export function roundReported(value: number, decimals: number): string {
  const scale = 10 ** decimals;
  const scaled = value * scale;
  const floor = Math.floor(scaled);
  const fraction = scaled - floor;
  // An exact half as the decimal text of the value shows it (binary noise of the scaling aside).
  const half = Math.abs(fraction - 0.5) < 1e-9 * Math.max(1, Math.abs(scaled));
  const rounded = half ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(scaled);
  const text = (rounded / scale).toFixed(decimals);
  return text === `-${(0).toFixed(decimals)}` ? (0).toFixed(decimals) : text;
}

// ---------------------------------------------------------------------------------------------
// The parts

function computationParts(rule: Rule): {
  quantity: string | null;
  aggregate: string | null;
  unit: string | null;
} {
  const c = rule.condition;
  const kinds = rule.scope.kinds;
  switch (c.type) {
    case "threshold":
    case "k_of_n":
      return { quantity: c.quantity, aggregate: c.aggregate, unit: unitOf(c.quantity, kinds) };
    case "rate_of_rise":
      return { quantity: c.quantity, aggregate: "rise", unit: unitOf(c.quantity, kinds) };
    case "state":
      return { quantity: null, aggregate: "latest", unit: null };
    case "deadman":
      return { quantity: null, aggregate: "silence", unit: "ms" };
    case "quality":
      return { quantity: null, aggregate: "latest", unit: null };
  }
}

/** The value as the package reports it: rounded with its unit's decimals, or a state's word. */
function reportedOf(
  rule: Rule,
  value: number | boolean | null,
  unit: string | null,
  readings: EvidencePackageV2["readings"],
  devices: EvidencePackageV2["devices"],
): string | null {
  if (value === null) return null;
  if (typeof value === "number") return roundReported(value, decimalsOf(unit));
  const c = rule.condition;
  if (c.type === "state") {
    const words = c.terms.map((t) => `${t.quantity} ${t.is ? "on" : "off"}`);
    const joined = words.join(c.match === "all" ? " and " : " or ");
    return value ? joined : `not (${joined})`;
  }
  if (c.type === "quality") {
    if (!value) return "not flagged";
    const flagged = readings.filter((r) => r.trigger && c.flags.includes(r.quality));
    if (flagged.length > 0) return `flagged ${flagged.map((r) => r.quality).join(", ")}`;
    if (devices.some((d) => d.calibration === "expired")) return "calibration expired";
    return "flagged";
  }
  return value ? "true" : "false";
}

function evidenceDevice(
  device: Device,
  decisionDate: string,
): EvidencePackageV2["devices"][number] {
  const due = device.calibrationDueOn ?? null;
  return {
    id: device.id,
    kind: device.kind,
    model: device.model,
    serial: device.serial,
    typeApproval: device.typeApproval ?? null,
    metrologyCertificate: device.metrologyCertificate ?? null,
    calibratedOn: device.calibratedOn ?? null,
    calibrationDueOn: due,
    calibration: due === null ? "missing" : decisionDate > due ? "expired" : "valid",
    location: device.location,
    area: device.area,
    zoneClass: device.zoneClass ?? null,
  };
}

function evidenceSite(site: Site): NonNullable<EvidenceBody["site"]> {
  return {
    id: site.id,
    name: site.name,
    type: site.type,
    address: site.address ?? null,
    area: site.area,
    location: site.location,
    zoneClass: site.zoneClass ?? null,
  };
}

/**
 * The party a case is addressed to: the site's regulated party, for enforcement rules only. An
 * area-quality rule (GB 3096 on ambient sites) has none: ambient sites carry no party; emergency
 * and maintenance tasks address the city's own services, not a party.
 */
function partyOf(rule: Rule, site: Site | undefined): EvidenceBody["party"] {
  if (rule.taskKind !== "enforcement" || site === undefined || !("regulatedParty" in site)) {
    return null;
  }
  const party = site.regulatedParty;
  return {
    name: party.name,
    creditCode: party.creditCode ?? null,
    address: site.address ?? null,
    contact: party.contact === undefined ? null : { ...party.contact },
  };
}

function permitsOf(rule: Rule, site: Site | undefined, at: number): EvidenceBody["permits"] {
  const inForce = (site?.permits ?? [])
    .filter((p) => Date.parse(p.validFrom) <= at && at < Date.parse(p.validTo))
    .map((p) => ({
      type: p.type,
      reference: p.reference ?? null,
      validFrom: p.validFrom,
      validTo: p.validTo,
    }));
  const held = new Set(inForce.map((p) => p.type));
  const exempting = (rule.permitExemption?.types ?? []).filter((t) => held.has(t));
  return { inForce, exempting };
}

function warningsOf(
  rule: Rule,
  devices: EvidencePackageV2["devices"],
  unregistered: readonly string[],
  party: EvidenceBody["party"],
  readings: number,
  decisionDate: string,
): EvidenceWarning[] {
  const out: EvidenceWarning[] = [];
  const add = (code: string, about: string, message: string) => out.push({ code, about, message });
  for (const id of unregistered) {
    add(
      "device_unregistered",
      id,
      `device ${id} is not in the registry: its identity and calibration cannot be shown`,
    );
  }
  for (const d of devices) {
    if (d.calibration === "missing") {
      add("calibration_missing", d.id, `device ${d.id} has no recorded calibration due date`);
    } else if (d.calibration === "expired") {
      add(
        "calibration_expired",
        d.id,
        `device ${d.id}: calibration expired on ${d.calibrationDueOn ?? "?"}, before the decision's local date ${decisionDate}`,
      );
    }
    if (d.calibratedOn === null) {
      add(
        "calibration_date_missing",
        d.id,
        `device ${d.id} has no recorded date of its last calibration`,
      );
    }
    if (d.typeApproval === null) {
      add(
        "type_approval_missing",
        d.id,
        `device ${d.id} has no recorded type approval (pattern approval or product certification) number`,
      );
    }
    if (d.metrologyCertificate === null) {
      add(
        "metrology_certificate_missing",
        d.id,
        `device ${d.id} has no recorded metrological verification or calibration certificate number`,
      );
    }
  }
  if (party !== null && party.creditCode === null) {
    add(
      "party_credit_code_missing",
      party.name,
      `the party ${party.name} has no unified social credit code on record`,
    );
  }
  if (rule.confidence === "placeholder") {
    add(
      "rule_placeholder",
      rule.id,
      `rule ${rule.id} is a placeholder: its numbers are not verified in a standard`,
    );
  }
  for (const basis of rule.legalBasis) {
    if (basis.confidence === "placeholder") {
      add(
        "legal_basis_placeholder",
        `${basis.law} ${basis.article}`,
        `the legal basis ${basis.law} ${basis.article} is a placeholder, not verified in the law's text`,
      );
    }
  }
  if (readings === 0) {
    add(
      "no_readings",
      rule.id,
      "the package holds no reading (the decision's readings were not in memory)",
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The body

/** The content of the package of one decision (raise, level rise) of a task, without its seal. */
export function buildEvidenceBody(ctx: EvidenceContext): EvidenceBody {
  const { notice, registry } = ctx;
  const { rule, decision } = notice;
  const evidence = notice.evidence;
  const tz = rule.schedule.timeZone;
  const local = (instant: string | number) => localIso(instant, tz);
  const atMs = decision.at;
  const at = new Date(atMs).toISOString();
  const decisionDate = localDate(atMs, tz);
  const suppressed = new Set<string>(rule.qualityGate.suppressFlags);

  const siteId = notice.siteId ?? (notice.subjectType === "device" ? undefined : notice.subjectId);
  const site = siteId === undefined ? undefined : registry.site(siteId);
  const raw: readonly EvidenceReading[] = evidence?.readings ?? [];
  const deviceIds = [...new Set([...notice.deviceIds, ...raw.map((r) => r.deviceId)])].sort();
  const registered = deviceIds.map((id) => registry.device(id));
  const devices = registered
    .filter((d): d is Device => d !== undefined)
    .map((d) => evidenceDevice(d, decisionDate));
  const unregistered = deviceIds.filter((_, i) => registered[i] === undefined);

  const readings: EvidencePackageV2["readings"] = raw.map((r) => ({
    deviceId: r.deviceId,
    ts: r.ts,
    tsLocal: local(r.ts),
    receivedAt: r.receivedAt ?? null,
    seq: r.seq ?? null,
    replay: r.replay ?? false,
    quality: r.quality,
    usable: !suppressed.has(r.quality),
    trigger: r.trigger ?? false,
    values: { ...r.values },
  }));

  const c = rule.condition;
  const parts = computationParts(rule);
  const value =
    evidence?.value ??
    ("value" in decision && decision.value !== undefined ? decision.value : null);
  const limit = evidence?.limit ?? ("limit" in decision ? (decision.limit ?? null) : null);
  const windowStart = evidence?.windowStart ?? at;
  const windowEnd = evidence?.windowEnd ?? at;
  const startedAt = decision.type === "raise" ? new Date(decision.startedAt).toISOString() : null;
  const level = "level" in decision ? (decision.level ?? null) : null;
  const computation: EvidenceBody["computation"] = {
    method: evidence?.method ?? "not given by the rules engine",
    conditionType: c.type,
    quantity: parts.quantity,
    aggregate: parts.aggregate,
    windowMs: evidence?.windowMs ?? null,
    align: evidence?.align ?? null,
    period: evidence?.period === undefined || evidence.period === "" ? null : evidence.period,
    coverage: evidence?.coverage ?? null,
    windowStart,
    windowStartLocal: local(windowStart),
    windowEnd,
    windowEndLocal: local(windowEnd),
    value,
    recomputed: null,
    reported: null,
    limit,
    unit: parts.unit,
    deviceId: evidence?.deviceId ?? ("deviceId" in decision ? (decision.deviceId ?? null) : null),
    ...(c.type === "state"
      ? { terms: c.terms.map((t) => ({ quantity: t.quantity, is: t.is })), match: c.match }
      : {}),
    ...(c.type === "quality"
      ? { flags: [...c.flags], calibrationExpired: c.calibrationExpired }
      : {}),
  };
  const vote: EvidenceBody["vote"] =
    evidence?.vote === undefined
      ? null
      : {
          k: evidence.vote.k,
          n: evidence.vote.n,
          threshold: evidence.vote.threshold,
          devices: evidence.vote.devices.map((d) => ({ ...d })),
        };
  const recomputed = recompute({ computation, readings, devices, vote });
  computation.recomputed = recomputed;
  computation.reported = reportedOf(rule, value, parts.unit, readings, devices);

  const party = partyOf(rule, site);
  const seqs = new Map<string, number | null>();
  for (const r of readings) {
    const known = seqs.get(r.deviceId) ?? null;
    seqs.set(r.deviceId, r.seq === null ? known : Math.max(known ?? r.seq, r.seq));
  }
  const sources = [...seqs.keys()].sort();

  return {
    format: "citywatch-evidence/2",
    taskId: ctx.taskId,
    sequence: ctx.sequence,
    createdAt: ctx.createdAt,
    createdAtLocal: local(ctx.createdAt),
    timeZone: tz,
    kind: rule.taskKind,
    rule: {
      id: rule.id,
      version: rule.version,
      title: rule.title,
      clause: rule.clause,
      legalBasis: rule.legalBasis.map((b) => ({ ...b })),
      confidence: rule.confidence,
      note: rule.note ?? null,
      unverified: unverifiedOf(rule),
      statement: rule.evidence.statement ?? null,
    },
    decision: {
      type: decision.type,
      alarmSeq: decision.alarmSeq,
      level,
      levelThreshold:
        rule.taskKind === "emergency" && rule.levels !== undefined && typeof limit === "number"
          ? limit
          : null,
      at,
      atLocal: local(at),
      startedAt,
      startedAtLocal: startedAt === null ? null : local(startedAt),
      detail: "detail" in decision ? decision.detail : decision.type,
      replayed: "replayed" in decision ? decision.replayed : false,
    },
    computation,
    vote,
    subject: { type: notice.subjectType, id: notice.subjectId },
    party,
    site: site === undefined ? null : evidenceSite(site),
    permits: permitsOf(rule, site, atMs),
    devices,
    readings,
    transport: {
      // The device measures; its edge agent publishes the readings as the device (its MQTT
      // identity) to the broker; the ingest validates, stores and commits them (commit = seq).
      path: [
        `device ${sources.length > 0 ? sources.join(", ") : deviceIds.join(", ")}`,
        "edge agent",
        "broker",
        "ingest",
      ],
      commits: sources.map((deviceId) => ({ deviceId, seq: seqs.get(deviceId) ?? null })),
    },
    warnings: warningsOf(rule, devices, unregistered, party, readings.length, decisionDate),
    audit: ctx.audit.map((e) => ({
      at: e.at,
      atLocal: local(e.at),
      actor: e.actor,
      action: e.action,
      from: e.from ?? null,
      to: e.to ?? null,
      detail: e.detail,
    })),
    ...(ctx.attachments === undefined || ctx.attachments.length === 0
      ? {}
      : {
          attachments: ctx.attachments.map((a) => ({
            sha256: a.sha256,
            filename: a.filename,
            type: a.type,
            size: a.size,
            by: a.by,
            at: a.at,
          })),
        }),
  };
}
