/**
 * Flood: river stage per station with the station's own warning, guaranteed and historical
 * levels (registry `levels`, which water.river.stage compares against), and underpass ponding
 * with the alert and closing depths of water.underpass.ponding. The station levels live in the
 * registry, not in InfluxDB, so they are written into the dashboard at build time as per-series
 * threshold lines: rebuild after a station's levels change (docs/dashboards.md).
 */
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type { Rule, Site } from "../contracts/index.js";
import { byVariables, normalOnly } from "./influxql.js";
import { type Band, limitOf } from "./limits.js";
import { Grid, citing, influxTarget, thresholds, trend } from "./panels.js";
import { placeVariables } from "./variables.js";

/** The station's levels as bands of rule water.river.stage (blue is 0.5 m below the warning). */
function stationBands(site: Extract<Site, { type: "river_station" }>): Band[] {
  const levels = site.levels;
  if (levels === undefined) return [];
  const clause = `registry levels of ${site.id}`;
  return [
    { value: levels.warning, rule: "water.river.stage", clause: `${clause}, warning` },
    { value: levels.guaranteed, rule: "water.river.stage", clause: `${clause}, guaranteed` },
    { value: levels.historicalMax, rule: "water.river.stage", clause: `${clause}, historical max` },
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
    .withTarget(
      influxTarget(
        "A",
        {
          select: [{ fn: "max", field: "stage" }],
          from: "water_level",
          where: [...byVariables, normalOnly],
          perInterval: true,
          groupBy: ["site"],
        },
        { alias: "$tag_site" },
      ),
    );
  for (const station of stations) {
    const bands = stationBands(station);
    if (bands.length === 0) continue;
    stage.overrideByName(station.id, [
      { id: "thresholds", value: thresholds(bands).build() },
      {
        id: "custom.thresholdsStyle",
        value: { mode: common.GraphThresholdsStyleMode.Dashed },
      },
    ]);
  }
  const ponding = [
    limitOf(rules, "water.underpass.ponding", "alert"),
    limitOf(rules, "water.underpass.ponding", "close"),
  ];
  return new dashboard.DashboardBuilder("citywatch · Flood")
    .uid("citywatch-flood")
    .tags(["citywatch", "flood"])
    .timezone("browser")
    .refresh("30s")
    .time({ from: "now-6h", to: "now" })
    .variables(placeVariables(["water_level"]))
    .withPanel(stage)
    .withPanel(
      trend("Underpass and road ponding depth", "lengthcm", ponding)
        .id(2)
        .description(citing("Deepest ponding per interval, cm.", ponding))
        .gridPos(grid.place(24, 9))
        .withTarget(
          influxTarget(
            "A",
            {
              select: [{ fn: "max", field: "ponding" }],
              from: "water_level",
              where: [...byVariables, normalOnly],
              perInterval: true,
              groupBy: ["site"],
            },
            { alias: "$tag_site" },
          ),
        ),
    );
}
