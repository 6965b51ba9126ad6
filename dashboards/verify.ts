/**
 * The verifier: every InfluxQL query of the dashboards run against a real InfluxDB the way Grafana
 * would run it (variables from their own queries, macros expanded), and every PromQL expression
 * checked against the metrics a running citywatch exposes. A query that errs or returns no value
 * is a problem: a panel that shows nothing on a filled city is broken, not quiet.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { GENERATED_DIR } from "./build.js";
import {
  type DashboardJson,
  type VariableValue,
  expandInfluxQL,
  parseDashboard,
  queriesOf,
} from "./queries.js";

export interface InfluxTarget {
  /** InfluxDB base URL, e.g. http://127.0.0.1:8086 */
  readonly url: string;
  /** The InfluxQL database (with 2.x: the database mapped to the bucket by DBRP). */
  readonly database: string;
  /** 2.x API token, sent as `Authorization: Token …`. */
  readonly token?: string;
  /** 1.x credentials, sent as the `u` and `p` query parameters InfluxDB 1.x reads. */
  readonly username?: string;
  readonly password?: string;
}

export interface VerifyWindow {
  readonly fromMs: number;
  readonly toMs: number;
  /** What Grafana would pick for `$__interval` on this range. */
  readonly intervalMs: number;
}

export interface QueryCheck {
  readonly dashboard: string;
  readonly panel: string;
  readonly refId: string;
  readonly query: string;
  /** Non-null values returned (time excluded). */
  readonly values: number;
  /** Why the panel would be broken; absent when it returned values. */
  readonly problem?: string;
}

const InfluxAnswer = z.object({
  error: z.string().optional(),
  results: z
    .array(
      z.object({
        error: z.string().optional(),
        series: z
          .array(z.object({ columns: z.array(z.string()), values: z.array(z.array(z.unknown())) }))
          .optional(),
      }),
    )
    .default([]),
});
type InfluxAnswer = z.infer<typeof InfluxAnswer>;

/** The generated dashboards (not the gazetteer), parsed. */
export function loadGeneratedDashboards(dir = GENERATED_DIR): DashboardJson[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json") && f !== "citywatch-devices.json")
    .sort()
    .map((f) => parseDashboard(readFileSync(join(dir, f), "utf8")));
}

async function influxql(target: InfluxTarget, query: string): Promise<InfluxAnswer> {
  const params = new URLSearchParams({ db: target.database, epoch: "ms", q: query });
  if (target.username !== undefined) params.set("u", target.username);
  if (target.password !== undefined) params.set("p", target.password);
  const response = await fetch(`${target.url.replace(/\/$/, "")}/query?${params.toString()}`, {
    headers: target.token === undefined ? {} : { authorization: `Token ${target.token}` },
  });
  const body: unknown = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  const parsed = InfluxAnswer.safeParse(body);
  if (!parsed.success) return { error: `unexpected answer (HTTP ${response.status})`, results: [] };
  return parsed.data;
}

/** Values of a SHOW TAG VALUES answer ([key, value] rows). */
function tagValues(answer: InfluxAnswer): string[] {
  return (answer.results[0]?.series?.[0]?.values ?? [])
    .map((row) => row[1])
    .filter((v): v is string => typeof v === "string");
}

/**
 * The district variable set to its first real value (read with the variable's own query), site
 * and device to All, unless `chosen` sets them; each variable's query must list values, and
 * `listed` keeps what each listed.
 */
async function variablesOf(
  board: DashboardJson,
  target: InfluxTarget,
  window: VerifyWindow,
  chosen: Readonly<Record<string, VariableValue>>,
): Promise<{
  variables: Record<string, VariableValue>;
  listed: Record<string, string[]>;
  problems: QueryCheck[];
}> {
  const variables: Record<string, VariableValue> = {};
  const listed: Record<string, string[]> = {};
  const problems: QueryCheck[] = [];
  for (const v of board.templating.list) {
    const query = expandInfluxQL(String(v.query), { ...window, variables });
    const values = tagValues(await influxql(target, query));
    const check = {
      dashboard: board.uid,
      panel: `variable ${v.name}`,
      refId: "-",
      query,
      values: values.length,
    };
    if (values.length === 0) problems.push({ ...check, problem: "the variable lists no value" });
    listed[v.name] = values;
    const first = values[0];
    variables[v.name] =
      chosen[v.name] ??
      (v.name === "district" && first !== undefined
        ? { values: [first] }
        : { all: v.allValue ?? ".*" });
  }
  return { variables, listed, problems };
}

/** What each variable of a dashboard lists on this InfluxDB (district at its first value). */
export async function variableValues(
  board: DashboardJson,
  target: InfluxTarget,
  window: VerifyWindow,
): Promise<Record<string, string[]>> {
  return (await variablesOf(board, target, window, {})).listed;
}

/**
 * Run every InfluxQL query of the dashboards; one check per query and per failing variable.
 * `chosen` sets variables (e.g. one site) instead of the defaults of {@link variablesOf}.
 */
export async function verifyInfluxQL(
  boards: readonly DashboardJson[],
  target: InfluxTarget,
  window: VerifyWindow,
  chosen: Readonly<Record<string, VariableValue>> = {},
): Promise<QueryCheck[]> {
  const checks: QueryCheck[] = [];
  for (const board of boards) {
    const { variables, problems } = await variablesOf(board, target, window, chosen);
    checks.push(...problems);
    for (const q of queriesOf(board).filter((q) => q.language === "influxql")) {
      const query = expandInfluxQL(q.text, { ...window, variables });
      const answer = await influxql(target, query);
      const values = (answer.results[0]?.series ?? []).flatMap((s) =>
        s.values.flatMap((row) => row.slice(1)).filter((value) => value !== null),
      ).length;
      const error = answer.error ?? answer.results[0]?.error;
      const check = { dashboard: board.uid, panel: q.panel.title, refId: q.refId, query, values };
      checks.push(
        error !== undefined
          ? { ...check, problem: `InfluxDB: ${error}` }
          : values === 0
            ? { ...check, problem: "no values" }
            : check,
      );
    }
  }
  return checks;
}

/** PromQL metric names the dashboards use that `exposition` (a /metrics text) does not declare. */
export function unexposedMetrics(
  boards: readonly DashboardJson[],
  exposition: string,
): QueryCheck[] {
  const declared = new Set([...exposition.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]));
  return boards.flatMap((board) =>
    queriesOf(board)
      .filter((q) => q.language === "promql")
      .flatMap((q) =>
        [...q.text.matchAll(/\b(citywatch_[a-z0-9_]+)/g)]
          .map((m) => m[1] ?? "")
          .filter((metric) => !declared.has(metric))
          .map((metric) => ({
            dashboard: board.uid,
            panel: q.panel.title,
            refId: q.refId,
            query: q.text,
            values: 0,
            problem: `${metric} is not exposed on /metrics`,
          })),
      ),
  );
}
