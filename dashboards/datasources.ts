/** The uids of the provisioned datasources (dashboards/provisioning/datasources/): one place. */
import type * as dashboard from "@grafana/grafana-foundation-sdk/dashboard";

export const INFLUXDB: dashboard.DataSourceRef = { type: "influxdb", uid: "citywatch-influxdb" };
export const PROMETHEUS: dashboard.DataSourceRef = {
  type: "prometheus",
  uid: "citywatch-prometheus",
};
