/**
 * City overview: a map of the devices coloured by the quality flag of their newest reading, and
 * the open tasks by kind.
 *
 * Where the data comes from, honestly: InfluxDB holds no coordinates (docs/data-model.md section
 * 3: positions stay in the registry), so the map takes each device's newest point from InfluxDB
 * and places it by device id through a gazetteer file written from the registry by
 * `citywatch dashboards build` (dashboards/generated/citywatch-devices.json, mounted into Grafana's
 * public/gazetteer/). Tasks are not in InfluxDB either; the ingest counts open tasks by kind in
 * the Prometheus gauge citywatch_tasks_open, which the stack's Prometheus scrapes.
 */
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import * as geomap from "@grafana/grafana-foundation-sdk/geomap";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import { type QualityFlag, SensorKind } from "../contracts/index.js";
import { byVariables } from "./influxql.js";
import { INFLUXDB, PROMETHEUS } from "./datasources.js";
import { Grid, citywatchBoard, influxTarget, promTarget } from "./panels.js";

/** Where Grafana serves the gazetteer from (compose mounts it there). */
const GAZETTEER_PATH = "public/gazetteer/citywatch-devices.json";

/** Only normal readings are evidence; the others say why a device cannot be trusted right now. */
const QUALITY_COLOURS: Record<QualityFlag, string> = {
  normal: "green",
  manual: "light-green",
  maintenance: "blue",
  calibration: "blue",
  over_range: "orange",
  comm_fault: "red",
  fault: "red",
  stopped: "dark-red",
};

function deviceMap(id: number, grid: Grid, centre: { lat: number; lon: number }) {
  const panel = new geomap.PanelBuilder()
    .title("Devices by state (quality of the newest reading)")
    .description(
      "Each device's newest reading in the time range, placed by its registry position (the " +
        "gazetteer written by `citywatch dashboards build`) and coloured by its quality flag: " +
        "green normal, blue maintenance or calibration, orange over range, red fault. A device " +
        "with no reading in the range is not on the map; see Fleet health.",
    )
    .id(id)
    .datasource(INFLUXDB)
    .gridPos(grid.place(16, 14))
    .view(new geomap.MapViewConfigBuilder().id("coords").lat(centre.lat).lon(centre.lon).zoom(12))
    .basemap(new common.MapLayerOptionsBuilder().type("default").name("Basemap"))
    .tooltip(new geomap.TooltipOptionsBuilder().mode(geomap.TooltipMode.Details))
    .layers([
      new common.MapLayerOptionsBuilder()
        .type("markers")
        .name("Devices")
        .tooltip(true)
        .location(
          new common.FrameGeometrySourceBuilder()
            .mode(common.FrameGeometrySourceMode.Lookup)
            .lookup("device")
            .gazetteer(GAZETTEER_PATH),
        )
        .config({
          showLegend: true,
          style: {
            size: { fixed: 7 },
            color: { field: "quality", fixed: "grey" },
            symbol: { mode: "fixed", fixed: "img/icons/marker/circle.svg" },
          },
        }),
    ])
    .mappings([
      {
        type: dashboard.MappingType.ValueToText,
        options: Object.fromEntries(
          Object.entries(QUALITY_COLOURS).map(([flag, color], index) => [
            flag,
            { text: flag, color, index },
          ]),
        ),
      },
    ])
    .withTransformation({ id: "merge", options: {} });
  for (const [i, kind] of SensorKind.options.entries()) {
    panel.withTarget(
      influxTarget(
        String.fromCharCode(65 + i),
        {
          select: [{ column: "seq" }, { column: "quality" }],
          from: kind,
          where: byVariables,
          groupBy: ["device"],
          newestOnly: true,
        },
        { format: "table" },
      ),
    );
  }
  return panel;
}

function openTasks(id: number, grid: Grid): stat.PanelBuilder {
  return new stat.PanelBuilder()
    .title("Open tasks by kind")
    .description(
      "Tasks not closed, by kind (enforcement case, emergency task, maintenance task): the " +
        "ingest's gauge citywatch_tasks_open, scraped by Prometheus. Tasks are not in InfluxDB.",
    )
    .id(id)
    .datasource(PROMETHEUS)
    .gridPos(grid.place(8, 14))
    .orientation(common.VizOrientation.Horizontal)
    .withTarget(promTarget("A", "sum by (kind) (citywatch_tasks_open)", "{{kind}}"));
}

export function cityOverviewDashboard(centre: {
  lat: number;
  lon: number;
}): dashboard.DashboardBuilder {
  const grid = new Grid();
  return citywatchBoard("City overview", "city-overview", { from: "now-24h", refresh: "30s" })
    .withPanel(deviceMap(1, grid, centre))
    .withPanel(openTasks(2, grid));
}
