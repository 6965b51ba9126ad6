import { createHash, generateKeyPairSync, sign } from "node:crypto";
import type { EvidencePackageV2 } from "../../../contracts/model/evidence.js";
import { EvidencePackage } from "../../../contracts/model/evidence.js";
import { canonicalJson } from "../../../tasks/canonical-json.js";

/*
 * Format-2 evidence packages for the printable document's tests, sealed with real crypto (SHA-256
 * of the RFC 8785 canonical JSON, Ed25519 over the same bytes, key id = first 16 bytes of the
 * SHA-256 of the raw public key), as the contract says. Three cases: a night construction noise
 * case at 22:10 Beijing time (LAeq 64.21191348543675 against 55, 20 readings, one device whose
 * calibration expired, a hostile device model and party name), an emergency k-of-n methane task,
 * and a package whose device has no calibration recorded.
 */

type Body = Omit<EvidencePackageV2, "hash" | "signature">;

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const rawPublic = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
export const FIXTURE_KEY_ID = createHash("sha256").update(rawPublic).digest("hex").slice(0, 32);

/** Seal a body: hash and sign its canonical bytes, then check it against the contract. */
export function seal(body: Body): EvidencePackageV2 {
  const bytes = Buffer.from(canonicalJson(body), "utf8");
  const pkg = {
    ...body,
    hash: {
      algorithm: "sha256" as const,
      canonicalization: "RFC 8785" as const,
      value: createHash("sha256").update(bytes).digest("hex"),
    },
    signature: {
      algorithm: "Ed25519" as const,
      keyId: FIXTURE_KEY_ID,
      value: sign(null, bytes, privateKey).toString("base64"),
    },
  };
  const parsed = EvidencePackage.parse(pkg);
  if (parsed.format !== "citywatch-evidence/2") throw new Error("fixture is not format 2");
  return parsed;
}

/** `2026-12-05T22:10:00+08:00` for minute `m` after 22:00 local (14:00Z). */
const local = (minute: number, second = 0) => {
  const hh = 22 + Math.floor(minute / 60);
  const mm = minute % 60;
  return `2026-12-05T${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")}:${String(second).padStart(2, "0")}+08:00`;
};
const utc = (minute: number, second = 0) =>
  new Date(Date.UTC(2026, 11, 5, 14, minute, second)).toISOString();

export const HOSTILE_MODEL = `AWA6228+<script>alert("x")</script><img src=x onerror=alert(1)>`;
export const HOSTILE_PARTY = `Acme <Build> & "Sons" Co.`;

const LAEQ = [
  63.8, 64.1, 64.6, 63.9, 64.3, 64.0, 64.4, 64.2, 63.7, 64.5, 64.1, 64.3, 64.0, 64.6, 64.2, 63.9,
  64.4, 64.1, 64.3, 64.5,
];

