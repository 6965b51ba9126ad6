/**
 * Design rainstorm hyetograph: the Chicago (Keifer & Chu, 1957) storm used for urban drainage
 * design in China (GB 50014 practice). Intensity follows the IDF form i = a / (t + b)^c around
 * a peak placed at `peakPosition` of the duration, scaled so the storm delivers `totalMm`.
 */
import { MS_PER_MINUTE } from "./instrument.js";

export interface Storm {
  /** When rain starts, ms since the Unix epoch. */
  readonly startMs: number;
  /** Total depth, mm. */
  readonly totalMm: number;
  readonly durationMin: number;
  /** Where the peak falls, as a fraction of the duration (0.3–0.5 typical). Default 0.4. */
  readonly peakPosition?: number;
}

/** IDF shape constants, typical of Chinese city formulas (b ≈ 10 min, c ≈ 0.7). */
const B = 10;
const C = 0.7;

/** Rain depth in each minute of the storm, mm (length = duration in minutes). */
export function chicagoHyetograph(storm: Storm): number[] {
  const minutes = Math.max(1, Math.round(storm.durationMin));
  const r = Math.min(0.95, Math.max(0.05, storm.peakPosition ?? 0.4));
  const tp = r * minutes;
  const shape: number[] = [];
  for (let m = 0; m < minutes; m++) {
    const t = m + 0.5;
    const x = t < tp ? (tp - t) / r : (t - tp) / (1 - r);
    shape.push(((1 - C) * x + B) / (x + B) ** (1 + C));
  }
  const sum = shape.reduce((a, b) => a + b, 0);
  return shape.map((s) => (s / sum) * storm.totalMm);
}

/** Rain per minute across several storms, indexed by absolute minute. */
export interface RainRecord {
  /** Rain in the minute [m, m+1) counted from the Unix epoch in minutes, mm. */
  mmInMinute(minute: number): number;
  /** Each storm's first minute and its per-minute depths. */
  readonly storms: readonly { readonly firstMinute: number; readonly mm: readonly number[] }[];
}

export function rainRecord(storms: readonly Storm[]): RainRecord {
  const built = storms.map((s) => ({
    firstMinute: Math.floor(s.startMs / MS_PER_MINUTE),
    mm: chicagoHyetograph(s),
  }));
  return {
    storms: built,
    mmInMinute(minute) {
      let total = 0;
      for (const s of built) total += s.mm[minute - s.firstMinute] ?? 0;
      return total;
    },
  };
}
