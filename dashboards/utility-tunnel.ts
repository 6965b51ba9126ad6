/**
 * Utility tunnel: gas, oxygen and sump water per segment (a segment is a site of type
 * tunnel_segment, so the series are grouped by the `site` tag), with the alarm lines of the
 * tunnel rules of the pack (rules/pack/utility-tunnel.yaml).
 */
import type * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type { Rule } from "../contracts/index.js";
import type { Aggregate } from "./influxql.js";
import { type Band, limitOf } from "./limits.js";
import { type Direction, Grid, citing, citywatchBoard, perSite, trend } from "./panels.js";

interface TunnelPanel {
  title: string;
  field: string;
  unit: string;
  /** The worst value of the interval: MAX for a gas, MIN for oxygen when it runs low. */
  aggregate: Aggregate;
  bands: Band[];
  direction?: Direction;
  about: string;
}

function tunnelPanels(rules: readonly Rule[]): TunnelPanel[] {
  return [
    {
      title: "Methane (CH4) per segment",
      field: "ch4",
      unit: "percent",
      aggregate: "max",
      bands: [limitOf(rules, "tunnel.ch4", "alarm"), limitOf(rules, "tunnel.ch4", "shutOff")],
      about: "Highest CH4 of the segment's sensors per interval, %LEL.",
    },
    {
      title: "Oxygen (O2) per segment",
      field: "o2",
      unit: "percent",
      aggregate: "min",
      bands: [limitOf(rules, "tunnel.o2-low", "min"), limitOf(rules, "tunnel.o2-high", "max")],
      direction: "outside",
      about: "Lowest O2 of the segment's sensors per interval, %vol.",
    },
    {
      title: "Hydrogen sulphide (H2S) per segment",
      field: "h2s",
      unit: "conmgm3",
      aggregate: "max",
      bands: [limitOf(rules, "tunnel.h2s", "limit")],
      about: "Highest H2S per interval, mg/m³.",
    },
    {
      title: "Carbon monoxide (CO) per segment",
      field: "co",
      unit: "conmgm3",
      aggregate: "max",
      bands: [limitOf(rules, "tunnel.co", "low"), limitOf(rules, "tunnel.co", "high")],
      about: "Highest CO per interval, mg/m³.",
    },
    {
      title: "Sump water level per segment",
      field: "sumpLevel",
      unit: "lengthcm",
      aggregate: "max",
      bands: [limitOf(rules, "tunnel.sump", "level")],
      about:
        "Highest sump level per interval, cm. The pack's 50 cm is a placeholder (no standard).",
    },
    {
      title: "Compartment temperature per segment",
      field: "temperature",
      unit: "celsius",
      aggregate: "max",
      bands: [limitOf(rules, "tunnel.temperature", "limit")],
      about: "Highest temperature per interval, °C.",
    },
  ];
}

export function utilityTunnelDashboard(rules: readonly Rule[]): dashboard.DashboardBuilder {
  const grid = new Grid();
  const board = citywatchBoard("Utility tunnel", "utility-tunnel", {
    from: "now-24h",
    refresh: "30s",
    kinds: ["utility_tunnel"],
  });
  for (const [i, p] of tunnelPanels(rules).entries()) {
    board.withPanel(
      trend(p.title, p.unit, p.bands, p.direction)
        .id(i + 1)
        .description(citing(`${p.about} Normal readings only.`, p.bands))
        .gridPos(grid.place(12, 8))
        .withTarget(perSite("utility_tunnel", p.aggregate, p.field)),
    );
  }
  return board;
}
