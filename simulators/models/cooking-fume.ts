/**
 * Restaurant exhaust-duct monitor (GB 18483-2001): oil fume, particulate and NMHC in the duct,
 * fan and purifier state. Cooking follows meal times (lunch 11:00–13:30, dinner 17:00–20:30,
 * Asia/Shanghai); the fan runs from a little before to a little after. The purifier removes
 * most oil fume (GB 18483 Table 2 minimum efficiencies 60/75/85 %; a working unit does better),
 * less NMHC; with it off the duct carries the raw fume, several times the 2.0 mg/m³ limit.
 */
import type { CookingFumeValues, RestaurantSize } from "../../contracts/index.js";
import type { FullValues, InstrumentParams, SignalModel, TimeWindow } from "./instrument.js";
import { driftFactor, inWindows, localHour, measured, qualityAt, timestamp } from "./instrument.js";
import { STREAM, rngAt, valueNoise } from "./random.js";

export interface CookingFumeParams extends InstrumentParams {
  readonly size: RestaurantSize;
  /** Purifier normally running. Default true. */
  readonly purifierOn?: boolean;
  /** Spans with the purifier switched off while the fan runs. */
  readonly purifierOffWindows?: readonly TimeWindow[];
  /** Oil-fume removal efficiency of the purifier when on. Default 0.9. */
  readonly purifierEfficiency?: number;
}

/** Meal services [start, end) in local hours, with the hour of the peak. */
const MEALS: readonly { readonly from: number; readonly to: number; readonly peak: number }[] = [
  { from: 11, to: 13.5, peak: 12 },
  { from: 17, to: 20.5, peak: 18.5 },
];

/** Raw (unpurified) oil fume at the busiest moment, mg/m³, by size. */
const RAW_PEAK: Record<RestaurantSize, number> = { small: 6, medium: 8, large: 10 };

/** Cooking intensity 0..1: rises into the meal peak, falls after. */
export function cookingIntensity(hour: number): number {
  for (const meal of MEALS) {
    if (hour < meal.from || hour >= meal.to) continue;
    const x =
      hour < meal.peak
        ? (hour - meal.from) / (meal.peak - meal.from)
        : (meal.to - hour) / (meal.to - meal.peak);
    return 0.35 + 0.65 * Math.sin((Math.PI / 2) * x);
  }
  return 0;
}

export function fanRunning(hour: number): boolean {
  return MEALS.some((m) => hour >= m.from - 0.5 && hour < m.to + 0.5);
}

export function cookingFumeModel(
  seed: number,
  params: CookingFumeParams,
): SignalModel<FullValues<CookingFumeValues>> {
  return {
    at(ms) {
      const hour = localHour(ms);
      const fanOn = fanRunning(hour);
      const purifierOn =
        fanOn && (params.purifierOn ?? true) && !inWindows(ms, params.purifierOffWindows);
      // Busy and slow days: ±20 % over hours.
      const busy = Math.exp(0.2 * valueNoise(seed, STREAM.activity, ms, 3 * 3_600_000));
      const rng = rngAt(seed, STREAM.measurement, Math.floor(ms / 1000));
      // Woks fire in bursts: minute-scale lognormal fluctuation.
      const burst = Math.exp(rng.normal(0, 0.15));
      const raw = fanOn ? RAW_PEAK[params.size] * cookingIntensity(hour) * busy * burst : 0;
      const efficiency = purifierOn ? (params.purifierEfficiency ?? 0.9) : 0;
      const gain = driftFactor(seed, ms, params);
      // In an idle duct the analyser reads a small residual.
      const residual = 0.03 + 0.02 * rng.next();
      const oilFume = (raw * (1 - efficiency) + residual) * gain;
      const particulate = (raw * 1.8 * (1 - 0.9 * efficiency) + 0.1 + 0.05 * rng.next()) * gain;
      const nmhc = (raw * 2.5 * (1 - 0.5 * efficiency) + 1.2 + 0.4 * rng.next()) * gain;
      return {
        ts: timestamp(ms),
        quality: qualityAt(seed, ms, params),
        values: {
          oilFume: measured("cooking_fume", "oilFume", oilFume, 2),
          particulate: measured("cooking_fume", "particulate", particulate, 2),
          nmhc: measured("cooking_fume", "nmhc", nmhc, 2),
          fanOn,
          purifierOn,
        },
      };
    },
  };
}
