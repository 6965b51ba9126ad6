/**
 * The city the backtest bench replays: blocks of sites with one device per kind the default pack
 * judges (a construction site with noise and dust, a restaurant's cooking-fume monitor, a river
 * gauge, an underpass ponding sensor, a gas-compartment tunnel segment with two monitors, an
 * ambient noise monitor), and a history of 1-minute readings (tunnel monitors every 30 s) with
 * exceedances, a silent spell and flagged readings, so the pack raises, escalates and clears.
 * Deterministic: the same size gives the same readings.
 */
import { Device, Site } from "../contracts/index.js";
import type { Point } from "../ingest/store/types.js";
import { mulberry32 } from "../simulators/models/random.js";

export interface BenchHistory {
  readonly sites: Site[];
  readonly devices: Device[];
}

const AREA = { district: "Bench", gridCell: "BENCH-001" };
const LOCATION = { lat: 30.6571, lon: 104.0817 };

/** Devices per block, in block order in `devices`. */
export const DEVICES_PER_BLOCK = 8;

/** The sites and devices of `blocks` blocks. */
export function benchHistoryCity(blocks: number): BenchHistory {
  const sites: Site[] = [];
  const devices: Device[] = [];
  const device = (id: string, kind: Device["kind"], siteId: string, intervalS = 60) =>
    devices.push(
      Device.parse({
        id,
        kind,
        model: "bench",
        serial: id,
        siteId,
        area: AREA,
        location: LOCATION,
        calibratedOn: "2026-01-01",
        calibrationDueOn: "2030-01-01",
        expectedIntervalS: intervalS,
      }),
    );
  for (let b = 0; b < blocks; b++) {
    const base = { area: AREA, location: LOCATION };
    const p = `b${String(b).padStart(3, "0")}`;
    const site = (input: Record<string, unknown>) =>
      sites.push(Site.parse({ ...base, name: String(input["id"]), ...input }));
    const party = { regulatedParty: { name: `${p} Ltd.` } };
    site({
      id: `${p}-construction`,
      type: "construction_site",
      zoneClass: "2",
      phase: "earthwork",
      ...party,
    });
    site({ id: `${p}-restaurant`, type: "restaurant", size: "medium", ...party });
    site({
      id: `${p}-river`,
      type: "river_station",
      levels: { warning: 4.5, guaranteed: 5.6, historicalMax: 6.3 },
    });
    site({ id: `${p}-underpass`, type: "underpass", road: "Bench" });
    site({
      id: `${p}-tunnel`,
      type: "tunnel_segment",
      tunnel: `${p}-t`,
      compartment: "gas",
      neighbours: [],
    });
    site({ id: `${p}-ambient`, type: "ambient" });
    device(`${p}-noise`, "noise", `${p}-construction`);
    device(`${p}-dust`, "dust", `${p}-construction`);
    device(`${p}-fume`, "cooking_fume", `${p}-restaurant`);
    device(`${p}-river`, "water_level", `${p}-river`);
    device(`${p}-ponding`, "water_level", `${p}-underpass`);
    device(`${p}-gas-1`, "utility_tunnel", `${p}-tunnel`, 30);
    device(`${p}-gas-2`, "utility_tunnel", `${p}-tunnel`, 30);
    device(`${p}-ambient-noise`, "noise", `${p}-ambient`);
  }
  return { sites, devices };
}

/** Local hour of the day (UTC+8) of an instant. */
const hourOf = (ms: number) => new Date(ms + 8 * 3_600_000).getUTCHours();

/** A device's values at `ms`; `episode` is true in the device's exceedance spells. */
function valuesOf(
  device: Device,
  ms: number,
  rnd: () => number,
  episode: boolean,
): Record<string, number | boolean> {
  const hour = hourOf(ms);
  const night = hour >= 22 || hour < 6;
  switch (device.kind) {
    case "noise": {
      const laeq = (night ? 45 : 55) + rnd() * 6 + (episode ? 18 : 0);
      return { LAeq: laeq, LAmax: laeq + 8 + rnd() * 6 };
    }
    case "dust": {
      const pm10 = 60 + rnd() * 30 + (episode ? 150 : 0);
      return { pm10, pm2_5: pm10 * 0.5, tsp: pm10 * 1.6 };
    }
    case "cooking_fume": {
      const open = hour >= 10 && hour < 22;
      return {
        oilFume: open ? 0.6 + rnd() * 0.6 + (episode ? 2.5 : 0) : 0.05,
        fanOn: open,
        purifierOn: open && !episode,
      };
    }
    case "water_level":
      return device.siteId.endsWith("-river")
        ? { stage: 3 + rnd() * 0.2 + (episode ? 1.8 : 0) }
        : { ponding: episode ? 10 + rnd() * 20 : 0 };
    case "utility_tunnel":
      return {
        ch4: 0.5 + rnd() * 0.5 + (episode ? 30 : 0),
        o2: 20.8,
        h2s: 0.5,
        co: 2,
        temperature: 22,
        humidity: 70,
      };
  }
}

/**
 * Every reading of `device` in [fromMs, toMs), as store points, to `emit` in time order. Each
 * device has one 40-minute exceedance spell every 8 hours (offset per device), is silent for
 * 25 minutes once a day, and flags a reading `maintenance` now and then.
 */
export function emitHistory(
  device: Device,
  index: number,
  fromMs: number,
  toMs: number,
  emit: (point: Point) => void,
): void {
  const rng = mulberry32(index + 1);
  const rnd = () => rng.next();
  const step = device.expectedIntervalS * 1_000;
  const phase = (index * 7_919_000) % (8 * 3_600_000);
  const silence = (index * 3_301_000) % 86_400_000;
  let seq = 0;
  for (let ms = Math.ceil(fromMs / step) * step; ms < toMs; ms += step) {
    const inDay = ms % 86_400_000;
    if (inDay >= silence && inDay < silence + 25 * 60_000) continue;
    const episode = (ms + phase) % (8 * 3_600_000) < 40 * 60_000;
    const quality = rnd() < 0.002 ? "maintenance" : "normal";
    emit({
      measurement: device.kind,
      tags: {
        device: device.id,
        site: device.siteId,
        district: AREA.district,
        grid_cell: AREA.gridCell,
        quality,
      },
      fields: valuesOf(device, ms, rnd, episode),
      seq: ++seq,
      timeMs: ms,
    });
  }
}
