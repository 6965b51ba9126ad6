import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Device, Site, type SensorKind } from "../../../contracts/index.js";
import type { AlarmNotice, TaskSink } from "../../../contracts/model/alarms.js";
import { EvidencePackageV2 } from "../../../contracts/model/evidence.js";
import type { StoredReading } from "../../../contracts/model/stored-readings.js";
import type { AuditEntry } from "../../../contracts/model/tasks.js";
import { AlarmStore } from "../../../rules/alarm-store.js";
import { RulesDriver } from "../../../rules/driver.js";
import { RuleSet } from "../../../rules/rule-set.js";
import {
  buildEvidenceBody,
  type EvidenceBody,
  localIso,
  roundReported,
} from "../../../tasks/evidence.js";
import { recompute, recomputeVotes } from "../../../tasks/evidence-recompute.js";
import type { RegistryLookup } from "../../../tasks/types.js";

/*
 * Issue #17 item 1: the content of an evidence package, for every rule type, over the real
 * default pack and the real rules driver. Readings go in as the ingest hands them over (with
 * their uplink seq and receive time); the AlarmNotice the driver hands the task sink is built
 * into a package body, which must hold exactly the readings the decision used, recompute to the
 * engine's value, and carry local times, units, party, permits, devices and warnings.
 */

const AREA = { district: "dongcheng", gridCell: "dc-01" };
const LOCATION = { lat: 39.9, lon: 116.4 };
const PARTY = {
  name: "Capital Build Co.",
  creditCode: "91110000MA01ABCD2X",
  contact: { name: "Wang Li", phone: "010-5555-0101" },
};

const SITES: Site[] = [
  Site.parse({
    id: "build-1",
    type: "construction_site",
    name: "East Tower works",
    address: "1 East Street, Dongcheng, Beijing",
    area: AREA,
    location: LOCATION,
    regulatedParty: PARTY,
    phase: "structure",
    permits: [
      // Expired before the night judged: not in force, exempts nothing.
      {
        type: "night_works",
        reference: "NW-2026-017",
        validFrom: "2026-11-01T00:00:00+08:00",
        validTo: "2026-11-30T00:00:00+08:00",
      },
      {
        type: "road_occupation",
        reference: "RO-88",
        validFrom: "2026-12-01T00:00:00+08:00",
        validTo: "2026-12-31T00:00:00+08:00",
      },
    ],
  }),
  Site.parse({
    id: "road-4a",
    type: "ambient",
    name: "Ring Road 4a",
    area: AREA,
    location: LOCATION,
    zoneClass: "4a",
  }),
  Site.parse({
    id: "wok-1",
    type: "restaurant",
    name: "Wok 1",
    area: AREA,
    location: LOCATION,
    regulatedParty: { name: "Wok Catering" },
    size: "medium",
  }),
  Site.parse({
    id: "seg-1",
    type: "tunnel_segment",
    name: "Gallery 1 segment 1",
    area: AREA,
    location: LOCATION,
    tunnel: "gallery-1",
    compartment: "gas",
    neighbours: [],
  }),
  Site.parse({
    id: "under-1",
    type: "underpass",
    name: "Underpass 1",
    area: AREA,
    location: LOCATION,
  }),
  Site.parse({
    id: "park-1",
    type: "ambient",
    name: "Park 1",
    area: AREA,
    location: LOCATION,
    zoneClass: "1",
  }),
];

const device = (
  id: string,
  kind: SensorKind,
  siteId: string,
  extra: Record<string, unknown> = {
    calibratedOn: "2026-06-01",
    calibrationDueOn: "2027-06-01",
    typeApproval: `TA-${id}`,
    metrologyCertificate: `MC-${id}`,
  },
) =>
  Device.parse({
    id,
    kind,
    model: "M-1",
    serial: `SN-${id}`,
    siteId,
    area: AREA,
    location: LOCATION,
    expectedIntervalS: 60,
    ...extra,
  });

const DEVICES: Device[] = [
  device("build-1-noise", "noise", "build-1"),
  // Calibrated, but with no type approval or certificate on record.
  device("road-4a-noise", "noise", "road-4a", {
    calibratedOn: "2026-06-01",
    calibrationDueOn: "2027-06-01",
  }),
  device("wok-1-fume", "cooking_fume", "wok-1"),
  device("seg-1-gas-a", "utility_tunnel", "seg-1"),
  // No calibration on record.
  device("seg-1-gas-b", "utility_tunnel", "seg-1", {
    typeApproval: "TA-b",
    metrologyCertificate: "MC-b",
  }),
  // Calibration expired on 2026-12-04, the day before the night judged.
  device("under-1-water", "water_level", "under-1", {
    calibratedOn: "2025-12-04",
    calibrationDueOn: "2026-12-04",
    typeApproval: "TA-w",
    metrologyCertificate: "MC-w",
  }),
  device("park-1-noise", "noise", "park-1"),
];

