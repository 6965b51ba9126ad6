/**
 * Compiles a scenario into a timeline: for every device a seeded signal model with the events
 * folded into its parameters, and the sequence of uplink messages it publishes, each with the
 * simulated instant it becomes due. Everything here is a pure function of (scenario, start), so
 * the same seed gives the same payloads byte for byte, whatever the speed or the machine.
 */
import type { Device, QualityFlag, RegistryFile, Site, Uplink } from "../../contracts/index.js";
import { PROTOCOL_VERSION } from "../../contracts/index.js";
import {
  type ModelReading,
  type SignalModel,
  type Storm,
  type TimeWindow,
  MS_PER_MINUTE,
  cookingFumeModel,
  dustModel,
  hashSeed,
  inWindows,
  noiseModel,
  timestamp,
  utilityTunnelModel,
  waterLevelModel,
} from "../models/index.js";
import { MODEL_PARAMS } from "./model-params.js";
import type { FleetFaultEvent, Scenario, ScenarioEvent } from "./schema.js";
import { FLEET_FAULTS } from "./schema.js";

const DAY = 86_400_000;
/** China Standard Time, the models' time zone (schema: timeZone is Asia/Shanghai). */
const CST_OFFSET_MS = 8 * 3_600_000;

/** One uplink message as the device will first send it, due at simulated `dueMs`. */
export interface PlannedMessage {
  readonly seq: number;
  readonly dueMs: number;
  readonly uplink: Uplink;
  /** Some of its readings carry a skewed clock (a clock_skew event). */
  readonly skewed: boolean;
}

export interface DeviceTimeline {
  readonly device: Device;
  /** The device's messages in order; `seq` counts from 1 (the runner may add a base, see fleet/). */
  messages(): Generator<PlannedMessage, void, undefined>;
}

/** A fleet fault at its simulated instant. */
export type TimedFault = FleetFaultEvent & { readonly atMs: number };

export interface Timeline {
  readonly name: string;
  readonly seed: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly speed: number;
  readonly batchMs: number;
  readonly layout: RegistryFile;
  readonly devices: readonly DeviceTimeline[];
  /** Link outages per device, in simulated time: the runner cuts the connection meanwhile. */
  readonly linkDowns: ReadonlyArray<{ readonly deviceId: string } & TimeWindow>;
  readonly faults: readonly TimedFault[];
  readonly expect: Scenario["expect"];
}

export interface CompileOptions {
  /** The real clock at compile time: a start given as "HH:MM" is placed before it. */
  readonly nowMs: number;
  readonly speed?: number;
  /** Extra devices (a load fleet) added to the layout; see load-fleet.ts. */
  readonly extra?: { readonly layout: RegistryFile; readonly models: Record<string, unknown> };
}

/**
 * The simulated start. A clock time is put on the latest day on which the whole run ends before
 * `nowMs`: readings then never lie in the future (the ingest refuses those beyond 5 minutes),
 * and the events keep their local times of day (dinner at 18:00, works at 23:00).
 */
export function resolveStart(start: string, durationMs: number, nowMs: number): number {
  if (!/^\d\d:\d\d$/.test(start)) {
    return Math.floor(Date.parse(start) / MS_PER_MINUTE) * MS_PER_MINUTE;
  }
  const minutes = Number(start.slice(0, 2)) * 60 + Number(start.slice(3, 5));
  const localMidnight = Math.floor((nowMs + CST_OFFSET_MS) / DAY) * DAY - CST_OFFSET_MS;
  let candidate = localMidnight + minutes * MS_PER_MINUTE;
  while (candidate + durationMs > nowMs) candidate -= DAY;
  return candidate;
}

/** A stable 32-bit hash of a device id (FNV-1a), so each device's seed ignores file order. */
function idHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Drops undefined properties, so optional model parameters stay absent (exactOptionalPropertyTypes). */
function defined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>;
  };
}

type Windowed = Extract<ScenarioEvent, { for: number }>;

