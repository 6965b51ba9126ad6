/**
 * The district, site and device variables every dashboard carries, chained (a site list follows
 * the district, a device list the site) and read from InfluxDB's tag values, so they list what
 * has reported rather than what the registry holds.
 */
import * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";
import type { SensorKind } from "../contracts/index.js";
import type { Variable } from "./influxql.js";
import { INFLUXDB } from "./datasources.js";

/** Grafana fills `/^$site$/` with this for "All": every value, also a measurement's empty set. */
const ALL = ".*";

function showTagValues(key: Variable, kinds: readonly SensorKind[], filters: string[]): string {
  const from = kinds.length === 0 ? "" : ` FROM ${kinds.map((k) => `"${k}"`).join(", ")}`;
  const where = filters.length === 0 ? "" : ` WHERE ${filters.join(" AND ")}`;
  return `SHOW TAG VALUES${from} WITH KEY = "${key}"${where}`;
}

function variable(name: Variable, label: string, query: string): dashboard.QueryVariableBuilder {
  return new dashboard.QueryVariableBuilder(name)
    .label(label)
    .datasource(INFLUXDB)
    .query(query)
    .definition(query)
    .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
    .sort(dashboard.VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .allValue(ALL)
    .current({ text: "All", value: "$__all" });
}

/** district → site → device, limited to the dashboard's measurements (none: all of them). */
export function placeVariables(
  kinds: readonly SensorKind[] = [],
): dashboard.QueryVariableBuilder[] {
  return [
    variable("district", "District", showTagValues("district", kinds, [])),
    variable("site", "Site", showTagValues("site", kinds, ['"district" =~ /^$district$/'])),
    variable(
      "device",
      "Device",
      showTagValues("device", kinds, ['"district" =~ /^$district$/', '"site" =~ /^$site$/']),
    ),
  ];
}