const registry: RegistryLookup = {
  device: (id) => DEVICES.find((d) => d.id === id),
  site: (id) => SITES.find((s) => s.id === id),
};

/** Beijing time on 2026-12-05 (`hh:mm` or `hh:mm:ss`). */
const bj = (hhmm: string): number =>
  Date.parse(`2026-12-05T${hhmm.length === 5 ? `${hhmm}:00` : hhmm}+08:00`);
const MIN = 60_000;
/** The ingest receives each message this long after it was measured. */
const LATENCY = 1_500;

const cities: Array<{ close(): void }> = [];
afterEach(() => {
  for (const c of cities.splice(0)) c.close();
});

/** The real driver over the default pack, its clock at the data's (a live city). */
async function city(start: number) {
  const rules = new RuleSet();
  expect(rules.reload()).toEqual([]);
  const notices: AlarmNotice[] = [];
  const sink: TaskSink = { handleAlarm: (n) => notices.push(n), onAcknowledged: () => () => {} };
  let now = start;
  const dir = mkdtempSync(join(tmpdir(), "cw-evidence-content-"));
  const alarms = new AlarmStore(join(dir, "alarms.db"));
  const driver = new RulesDriver({
    log: pino({ level: "silent" }),
    rules,
    registry: { devices: () => DEVICES, sites: () => SITES },
    alarms,
    sink,
    region: "default",
    tickMs: 60_000,
    now: () => now,
  });
  await driver.start();
  const seqs = new Map<string, number>();
  const c = {
    notices,
    /** One message of one reading, with the next seq of its device, received LATENCY later. */
    send(
      deviceId: string,
      timeMs: number,
      values: Record<string, number | boolean>,
      quality: StoredReading["quality"] = "normal",
    ): number {
      const seq = (seqs.get(deviceId) ?? 100) + 1;
      seqs.set(deviceId, seq);
      now = Math.max(now, timeMs);
      const kind = DEVICES.find((d) => d.id === deviceId)?.kind ?? "noise";
      driver.onStored([
        {
          deviceId,
          kind,
          timeMs,
          quality,
          values,
          replay: false,
          seq,
          receivedMs: timeMs + LATENCY,
        },
      ]);
      return seq;
    },
    /** Readings every minute over (from, to]. */
    minutes(
      deviceId: string,
      from: number,
      to: number,
      values: (t: number) => Record<string, number | boolean>,
    ) {
      for (let t = from + MIN; t <= to; t += MIN) c.send(deviceId, t, values(t));
    },
    tickAt(at: number) {
      now = at;
      driver.tick();
    },
    raised: (ruleId: string, subjectId?: string) =>
      notices.filter(
        (n) =>
          n.rule.id === ruleId &&
          (n.decision.type === "raise" || n.decision.type === "escalate-level") &&
          (subjectId === undefined || n.subjectId === subjectId),
      ),
    close() {
      driver.stop();
      alarms.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  cities.push(c);
  return c;
}

const AUDIT = (at: number): AuditEntry[] => [
  {
    id: 1,
    taskId: "enf-000001",
    at: new Date(at).toISOString(),
    actor: "system",
    action: "filed",
    to: "filed",
    detail: "filed by the rules engine",
  },
];

/** The package body of a notice, checked against the format-2 schema (seal members aside). */
function bodyOf(notice: AlarmNotice | undefined): EvidenceBody {
  expect(notice).toBeDefined();
  const n = notice as AlarmNotice;
  const body = buildEvidenceBody({
    taskId: "enf-000001",
    sequence: 1,
    createdAt: new Date(n.decision.at + 2_000).toISOString(),
    notice: n,
    registry,
    audit: AUDIT(n.decision.at),
  });
  EvidencePackageV2.omit({ hash: true, signature: true, previous: true }).strict().parse(body);
  return body;
}

const times = (body: EvidenceBody) => body.readings.map((r) => Date.parse(r.ts));
const codes = (body: EvidenceBody) => body.warnings.map((w) => `${w.code}:${w.about}`).sort();

describe("evidence content, for every rule type (real driver, default pack)", () => {
  it("threshold window: a night LAeq holds exactly the night readings of its 20-min window, recomputed to the bit (22:00 boundary)", async () => {
    const c = await city(bj("21:00"));
    c.minutes("build-1-noise", bj("21:30"), bj("22:40"), (t) =>
      t <= bj("22:00") ? { LAeq: 68, LAmax: 75 } : { LAeq: 58 + ((t / MIN) % 3) * 0.37, LAmax: 65 },
    );
    const notice = c.raised("noise.construction.laeq")[0];
    const body = bodyOf(notice);
    const at = notice!.decision.at;
    // Exactly the readings of (max(22:00, at − 20 min), at]: none of the day (≤ 22:00).
    const expected: number[] = [];
    for (let t = Math.max(bj("22:00"), at - 20 * MIN) + MIN; t <= at; t += MIN) expected.push(t);
    expect(times(body)).toEqual(expected);
    expect(Math.min(...times(body))).toBeGreaterThan(bj("22:00"));
    expect(body.readings.every((r) => r.deviceId === "build-1-noise" && r.usable)).toBe(true);
    expect(body.readings.map((r) => Object.keys(r.values))).toEqual(expected.map(() => ["LAeq"]));
    // Only the newest reading tipped it; each carries its uplink seq and receive time.
    expect(body.readings.filter((r) => r.trigger).map((r) => Date.parse(r.ts))).toEqual([at]);
    for (const r of body.readings) {
      expect(Date.parse(r.receivedAt!)).toBe(Date.parse(r.ts) + LATENCY);
      expect(r.seq).toBe(101 + (Date.parse(r.ts) - bj("21:31")) / MIN);
      expect(r.tsLocal).toBe(localIso(r.ts, "Asia/Shanghai"));
      expect(r.tsLocal).toMatch(/^2026-12-05T22:[0-5]\d:00\+08:00$/);
    }
    expect(body.transport).toEqual({
      path: ["device build-1-noise", "edge agent", "broker", "ingest"],
      commits: [{ deviceId: "build-1-noise", seq: body.readings.at(-1)!.seq }],
    });
    // Recomputed from the package's readings: the engine's value to the last bit.
    const c_ = body.computation;
    expect(typeof c_.value).toBe("number");
    expect(c_.recomputed).toBe(c_.value);
    expect(recompute(body)).toBe(c_.value);
    expect(c_.reported).toBe(roundReported(c_.value as number, 1));
    expect(c_.reported).toMatch(/^\d+\.\d$/);
    expect(c_).toMatchObject({
      conditionType: "threshold",
      quantity: "LAeq",
      aggregate: "energy_mean",
      windowMs: 20 * MIN,
      align: "rolling",
      period: "night",
      unit: "dB(A)",
      limit: 55,
      deviceId: "build-1-noise",
    });
    expect(c_.coverage).toBeGreaterThan(0.7);
    expect(c_.windowEndLocal).toBe(localIso(at, "Asia/Shanghai"));
    expect(c_.windowEndLocal.endsWith("+08:00")).toBe(true);
    expect(body.decision.atLocal).toBe(localIso(at, "Asia/Shanghai"));
    expect(body.timeZone).toBe("Asia/Shanghai");
    // The party, its site and the permits in force at the decision.
    expect(body.party).toEqual({
      name: "Capital Build Co.",
      creditCode: "91110000MA01ABCD2X",
      address: "1 East Street, Dongcheng, Beijing",
      contact: { name: "Wang Li", phone: "010-5555-0101" },
    });
    expect(body.site).toMatchObject({
      id: "build-1",
      address: "1 East Street, Dongcheng, Beijing",
    });
    expect(body.permits).toEqual({
      inForce: [
        {
          type: "road_occupation",
          reference: "RO-88",
          validFrom: "2026-12-01T00:00:00+08:00",
          validTo: "2026-12-31T00:00:00+08:00",
        },
      ],
      exempting: [],
    });
    expect(body.devices).toEqual([
      expect.objectContaining({
        id: "build-1-noise",
        typeApproval: "TA-build-1-noise",
        metrologyCertificate: "MC-build-1-noise",
        calibration: "valid",
      }),
    ]);
    expect(body.warnings).toEqual([]);
    expect(body.rule.legalBasis.map((b) => `${b.law} ${b.article} ${b.confidence}`)).toEqual([
      "Administrative Penalty Law of the PRC 2021 Art. 41 verified",
    ]);
    expect(body.audit).toEqual([
      expect.objectContaining({
        atLocal: localIso(at, "Asia/Shanghai"),
        action: "filed",
        from: null,
      }),
    ]);
    // The night-works rule (Noise Law Art. 43; the site's night_works permit has expired).
    const works = bodyOf(c.raised("noise.construction.night-works")[0]);
    expect(works.rule.legalBasis.map((b) => b.article)).toEqual(["Art. 41", "Art. 43"]);
    expect(works.permits.inForce.map((p) => p.type)).toEqual(["road_occupation"]);
    expect(Math.min(...times(works))).toBeGreaterThan(bj("22:00"));
    expect(works.computation.recomputed).toBe(works.computation.value);
  });

  it("threshold, N of M intervals: oil fume holds the readings of the 3 intervals counted, the newest interval's mean recomputed", async () => {
    const c = await city(bj("10:25"));
    c.minutes("wok-1-fume", bj("10:30"), bj("11:00"), (t) => ({
      oilFume: 2.5 + ((t / MIN) % 4) * 0.13,
    }));
    const notice = c.raised("cooking-fume.oil-fume")[0];
    const body = bodyOf(notice);
    expect(body.decision.atLocal).toBe("2026-12-05T11:00:00+08:00");
    expect(times(body)).toEqual(Array.from({ length: 30 }, (_, i) => bj("10:31") + i * MIN));
    expect(body.computation).toMatchObject({
      windowStartLocal: "2026-12-05T10:50:00+08:00",
      windowEndLocal: "2026-12-05T11:00:00+08:00",
      windowMs: 10 * MIN,
      align: "clock",
      aggregate: "mean",
      unit: "mg/m³",
    });
    const newest = body.readings.slice(20).map((r) => r.values["oilFume"] as number);
    expect(body.computation.value).toBe(newest.reduce((a, b) => a + b, 0) / newest.length);
    expect(body.computation.recomputed).toBe(body.computation.value);
    expect(body.computation.reported).toBe(roundReported(body.computation.value as number, 1));
    expect(body.rule.statement).toMatch(/lead for on-site inspection/);
  });

  it("point (latest): a 22:10 Beijing LAmax of 79.3 shows 22:10 locally and holds that one reading, not the 22:00 daytime one", async () => {
    const c = await city(bj("21:40"));
    c.send("road-4a-noise", bj("21:50"), { LAmax: 79.3, LAeq: 60 });
    c.send("road-4a-noise", bj("22:00"), { LAmax: 79.3, LAeq: 60 });
    expect(c.raised("noise.area.night-lamax")).toEqual([]);
    c.send("road-4a-noise", bj("22:10"), { LAmax: 79.3, LAeq: 60 });
    const body = bodyOf(c.raised("noise.area.night-lamax")[0]);
    expect(body.decision.at).toBe("2026-12-05T14:10:00.000Z");
    expect(body.decision.atLocal).toBe("2026-12-05T22:10:00+08:00");
    expect(body.readings).toEqual([
      {
        deviceId: "road-4a-noise",
        ts: "2026-12-05T14:10:00.000Z",
        tsLocal: "2026-12-05T22:10:00+08:00",
        receivedAt: "2026-12-05T14:10:01.500Z",
        seq: 103,
        replay: false,
        quality: "normal",
        usable: true,
        trigger: true,
        values: { LAmax: 79.3 },
      },
    ]);
    expect(body.computation).toMatchObject({
      conditionType: "threshold",
      aggregate: "latest",
      windowMs: null,
      period: "night",
      value: 79.3,
      recomputed: 79.3,
      reported: "79.3",
      unit: "dB(A)",
      limit: 70,
    });
    // GB 3096 area quality: no party; the device's missing approval numbers are warned about.
    expect(body.party).toBeNull();
    expect(codes(body)).toEqual([
      "metrology_certificate_missing:road-4a-noise",
      "type_approval_missing:road-4a-noise",
    ]);
  });

  it("k-of-n: the methane vote holds each voting device's reading, value and flag; the level's own threshold", async () => {
    const c = await city(bj("22:55"));
    c.send("seg-1-gas-b", bj("23:00"), { ch4: 3 }, "fault");
    c.send("seg-1-gas-a", bj("23:00:30"), { ch4: 21.04 });
    const raise = bodyOf(c.raised("tunnel.ch4")[0]);
    expect(
      raise.readings.map((r) => [r.deviceId, r.ts, r.values["ch4"], r.quality, r.trigger]),
    ).toEqual([
      ["seg-1-gas-a", "2026-12-05T15:00:30.000Z", 21.04, "normal", true],
      ["seg-1-gas-b", "2026-12-05T15:00:00.000Z", 3, "fault", true],
    ]);
    expect(raise.vote).toEqual({
      k: 1,
      n: 2,
      threshold: 20,
      devices: [
        { deviceId: "seg-1-gas-a", value: 21.04, quality: "normal", votes: true },
        { deviceId: "seg-1-gas-b", value: 3, quality: "fault", votes: false },
      ],
    });
    expect(raise.computation).toMatchObject({
      conditionType: "k_of_n",
      value: 21.04,
      recomputed: 21.04,
      reported: "21.0",
      unit: "%LEL",
      deviceId: "seg-1-gas-a",
    });
    expect(Object.fromEntries(recomputeVotes(raise))).toEqual({
      "seg-1-gas-a": 21.04,
      "seg-1-gas-b": 3,
    });
    expect(raise.decision).toMatchObject({ level: "IV", levelThreshold: 20 });
    expect(raise.party).toBeNull();
    expect(codes(raise)).toEqual(
      ["calibration_missing:seg-1-gas-b", "calibration_date_missing:seg-1-gas-b"].sort(),
    );
    expect(raise.transport.commits).toEqual([
      { deviceId: "seg-1-gas-a", seq: 101 },
      { deviceId: "seg-1-gas-b", seq: 101 },
    ]);
    // Level III cites its own threshold, 25.
    c.send("seg-1-gas-a", bj("23:01"), { ch4: 26 });
    const escalated = bodyOf(c.raised("tunnel.ch4")[1]);
    expect(escalated.decision).toMatchObject({
      type: "escalate-level",
      level: "III",
      levelThreshold: 25,
    });
    expect(escalated.vote?.threshold).toBe(20);
    expect(escalated.computation.recomputed).toBe(26);
  });

  it("rate of rise: the readings of the 5-min window, oldest and newest marked, rise recomputed; expired calibration warned", async () => {
    const c = await city(bj("22:55"));
    const depths = [2, 3, 4.5, 6, 7.75];
    depths.forEach((d, i) => c.send("under-1-water", bj("23:00") + (i + 1) * MIN, { ponding: d }));
    const body = bodyOf(c.raised("water.ponding.rate-of-rise")[0]);
    expect(body.decision.atLocal).toBe("2026-12-05T23:05:00+08:00");
    expect(body.readings.map((r) => [r.values["ponding"], r.trigger])).toEqual([
      [2, true],
      [3, false],
      [4.5, false],
      [6, false],
      [7.75, true],
    ]);
    expect(body.computation).toMatchObject({
      conditionType: "rate_of_rise",
      aggregate: "rise",
      windowMs: 5 * MIN,
      value: 5.75,
      recomputed: 5.75,
      reported: "5.8",
      unit: "cm",
    });
    expect(codes(body)).toEqual([
      "calibration_expired:under-1-water",
      "rule_placeholder:water.ponding.rate-of-rise",
    ]);
    expect(body.devices[0]?.calibration).toBe("expired");
  });

  it("deadman: the device's last reading before the silence, the silence recomputed from it", async () => {
    const c = await city(bj("22:55"));
    c.send("park-1-noise", bj("23:00"), { LAeq: 40, LAmax: 50 });
    c.tickAt(bj("23:10"));
    const body = bodyOf(c.raised("device.deadman", "park-1-noise")[0]);
    expect(body.readings).toEqual([
      expect.objectContaining({
        deviceId: "park-1-noise",
        tsLocal: "2026-12-05T23:00:00+08:00",
        seq: 101,
        trigger: true,
        values: { LAeq: 40, LAmax: 50 },
      }),
    ]);
    const silence = Date.parse(body.decision.at) - bj("23:00");
    expect(body.computation).toMatchObject({
      conditionType: "deadman",
      value: silence,
      recomputed: silence,
      unit: "ms",
      reported: String(silence),
    });
    expect(body.computation.method).toMatch(/silence is the evidence/);
    expect(body.party).toBeNull();
  });

  it("quality flag: the flagged reading itself", async () => {
    const c = await city(bj("22:55"));
    c.send("park-1-noise", bj("23:00"), { LAeq: 40 });
    c.send("park-1-noise", bj("23:01"), { LAeq: 99 }, "fault");
    const body = bodyOf(c.raised("device.quality-flag", "park-1-noise")[0]);
    expect(body.readings).toEqual([
      expect.objectContaining({
        tsLocal: "2026-12-05T23:01:00+08:00",
        quality: "fault",
        trigger: true,
        usable: true,
        seq: 102,
      }),
    ]);
    expect(body.computation).toMatchObject({
      conditionType: "quality",
      value: true,
      recomputed: true,
      reported: "flagged fault",
      flags: ["fault", "calibration", "maintenance"],
    });
  });

  it("state: fan on and purifier off for 10 min, the readings since it began; a party without a credit code is warned", async () => {
    const c = await city(bj("11:55"));
    c.minutes("wok-1-fume", bj("12:00"), bj("12:12"), () => ({ fanOn: true, purifierOn: false }));
    const notice = c.raised("cooking-fume.purifier-off")[0];
    const body = bodyOf(notice);
    const started = notice!.decision.type === "raise" ? notice!.decision.startedAt : Number.NaN;
    expect(started).toBe(bj("12:01"));
    expect(body.decision.startedAtLocal).toBe("2026-12-05T12:01:00+08:00");
    const at = Date.parse(body.decision.at);
    expect(at).toBe(bj("12:11"));
    expect(times(body)).toEqual(Array.from({ length: 11 }, (_, i) => bj("12:01") + i * MIN));
    expect(body.readings.filter((r) => r.trigger).map((r) => r.tsLocal)).toEqual([
      "2026-12-05T12:11:00+08:00",
    ]);
    expect(body.readings[0]?.values).toEqual({ fanOn: 1, purifierOn: 0 });
    expect(body.computation).toMatchObject({
      conditionType: "state",
      value: true,
      recomputed: true,
      reported: "fanOn on and purifierOn off",
      terms: [
        { quantity: "fanOn", is: true },
        { quantity: "purifierOn", is: false },
      ],
      match: "all",
      unit: null,
    });
    expect(body.party).toMatchObject({ name: "Wok Catering", creditCode: null });
    expect(codes(body)).toEqual(["party_credit_code_missing:Wok Catering"]);
  });
});

describe("evidence content helpers", () => {
  it("local times carry the zone's offset, milliseconds only when there are some", () => {
    expect(localIso("2026-12-05T14:10:00.000Z", "Asia/Shanghai")).toBe("2026-12-05T22:10:00+08:00");
    expect(localIso("2026-12-05T16:00:00.250Z", "Asia/Shanghai")).toBe(
      "2026-12-06T00:00:00.250+08:00",
    );
    expect(localIso("2026-07-01T12:00:00Z", "Europe/Berlin")).toBe("2026-07-01T14:00:00+02:00");
    expect(localIso("2026-01-01T03:00:00Z", "America/St_Johns")).toBe("2025-12-31T23:30:00-03:30");
    expect(() => localIso("not a time", "Asia/Shanghai")).toThrow(/not an instant/);
  });

  it("rounds as GB/T 8170 does: to nearest, an exact half to even", () => {
    expect(roundReported(64.21191348543675, 1)).toBe("64.2");
    expect(roundReported(64.25, 1)).toBe("64.2");
    expect(roundReported(64.35, 1)).toBe("64.4");
    expect(roundReported(64.26, 1)).toBe("64.3");
    expect(roundReported(79.3, 1)).toBe("79.3");
    expect(roundReported(152.5, 0)).toBe("152");
    expect(roundReported(153.5, 0)).toBe("154");
    expect(roundReported(-0.04, 1)).toBe("0.0");
    expect(roundReported(3.456, 2)).toBe("3.46");
  });

  it("recompute refuses to make up a value the package cannot support", () => {
    const body = {
      computation: {
        conditionType: "threshold",
        quantity: "LAeq",
        aggregate: "energy_mean",
        windowStart: "2026-12-05T14:00:00.000Z",
        windowEnd: "2026-12-05T14:20:00.000Z",
        deviceId: "n-1",
      },
      readings: [
        { deviceId: "n-1", ts: "2026-12-05T14:10:00.000Z", usable: false, values: { LAeq: 90 } },
        { deviceId: "n-2", ts: "2026-12-05T14:10:00.000Z", usable: true, values: { LAeq: 90 } },
      ],
      devices: [],
    } as unknown as Parameters<typeof recompute>[0];
    // The deciding device's only reading is unusable, the other device's is not its.
    expect(recompute(body)).toBeNull();
  });
});
