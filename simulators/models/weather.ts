/**
 * Near-surface weather shared by the outdoor models: wind speed and direction, temperature and
 * humidity with a diurnal cycle and slow random wander. Pure functions of (seed, time).
 */
import { localHour, MS_PER_HOUR } from "./instrument.js";
import { STREAM, valueNoise } from "./random.js";

export interface WeatherParams {
  /** Mean wind speed, m/s. Default 2.5. */
  readonly meanWindSpeed?: number;
  /** Prevailing wind direction, degrees from north. Default 135 (south-east). */
  readonly prevailingDirection?: number;
  /** Daily mean temperature, °C. Default 18. */
  readonly meanTemperature?: number;
  /** Diurnal temperature range, °C. Default 8. */
  readonly temperatureRange?: number;
}

export interface Weather {
  readonly windSpeed: number;
  readonly windDirection: number;
  readonly temperature: number;
  readonly humidity: number;
}

export function weatherAt(seed: number, params: WeatherParams, ms: number): Weather {
  const hour = localHour(ms);
  // Warmest around 14:00, coolest around 05:00.
  const diurnal = Math.cos(((hour - 14) / 24) * 2 * Math.PI);
  const temperature =
    (params.meanTemperature ?? 18) +
    ((params.temperatureRange ?? 8) / 2) * diurnal +
    1.5 * valueNoise(seed, STREAM.weather, ms, 12 * MS_PER_HOUR);
  // Relative humidity falls as the air warms.
  const humidity =
    65 - 18 * diurnal + 8 * valueNoise(seed, STREAM.weather + 100, ms, 9 * MS_PER_HOUR);
  // Wind picks up in the afternoon (mixing) and gusts minute to minute.
  const mean = (params.meanWindSpeed ?? 2.5) * (1 + 0.35 * diurnal);
  const gust = valueNoise(seed, STREAM.wind, ms, 10 * 60_000);
  const synoptic = valueNoise(seed, STREAM.wind + 100, ms, 18 * MS_PER_HOUR);
  const windSpeed = Math.max(0, mean * Math.exp(0.35 * synoptic) + 0.6 * gust);
  const direction =
    (params.prevailingDirection ?? 135) +
    40 * synoptic +
    25 * valueNoise(seed, STREAM.wind + 200, ms, 20 * 60_000);
  return {
    windSpeed,
    windDirection: ((direction % 360) + 360) % 360,
    temperature,
    humidity: Math.min(100, Math.max(5, humidity)),
  };
}
