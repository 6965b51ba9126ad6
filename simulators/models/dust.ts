/**
 * Construction-site dust monitor: PM10, PM2.5 and TSP at the site boundary, plus the weather it
 * reports. Concentration = regional background + the site's contribution. The site emits
 * according to its phase (earthwork, with exposed soil and lorries, far dustier than
 * decoration; DB61/1078-2017 distinguishes the phases for this reason) and its working hours;
 * wind dilutes (∝ 1/u) yet above ~4 m/s lifts dust off exposed surfaces (∝ u³).
 */
import type { ConstructionPhase, DustValues } from "../../contracts/index.js";
import type { FullValues, InstrumentParams, SignalModel, TimeWindow } from "./instrument.js";
import {
  MS_PER_HOUR,
  driftFactor,
  inHours,
  inWindows,
  localHour,
  measured,
  qualityAt,
  timestamp,
} from "./instrument.js";
import { STREAM, rngAt, valueNoise } from "./random.js";
import type { WeatherParams } from "./weather.js";
import { weatherAt } from "./weather.js";

export interface DustParams extends InstrumentParams, WeatherParams {
  readonly phase: ConstructionPhase;
  /** Regional PM10 background, µg/m³. Default 60. */
  readonly backgroundPm10?: number;
  /** Scales the site's emission (1 = typical controls; 0.3 = good suppression). Default 1. */
  readonly emissionFactor?: number;
  /** Spans with dust controls off (no spraying, uncovered spoil): emission × 4. */
  readonly episodes?: readonly TimeWindow[];
  /** Local working hours [from, to). Default 7–20. */
  readonly workingHours?: readonly [number, number];
}

/** Site PM10 contribution at 1.5 m/s while working, µg/m³, by phase. */
const PHASE_EMISSION: Record<ConstructionPhase, number> = {
  earthwork: 140,
  foundation: 90,
  structure: 45,
  decoration: 15,
  finished: 0,
};

export function dustModel(seed: number, params: DustParams): SignalModel<FullValues<DustValues>> {
  return {
    at(ms) {
      const w = weatherAt(seed, params, ms);
      const hour = localHour(ms);
      const [from, to] = params.workingHours ?? [7, 20];
      const working = inHours(hour, from, to);
      // Exposed soil still erodes when idle; activity (digging, lorries) adds the rest.
      const activity = working ? 1 : 0.25;
      const episode = inWindows(ms, params.episodes) ? 4 : 1;
      const emission =
        PHASE_EMISSION[params.phase] * (params.emissionFactor ?? 1) * activity * episode;
      const dilution = 2 / (0.5 + w.windSpeed);
      const erosion = w.windSpeed > 4 ? ((w.windSpeed - 4) / 4) ** 3 : 0;
      const site = emission * (dilution + erosion);
      // Background: worse at night and morning (shallow boundary layer), slow regional episodes.
      const background =
        (params.backgroundPm10 ?? 60) *
        (1 + 0.2 * Math.cos(((hour - 7) / 24) * 2 * Math.PI)) *
        Math.exp(0.3 * valueNoise(seed, STREAM.background, ms, 24 * MS_PER_HOUR));
      const rng = rngAt(seed, STREAM.measurement, Math.floor(ms / 1000));
      const jitter = (): number => Math.exp(rng.normal(0, 0.08));
      const gain = driftFactor(seed, ms, params);
      const pm10 = (background + site) * jitter() * gain;
      // Construction dust is coarse: little of it is PM2.5, much of it larger than PM10.
      const pm25 = (0.55 * background + 0.15 * site) * jitter() * gain;
      const tsp = (1.6 * background + 2.2 * site) * jitter() * gain;
      return {
        ts: timestamp(ms),
        quality: qualityAt(seed, ms, params),
        values: {
          pm10: measured("dust", "pm10", pm10, 0),
          pm2_5: measured("dust", "pm2_5", Math.min(pm25, pm10), 0),
          tsp: measured("dust", "tsp", Math.max(tsp, pm10), 0),
          windSpeed: measured("dust", "windSpeed", w.windSpeed, 1),
          windDirection: measured("dust", "windDirection", w.windDirection, 0),
          temperature: measured("dust", "temperature", w.temperature, 1),
          humidity: measured("dust", "humidity", w.humidity, 0),
        },
      };
    },
  };
}
