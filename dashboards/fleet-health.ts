/**
 * Fleet health: which devices report (from InfluxDB: readings per interval and device), and the
 * ingest's own Prometheus metrics (message rates, commit lag, dead letters, store errors), read
 * from the Prometheus of the compose stack that scrapes the ingest's /metrics. Device birth and
 * death messages are not stored in InfluxDB, so "online" here means "readings arrived in the
 * interval", which is what an operator needs to know about a sensor anyway.
 */
import * as common from "@grafana/grafana-foundation-sdk/common";
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import * as statetimeline from "@grafana/grafana-foundation-sdk/statetimeline";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";
import { SensorKind } from "../contracts/index.js";
import { byVariables } from "./influxql.js";
import { INFLUXDB, PROMETHEUS } from "./datasources.js";
import { Grid, citywatchBoard, influxTarget, legend, promTarget } from "./panels.js";

function reportingTimeline(id: number, grid: Grid): statetimeline.PanelBuilder {
  const panel = new statetimeline.PanelBuilder()
    .title("Devices reporting (readings per interval)")
    .description(
      "One row per device: green when readings with that device time arrived in the interval, " +
        "red when none did. Birth and death messages are not in InfluxDB; a device that is " +
        "connected but sends nothing shows red, as it should.",
    )
    .id(id)
    .datasource(INFLUXDB)
    .gridPos(grid.place(24, 12))
    .legend(legend())
    .showValue(common.VisibilityMode.Never)
    .mappings([
      {
        type: dashboard.MappingType.ValueToText,
        options: { "0": { text: "no readings", color: "red", index: 0 } },
      },
      {
        type: dashboard.MappingType.RangeToText,
        options: { from: 1, to: null, result: { text: "reporting", color: "green", index: 1 } },
      },
    ]);
  for (const [i, kind] of SensorKind.options.entries()) {
    panel.withTarget(
      influxTarget(
        String.fromCharCode(65 + i),
        {
          select: [{ fn: "count", field: "seq", as: "readings" }],
          from: kind,
          where: byVariables,
          perInterval: true,
          groupBy: ["device"],
          fill: 0,
        },
        { alias: "$tag_device" },
      ),
    );
  }
  return panel;
}

interface Metric {
  title: string;
  unit: string;
  about: string;
  queries: Array<[expr: string, legend: string]>;
}

/** The ingest's and broker's metrics (ingest/metrics.ts, broker/metrics.ts). */
const METRICS: Metric[] = [
  {
    title: "Messages and readings per second",
    unit: "ops",
    about: "Uplink messages received and readings stored by the ingest.",
    queries: [
      ["sum(rate(citywatch_ingest_messages_received_total[$__rate_interval]))", "messages"],
      ["sum(rate(citywatch_ingest_readings_stored_total[$__rate_interval]))", "readings stored"],
      ["sum(rate(citywatch_ingest_duplicate_messages_total[$__rate_interval]))", "duplicates"],
    ],
  },
  {
    title: "Connected MQTT clients",
    unit: "short",
    about: "Clients connected to the broker (devices, simulators, the ingest itself).",
    queries: [["sum(citywatch_broker_connected_clients)", "connected"]],
  },
  {
    title: "Commit lag (top 10 devices)",
    unit: "short",
    about:
      "Per device: highest seq received minus the committed seq. A lag that stays up means " +
      "the device's log is not being trimmed (store down, or a gap held open).",
    queries: [["topk(10, citywatch_ingest_commit_lag_messages)", "{{device}}"]],
  },
  {
    title: "Dead letters by reason",
    unit: "short",
    about: "Messages (or readings, for store rejections) kept as dead letters per interval.",
    queries: [
      [
        "sum by (reason) (increase(citywatch_ingest_dead_letters_total[$__rate_interval]))",
        "{{reason}}",
      ],
    ],
  },
  {
    title: "Store errors and store up",
    unit: "short",
    about: "Failed store writes per interval (retried), and 1/0 for the store being available.",
    queries: [
      ["sum(increase(citywatch_ingest_store_errors_total[$__rate_interval]))", "store errors"],
      ["min(citywatch_ingest_store_up)", "store up"],
    ],
  },
  {
    title: "Inbox depth",
    unit: "short",
    about: "Messages received and not yet stored or dead-lettered (bounded; see protocol.md 6.7).",
    queries: [["sum(citywatch_ingest_inbox_depth)", "inbox"]],
  },
  {
    title: "Dead letters held",
    unit: "bytes",
    about:
      "Raw payload and detail the dead letters hold, bounded by ingest.deadLetters.maxBytes; " +
      "anything pruned for bytes means a device is flooding the ingest with rejects.",
    queries: [
      ["sum(citywatch_ingest_dead_letter_bytes)", "held"],
      [
        "sum by (why) (increase(citywatch_ingest_dead_letters_pruned_total[$__rate_interval]))",
        "pruned ({{why}})",
      ],
    ],
  },
  {
    title: "Rules: open alarms and window samples",
    unit: "short",
    about:
      "Alarms pending, active or recovering; samples the rules hold in memory (17 bytes each); " +
      "samples dropped at the per-series bound.",
    queries: [
      ["sum(citywatch_rules_open_alarms)", "open alarms"],
      ["sum(citywatch_rules_window_samples)", "window samples"],
      ["sum(increase(citywatch_rules_samples_dropped_total[$__rate_interval]))", "dropped"],
    ],
  },
];

export function fleetHealthDashboard(): dashboard.DashboardBuilder {
  const grid = new Grid();
  const board = citywatchBoard("Fleet health", "fleet-health", {
    from: "now-24h",
    refresh: "30s",
  }).withPanel(reportingTimeline(1, grid));
  for (const [i, m] of METRICS.entries()) {
    const panel = new timeseries.PanelBuilder()
      .title(m.title)
      .description(m.about)
      .id(i + 2)
      .datasource(PROMETHEUS)
      .unit(m.unit)
      .legend(legend())
      .gridPos(grid.place(12, 8));
    for (const [j, [expr, name]] of m.queries.entries()) {
      panel.withTarget(promTarget(String.fromCharCode(65 + j), expr, name));
    }
    board.withPanel(panel);
  }
  return board;
}
