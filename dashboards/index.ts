export {
  type BuildInput,
  GENERATED_DIR,
  buildDashboards,
  staleDashboards,
  writeDashboards,
} from "./build.js";
export { DashboardError } from "./limits.js";
export {
  type DashboardJson,
  type Panel,
  type PanelQuery,
  type VariableValue,
  expandInfluxQL,
  parseDashboard,
  queriesOf,
} from "./queries.js";
export {
  type InfluxTarget,
  type QueryCheck,
  type VerifyWindow,
  loadGeneratedDashboards,
  unexposedMetrics,
  variableValues,
  verifyInfluxQL,
} from "./verify.js";