function windowsOf(
  events: readonly ScenarioEvent[],
  startMs: number,
  match: (e: ScenarioEvent) => boolean,
): TimeWindow[] {
  return events
    .filter(match)
    .map((e) => ({ fromMs: startMs + e.at, toMs: startMs + e.at + (e as Windowed).for }));
}

/** The device's seeded model, with the scenario's events folded into its parameters. */
function modelFor(
  device: Device,
  site: Site | undefined,
  raw: unknown,
  scenario: { seed: number; events: readonly ScenarioEvent[]; layout: RegistryFile },
  startMs: number,
): SignalModel<ModelReading<object>["values"]> {
  const seed = hashSeed(scenario.seed, idHash(device.id));
  const events = scenario.events;
  const at = (site: string | undefined, type: ScenarioEvent["type"]) =>
    windowsOf(events, startMs, (e) => e.type === type && "site" in e && e.site === site);
  const epochMs = startMs;
  switch (device.kind) {
    case "noise": {
      const p = MODEL_PARAMS.noise.parse(raw ?? {});
      const construction =
        site?.type === "construction_site"
          ? defined({
              phase: site.phase,
              level: p.construction?.level,
              workingHours: p.construction?.workingHours,
              extraWork: at(site.id, "night_works"),
            })
          : undefined;
      return noiseModel(seed, defined({ ...p, epochMs, construction }));
    }
    case "dust": {
      const p = MODEL_PARAMS.dust.parse(raw ?? {});
      const phase = site?.type === "construction_site" ? site.phase : "finished";
      return dustModel(
        seed,
        defined({ ...p, epochMs, phase, episodes: at(site?.id, "dust_episode") }),
      );
    }
    case "cooking_fume": {
      const p = MODEL_PARAMS.cooking_fume.parse(raw ?? {});
      const size = site?.type === "restaurant" ? site.size : "medium";
      const purifierOffWindows = at(site?.id, "purifier_off");
      return cookingFumeModel(seed, defined({ ...p, epochMs, size, purifierOffWindows }));
    }
    case "water_level": {
      const p = MODEL_PARAMS.water_level.parse(raw ?? {});
      const station = site?.type === "river_station" ? "river" : "underpass";
      const storms: Storm[] = events.flatMap((e) =>
        e.type === "rainstorm" && (e.sites === undefined || e.sites.includes(site?.id ?? ""))
          ? [
              defined({
                startMs: startMs + e.at,
                totalMm: e.totalMm,
                durationMin: e.for / MS_PER_MINUTE,
                peakPosition: e.peakPosition,
              }),
            ]
          : [],
      );
      return waterLevelModel(
        seed,
        defined({
          ...p,
          river: p.river && defined(p.river),
          underpass: p.underpass && defined(p.underpass),
          epochMs,
          station,
          storms,
        }),
      );
    }
    case "utility_tunnel": {
      const p = MODEL_PARAMS.utility_tunnel.parse(raw ?? {});
      const leaks = events.flatMap((e) =>
        e.type === "gas_leak" && e.site === site?.id
          ? [
              defined({
                startMs: startMs + e.at,
                rampMin: e.ramp === undefined ? undefined : e.ramp / MS_PER_MINUTE,
                durationMin: e.for === undefined ? undefined : e.for / MS_PER_MINUTE,
                equilibriumLel: e.equilibriumLel,
              }),
            ]
          : [],
      );
      const ingress = events.flatMap((e) =>
        e.type === "water_ingress" && e.site === site?.id
          ? [{ fromMs: startMs + e.at, toMs: startMs + e.at + e.for, cmPerH: e.cmPerH }]
          : [],
      );
      return utilityTunnelModel(seed, defined({ ...p, epochMs, leaks, ingress }));
    }
  }
}

