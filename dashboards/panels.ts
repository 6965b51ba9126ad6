/**
 * What every citywatch panel shares: the provisioned datasources, InfluxQL and PromQL targets,
 * threshold bands that name their rule, and a 24-column grid that places panels left to right.
 */
import type * as cog from "@grafana/grafana-foundation-sdk/cog";
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import * as prometheus from "@grafana/grafana-foundation-sdk/prometheus";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";
import type { SensorKind } from "../contracts/index.js";
import { type Aggregate, type InfluxQuery, byVariables, influxql, normalOnly } from "./influxql.js";
import { INFLUXDB, PROMETHEUS } from "./datasources.js";
import type { Band } from "./limits.js";
import { placeVariables } from "./variables.js";

/** The JSON of an InfluxQL target as Grafana's InfluxDB datasource saves a raw query. */
export interface InfluxTarget extends cog.Dataquery {
  refId: string;
  datasource: dashboard.DataSourceRef;
  rawQuery: true;
  query: string;
  resultFormat: "time_series" | "table";
  /** Series name; `$tag_site` names a series by its site. */
  alias?: string;
}

/** A raw InfluxQL target. Grafana keeps `query` verbatim and expands its macros per request. */
export function influxTarget(
  refId: string,
  q: InfluxQuery,
  options: { format?: InfluxTarget["resultFormat"]; alias?: string } = {},
): cog.Builder<cog.Dataquery> {
  return {
    build: (): InfluxTarget => ({
      refId,
      datasource: INFLUXDB,
      rawQuery: true,
      query: influxql(q),
      resultFormat: options.format ?? "time_series",
      ...(options.alias !== undefined ? { alias: options.alias } : {}),
      _implementsDataqueryVariant() {},
    }),
  };
}

/**
 * The commonest panel query: one aggregate of one field per interval and site, of normal
 * readings, filtered by the dashboard's variables, each series named by its site id.
 */
export function perSite(
  kind: SensorKind,
  fn: Aggregate,
  field: string,
): cog.Builder<cog.Dataquery> {
  return influxTarget(
    "A",
    {
      select: [{ fn, field }],
      from: kind,
      where: [...byVariables, normalOnly],
      perInterval: true,
      groupBy: ["site"],
    },
    { alias: "$tag_site" },
  );
}

/** A PromQL range query on the Prometheus that scrapes the ingest's /metrics. */
export function promTarget(
  refId: string,
  expr: string,
  legend: string,
): prometheus.DataqueryBuilder {
  return new prometheus.DataqueryBuilder()
    .refId(refId)
    .datasource(PROMETHEUS)
    .expr(expr)
    .legendFormat(legend)
    .range();
}

/** Where the bad side of a band is: above (a limit), below (a minimum) or outside two bands. */
export type Direction = "rising" | "falling" | "outside";

const BAND_COLOURS = ["orange", "red", "dark-red", "purple"] as const;

/**
 * Threshold steps: rising bands are limits (green below, then orange, red…), a falling band is a
 * minimum (red below), two outside bands are a safe range (O2: red below 19.5 and above 23.5).
 */
export function thresholds(
  bands: readonly Band[],
  direction: Direction = "rising",
): dashboard.ThresholdsConfigBuilder {
  const sorted = [...bands].sort((a, b) => a.value - b.value);
  const [low, high] = sorted;
  const steps: dashboard.Threshold[] =
    direction === "rising"
      ? [
          { value: null, color: "green" },
          ...sorted.map((b, i) => ({
            value: b.value,
            color: b.colour ?? BAND_COLOURS[i] ?? "dark-red",
          })),
        ]
      : direction === "falling"
        ? [
            { value: null, color: "red" },
            ...sorted.map((b) => ({ value: b.value, color: "green" })),
          ]
        : [
            { value: null, color: "red" },
            ...(low === undefined ? [] : [{ value: low.value, color: "green" }]),
            ...(high === undefined ? [] : [{ value: high.value, color: "red" }]),
          ];
  return new dashboard.ThresholdsConfigBuilder()
    .mode(dashboard.ThresholdsMode.Absolute)
    .steps(steps);
}

/** Overrides drawing one series' own bands as dashed lines (a station's levels, a zone's limits). */
export function seriesBands(bands: readonly Band[]): dashboard.DynamicConfigValue[] {
  return [
    { id: "thresholds", value: thresholds(bands).build() },
    { id: "custom.thresholdsStyle", value: { mode: common.GraphThresholdsStyleMode.Dashed } },
  ];
}

/** A panel description that cites the rules behind its lines, so a reader can check the number. */
export function citing(text: string, bands: readonly Band[]): string {
  const cited = bands.map((b) => `${b.value} (rule ${b.rule}: ${b.clause})`);
  return cited.length === 0 ? text : `${text} Lines: ${cited.join("; ")}.`;
}

export function legend(): common.VizLegendOptionsBuilder {
  return new common.VizLegendOptionsBuilder()
    .showLegend(true)
    .displayMode(common.LegendDisplayMode.List)
    .placement(common.LegendPlacement.Bottom);
}

/** A time series with a legend and, when given, its bands drawn as dashed lines. */
export function trend(
  title: string,
  unit: string,
  bands: readonly Band[] = [],
  direction: Direction = "rising",
): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder()
    .title(title)
    .datasource(INFLUXDB)
    .unit(unit)
    .legend(legend())
    .spanNulls(false);
  if (bands.length === 0) return panel;
  return panel
    .thresholds(thresholds(bands, direction))
    .thresholdsStyle(
      new common.GraphThresholdsStyleConfigBuilder().mode(
        common.GraphThresholdsStyleMode.DashedAndArea,
      ),
    );
}

/** A dashboard with citywatch's uid, tags, refresh and the place variables of its measurements. */
export function citywatchBoard(
  title: string,
  slug: string,
  options: { from: string; refresh: string; kinds?: readonly SensorKind[] },
): dashboard.DashboardBuilder {
  return new dashboard.DashboardBuilder(`citywatch · ${title}`)
    .uid(`citywatch-${slug}`)
    .tags(["citywatch", slug])
    .timezone("browser")
    .refresh(options.refresh)
    .time({ from: options.from, to: "now" })
    .variables(placeVariables(options.kinds ?? []));
}

/** Places panels on Grafana's 24-column grid, left to right, a new row when one is full. */
export class Grid {
  private x = 0;
  private y = 0;
  private rowHeight = 0;

  place(w: number, h: number): dashboard.GridPos {
    if (this.x + w > 24) {
      this.x = 0;
      this.y += this.rowHeight;
      this.rowHeight = 0;
    }
    const pos = { x: this.x, y: this.y, w, h };
    this.x += w;
    this.rowHeight = Math.max(this.rowHeight, h);
    return pos;
  }
}
