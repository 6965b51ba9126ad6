import type { StoreConfig } from "../../contracts/index.js";
import type { StoreRetention } from "../../contracts/model/backtest.js";
import { quoteIdentifier } from "./influxdb.js";
import { StoreUnavailableError } from "./types.js";

/*
 * How long the configured store keeps readings (docs/data-model.md, section 10): the embedded
 * store keeps everything; InfluxDB 1.x keeps what the retention policy the ingest writes to says
 * (`ingest.store.retentionPolicy`, else the database's default policy), 2.x what the bucket's
 * retention rule says. A backtest refuses a range the store no longer holds.
 */

const UNIT_MS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000_001,
};

/** A Go duration as InfluxDB prints it (`168h0m0s`, `0s`) in ms; undefined if it is not one. */
export function parseGoDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(h|ms|m|s|us|µs|ns))+$/.test(text)) return undefined;
  let ms = 0;
  for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(h|ms|m|s|us|µs|ns)/g))
    ms += Number(n) * (UNIT_MS[unit ?? ""] ?? 0);
  return ms;
}

const FOREVER = (what: string): StoreRetention => ({
  ms: undefined,
  description: `${what} keeps readings for ever`,
});

async function getJson(url: URL, headers: Record<string, string>, timeoutMs: number) {
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    throw new StoreUnavailableError(
      `InfluxDB ${url.origin}${url.pathname}: ${(error as Error).message}`,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    throw new StoreUnavailableError(
      `InfluxDB ${url.origin}${url.pathname} answered ${response.status}: ${text.slice(0, 300)}`,
    );
  }
  return JSON.parse(text) as unknown;
}

/** InfluxDB 1.x: the policy's duration from SHOW RETENTION POLICIES. */
async function v1Retention(
  store: Extract<StoreConfig, { type: "influxdb" }>,
): Promise<StoreRetention> {
  const database = store.database ?? "citywatch";
  const url = new URL("/query", store.url);
  url.searchParams.set("q", `SHOW RETENTION POLICIES ON ${quoteIdentifier(database)}`);
  const headers: Record<string, string> =
    store.username === undefined
      ? {}
      : {
          authorization: `Basic ${Buffer.from(`${store.username}:${store.password ?? ""}`).toString("base64")}`,
        };
  const body = (await getJson(url, headers, store.timeoutMs)) as {
    results?: Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][] }> }>;
  };
  const result = body.results?.[0];
  if (result?.error !== undefined) {
    throw new StoreUnavailableError(`InfluxDB: ${result.error}`);
  }
  const series = result?.series?.[0];
  const column = (name: string) => series?.columns.indexOf(name) ?? -1;
  const rows = series?.values ?? [];
  const row =
    store.retentionPolicy === undefined
      ? rows.find((r) => r[column("default")] === true)
      : rows.find((r) => r[column("name")] === store.retentionPolicy);
  const name = row?.[column("name")];
  const what = `InfluxDB retention policy ${JSON.stringify(name ?? store.retentionPolicy)} on database ${JSON.stringify(database)}`;
  if (row === undefined) {
    throw new StoreUnavailableError(`${what} does not exist`);
  }
  const duration = String(row[column("duration")]);
  const ms = parseGoDuration(duration);
  if (ms === undefined)
    throw new StoreUnavailableError(`${what}: cannot read duration ${duration}`);
  return ms === 0 ? FOREVER(what) : { ms, description: `${what} keeps ${duration}` };
}

/** InfluxDB 2.x: the bucket's expiry rule. */
async function v2Retention(
  store: Extract<StoreConfig, { type: "influxdb" }>,
): Promise<StoreRetention> {
  const url = new URL("/api/v2/buckets", store.url);
  url.searchParams.set("org", store.org ?? "");
  url.searchParams.set("name", store.bucket ?? "");
  const body = (await getJson(
    url,
    { authorization: `Token ${store.token ?? ""}` },
    store.timeoutMs,
  )) as { buckets?: Array<{ retentionRules?: Array<{ type?: string; everySeconds?: number }> }> };
  const what = `InfluxDB bucket ${JSON.stringify(store.bucket)}`;
  const bucket = body.buckets?.[0];
  if (bucket === undefined) throw new StoreUnavailableError(`${what} does not exist`);
  const seconds = bucket.retentionRules?.find((r) => r.type === "expire")?.everySeconds ?? 0;
  return seconds === 0
    ? FOREVER(what)
    : { ms: seconds * 1_000, description: `${what} keeps ${seconds / 86_400} days` };
}

/** How long the configured store keeps readings. */
export function storeRetention(store: StoreConfig): Promise<StoreRetention> {
  if (store.type === "sqlite") {
    return Promise.resolve(FOREVER("the embedded store (no retention; docs/data-model.md 10.4)"));
  }
  return store.api === "v1" ? v1Retention(store) : v2Retention(store);
}
