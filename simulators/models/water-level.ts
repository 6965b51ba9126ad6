/**
 * Water level driven by rain. Rain (a Chicago design storm, rainstorm.ts) becomes runoff by the
 * SCS curve-number method (USDA TR-55: S = 25400/CN − 254 mm, Ia = 0.2 S,
 * Q = (P − Ia)² / (P − Ia + S)); the runoff reaches the river through a Nash cascade of linear
 * reservoirs (n reservoirs of constant k), which gives the lag, the rounded peak after the rain
 * peak and the exponential-looking recession; a rating curve Q = C·h^1.6 turns discharge into stage.
 *
 * An underpass collects the runoff of its ramps into a pump pit; when inflow exceeds the pump
 * capacity the pit overflows onto the carriageway and ponding deepens (alert at 15 cm, closure
 * at 25 cm: Shanghai and Shenyang practice, docs/standards.md), then the pumps drain it after the rain.
 */
import type { WaterLevelValues } from "../../contracts/index.js";
import type { InstrumentParams, ModelReading, SignalModel } from "./instrument.js";
import { MS_PER_MINUTE, driftFactor, measured, qualityAt, timestamp } from "./instrument.js";
import { STREAM, rngAt, steppedProcess } from "./random.js";
import type { Storm } from "./rainstorm.js";
import { rainRecord } from "./rainstorm.js";

export interface RiverParams {
  /** Stage at baseflow, m against the station datum. Default 3.0. */
  readonly baseStage?: number;
  /** Catchment upstream of the gauge, km². Default 120. */
  readonly catchmentKm2?: number;
  /** SCS curve number (urbanised catchment ≈ 75–90). Default 80. */
  readonly curveNumber?: number;
  /** Nash cascade: number of reservoirs (default 3) and their constant in hours (default 2). */
  readonly reservoirs?: number;
  readonly reservoirHours?: number;
  /** Baseflow, m³/s. Default 20. */
  readonly baseflow?: number;
  /** Rating coefficient C in Q = C·h^1.6, h the depth above the channel bottom. Default 40. */
  readonly rating?: number;
}

export interface UnderpassParams {
  /** Area draining to the underpass low point (ramps and road), m². Default 15 000. */
  readonly catchmentM2?: number;
  /** Runoff coefficient of the paved catchment. Default 0.9. */
  readonly runoffCoefficient?: number;
  /** Pump capacity, m³/min. Default 12. */
  readonly pumpM3PerMin?: number;
  /** Pump pit volume before water reaches the road, m³. Default 40. */
  readonly pitM3?: number;
  /** Road area over which the pond spreads, m². Default 800. */
  readonly pondAreaM2?: number;
}

export interface WaterLevelParams extends InstrumentParams {
  /** A river gauge reports `stage`; an underpass sensor reports `ponding`. */
  readonly station: "river" | "underpass";
  readonly storms?: readonly Storm[];
  readonly river?: RiverParams;
  readonly underpass?: UnderpassParams;
}

/** The physical truth at an instant, before the instrument. */
export interface WaterState {
  /** Rain intensity in the current minute, mm/h. */
  readonly rainMmPerH: number;
  /** River discharge, m³/s. */
  readonly discharge: number;
  /** River stage, m. */
  readonly stage: number;
  /** Ponding depth in the underpass, cm. */
  readonly ponding: number;
}

function scsRunoff(p: number, s: number): number {
  const ia = 0.2 * s;
  return p > ia ? (p - ia) ** 2 / (p - ia + s) : 0;
}

function gamma(n: number): number {
  // n is a small positive integer here; (n-1)!
  let f = 1;
  for (let i = 2; i < n; i++) f *= i;
  return f;
}

