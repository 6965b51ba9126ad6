/**
 * The registry the ingest and alerts benches run against: two sites (an ambient monitoring
 * station, a gas-compartment tunnel segment) and the devices each bench asks for, tunnel monitors
 * on the segment and every other kind at the station.
 */
import { Site, type SensorKind } from "../contracts/index.js";
import type { RegistryStore } from "../registry/store.js";

const AREA = { district: "Bench", gridCell: "BENCH-001" };
const LOCATION = { lat: 30.6571, lon: 104.0817 };

export interface BenchCity {
  /** Register a device and return its MQTT credentials (client id and username = device id). */
  add(id: string, kind: SensorKind): { clientId: string; username: string; password: string };
}

export function benchCity(registry: RegistryStore, expectedIntervalS: number): BenchCity {
  const ambient = registry.putSite(
    Site.parse({
      id: "bench-ambient",
      type: "ambient",
      name: "Bench ambient",
      area: AREA,
      location: LOCATION,
    }),
  );
  const tunnel = registry.putSite(
    Site.parse({
      id: "bench-tunnel-seg",
      type: "tunnel_segment",
      name: "Bench tunnel segment",
      area: AREA,
      location: LOCATION,
      tunnel: "bench-tunnel",
      compartment: "gas",
      neighbours: [],
    }),
  );
  return {
    add(id, kind) {
      const site = kind === "utility_tunnel" ? tunnel : ambient;
      const { secret } = registry.addDevice({
        id,
        kind,
        model: "bench",
        serial: id,
        location: site.location,
        area: site.area,
        siteId: site.id,
        expectedIntervalS,
      });
      return { clientId: id, username: id, password: secret };
    },
  };
}
