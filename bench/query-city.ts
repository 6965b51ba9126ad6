/**
 * The city `npm run bench -- query` loads into a store: the backtest bench's blocks of sites and
 * devices (bench/backtest-city.ts: noise and dust at a construction site, a restaurant's fume
 * monitor, a river gauge, an underpass ponding sensor, two tunnel gas monitors, an ambient noise
 * monitor), every device at one reading a minute, and the readings of any device-day generated on
 * demand with the quantities and decimals the simulators send (simulators/models): 1,440 points,
 * deterministic, so a loader never holds more than the batch it is writing.
 */
import type { Device, QualityFlag, Site } from "../contracts/index.js";
import type { Point, PointTags, TimeSeriesStore, WriteBatch } from "../ingest/store/types.js";
import { mulberry32 } from "../simulators/models/random.js";
import { benchHistoryCity, DEVICES_PER_BLOCK } from "./backtest-city.js";

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;
export const READINGS_PER_DAY = DAY_MS / MINUTE_MS;

export interface QueryCity {
  readonly sites: readonly Site[];
  readonly devices: readonly Device[];
}

/** `count` devices (whole blocks of 8, the last one cut short), all at one reading a minute. */
export function queryCity(count: number): QueryCity {
  const city = benchHistoryCity(Math.ceil(count / DEVICES_PER_BLOCK));
  const devices = city.devices.slice(0, count).map((d) => ({ ...d, expectedIntervalS: 60 }));
  const used = new Set(devices.map((d) => d.siteId));
  return { sites: city.sites.filter((s) => used.has(s.id)), devices };
}

/** The quantity a chart of the device shows first, and how the console aggregates it. */
export function chartQuantity(device: Device): { quantity: string; fn: "mean" | "energy_mean" } {
  switch (device.kind) {
    case "noise":
      return { quantity: "LAeq", fn: "energy_mean" };
    case "dust":
      return { quantity: "pm10", fn: "mean" };
    case "cooking_fume":
      return { quantity: "oilFume", fn: "mean" };
    case "water_level":
      return { quantity: device.siteId.endsWith("-river") ? "stage" : "ponding", fn: "mean" };
    case "utility_tunnel":
      return { quantity: "ch4", fn: "mean" };
  }
}

const round = (value: number, decimals: number) => {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
};

/** Local hour (UTC+8) of an instant. */
const localHour = (ms: number) => Math.floor(((ms + 8 * 3_600_000) % DAY_MS) / 3_600_000);

type Values = Record<string, number | boolean>;

/** One reading's values, as the simulators round them; `r` draws uniform numbers in [0, 1). */
function valuesOf(device: Device, ms: number, r: () => number): Values {
  const hour = localHour(ms);
  const night = hour >= 22 || hour < 6;
  switch (device.kind) {
    case "noise": {
      const laeq = (night ? 44 : 56) + r() * 8;
      return {
        LAeq: round(laeq, 1),
        LAmax: round(laeq + 8 + r() * 8, 1),
        LAmin: round(laeq - 6 - r() * 3, 1),
        L10: round(laeq + 2 + r() * 2, 1),
        L50: round(laeq - 1 - r(), 1),
        L90: round(laeq - 4 - r() * 2, 1),
      };
    }
    case "dust": {
      const pm10 = 40 + r() * 80;
      return {
        pm10: Math.round(pm10),
        pm2_5: Math.round(pm10 * (0.4 + r() * 0.2)),
        tsp: Math.round(pm10 * (1.4 + r() * 0.4)),
        windSpeed: round(r() * 6, 1),
        windDirection: Math.round(r() * 359),
        temperature: round(8 + r() * 14, 1),
        humidity: Math.round(40 + r() * 50),
      };
    }
    case "cooking_fume": {
      const open = hour >= 10 && hour < 22;
      return {
        oilFume: round(open ? 0.4 + r() * 1.2 : 0.03 + r() * 0.02, 2),
        particulate: round(open ? 0.8 + r() * 2 : 0.1 + r() * 0.05, 2),
        nmhc: round(open ? 2.5 + r() * 3 : 1.2 + r() * 0.4, 2),
        fanOn: open,
        purifierOn: open,
      };
    }
    case "water_level":
      return device.siteId.endsWith("-river")
        ? { stage: round(3 + r() * 0.3, 3) }
        : { ponding: r() < 0.97 ? 0 : round(1 + r() * 9, 1) };
    case "utility_tunnel":
      return {
        ch4: round(r() * 1.5, 1),
        o2: round(20.7 + r() * 0.2, 2),
        h2s: round(r() * 0.8, 2),
        co: round(r() * 4, 1),
        temperature: round(20 + r() * 4, 1),
        humidity: Math.round(60 + r() * 20),
        sumpLevel: round(10 + r() * 5, 1),
      };
  }
}

