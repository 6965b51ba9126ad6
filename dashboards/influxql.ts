/**
 * A small typed InfluxQL builder for Grafana panels (the foundation SDK has none). It writes only
 * the shapes the dashboards need, in the form docs/data-model.md section 7 checked against
 * influxd 1.6.7: identifiers double-quoted, tag filters on template variables as anchored regexes
 * (`"site" =~ /^$site$/`, which Grafana fills with an escaped alternation for multi-value and
 * "All"), `$timeFilter` and `GROUP BY time($__interval)`.
 */
import type { SensorKind } from "../contracts/index.js";

/** Tags the ingest writes on every point (docs/data-model.md section 3). */
export type Tag = "device" | "site" | "district" | "grid_cell" | "zone" | "quality";

/** Dashboard template variables, each filtering the tag of the same name. */
export type Variable = "district" | "site" | "device";

export type Aggregate = "mean" | "max" | "min" | "last" | "count";

/** One column of the SELECT list. */
export type Selection =
  | { readonly fn: Aggregate; readonly field: string; readonly as?: string }
  /** 10·log10(mean(energy)): the outer half of an energy mean (data-model.md 7.3). */
  | { readonly energyMeanOf: string; readonly as: string }
  /** A raw field, or a tag beside at least one field, as stored. */
  | { readonly column: string };

export type Filter =
  | { readonly tag: Tag; readonly variable: Variable }
  | { readonly tag: Tag; readonly equals: string };

export type Fill = "null" | "none" | "previous" | "linear" | number;

export interface InfluxQuery {
  readonly select: readonly Selection[];
  /** A measurement, or an energy-mean subquery of one (data-model.md 7.3). */
  readonly from: SensorKind | EnergySubquery;
  readonly where?: readonly Filter[];
  /** Group by `time($__interval)`; absent for one value per series (a map or a table). */
  readonly perInterval?: boolean;
  readonly groupBy?: readonly Tag[];
  readonly fill?: Fill;
  /** Only the newest point of each series (`ORDER BY time DESC LIMIT 1`), for a map. */
  readonly newestOnly?: boolean;
}

/**
 * `SELECT POW(10.0, "<field>" / 10.0) AS "energy" FROM "<kind>" WHERE … GROUP BY <tags>`. The base
 * is the float 10.0: with the integer 10 InfluxDB truncates the energy (data-model.md 7.3).
 */
export interface EnergySubquery {
  readonly energyOf: string;
  readonly measurement: SensorKind;
  readonly where?: readonly Filter[];
  readonly groupBy?: readonly Tag[];
}

const quote = (identifier: string): string => `"${identifier.replace(/"/g, '\\"')}"`;

function selection(s: Selection): string {
  if ("column" in s) return quote(s.column);
  if ("energyMeanOf" in s) return `10 * LOG10(MEAN(${quote(s.energyMeanOf)})) AS ${quote(s.as)}`;
  return `${s.fn.toUpperCase()}(${quote(s.field)}) AS ${quote(s.as ?? s.field)}`;
}

function filter(f: Filter): string {
  if ("variable" in f) return `${quote(f.tag)} =~ /^$${f.variable}$/`;
  return `${quote(f.tag)} = '${f.equals.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function where(filters: readonly Filter[], timeFilter: boolean): string {
  const parts = filters.map(filter);
  if (timeFilter) parts.push("$timeFilter");
  return parts.length === 0 ? "" : ` WHERE ${parts.join(" AND ")}`;
}

function groupBy(time: boolean, tags: readonly Tag[]): string {
  const parts = [...(time ? ["time($__interval)"] : []), ...tags.map(quote)];
  return parts.length === 0 ? "" : ` GROUP BY ${parts.join(", ")}`;
}

function source(from: InfluxQuery["from"]): string {
  if (typeof from === "string") return quote(from);
  const inner =
    `SELECT POW(10.0, ${quote(from.energyOf)} / 10.0) AS "energy" FROM ${quote(from.measurement)}` +
    where(from.where ?? [], false) +
    groupBy(false, from.groupBy ?? []);
  return `(${inner})`;
}

/** The query text, with Grafana's macros and variables left for Grafana to expand. */
export function influxql(q: InfluxQuery): string {
  const fill = q.perInterval === true ? ` fill(${q.fill ?? "null"})` : "";
  return (
    `SELECT ${q.select.map(selection).join(", ")} FROM ${source(q.from)}` +
    where(q.where ?? [], true) +
    groupBy(q.perInterval === true, q.groupBy ?? []) +
    fill +
    (q.newestOnly === true ? " ORDER BY time DESC LIMIT 1" : "")
  );
}

/** The standard filters of a panel: the dashboard's district, site and device variables. */
export const byVariables: readonly Filter[] = [
  { tag: "district", variable: "district" },
  { tag: "site", variable: "site" },
  { tag: "device", variable: "device" },
];

/** Only readings flagged normal: what the rules evaluate and what counts as evidence. */
export const normalOnly: Filter = { tag: "quality", equals: "normal" };
