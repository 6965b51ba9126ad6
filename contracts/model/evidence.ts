import { z } from "zod";
import { QualityFlag } from "./quality.js";
import { AdministrativeArea, GeoPoint } from "./registry.js";
import { Clause, Confidence, RuleSubject } from "./rules.js";
import { AuditAction, EvidencePackageV1, TaskState, UnverifiedPart } from "./tasks.js";
import { TaskKind } from "./topics.js";

/*
 * The evidence package of a task, format `citywatch-evidence/2`: what an enforcement case or an
 * emergency task must carry to stand in a hearing (Administrative Penalty Law 2021 Art. 41: data
 * of legally set up, technically reviewed devices, true, accurate and complete; docs/tasks.md maps
 * every member to the requirement it serves).
 *
 * Times: every instant is UTC ISO 8601 (`…Z`) for machines, with the same instant in the site's
 * time zone beside it (`…Local`, ISO 8601 with its offset, e.g. `2026-12-05T22:10:00+08:00`).
 *
 * Integrity: `hash.value` is the SHA-256 of the RFC 8785 canonical JSON of the package without
 * its `hash` and `signature` members; `signature.value` is the Ed25519 signature of those same
 * canonical bytes, by the deployment key `signature.keyId` (the key's fingerprint). A later
 * package of the same task links to the one before it (`previous`).
 */

/** An instant as UTC and as local time with the offset, e.g. `2026-12-05T22:10:00+08:00`. */
const Utc = z.string().describe("UTC, ISO 8601 with Z");
const Local = z.string().describe("the same instant in the site's time zone, ISO 8601 with offset");

/** A law's article the penalty rests on (as opposed to the clause of the limit standard). */
export const LegalBasis = z.object({
  /** The law or regulation with its year, e.g. `Noise Pollution Prevention Law 2021`. */
  law: z.string(),
  /** e.g. `Art. 77`. */
  article: z.string(),
  /** One line on what the article provides, in the package's words. */
  summary: z.string(),
  /** `placeholder`: the article is a configurable default not verified in the law's text. */
  confidence: Confidence,
});
export type LegalBasis = z.infer<typeof LegalBasis>;

/** Something missing or out of date that weakens the evidence; printed as a visible warning. */
export const EvidenceWarning = z.object({
  /** Machine code, e.g. `calibration_expired`, `calibration_missing`, `type_approval_missing`. */
  code: z.string(),
  /** The device, site or party it concerns. */
  about: z.string(),
  /** English text; the printable document translates the code. */
  message: z.string(),
});
export type EvidenceWarning = z.infer<typeof EvidenceWarning>;

/** One raw reading the computation used (or the rule's gate set aside), with its provenance. */
export const EvidenceReadingV2 = z.object({
  deviceId: z.string(),
  /** When it was measured (for an interval value: the end of the interval). */
  ts: Utc,
  tsLocal: Local,
  /** When the ingest received the message that carried it; null where not recorded. */
  receivedAt: z.string().nullable(),
  /** The uplink message (per-device `seq`) that carried it; null where not recorded. */
  seq: z.number().int().nullable(),
  /** Sent late from the edge agent's log after an outage. */
  replay: z.boolean(),
  quality: QualityFlag,
  /** false: the rule's quality gate left it out (maintenance, calibration, fault flags). */
  usable: z.boolean(),
  /** The reading that tipped the decision (the newest reading of a point rule, the vote's readings). */
  trigger: z.boolean(),
  values: z.record(z.string(), z.number()),
});
export type EvidenceReadingV2 = z.infer<typeof EvidenceReadingV2>;

/** A device as evidence cites it: identity, approval and calibration, place. */
export const EvidenceDeviceV2 = z.object({
  id: z.string(),
  kind: z.string(),
  model: z.string(),
  serial: z.string(),
  /** Pattern / type approval (型式批准) or environmental product certification number. */
  typeApproval: z.string().nullable(),
  /** Metrological verification or calibration certificate number (检定/校准证书). */
  metrologyCertificate: z.string().nullable(),
  calibratedOn: z.string().nullable(),
  calibrationDueOn: z.string().nullable(),
  /** Calibration state on the decision's local date. */
  calibration: z.enum(["valid", "expired", "missing"]),
  location: GeoPoint,
  area: AdministrativeArea,
  zoneClass: z.string().nullable(),
});
export type EvidenceDeviceV2 = z.infer<typeof EvidenceDeviceV2>;

