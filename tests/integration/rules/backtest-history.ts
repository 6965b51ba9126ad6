import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Device, Site } from "../../../contracts/index.js";
import type { Point, TimeSeriesStore } from "../../../ingest/store/types.js";
import { RegistryStore } from "../../../registry/store.js";

/*
 * The history the backtest tests replay: a construction site with a noise and a dust monitor, an
 * ambient site with a noise monitor (and a disabled one), six hours of 1-minute readings with
 * loud spells on noise-1, and rule directories whose one rule differs only in its limit.
 */

const area = { district: "Jinjiang", gridCell: "JJ-01" };
const location = { lat: 30.65, lon: 104.08 };

export const SITES = [
  Site.parse({
    id: "cs-1",
    type: "construction_site",
    name: "Block 7",
    area,
    location,
    zoneClass: "2",
    phase: "earthwork",
    regulatedParty: { name: "Block 7 Builders Ltd." },
  }),
  Site.parse({ id: "amb-1", type: "ambient", name: "Square", area, location, zoneClass: "2" }),
];

const device = (id: string, kind: "noise" | "dust", siteId: string, enabled = true) =>
  Device.parse({
    id,
    kind,
    model: "M",
    serial: id,
    siteId,
    area,
    location,
    expectedIntervalS: 60,
    enabled,
  });

export const DEVICES = [
  device("noise-1", "noise", "cs-1"),
  device("dust-1", "dust", "cs-1"),
  device("noise-2", "noise", "amb-1"),
  device("noise-off", "noise", "amb-1", false),
];

/** Whole hours, a day before now: the history ends here. */
export const TO = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 86_400_000;
export const HOURS = 6;
export const FROM = TO - HOURS * 3_600_000;
const MINUTE = 60_000;

/**
 * noise-1's LAeq by minute of the history: 60 dB(A), but 85 at minutes 60-64 and 200-201, 75 at
 * minutes 120-124. noise-2 is silent at minutes 90-119 (a deadman of the default pack).
 */
export function laeq(minute: number): number {
  if ((minute >= 60 && minute < 65) || (minute >= 200 && minute < 202)) return 85;
  if (minute >= 120 && minute < 125) return 75;
  return 60;
}

function point(d: Device, minute: number, fields: Record<string, number>): Point {
  return {
    measurement: d.kind,
    tags: {
      device: d.id,
      site: d.siteId,
      district: area.district,
      grid_cell: area.gridCell,
      quality: "normal",
    },
    fields,
    seq: minute + 1,
    timeMs: FROM + minute * MINUTE,
  };
}

/** Every reading of the history (and an hour before it, for the warm-up). */
export function historyPoints(): Point[] {
  const points: Point[] = [];
  for (let minute = -60; minute < HOURS * 60; minute++) {
    points.push(
      point(DEVICES[0] as Device, minute, { LAeq: laeq(minute), LAmax: laeq(minute) + 5 }),
    );
    points.push(point(DEVICES[1] as Device, minute, { pm10: 50, pm2_5: 25 }));
    if (minute < 90 || minute >= 120) {
      points.push(point(DEVICES[2] as Device, minute, { LAeq: 50, LAmax: 55 }));
    }
  }
  return points;
}

/** The history written to a store. */
export async function writeHistory(store: TimeSeriesStore): Promise<number> {
  const points = historyPoints();
  const outcome = await store.write(points);
  if (outcome.rejected.length > 0) throw new Error(JSON.stringify(outcome.rejected));
  return points.length;
}

/** A registry file in `dataDir` with the sites and devices above. */
export function writeRegistry(dataDir: string): void {
  const registry = new RegistryStore(join(dataDir, "registry.db"));
  try {
    for (const site of SITES) registry.putSite(site);
    for (const d of DEVICES) registry.addDevice(d);
  } finally {
    registry.close();
  }
}

/** The one rule of the tests: noise-1's latest LAeq above `limit`. */
export function loudRule(limit: number, version = 1): string {
  return `rules:
  - id: local.noise.loud
    version: ${version}
    title: Noise above ${limit} dB(A) (backtest test)
    clause: { standard: local test, section: "none" }
    confidence: placeholder
    note: a rule of the backtest tests
    taskKind: enforcement
    scope: { kinds: [noise] }
    subject: device
    condition:
      type: threshold
      quantity: LAeq
      aggregate: latest
      op: ">"
      raise: ${limit}
`;
}

/** A rules directory holding `files` (name → text). */
export function rulesDir(parent: string, name: string, files: Record<string, string>): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return dir;
}