/** Tags of a device's points, one object per quality flag (as ingest/decode.ts shares them). */
export function tagsOf(device: Device, site: Site | undefined): (q: QualityFlag) => PointTags {
  const zone = device.zoneClass ?? site?.zoneClass;
  const byQuality = new Map<QualityFlag, PointTags>();
  return (quality) => {
    let tags = byQuality.get(quality);
    if (tags === undefined) {
      tags = {
        device: device.id,
        site: device.siteId,
        district: device.area.district,
        grid_cell: device.area.gridCell,
        ...(zone === undefined ? {} : { zone }),
        quality,
      };
      byQuality.set(quality, tags);
    }
    return tags;
  };
}

/**
 * Device `index`'s readings of day `day` (the 1,440 minutes from `fromMs + day · 24 h`), in time
 * order, to `emit`. Seq counts from 1 at the first reading of day 0, one reading per message;
 * about one reading in 500 is flagged `maintenance`. The same arguments give the same points.
 */
export function emitDeviceDay(
  device: Device,
  index: number,
  tags: (q: QualityFlag) => PointTags,
  fromMs: number,
  day: number,
  emit: (point: Point) => void,
): void {
  const rng = mulberry32(Math.imul(index + 1, 0x9e3779b1) ^ day);
  const r = () => rng.next();
  const start = fromMs + day * DAY_MS;
  for (let k = 0; k < READINGS_PER_DAY; k++) {
    const timeMs = start + k * MINUTE_MS;
    emit({
      measurement: device.kind,
      tags: tags(r() < 0.002 ? "maintenance" : "normal"),
      fields: valuesOf(device, timeMs, r),
      seq: day * READINGS_PER_DAY + k + 1,
      timeMs,
    });
  }
}

export interface LoadOptions {
  /** The first reading's time (day 0, minute 0). */
  readonly fromMs: number;
  readonly days: number;
  /** Points per write (one SQLite transaction, one InfluxDB request). */
  readonly batchPoints: number;
  /** Writes in flight at once (InfluxDB answers over HTTP; the embedded store writes inline). */
  readonly inFlight: number;
  /** After each day is written: the day and the readings written so far. */
  readonly onDay?: ((day: number, written: number) => void) | undefined;
}

/** A store's own batch, or points collected for `write`, for a store that has none. */
function batchOf(store: TimeSeriesStore): WriteBatch {
  const own = store.batch?.();
  if (own !== undefined) return own;
  const points: Point[] = [];
  return {
    add: (point) => points.push(point),
    get size() {
      return points.length;
    },
    write: () => store.write(points),
  };
}

/**
 * Write `days` days of every device's readings into `store`, day after day (as a city's readings
 * arrive: every device's day before the next day), through the store's own write path, in
 * batches of `batchPoints` with at most `inFlight` writes waiting. A refused point stops the load.
 * Returns the readings written.
 */
export async function loadCity(
  store: TimeSeriesStore,
  city: QueryCity,
  options: LoadOptions,
): Promise<number> {
  const sites = new Map(city.sites.map((s) => [s.id, s]));
  const tags = city.devices.map((d) => tagsOf(d, sites.get(d.siteId)));
  const pending = new Set<Promise<void>>();
  let failure: Error | undefined;
  let written = 0;
  const send = async (batch: WriteBatch) => {
    const size = batch.size;
    const outcome = await batch.write();
    if (outcome.rejected.length > 0)
      throw new Error(`the store refused ${outcome.rejected.length} of ${size} points`);
    written += size;
  };
  const dispatch = async (batch: WriteBatch) => {
    const write = send(batch).catch((error: unknown) => {
      failure ??= error instanceof Error ? error : new Error(String(error));
    });
    pending.add(write);
    void write.finally(() => pending.delete(write));
    while (pending.size >= options.inFlight) await Promise.race(pending);
    if (failure !== undefined) throw failure;
  };
  let batch = batchOf(store);
  const add = (point: Point) => batch.add(point);
  for (let day = 0; day < options.days; day++) {
    for (const [index, device] of city.devices.entries()) {
      const deviceTags = tags[index] as (q: QualityFlag) => PointTags;
      emitDeviceDay(device, index, deviceTags, options.fromMs, day, add);
      if (batch.size >= options.batchPoints) {
        const full = batch;
        batch = batchOf(store);
        await dispatch(full);
      }
    }
    if (day === options.days - 1) {
      if (batch.size > 0) await dispatch(batch);
      await Promise.all(pending);
    }
    if (failure !== undefined) throw failure;
    options.onDay?.(day, written);
  }
  return written;
}