export function waterModel(params: WaterLevelParams): { at(ms: number): WaterState } {
  const rain = rainRecord(params.storms ?? []);
  const rv = params.river ?? {};
  const cn = rv.curveNumber ?? 80;
  const s = 25_400 / cn - 254;
  // Effective rain per storm minute (mm): the increment of cumulative SCS runoff.
  const excess = rain.storms.map((storm) => {
    let cumulative = 0;
    return storm.mm.map((mm) => {
      const before = scsRunoff(cumulative, s);
      cumulative += mm;
      return scsRunoff(cumulative, s) - before;
    });
  });
  const n = Math.max(1, Math.round(rv.reservoirs ?? 3));
  const kS = (rv.reservoirHours ?? 2) * 3600;
  const areaKm2 = rv.catchmentKm2 ?? 120;
  const baseflow = rv.baseflow ?? 20;
  const ratingC = rv.rating ?? 40;
  const baseStage = rv.baseStage ?? 3;
  const iuh = (tS: number): number =>
    tS <= 0 ? 0 : ((tS / kS) ** (n - 1) * Math.exp(-tS / kS)) / (kS * gamma(n));
  const depth = (q: number): number => (q / ratingC) ** (1 / 1.6);

  const discharge = (ms: number): number => {
    let q = baseflow;
    rain.storms.forEach((storm, i) => {
      const e = excess[i] ?? [];
      for (let m = 0; m < e.length; m++) {
        const volume = (e[m] ?? 0) * areaKm2 * 1000; // 1 mm over 1 km² is 1000 m³
        if (volume === 0) continue;
        // Rain of minute m counted at its middle.
        const tS = (ms - (storm.firstMinute + m + 0.5) * MS_PER_MINUTE) / 1000;
        q += volume * iuh(tS);
      }
    });
    return q;
  };

  const up = params.underpass ?? {};
  const catchment = up.catchmentM2 ?? 15_000;
  const phi = up.runoffCoefficient ?? 0.9;
  const pump = up.pumpM3PerMin ?? 12;
  const pit = up.pitM3 ?? 40;
  const pondArea = up.pondAreaM2 ?? 800;
  const epochMinute = Math.floor(params.epochMs / MS_PER_MINUTE);
  // Stored volume at the end of each minute since the epoch.
  const storage = steppedProcess(params.epochMs, MS_PER_MINUTE, 0, (volume, index) => {
    const inflow = (phi * rain.mmInMinute(epochMinute + index) * catchment) / 1000;
    return Math.max(0, volume + inflow - pump);
  });

  return {
    at(ms) {
      const minute = Math.floor(ms / MS_PER_MINUTE);
      const q = discharge(ms);
      const volume = storage.at(ms);
      return {
        rainMmPerH: rain.mmInMinute(minute) * 60,
        discharge: q,
        stage: baseStage + depth(q) - depth(baseflow),
        ponding: (Math.max(0, volume - pit) / pondArea) * 100,
      };
    },
  };
}

/** A water-level sensor (radar or pressure gauge) over the water model. */
export function waterLevelModel(
  seed: number,
  params: WaterLevelParams,
): SignalModel<WaterLevelValues> {
  const truth = waterModel(params);
  return {
    at(ms): ModelReading<WaterLevelValues> {
      const state = truth.at(ms);
      const rng = rngAt(seed, STREAM.measurement, Math.floor(ms / 1000));
      // Drift as a zero offset: a few mm a day for a radar gauge.
      const offset = (driftFactor(seed, ms, params) - 1) * 0.5;
      const values: WaterLevelValues =
        params.station === "river"
          ? {
              stage: measured(
                "water_level",
                "stage",
                state.stage + offset + rng.normal(0, 0.004),
                3,
              ),
            }
          : {
              ponding: measured(
                "water_level",
                "ponding",
                // Below a centimetre the sensor reads the wet road as dry.
                state.ponding < 1 ? 0 : state.ponding + rng.normal(0, 0.3),
                1,
              ),
            };
      return { ts: timestamp(ms), quality: qualityAt(seed, ms, params), values };
    },
  };
}
