import type { ModelReading, SignalModel } from "../../../simulators/models/index.js";
import { series } from "../../../simulators/models/index.js";

/** Monday 2026-07-06 00:00 Asia/Shanghai. */
export const EPOCH = Date.UTC(2026, 6, 5, 16);
export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** Local (Asia/Shanghai) time `hours` after the epoch's midnight on day `day`. */
export function local(day: number, hours: number): number {
  return EPOCH + day * DAY + hours * HOUR;
}

export function week<V>(model: SignalModel<V>, intervalS = 60): ModelReading<V>[] {
  return series(model, EPOCH, EPOCH + 7 * DAY, intervalS);
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
