import { pino } from "pino";
import { Registry } from "prom-client";
import { Device, type DeviceInput, type Rule, Site } from "../../../contracts/index.js";
import { TasksConfig } from "../../../contracts/config/tasks.js";
import { buildTaskSystem, type TaskSystem } from "../../../tasks/app.js";
import type {
  AlarmDecision,
  AlarmNotice,
  EvidenceInput,
  Recheck,
} from "../../../contracts/model/alarms.js";
import type { RegistryLookup } from "../../../tasks/types.js";
import { packRule } from "../rules/engine/harness.js";

/*
 * A small city for the task tests: a construction site with a regulated party, a restaurant of
 * another party, three tunnel segments in a row, and their devices. Rules come from the default
 * pack, so the tests exercise the rules users get.
 */

export const NOISE = packRule("noise.construction.laeq");
export const CH4 = packRule("tunnel.ch4");
export const DEADMAN = packRule("device.deadman");

const area = (district: string, gridCell: string) => ({ district, gridCell });

export const SITES: Site[] = [
  Site.parse({
    id: "cs-1",
    name: 'Riverside <Tower> & "Plaza"',
    type: "construction_site",
    area: area("pudong", "pd-017"),
    location: { lat: 31.23, lon: 121.5 },
    zoneClass: "2",
    phase: "structure",
    regulatedParty: { name: "Acme <Build> Co.", creditCode: "91310000MA1FL0AB1X" },
  }),
  Site.parse({
    id: "cs-2",
    name: "Second site of Acme",
    type: "construction_site",
    area: area("pudong", "pd-018"),
    location: { lat: 31.24, lon: 121.51 },
    phase: "earthwork",
    regulatedParty: { name: "Acme <Build> Co.", creditCode: "91310000MA1FL0AB1X" },
  }),
  Site.parse({
    id: "cs-3",
    name: "Other builder",
    type: "construction_site",
    area: area("xuhui", "xh-002"),
    location: { lat: 31.19, lon: 121.43 },
    phase: "foundation",
    regulatedParty: { name: "Other Builder Ltd." },
  }),
  ...["ts-1", "ts-2", "ts-3"].map((id, i, all) =>
    Site.parse({
      id,
      name: `Gallery 1 segment ${i + 1}`,
      type: "tunnel_segment",
      area: area("pudong", "pd-100"),
      location: { lat: 31.2 + i / 100, lon: 121.6 },
      tunnel: "gallery-1",
      compartment: "gas",
      neighbours: all.filter((_, j) => Math.abs(i - j) === 1),
    }),
  ),
];

const device = (input: Partial<DeviceInput> & Pick<DeviceInput, "id" | "kind" | "siteId">) =>
  Device.parse({
    model: "AWA6228+",
    serial: `SN-${input.id}`,
    location: { lat: 31.23, lon: 121.5 },
    area: area("pudong", "pd-017"),
    calibratedOn: "2026-03-01",
    calibrationDueOn: "2027-03-01",
    ...input,
  });

export const DEVICES: Device[] = [
  device({ id: "n-1", kind: "noise", siteId: "cs-1" }),
  device({ id: "n-2", kind: "noise", siteId: "cs-2" }),
  device({ id: "n-3", kind: "noise", siteId: "cs-3" }),
  device({ id: "g-1", kind: "utility_tunnel", siteId: "ts-2", model: "GT-4", serial: "GT4-0001" }),
];

export const registry: RegistryLookup = {
  device: (id) => DEVICES.find((d) => d.id === id),
  site: (id) => SITES.find((s) => s.id === id),
};

export const T0 = Date.parse("2026-11-26T22:40:00+08:00");
export const MIN = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** A clock the test moves. */
export function fakeClock(start = T0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms), set: (ms: number) => (t = ms) };
}

export function tasksConfig(extra: Record<string, unknown> = {}): TasksConfig {
  return TasksConfig.parse({
    responsibilities: [
      { department: "emergency-management-bureau", match: { kinds: ["emergency"] } },
      {
        department: "pudong-enforcement-brigade",
        match: { domains: ["noise", "dust"], districts: ["pudong"] },
      },
      { department: "city-enforcement-brigade", match: { kinds: ["enforcement"] } },
      {
        department: "tunnel-operations",
        team: "tunnel maintenance crew",
        match: { rulePrefixes: ["device."], siteTypes: ["tunnel_segment"] },
      },
    ],
    gridTeams: { "pd-017": "Pudong grid team 17" },
    ...extra,
  });
}

export function startSystem(
  dataDir: string,
  options: {
    now: () => number;
    config?: TasksConfig;
    recheck?: Recheck;
    publish?: (t: string, p: string) => Promise<void>;
    /** Devices and sites; absent: this city's. */
    registry?: RegistryLookup;
  },
): TaskSystem {
  const system = buildTaskSystem({
    log: pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" }),
    config: options.config ?? tasksConfig(),
    dataDir,
    registry: options.registry ?? registry,
    metricsRegistry: new Registry(),
    now: options.now,
    publish: options.publish,
    recheck: options.recheck,
    random: () => 0.5,
  });
  system.start();
  return system;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Night noise evidence: 20 one-minute LAeq readings at `level`, one of them flagged calibration. */
export function noiseEvidence(at: number, level = 62): EvidenceInput {
  const readings = Array.from({ length: 20 }, (_, i) => ({
    deviceId: "n-1",
    ts: iso(at - (20 - i) * MIN),
    quality: i === 3 ? ("calibration" as const) : ("normal" as const),
    values: { LAeq: level + (i % 3) * 0.4, LAmax: level + 9 },
  }));
  return {
    readings,
    method: "energy mean of LAeq over the rolling 20 min window",
    windowStart: iso(at - 20 * MIN),
    windowEnd: iso(at),
    value: level + 0.4,
    limit: 55,
  };
}

export function raise(
  at: number,
  extra: Partial<Extract<AlarmDecision, { type: "raise" }>> = {},
): AlarmDecision {
  return {
    type: "raise",
    alarmSeq: 1,
    level: undefined,
    levelIndex: 0,
    startedAt: at - 20 * MIN,
    at,
    value: 62.4,
    limit: 55,
    deviceId: "n-1",
    detail: "LAeq 62.4 dB(A) > 55 (night)",
    replayed: false,
    ...extra,
  };
}

/** An enforcement notice for a construction site's night noise. */
export function noiseNotice(
  siteId: string,
  decision: AlarmDecision,
  evidence?: EvidenceInput,
): AlarmNotice {
  const deviceId = DEVICES.find((d) => d.siteId === siteId)?.id ?? "n-1";
  return {
    rule: NOISE,
    subjectType: "site",
    subjectId: siteId,
    siteId,
    deviceIds: [deviceId],
    decision,
    evidence,
  };
}

export function gasNotice(decision: AlarmDecision, rule: Rule = CH4): AlarmNotice {
  return {
    rule,
    subjectType: "segment",
    subjectId: "ts-2",
    siteId: "ts-2",
    deviceIds: ["g-1"],
    decision,
  };
}
