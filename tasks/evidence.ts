import { createHash } from "node:crypto";
import type { Device, Site } from "../contracts/model/registry.js";
import type { EvidencePackage, EvidenceVerification } from "../contracts/model/tasks.js";
import { unverifiedOf } from "../contracts/model/rule-confidence.js";
import { canonicalJson } from "./canonical-json.js";
import type { AlarmNotice } from "../contracts/model/alarms.js";
import type { RegistryLookup } from "./types.js";

/*
 * The evidence package of a task: what an enforcement case must carry to survive a dispute
 * (Administrative Penalty Law 2021 Art. 41, docs/standards.md: device identity, calibration date, location, raw readings, the method
 * of aggregation, the clause and rule version, integrity protection). The hash is SHA-256 over
 * the RFC 8785 canonical JSON of the package without its `hash` member.
 */

type Unhashed = Omit<EvidencePackage, "hash">;

export interface EvidenceContext {
  readonly taskId: string;
  readonly sequence: number;
  readonly createdAt: string;
  readonly notice: AlarmNotice;
  readonly registry: RegistryLookup;
}

function evidenceDevice(device: Device) {
  return {
    id: device.id,
    kind: device.kind,
    model: device.model,
    serial: device.serial,
    calibratedOn: device.calibratedOn ?? null,
    calibrationDueOn: device.calibrationDueOn ?? null,
    location: device.location,
    area: device.area,
    zoneClass: device.zoneClass ?? null,
  };
}

function evidenceSite(site: Site) {
  return {
    id: site.id,
    name: site.name,
    type: site.type,
    area: site.area,
    location: site.location,
    zoneClass: site.zoneClass ?? null,
    regulatedParty: "regulatedParty" in site ? site.regulatedParty : null,
  };
}

/** The hex SHA-256 of a package's canonical form (its `hash` member left out). */
export function evidenceHash(pkg: Unhashed | EvidencePackage): string {
  const { hash: _hash, ...body } = pkg as EvidencePackage;
  return createHash("sha256").update(canonicalJson(body), "utf8").digest("hex");
}

/** Build and seal the package of one decision (raise, level rise) of a task. */
export function buildEvidencePackage(ctx: EvidenceContext): EvidencePackage {
  const { notice, registry } = ctx;
  const { rule, decision } = notice;
  const evidence = notice.evidence;
  const devices = new Set([
    ...notice.deviceIds,
    ...(evidence?.readings ?? []).map((r) => r.deviceId),
  ]);
  const suppressed = new Set<string>(rule.qualityGate.suppressFlags);
  const siteId = notice.siteId ?? (notice.subjectType === "device" ? undefined : notice.subjectId);
  const site = siteId === undefined ? undefined : registry.site(siteId);
  const at = new Date(decision.at).toISOString();
  const startedAt = decision.type === "raise" ? new Date(decision.startedAt).toISOString() : null;
  const level = "level" in decision ? (decision.level ?? null) : null;
  const detail = "detail" in decision ? decision.detail : decision.type;
  const replayed = "replayed" in decision ? decision.replayed : false;
  const body: Unhashed = {
    format: "citywatch-evidence/1",
    taskId: ctx.taskId,
    sequence: ctx.sequence,
    createdAt: ctx.createdAt,
    kind: rule.taskKind,
    rule: {
      id: rule.id,
      version: rule.version,
      title: rule.title,
      clause: rule.clause,
      confidence: rule.confidence,
      note: rule.note ?? null,
      // Sealed by the task service with the rule it cites (docs/tasks.md, Evidence package).
      unverified: unverifiedOf(rule),
      statement: rule.evidence.statement ?? null,
    },
    decision: {
      type: decision.type,
      alarmSeq: decision.alarmSeq,
      level,
      at,
      startedAt,
      detail,
      replayed,
    },
    computation: {
      method: evidence?.method ?? "not given by the rules engine",
      windowStart: evidence?.windowStart ?? at,
      windowEnd: evidence?.windowEnd ?? at,
      value: evidence?.value ?? ("value" in decision ? (decision.value ?? null) : null),
      limit: evidence?.limit ?? ("limit" in decision ? (decision.limit ?? null) : null),
    },
    subject: { type: notice.subjectType, id: notice.subjectId },
    site: site === undefined ? null : evidenceSite(site),
    devices: [...devices]
      .sort()
      .map((id) => registry.device(id))
      .filter((d): d is Device => d !== undefined)
      .map(evidenceDevice),
    readings: (evidence?.readings ?? []).map((r) => ({
      deviceId: r.deviceId,
      ts: r.ts,
      quality: r.quality,
      usable: !suppressed.has(r.quality),
      values: { ...r.values },
    })),
  };
  return {
    ...body,
    hash: { algorithm: "sha256", canonicalization: "RFC 8785", value: evidenceHash(body) },
  };
}

/** Recompute a package's hash and compare it with the one it carries. */
export function verifyEvidence(pkg: EvidencePackage): EvidenceVerification {
  const actual = evidenceHash(pkg);
  return {
    taskId: pkg.taskId,
    sequence: pkg.sequence,
    valid: actual === pkg.hash.value,
    expected: pkg.hash.value,
    actual,
  };
}