/** The night construction noise case: 22:10–22:30 local, LAeq 64.21191348543675 > 55. */
export function nightNoiseBody(): Body {
  const readings = LAEQ.map((laeq, i) => ({
    deviceId: "noise-17",
    ts: utc(11 + i),
    tsLocal: local(11 + i),
    receivedAt: utc(11 + i, 2),
    seq: 4_000 + i,
    replay: false,
    // One reading taken while the device calibrated itself: set aside by the quality gate.
    quality: i === 5 ? ("calibration" as const) : ("normal" as const),
    usable: i !== 5,
    trigger: i === LAEQ.length - 1,
    values: { LAeq: laeq, LAmax: laeq + 9.3 },
  }));
  return {
    format: "citywatch-evidence/2",
    taskId: "enf-000042",
    sequence: 2,
    previous: {
      sequence: 1,
      hash: "9f2c41d07be35a18c6e2f0d94a7b15e3c08d62fa4b19e7c35d80a6f21e4b9c07",
    },
    createdAt: utc(30, 5),
    createdAtLocal: local(30, 5),
    timeZone: "Asia/Shanghai",
    kind: "enforcement",
    rule: {
      id: "noise.construction.night.laeq",
      version: 3,
      title: "Construction noise at night (GB 12523-2011)",
      clause: { standard: "GB 12523-2011", section: "§4.1, Table 1" },
      legalBasis: [
        {
          law: "Noise Pollution Prevention and Control Law 2021",
          article: "Art. 43",
          summary:
            "No construction producing noise at night in noise-sensitive areas without a permit",
          confidence: "verified",
        },
        {
          law: "Noise Pollution Prevention and Control Law 2021",
          article: "Art. 77",
          summary: "Penalty for night construction without a permit (placeholder)",
          confidence: "placeholder",
        },
      ],
      confidence: "verified",
      note: null,
      unverified: [],
      statement: "Night-time LAeq over 20 minutes at the site boundary",
    },
    decision: {
      type: "raise",
      alarmSeq: 7,
      level: null,
      levelThreshold: null,
      at: utc(30),
      atLocal: local(30),
      startedAt: utc(10),
      startedAtLocal: local(10),
      detail: "LAeq energy_mean 64.21191348543675 > 55: true",
      replayed: false,
    },
    computation: {
      method:
        "energy_mean of LAeq over 20 min rolling; LAeq 64.21191348543675 > 55: true; night readings only",
      conditionType: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      windowMs: 20 * 60_000,
      align: "rolling",
      period: "night",
      coverage: 1,
      windowStart: utc(10),
      windowStartLocal: local(10),
      windowEnd: utc(30),
      windowEndLocal: local(30),
      value: 64.21191348543675,
      recomputed: 64.21191348543675,
      reported: "64.2",
      limit: 55,
      unit: "dB(A)",
    },
    vote: null,
    subject: { type: "site", id: "site-riverside" },
    party: {
      name: HOSTILE_PARTY,
      creditCode: "91510100MA61234567",
      address: "18 Binjiang Road, Jinjiang District, Chengdu",
      contact: { name: "Wang Li", phone: "028-8888 1234" },
    },
    site: {
      id: "site-riverside",
      name: "Riverside Tower construction site",
      type: "construction_site",
      address: "20 Binjiang Road, Jinjiang District, Chengdu",
      area: { district: "Jinjiang", street: "Hejiangting", gridCell: "JJ-HJT-007" },
      location: { lat: 30.6571, lon: 104.0817 },
      zoneClass: "2",
    },
    permits: {
      inForce: [
        {
          type: "dust_control_plan",
          reference: "JJ-2026-0311",
          validFrom: "2026-03-01",
          validTo: "2027-02-28",
        },
      ],
      exempting: [],
    },
    devices: [
      {
        id: "noise-17",
        kind: "noise",
        model: HOSTILE_MODEL,
        serial: "0017",
        typeApproval: "CPA 2019-F123",
        metrologyCertificate: "SCJL-2025-0456",
        calibratedOn: "2025-11-20",
        calibrationDueOn: "2026-11-19",
        calibration: "expired",
        location: { lat: 30.65712, lon: 104.08169 },
        area: { district: "Jinjiang", street: "Hejiangting", gridCell: "JJ-HJT-007" },
        zoneClass: "2",
      },
    ],
    readings,
    transport: {
      path: ["device noise-17", "edge agent", "broker", "ingest"],
      commits: [{ deviceId: "noise-17", seq: 4_019 }],
    },
    warnings: [
      {
        code: "calibration_expired",
        about: "noise-17",
        message: "calibration of noise-17 was due on 2026-11-19",
      },
    ],
    audit: [
      {
        at: utc(30, 1),
        atLocal: local(30, 1),
        actor: "rules",
        action: "filed",
        from: null,
        to: "filed",
        detail: "night construction noise at site-riverside",
      },
      {
        at: utc(30, 2),
        atLocal: local(30, 2),
        actor: "router",
        action: "routed",
        from: null,
        to: null,
        detail: "to the Jinjiang enforcement team",
      },
    ],
  };
}

