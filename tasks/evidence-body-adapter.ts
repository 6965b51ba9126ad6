import type { AlarmNotice } from "../contracts/model/alarms.js";
import type { AuditEntry } from "../contracts/model/tasks.js";
import { buildEvidencePackage } from "./evidence.js";
import type { EvidenceBodyInput } from "./evidence-seal.js";
import type { RegistryLookup } from "./types.js";

/*
 * TEMPORARY: a format 2 body from the format 1 builder, until tasks/evidence.ts has
 * `buildEvidenceBody` (H1). Local times are given in UTC (+00:00) here; fields format 1 does not
 * know are null or empty. Delete this file once buildEvidenceBody lands.
 */

export interface EvidenceContext {
  readonly taskId: string;
  readonly sequence: number;
  readonly createdAt: string;
  readonly notice: AlarmNotice;
  readonly registry: RegistryLookup;
  readonly audit: readonly AuditEntry[];
}

const local = (utc: string) => utc.replace(/Z$/, "+00:00");

export function buildEvidenceBody(ctx: EvidenceContext): EvidenceBodyInput {
  const v1 = buildEvidencePackage(ctx);
  return {
    format: "citywatch-evidence/2",
    taskId: v1.taskId,
    sequence: v1.sequence,
    createdAt: v1.createdAt,
    createdAtLocal: local(v1.createdAt),
    timeZone: "UTC",
    kind: v1.kind,
    rule: {
      ...v1.rule,
      unverified: v1.rule.unverified ?? [],
      legalBasis: [],
    },
    decision: {
      ...v1.decision,
      levelThreshold: null,
      atLocal: local(v1.decision.at),
      startedAtLocal: v1.decision.startedAt === null ? null : local(v1.decision.startedAt),
    },
    computation: {
      method: v1.computation.method,
      conditionType: "threshold",
      quantity: null,
      aggregate: null,
      windowMs: null,
      align: null,
      period: null,
      coverage: null,
      windowStart: v1.computation.windowStart,
      windowStartLocal: local(v1.computation.windowStart),
      windowEnd: v1.computation.windowEnd,
      windowEndLocal: local(v1.computation.windowEnd),
      value: v1.computation.value,
      recomputed: null,
      reported: null,
      limit: v1.computation.limit,
      unit: null,
    },
    vote: null,
    subject: v1.subject,
    party:
      v1.site?.regulatedParty == null
        ? null
        : {
            name: v1.site.regulatedParty.name,
            creditCode: v1.site.regulatedParty.creditCode ?? null,
            address: null,
            contact: v1.site.regulatedParty.contact ?? null,
          },
    site:
      v1.site === null
        ? null
        : {
            id: v1.site.id,
            name: v1.site.name,
            type: v1.site.type,
            address: null,
            area: v1.site.area,
            location: v1.site.location,
            zoneClass: v1.site.zoneClass,
          },
    permits: { inForce: [], exempting: [] },
    devices: v1.devices.map((d) => ({
      ...d,
      typeApproval: null,
      metrologyCertificate: null,
      calibration: d.calibratedOn === null ? ("missing" as const) : ("valid" as const),
    })),
    readings: v1.readings.map((r) => ({
      ...r,
      tsLocal: local(r.ts),
      receivedAt: null,
      seq: null,
      replay: false,
      trigger: false,
    })),
    transport: { path: [], commits: [] },
    warnings: [],
    audit: ctx.audit.map((e) => ({
      at: e.at,
      atLocal: local(e.at),
      actor: e.actor,
      action: e.action,
      from: e.from ?? null,
      to: e.to ?? null,
      detail: e.detail,
    })),
  };
}
