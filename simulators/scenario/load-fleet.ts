/**
 * A load fleet: `count` extra devices on ambient sites, for `citywatch sim --devices N`. The
 * sites are ambient and carry no zone class, so no enforcement or emergency rule applies to
 * them: a load run adds traffic, never tasks, and a scenario's expected tasks stay exact.
 * Deterministic in `count`, so provisioning and the run agree on the ids.
 */
import { RegistryFile, type SensorKind } from "../../contracts/index.js";

const KINDS: readonly SensorKind[] = [
  "noise",
  "dust",
  "water_level",
  "utility_tunnel",
  "cooking_fume",
];
const PER_SITE = 100;

export function loadFleetLayout(count: number): {
  layout: RegistryFile;
  models: Record<string, unknown>;
} {
  const pad = (n: number, width: number) => String(n).padStart(width, "0");
  const area = (site: number) => ({ district: "Load", gridCell: `LOAD-${pad(site, 4)}` });
  // Spread over a few kilometres of Chengdu so maps show a cloud, not one dot.
  const location = (i: number) => ({
    lat: 30.6 + ((i * 37) % 1000) / 10_000,
    lon: 104.0 + ((i * 91) % 1000) / 10_000,
  });
  const sites = Array.from({ length: Math.ceil(count / PER_SITE) }, (_, s) => ({
    id: `load-site-${pad(s + 1, 4)}`,
    type: "ambient",
    name: `Load fleet site ${s + 1}`,
    area: area(s + 1),
    location: location(s),
  }));
  const devices = Array.from({ length: count }, (_, i) => {
    const site = Math.floor(i / PER_SITE) + 1;
    return {
      id: `load-${pad(i + 1, 5)}`,
      kind: KINDS[i % KINDS.length],
      model: "SIM-LOAD",
      serial: `L-${pad(i + 1, 5)}`,
      location: location(i),
      area: area(site),
      siteId: `load-site-${pad(site, 4)}`,
      expectedIntervalS: 60,
    };
  });
  return { layout: RegistryFile.parse({ sites, devices }), models: {} };
}
