/**
 * Environment enforcement: noise by acoustic zone with each zone's day and night limits (GB 3096
 * via noise.area.laeq), construction-site noise, dust and cooking fume per site, each with the
 * limits of its rule in the pack. Noise is averaged as energy, never as plain means
 * (docs/data-model.md 7.3).
 */
import type * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type { Rule } from "../contracts/index.js";
import { AcousticZoneClass } from "../contracts/index.js";
import { type InfluxQuery, type Tag, byVariables, normalOnly } from "./influxql.js";
import { limitOf } from "./limits.js";
import {
  Grid,
  citing,
  citywatchBoard,
  influxTarget,
  perSite,
  seriesBands,
  trend,
} from "./panels.js";

/** Energy-mean LAeq per interval, one series per value of `tag`. */
function energyMeanLAeq(tag: Tag): InfluxQuery {
  return {
    select: [{ energyMeanOf: "energy", as: "LAeq" }],
    from: {
      energyOf: "LAeq",
      measurement: "noise",
      where: [...byVariables, normalOnly],
      groupBy: [tag],
    },
    perInterval: true,
    groupBy: [tag],
  };
}

function noiseByZone(rules: readonly Rule[], id: number, grid: Grid) {
  const panel = trend("Noise by acoustic zone (LAeq, energy mean)", "dB")
    .id(id)
    .description(
      "Energy-mean LAeq per interval of the monitors of each acoustic zone class (GB 3096-2008), " +
        "normal readings only. Dashed lines per zone: its night limit (orange) and day limit " +
        "(red) from rule noise.area.laeq (GB 3096-2008 §5, Table 1); the day limit applies " +
        "06:00-22:00, the night limit 22:00-06:00.",
    )
    .gridPos(grid.place(24, 9))
    .withTarget(influxTarget("A", energyMeanLAeq("zone"), { alias: "zone $tag_zone" }));
  for (const zoneClass of AcousticZoneClass.options) {
    const bands = [
      limitOf(rules, "noise.area.laeq", "night", { zoneClass }),
      limitOf(rules, "noise.area.laeq", "day", { zoneClass }),
    ];
    panel.overrideByName(`zone ${zoneClass}`, seriesBands(bands));
  }
  return panel;
}

export function environmentDashboard(rules: readonly Rule[]): dashboard.DashboardBuilder {
  const grid = new Grid();
  const construction = [
    limitOf(rules, "noise.construction.laeq", "night"),
    limitOf(rules, "noise.construction.laeq", "day"),
  ];
  const dust = [
    limitOf(rules, "dust.pm10.default", "warning"),
    limitOf(rules, "dust.pm10.default", "case"),
  ];
  const fume = [limitOf(rules, "cooking-fume.oil-fume", "limit")];
  return citywatchBoard("Environment enforcement", "environment", {
    from: "now-24h",
    refresh: "1m",
    kinds: ["noise", "dust", "cooking_fume"],
  })
    .withPanel(noiseByZone(rules, 1, grid))
    .withPanel(
      trend("Noise per site (LAeq, energy mean)", "dB", construction)
        .id(2)
        .description(
          citing(
            "Energy-mean LAeq per interval of each site's monitors, normal readings only. " +
              "Construction sites: night limit (22:00-06:00) and day limit below.",
            construction,
          ),
        )
        .gridPos(grid.place(12, 9))
        .withTarget(influxTarget("A", energyMeanLAeq("site"), { alias: "$tag_site" })),
    )
    .withPanel(
      trend("Dust PM10 per site", "conμgm3", dust)
        .id(3)
        .description(citing("Mean PM10 per interval, µg/m³, normal readings only.", dust))
        .gridPos(grid.place(12, 9))
        .withTarget(perSite("dust", "mean", "pm10")),
    )
    .withPanel(
      trend("Cooking fume per restaurant (oil fume)", "conmgm3", fume)
        .id(4)
        .description(
          citing(
            "Mean oil-fume concentration in the exhaust duct per interval, mg/m³, normal " +
              "readings only. The rule judges consecutive 10-min means in business hours.",
            fume,
          ),
        )
        .gridPos(grid.place(24, 9))
        .withTarget(perSite("cooking_fume", "mean", "oilFume")),
    );
}