/** The emergency k-of-n methane task in a utility tunnel segment: no party, 2 of 3 devices. */
export function methaneBody(): Body {
  const devices = ["gas-1", "gas-2", "gas-3"];
  const values = [31.4, 28.2, 12.5];
  return {
    ...nightNoiseBody(),
    taskId: "emg-000007",
    sequence: 1,
    previous: null,
    kind: "emergency",
    rule: {
      id: "tunnel.methane.kofn",
      version: 1,
      title: "Methane in the utility tunnel (GB 50838-2015)",
      clause: { standard: "GB 50838-2015", section: "§7.5.4" },
      legalBasis: [],
      confidence: "placeholder",
      note: "k and n chosen by the operator",
      unverified: [{ path: "condition.k", note: "no standard sets k" }],
      statement: null,
    },
    decision: {
      type: "raise",
      alarmSeq: 1,
      level: "II",
      levelThreshold: 25,
      at: utc(15),
      atLocal: local(15),
      startedAt: utc(14),
      startedAtLocal: local(14),
      detail: "2 of 3 > 25",
      replayed: false,
    },
    computation: {
      method: "k_of_n ch4 latest > 25",
      conditionType: "k_of_n",
      quantity: "ch4",
      aggregate: "latest",
      windowMs: null,
      align: null,
      period: null,
      coverage: null,
      windowStart: utc(14),
      windowStartLocal: local(14),
      windowEnd: utc(15),
      windowEndLocal: local(15),
      value: 2,
      recomputed: 2,
      reported: "2",
      limit: 25,
      unit: "%LEL",
    },
    vote: {
      k: 2,
      n: 3,
      threshold: 25,
      devices: devices.map((deviceId, i) => ({
        deviceId,
        value: values[i] ?? null,
        quality: "normal" as const,
        votes: (values[i] ?? 0) > 25,
      })),
    },
    subject: { type: "segment", id: "tunnel-A-03" },
    party: null,
    site: {
      id: "tunnel-A-03",
      name: "Utility tunnel A, compartment 3",
      type: "tunnel_segment",
      address: null,
      area: { district: "Wuhou", gridCell: "WH-07" },
      location: { lat: 30.64, lon: 104.04 },
      zoneClass: null,
    },
    permits: { inForce: [], exempting: [] },
    devices: devices.map((id) => ({
      id,
      kind: "utility_tunnel",
      model: "GT-CH4",
      serial: id,
      typeApproval: null,
      metrologyCertificate: null,
      calibratedOn: "2026-06-01",
      calibrationDueOn: "2027-05-31",
      calibration: "valid" as const,
      location: { lat: 30.64, lon: 104.04 },
      area: { district: "Wuhou", gridCell: "WH-07" },
      zoneClass: null,
    })),
    readings: devices.map((deviceId, i) => ({
      deviceId,
      ts: utc(15),
      tsLocal: local(15),
      receivedAt: null,
      seq: null,
      replay: i === 2,
      quality: "normal" as const,
      usable: true,
      trigger: true,
      values: { ch4: values[i] ?? 0 },
    })),
    transport: {
      path: ["device gas-1", "device gas-2", "device gas-3", "edge agent", "broker", "ingest"],
      commits: devices.map((deviceId) => ({ deviceId, seq: null })),
    },
    warnings: [
      { code: "type_approval_missing", about: "gas-1", message: "no type approval" },
      { code: "future_code_x", about: "tunnel-A-03", message: "something new <b>bold</b>" },
    ],
    audit: [],
  };
}

/** The noise case again, its device with no calibration recorded and no warning from the sealer. */
export function missingCalibrationBody(): Body {
  const body = nightNoiseBody();
  return {
    ...body,
    taskId: "enf-000043",
    sequence: 1,
    previous: null,
    devices: body.devices.map((d) => ({
      ...d,
      model: "AWA6228+",
      calibratedOn: null,
      calibrationDueOn: null,
      calibration: "missing" as const,
    })),
    warnings: [],
  };
}

export const nightNoisePackage = () => seal(nightNoiseBody());
export const methanePackage = () => seal(methaneBody());
export const missingCalibrationPackage = () => seal(missingCalibrationBody());