function deviceTimeline(
  device: Device,
  model: SignalModel<ModelReading<object>["values"]>,
  events: readonly ScenarioEvent[],
  t: { startMs: number; endMs: number; batchMs: number },
): DeviceTimeline {
  const mine = (type: ScenarioEvent["type"]) => (e: ScenarioEvent) =>
    e.type === type && "device" in e && e.device === device.id;
  const powerOff = windowsOf(events, t.startMs, mine("power_off"));
  const faults = events.flatMap((e) =>
    e.type === "sensor_fault" && e.device === device.id
      ? [{ fromMs: t.startMs + e.at, toMs: t.startMs + e.at + e.for, flag: e.flag }]
      : [],
  );
  const skews = events.flatMap((e) =>
    e.type === "clock_skew" && e.device === device.id
      ? [{ fromMs: t.startMs + e.at, toMs: t.startMs + e.at + e.for, offset: e.offset }]
      : [],
  );
  const intervalMs = device.expectedIntervalS * 1000;
  return {
    device,
    *messages() {
      let seq = 0;
      // Interval values carry the END of their interval (docs/protocol.md §4.4): the first
      // reading is one interval after the start.
      let next = t.startMs + intervalMs;
      for (let from = t.startMs; from < t.endMs; from += t.batchMs) {
        const to = Math.min(from + t.batchMs, t.endMs);
        const readings: Uplink["readings"][number][] = [];
        let skewed = false;
        for (; next <= to; next += intervalMs) {
          if (inWindows(next, powerOff)) continue;
          const reading = model.at(next);
          const flag: QualityFlag | undefined = faults.find(
            (f) => next >= f.fromMs && next < f.toMs,
          )?.flag;
          const skew = skews.find((s) => next >= s.fromMs && next < s.toMs)?.offset ?? 0;
          if (skew !== 0) skewed = true;
          readings.push({
            ts: skew === 0 ? reading.ts : timestamp(next + skew),
            quality: flag ?? reading.quality,
            values: reading.values,
          });
        }
        if (readings.length === 0) continue;
        seq += 1;
        const uplink = {
          v: PROTOCOL_VERSION,
          deviceId: device.id,
          seq,
          kind: device.kind,
          readings,
        } as Uplink;
        yield { seq, dueMs: to, uplink, skewed };
      }
    },
  };
}

/** Compile a validated scenario into its timeline. */
export function compileScenario(scenario: Scenario, options: CompileOptions): Timeline {
  const startMs = resolveStart(scenario.start, scenario.duration, options.nowMs);
  const endMs = startMs + scenario.duration;
  const layout: RegistryFile = {
    sites: [...scenario.layout.sites, ...(options.extra?.layout.sites ?? [])],
    devices: [...scenario.layout.devices, ...(options.extra?.layout.devices ?? [])],
    serviceAccounts: scenario.layout.serviceAccounts,
    parties: scenario.layout.parties,
  };
  const models = { ...scenario.models, ...options.extra?.models };
  const sites = new Map(layout.sites.map((s) => [s.id as string, s]));
  const span = { startMs, endMs, batchMs: scenario.batch };
  const devices = layout.devices.map((device) =>
    deviceTimeline(
      device,
      modelFor(
        device,
        sites.get(device.siteId),
        models[device.id],
        { ...scenario, layout },
        startMs,
      ),
      scenario.events,
      span,
    ),
  );
  return {
    name: scenario.name,
    seed: scenario.seed,
    startMs,
    endMs,
    speed: options.speed ?? scenario.speed,
    batchMs: scenario.batch,
    layout,
    devices,
    linkDowns: scenario.events.flatMap((e) =>
      e.type === "link_down"
        ? [{ deviceId: e.device, fromMs: startMs + e.at, toMs: startMs + e.at + e.for }]
        : [],
    ),
    faults: scenario.events
      .filter((e): e is FleetFaultEvent => FLEET_FAULTS.has(e.type))
      .map((e) => ({ ...e, atMs: startMs + e.at }))
      .sort((a, b) => a.atMs - b.atMs),
    expect: scenario.expect,
  };
}
