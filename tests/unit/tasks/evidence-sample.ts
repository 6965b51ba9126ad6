import { EvidencePackageV1, EvidencePackageV2 } from "../../../contracts/index.js";
import { canonicalJson } from "../../../tasks/canonical-json.js";
import type { EvidenceBodyInput } from "../../../tasks/evidence-seal.js";
import { createHash } from "node:crypto";

/*
 * A complete format 2 evidence body written out by hand (a night construction noise case whose
 * energy mean was 64.21191348543675 dB(A) against 55), for the sealing and verification tests:
 * they must not depend on how the content builder fills a package, only on its shape.
 */

const Body = EvidencePackageV2.omit({ hash: true, signature: true, previous: true });

export function sampleBody(
  overrides: Partial<EvidenceBodyInput> = {},
  createdAt = "2026-12-05T14:12:00.000Z",
): EvidenceBodyInput {
  const readings = Array.from({ length: 4 }, (_, i) => ({
    deviceId: "n-1",
    ts: `2026-12-05T14:0${i * 2}:00.000Z`,
    tsLocal: `2026-12-05T22:0${i * 2}:00+08:00`,
    receivedAt: `2026-12-05T14:0${i * 2}:01.250Z`,
    seq: 1000 + i,
    replay: false,
    quality: i === 1 ? ("calibration" as const) : ("normal" as const),
    usable: i !== 1,
    trigger: i === 3,
    values: { LAeq: 64 + i * 0.1, LAmax: 79.3 },
  }));
  return Body.parse({
    format: "citywatch-evidence/2",
    taskId: "enf-000001",
    sequence: 1,
    createdAt,
    createdAtLocal: "2026-12-05T22:12:00+08:00",
    timeZone: "Asia/Shanghai",
    kind: "enforcement",
    rule: {
      id: "noise.construction.laeq",
      version: 3,
      title: "Construction noise at night",
      clause: { standard: "GB 12523-2011", section: "§4.1, Table 1" },
      legalBasis: [
        {
          law: "Noise Pollution Prevention Law 2021",
          article: "Art. 77",
          summary: "construction at night without a permit: a fine",
          confidence: "placeholder",
        },
      ],
      confidence: "verified",
      note: null,
      unverified: [],
      statement: "LAeq over 20 min above the night limit",
    },
    decision: {
      type: "raise",
      alarmSeq: 1,
      level: null,
      levelThreshold: null,
      at: "2026-12-05T14:10:00.000Z",
      atLocal: "2026-12-05T22:10:00+08:00",
      startedAt: "2026-12-05T13:50:00.000Z",
      startedAtLocal: "2026-12-05T21:50:00+08:00",
      detail: "LAeq 64.2 dB(A) > 55 (night)",
      replayed: false,
    },
    computation: {
      method: "energy mean of LAeq over the rolling 20 min window",
      conditionType: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      windowMs: 1_200_000,
      align: "rolling",
      period: "night",
      coverage: 0.95,
      windowStart: "2026-12-05T13:50:00.000Z",
      windowStartLocal: "2026-12-05T21:50:00+08:00",
      windowEnd: "2026-12-05T14:10:00.000Z",
      windowEndLocal: "2026-12-05T22:10:00+08:00",
      value: 64.21191348543675,
      recomputed: 64.21191348543675,
      reported: "64.2",
      limit: 55,
      unit: "dB(A)",
    },
    vote: null,
    subject: { type: "site", id: "cs-1" },
    party: {
      name: "Acme Build Co.",
      creditCode: "91310000MA1FL0AB1X",
      address: "1 River Road",
      contact: null,
    },
    site: {
      id: "cs-1",
      name: "Riverside Tower",
      type: "construction_site",
      address: "1 River Road",
      area: { district: "pudong", gridCell: "pd-017" },
      location: { lat: 31.23, lon: 121.5 },
      zoneClass: "2",
    },
    permits: { inForce: [], exempting: [] },
    devices: [
      {
        id: "n-1",
        kind: "noise",
        model: "AWA6228+",
        serial: "SN-n-1",
        typeApproval: "CPA 2020-F123",
        metrologyCertificate: "JJG 188-2017 No. 2026-0301",
        calibratedOn: "2026-03-01",
        calibrationDueOn: "2027-03-01",
        calibration: "valid",
        location: { lat: 31.23, lon: 121.5 },
        area: { district: "pudong", gridCell: "pd-017" },
        zoneClass: "2",
      },
    ],
    readings,
    transport: {
      path: ["device n-1", "edge agent", "broker", "ingest"],
      commits: [{ deviceId: "n-1", seq: 1003 }],
    },
    warnings: [],
    audit: [
      {
        at: "2026-12-05T14:12:00.000Z",
        atLocal: "2026-12-05T22:12:00+08:00",
        actor: "system",
        action: "filed",
        from: null,
        to: null,
        detail: "noise.construction.laeq v3 raise",
      },
    ],
    ...overrides,
  });
}

/** A format 1 package as packages were sealed before signing (hash only). */
export function sampleV1(taskId = "enf-000009", sequence = 1): EvidencePackageV1 {
  const body = {
    format: "citywatch-evidence/1" as const,
    taskId,
    sequence,
    createdAt: "2026-11-01T14:12:00.000Z",
    kind: "enforcement" as const,
    rule: {
      id: "noise.construction.laeq",
      version: 2,
      title: "Construction noise at night",
      clause: { standard: "GB 12523-2011", section: "§4.1" },
      confidence: "verified",
      note: null,
      statement: null,
    },
    decision: {
      type: "raise",
      alarmSeq: 1,
      level: null,
      at: "2026-11-01T14:10:00.000Z",
      startedAt: null,
      detail: "LAeq 62.4 > 55",
      replayed: false,
    },
    computation: {
      method: "energy mean",
      windowStart: "2026-11-01T13:50:00.000Z",
      windowEnd: "2026-11-01T14:10:00.000Z",
      value: 62.4,
      limit: 55,
    },
    subject: { type: "site" as const, id: "cs-1" },
    site: null,
    devices: [],
    readings: [],
  };
  const value = createHash("sha256").update(canonicalJson(body), "utf8").digest("hex");
  return EvidencePackageV1.parse({
    ...body,
    hash: { algorithm: "sha256", canonicalization: "RFC 8785", value },
  });
}
