/**
 * Environmental noise at a monitor: road traffic with a diurnal pattern, construction machinery
 * in working hours, quiet nights with occasional events. Sixty 1-s A-weighted levels are drawn
 * per minute and aggregated the way a sound level meter does (GB 3096-2008, definition of LAeq:
 * energy mean, never the arithmetic mean of dB), so LAeq, LAmax and the percentiles agree.
 */
import type { ConstructionPhase, NoiseValues } from "../../contracts/index.js";
import type { FullValues, InstrumentParams, SignalModel, TimeWindow } from "./instrument.js";
import {
  MS_PER_MINUTE,
  driftFactor,
  inHours,
  inWindows,
  localHour,
  measured,
  qualityAt,
  timestamp,
} from "./instrument.js";
import { STREAM, rngAt } from "./random.js";

export interface ConstructionNoise {
  readonly phase: ConstructionPhase;
  /** Machinery level at the monitor while working, dB(A). Default by phase. */
  readonly level?: number;
  /** Local working hours [from, to) (default 7–12 and 14–20, the usual permit hours). */
  readonly workingHours?: readonly (readonly [number, number])[];
  /** Extra spans of work, e.g. night construction without a permit. */
  readonly extraWork?: readonly TimeWindow[];
}

export interface NoiseParams extends InstrumentParams {
  /** Daytime traffic level at the monitor, dB(A) (≈ 65 roadside 4a, 55 residential). Default 60. */
  readonly trafficDayLevel?: number;
  /** Level of the quietest background, dB(A). Default 38. */
  readonly floorLevel?: number;
  readonly construction?: ConstructionNoise;
  /** Chance per minute of a short loud event (horn, motorbike, shouting). Default 0.02 at night, 0.04 by day. */
  readonly eventRate?: number;
}

/** Typical machinery level at a boundary monitor by phase: piling and breakers are loudest. */
const PHASE_LEVEL: Record<ConstructionPhase, number> = {
  earthwork: 66,
  foundation: 69,
  structure: 64,
  decoration: 58,
  finished: 0,
};

const DEFAULT_WORKING_HOURS: readonly (readonly [number, number])[] = [
  [7, 12],
  [14, 20],
];

/**
 * Traffic relative to the daytime level, dB: lowest 02:00–05:00, morning and evening peaks.
 * Piecewise linear over local hours.
 */
const TRAFFIC_PROFILE: readonly (readonly [number, number])[] = [
  [0, -12],
  [3, -17],
  [5, -14],
  [7, -1],
  [8, 2],
  [10, 0],
  [17, 0],
  [18, 2],
  [20, -2],
  [22, -6],
  [24, -12],
];

export function trafficOffset(hour: number): number {
  for (let i = 1; i < TRAFFIC_PROFILE.length; i++) {
    const [h1, v1] = TRAFFIC_PROFILE[i] ?? [24, 0];
    const [h0, v0] = TRAFFIC_PROFILE[i - 1] ?? [0, 0];
    if (hour <= h1) return v0 + ((v1 - v0) * (hour - h0)) / (h1 - h0);
  }
  return TRAFFIC_PROFILE[0]?.[1] ?? 0;
}

/** Is the construction site working at `ms`? */
export function constructionActive(c: ConstructionNoise | undefined, ms: number): boolean {
  if (c === undefined || c.phase === "finished") return false;
  if (inWindows(ms, c.extraWork)) return true;
  const hour = localHour(ms);
  return (c.workingHours ?? DEFAULT_WORKING_HOURS).some(([from, to]) => inHours(hour, from, to));
}

const energy = (level: number): number => 10 ** (level / 10);
const level = (e: number): number => 10 * Math.log10(e);