/** A permit as evidence cites it (in force at the decision, or not). */
export const EvidencePermit = z.object({
  type: z.string(),
  reference: z.string().nullable(),
  validFrom: z.string(),
  validTo: z.string(),
});

export const EvidencePackageV2 = z.object({
  format: z.literal("citywatch-evidence/2"),
  taskId: z.string(),
  /** Position of this package among the task's packages, from 1. */
  sequence: z.number().int().min(1),
  /** The package before this one for the same task (a re-seal links to it); null for the first. */
  previous: z.object({ sequence: z.number().int(), hash: z.string() }).nullable(),
  createdAt: Utc,
  createdAtLocal: Local,
  /** IANA time zone of the local times (the rule's schedule zone; default Asia/Shanghai). */
  timeZone: z.string(),
  kind: TaskKind,
  rule: z.object({
    id: z.string(),
    version: z.number().int(),
    title: z.string(),
    /** The clause of the limit standard. */
    clause: Clause,
    /** The law articles the penalty or duty rests on (empty: the rule cites none). */
    legalBasis: z.array(LegalBasis),
    confidence: z.string(),
    note: z.string().nullable(),
    unverified: z.array(UnverifiedPart),
    statement: z.string().nullable(),
  }),
  decision: z.object({
    type: z.string(),
    alarmSeq: z.number().int(),
    level: z.string().nullable(),
    /** The level's own threshold (emergency levels), in the computation's unit. */
    levelThreshold: z.number().nullable(),
    at: Utc,
    atLocal: Local,
    startedAt: z.string().nullable(),
    startedAtLocal: z.string().nullable(),
    detail: z.string(),
    replayed: z.boolean(),
  }),
  computation: z.object({
    /** One line on how the value is computed (English). */
    method: z.string(),
    /** threshold, k_of_n, rate_of_rise, state, deadman, quality. */
    conditionType: z.string(),
    quantity: z.string().nullable(),
    /** max, mean, energy_mean, latest, … */
    aggregate: z.string().nullable(),
    /** Window length in ms; null: the latest reading. */
    windowMs: z.number().nullable(),
    align: z.enum(["rolling", "clock"]).nullable(),
    /** `day` / `night` when only that period's readings count; null otherwise. */
    period: z.string().nullable(),
    /** Share of the window the readings covered, 0..1; null where not applicable. */
    coverage: z.number().nullable(),
    windowStart: Utc,
    windowStartLocal: Local,
    windowEnd: Utc,
    windowEndLocal: Local,
    /** The value as the engine computed it (full precision). */
    value: z.union([z.number(), z.boolean()]).nullable(),
    /** The value recomputed from `readings` (usable ones) by the sealer. */
    recomputed: z.union([z.number(), z.boolean()]).nullable(),
    /** The value rounded as the standard reports it, as text (e.g. `64.2`). */
    reported: z.string().nullable(),
    limit: z.number().nullable(),
    /** `dB(A)`, `mg/m³`, `m`, `%LEL`, … null for states. */
    unit: z.string().nullable(),
    /*
     * Added by the content builder (optional, so packages built before them still parse): what a
     * verifier needs besides the readings to recompute the value (tasks/evidence-recompute.ts).
     */
    /** The device whose readings gave `value` (a site's deciding device, the k-of-n decider). */
    deviceId: z.string().nullable().optional(),
    /** State conditions: the terms and whether all or any must hold. */
    terms: z.array(z.object({ quantity: z.string(), is: z.boolean() })).optional(),
    match: z.enum(["all", "any"]).optional(),
    /** Quality conditions: the flags that count, and whether expired calibration counts. */
    flags: z.array(QualityFlag).optional(),
    calibrationExpired: z.boolean().optional(),
  }),
  /** k-of-n emergency decisions: each device's value and whether it voted. */
  vote: z
    .object({
      k: z.number().int(),
      n: z.number().int(),
      threshold: z.number().nullable(),
      devices: z.array(
        z.object({
          deviceId: z.string(),
          value: z.number().nullable(),
          quality: QualityFlag.nullable(),
          votes: z.boolean(),
        }),
      ),
    })
    .nullable(),
  subject: z.object({ type: RuleSubject, id: z.string() }),
  /** The party the case is addressed to; null for quality-of-environment and emergency tasks. */
  party: z
    .object({
      name: z.string(),
      creditCode: z.string().nullable(),
      address: z.string().nullable(),
      contact: z.object({ name: z.string(), phone: z.string() }).nullable(),
    })
    .nullable(),
  site: z
    .object({
      id: z.string(),
      name: z.string(),
      type: z.string(),
      address: z.string().nullable(),
      area: AdministrativeArea,
      location: GeoPoint,
      zoneClass: z.string().nullable(),
    })
    .nullable(),
  /** Permits the site holds that were in force at the decision, and whether any exempts it. */
  permits: z.object({ inForce: z.array(EvidencePermit), exempting: z.array(z.string()) }),
  devices: z.array(EvidenceDeviceV2),
  readings: z.array(EvidenceReadingV2),
  /** How the readings travelled: device → edge agent → broker → ingest, and the commit per device. */
  transport: z.object({
    path: z.array(z.string()),
    commits: z.array(z.object({ deviceId: z.string(), seq: z.number().int().nullable() })),
  }),
  warnings: z.array(EvidenceWarning),
  /** The task's audit trail when the package was sealed. */
  audit: z.array(
    z.object({
      at: Utc,
      atLocal: Local,
      actor: z.string(),
      action: AuditAction,
      from: TaskState.nullable(),
      to: TaskState.nullable(),
      detail: z.string(),
    }),
  ),
  /**
   * The task's attachments (field photos, documents) when the package was sealed, each by its
   * SHA-256; absent when it had none (and in packages sealed before attachments existed).
   */
  attachments: z
    .array(
      z.object({
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
        filename: z.string(),
        type: z.string(),
        size: z.number().int(),
        by: z.string(),
        at: Utc,
      }),
    )
    .optional()
    .describe("The task's attachments at sealing, each by its SHA-256; absent: none"),
  hash: z.object({
    algorithm: z.literal("sha256"),
    canonicalization: z.literal("RFC 8785"),
    value: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  signature: z.object({
    algorithm: z.literal("Ed25519"),
    /** The signing key's fingerprint: hex SHA-256 of its raw 32-byte public key, first 16 bytes. */
    keyId: z.string().regex(/^[0-9a-f]{32}$/),
    /** Base64 of the 64-byte signature over the canonical bytes. */
    value: z.string(),
  }),
});
export type EvidencePackageV2 = z.infer<typeof EvidencePackageV2>;

/** Any package citywatch sealed: format 2 (signed) or an older format 1 (hash only). */
export const EvidencePackage = z.discriminatedUnion("format", [
  EvidencePackageV2,
  EvidencePackageV1,
]);
export type EvidencePackage = z.infer<typeof EvidencePackage>;

/** A deployment's evidence signing key as `GET /api/v1/evidence/keys` serves it. */
export const EvidenceKey = z.object({
  keyId: z.string(),
  algorithm: z.literal("Ed25519"),
  /** SPKI PEM of the public key. */
  publicKeyPem: z.string(),
  /** From when packages were signed with it, and until when (null: the current key). */
  validFrom: z.string(),
  validTo: z.string().nullable(),
});
export type EvidenceKey = z.infer<typeof EvidenceKey>;

/** One reason a package does not verify. */
export const EvidenceProblem = z.object({
  /** `hash_mismatch`, `bad_signature`, `unknown_key`, `key_not_valid_then`, `unknown_task`, `differs_from_stored`, `unsigned_format`, … */
  code: z.string(),
  message: z.string(),
  /** JSON paths where the package differs from the stored one (`differs_from_stored`). */
  paths: z.array(z.string()).optional(),
});

/** Answer of the verification endpoints and of `citywatch evidence verify`. */
export const EvidenceVerification = z.object({
  taskId: z.string(),
  sequence: z.number().int(),
  valid: z.boolean(),
  /** The hash the package carries, and the one recomputed from its content. */
  expected: z.string(),
  actual: z.string(),
  keyId: z.string().nullable(),
  problems: z.array(EvidenceProblem),
});
export type EvidenceVerification = z.infer<typeof EvidenceVerification>;
