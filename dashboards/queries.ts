/**
 * Reading dashboards back: every panel with its targets, and Grafana's InfluxQL macros expanded
 * the way Grafana's InfluxDB datasource expands them, so a verifier can send each panel's query
 * to a real InfluxDB (tests/e2e/dashboards.test.ts) and a reviewer can paste one into `influx`.
 */
import { z } from "zod";

const Target = z.looseObject({
  refId: z.string(),
  datasource: z.looseObject({ type: z.string(), uid: z.string() }).optional(),
  query: z.string().optional(),
  expr: z.string().optional(),
});

/** The parts of a generated panel the checks read; everything else passes through. */
const PanelJson = z.looseObject({
  id: z.number().int(),
  type: z.string(),
  title: z.string(),
  gridPos: z.strictObject({ x: z.number(), y: z.number(), w: z.number(), h: z.number() }),
  datasource: z.looseObject({ type: z.string(), uid: z.string() }).optional(),
  targets: z.array(Target).default([]),
  options: z
    .looseObject({ legend: z.looseObject({ showLegend: z.boolean() }).optional() })
    .optional(),
});
export type Panel = z.infer<typeof PanelJson>;

const DashboardJson = z.looseObject({
  uid: z.string(),
  title: z.string(),
  panels: z.array(PanelJson),
  templating: z.looseObject({
    list: z.array(
      z.looseObject({ name: z.string(), query: z.unknown(), allValue: z.string().optional() }),
    ),
  }),
});
export type DashboardJson = z.infer<typeof DashboardJson>;

export function parseDashboard(text: string): DashboardJson {
  return DashboardJson.parse(JSON.parse(text));
}

/** Each query of a dashboard with the datasource type that runs it (target's, else panel's). */
export interface PanelQuery {
  readonly panel: Panel;
  readonly refId: string;
  readonly language: "influxql" | "promql";
  readonly text: string;
}

export function queriesOf(board: DashboardJson): PanelQuery[] {
  return board.panels.flatMap((panel) =>
    panel.targets.flatMap((t): PanelQuery[] => {
      const type = t.datasource?.type ?? panel.datasource?.type;
      if (type === "influxdb" && t.query !== undefined)
        return [{ panel, refId: t.refId, language: "influxql", text: t.query }];
      if (type === "prometheus" && t.expr !== undefined)
        return [{ panel, refId: t.refId, language: "promql", text: t.expr }];
      return [];
    }),
  );
}

/** A value of a template variable: chosen values, or "All" (the variable's allValue). */
export type VariableValue = { readonly values: readonly string[] } | { readonly all: string };

/** Regex-escape a value as Grafana does for a variable inside `/…/`. */
const escapeRegex = (value: string): string => value.replace(/[\\^$*+?.()|[\]{}/]/g, "\\$&");

/**
 * Expand `$timeFilter`, `$__interval` / `$interval` and `$variable` in an InfluxQL query: the time
 * filter as epoch milliseconds, variables inside a regex as an escaped alternation (or the
 * allValue for All), as Grafana's InfluxDB datasource does for raw queries.
 */
export function expandInfluxQL(
  query: string,
  context: {
    readonly fromMs: number;
    readonly toMs: number;
    readonly intervalMs: number;
    readonly variables: Readonly<Record<string, VariableValue>>;
  },
): string {
  const interval = `${context.intervalMs}ms`;
  let text = query
    .replaceAll("$timeFilter", `time >= ${context.fromMs}ms and time <= ${context.toMs}ms`)
    .replaceAll("$__interval", interval)
    .replaceAll("$interval", interval);
  for (const [name, value] of Object.entries(context.variables)) {
    const expanded =
      "all" in value
        ? value.all
        : value.values.length === 1
          ? escapeRegex(value.values[0] ?? "")
          : `(${value.values.map(escapeRegex).join("|")})`;
    text = text.replace(new RegExp(`\\$${name}\\b`, "g"), () => expanded);
  }
  const left = /\$[A-Za-z_]\w*/.exec(text);
  if (left !== null) throw new Error(`query keeps an unexpanded ${left[0]}: ${text}`);
  return text;
}
