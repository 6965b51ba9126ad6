/**
 * Flood: river stage per station with the station's own warning, guaranteed and historical
 * levels (registry `levels`, which water.river.stage compares against), and underpass ponding
 * with the alert and closing depths of water.underpass.ponding. The station levels live in the
 * registry, not in InfluxDB, so they are written into the dashboard at build time as per-series
 * threshold lines: rebuild after a station's levels change (docs/dashboards.md).
 */
import type * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type { Rule, Site } from "../contracts/index.js";
import { type Band, limitOf } from "./limits.js";
import { Grid, citing, citywatchBoard, perSite, seriesBands, trend } from "./panels.js";

/**
 * The station's levels as bands of rule water.river.stage, in the colours of the signals they
 * raise (yellow at the warning level, orange at the guaranteed level, red at the historical
 * maximum; the blue signal 0.5 m below the warning level is not drawn).
 */
function stationBands(site: Extract<Site, { type: "river_station" }>): Band[] {
  const levels = site.levels;
  if (levels === undefined) return [];
  const clause = `registry levels of ${site.id}`;
  const rule = "water.river.stage";
  return [
    { value: levels.warning, rule, clause: `${clause}, warning`, colour: "yellow" },
    { value: levels.guaranteed, rule, clause: `${clause}, guaranteed`, colour: "orange" },
    { value: levels.historicalMax, rule, clause: `${clause}, historical max`, colour: "red" },
  ];
}

export function floodDashboard(
  rules: readonly Rule[],
  sites: readonly Site[],
): dashboard.DashboardBuilder {
  const grid = new Grid();
  const stations = sites.filter(
    (s): s is Extract<Site, { type: "river_station" }> => s.type === "river_station",
  );
  const stage = trend("River stage per station", "lengthm")
    .id(1)
    .description(
      "Highest stage per interval against each station's datum, in m. Dashed lines per station: " +
        "its warning (yellow signal), guaranteed (orange) and historical maximum (red) levels " +
        "from the registry, the levels rule water.river.stage raises on.",
    )
    .gridPos(grid.place(24, 9))
    .withTarget(perSite("water_level", "max", "stage"));
  for (const station of stations) {
    const bands = stationBands(station);
    if (bands.length === 0) continue;
    stage.overrideByName(station.id, seriesBands(bands));
  }
  const ponding = [
    limitOf(rules, "water.underpass.ponding", "alert"),
    limitOf(rules, "water.underpass.ponding", "close"),
  ];
  return citywatchBoard("Flood", "flood", {
    from: "now-24h",
    refresh: "30s",
    kinds: ["water_level"],
  })
    .withPanel(stage)
    .withPanel(
      trend("Underpass and road ponding depth", "lengthcm", ponding)
        .id(2)
        .description(citing("Deepest ponding per interval, cm.", ponding))
        .gridPos(grid.place(24, 9))
        .withTarget(perSite("water_level", "max", "ponding")),
    );
}