/** The sixty 1-s levels of the minute ending at `ms` (before instrument drift). */
export function secondLevels(seed: number, params: NoiseParams, ms: number): number[] {
  const minute = Math.floor(ms / MS_PER_MINUTE) - 1;
  const rng = rngAt(seed, STREAM.samples, minute);
  const startMs = minute * MS_PER_MINUTE;
  const hour = localHour(startMs);
  const traffic = (params.trafficDayLevel ?? 60) + trafficOffset(hour);
  const floor = params.floorLevel ?? 38;
  const c = params.construction;
  const working = constructionActive(c, startMs);
  const machine = c === undefined ? 0 : (c.level ?? PHASE_LEVEL[c.phase]);
  // Machines cycle on and off; within a working minute the duty cycle varies.
  const duty = working ? rng.uniform(0.4, 0.95) : 0;
  // Vehicles pass more often when traffic is heavy; each pass-by is a bump of a few seconds.
  const passRate = Math.min(0.5, 0.03 * 10 ** ((traffic - 45) / 20));
  const night = inHours(hour, 22, 6);
  const event = rng.chance(params.eventRate ?? (night ? 0.02 : 0.04));
  const eventStart = Math.floor(rng.uniform(0, 55));
  const eventLength = Math.floor(rng.uniform(2, 10));
  const eventLevel = rng.uniform(68, 84);

  const levels: number[] = [];
  let machineOn = rng.chance(duty);
  let pass = 0;
  for (let s = 0; s < 60; s++) {
    let e = energy(floor + rng.normal(0, 1));
    e += energy(traffic - 3 + rng.normal(0, 2.5));
    if (pass === 0 && rng.chance(passRate)) pass = Math.floor(rng.uniform(3, 8));
    if (pass > 0) {
      e += energy(traffic + 4 + rng.normal(0, 3));
      pass--;
    }
    if (working) {
      if (rng.chance(0.1)) machineOn = rng.chance(duty);
      if (machineOn) e += energy(machine + rng.normal(0, 2));
      // Impacts (breakers, dropped steel): rare, short and loud.
      if (rng.chance(0.03)) e += energy(machine + rng.uniform(8, 14));
    }
    if (event && s >= eventStart && s < eventStart + eventLength) {
      e += energy(eventLevel + rng.normal(0, 2));
    }
    levels.push(level(e));
  }
  return levels;
}

/** The level exceeded `percent` % of the time (L10 is high, L90 is the background). */
function exceeded(sortedAscending: readonly number[], percent: number): number {
  const rank = ((100 - percent) / 100) * (sortedAscending.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sortedAscending[lo] ?? 0;
  const b = sortedAscending[hi] ?? a;
  return a + (b - a) * (rank - lo);
}

/** Aggregates 1-s levels into the 1-minute values a monitor reports. */
export function aggregateLevels(levels: readonly number[]): FullValues<NoiseValues> {
  const sorted = [...levels].sort((a, b) => a - b);
  const meanEnergy = levels.reduce((sum, l) => sum + energy(l), 0) / levels.length;
  return {
    LAeq: level(meanEnergy),
    LAmax: sorted[sorted.length - 1] ?? 0,
    LAmin: sorted[0] ?? 0,
    L10: exceeded(sorted, 10),
    L50: exceeded(sorted, 50),
    L90: exceeded(sorted, 90),
  };
}

/** A noise monitor: one reading per minute, `at(ms)` for the minute ending at `ms`. */
export function noiseModel(
  seed: number,
  params: NoiseParams,
): SignalModel<FullValues<NoiseValues>> {
  return {
    at(ms) {
      // A level offset (dB) from calibration drift: applied to every sample, so ordering holds.
      const offset = 10 * Math.log10(driftFactor(seed, ms, params));
      const agg = aggregateLevels(secondLevels(seed, params, ms).map((l) => l + offset));
      const q = (name: keyof NoiseValues, v: number) => measured("noise", name, v, 1);
      return {
        ts: timestamp(ms),
        quality: qualityAt(seed, ms, params),
        values: {
          LAeq: q("LAeq", agg.LAeq),
          LAmax: q("LAmax", agg.LAmax),
          LAmin: q("LAmin", agg.LAmin),
          L10: q("L10", agg.L10),
          L50: q("L50", agg.L50),
          L90: q("L90", agg.L90),
        },
      };
    },
  };
}
