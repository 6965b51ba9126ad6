import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import { z } from "zod";
import { QualityFlag, type SensorKind } from "../../contracts/index.js";
import { aggregateBuckets, checkReadingsQuery } from "./checks.js";
import { type HttpResponse, fetchTransport, nodeTransport } from "./http-transport.js";
import {
  BodyPool,
  type EncodedBatch,
  encodeBatch,
  LineEncoder,
  TAG_KEYS,
} from "./line-protocol.js";
import { parseRetryAfterMs, withRetries, type Attempt, type RetryDeps } from "./retry.js";
import {
  StoreUnavailableError,
  type AggregateBucket,
  type AggregateQuery,
  type Point,
  type ReadingsQuery,
  type StoredReading,
  type TimeSeriesStore,
  type WriteBatch,
  type WriteOutcome,
} from "./types.js";

/**
 * InfluxDB behind TimeSeriesStore: line protocol over HTTP (1.x `/write`, or 2.x/3.x
 * `/api/v2/write`), InfluxQL over `/query` (2.x/3.x answer it through their DBRP mapping).
 * Behaviour seen on influxd 1.6.7 that the code relies on is noted where it is used, and tested
 * in tests/integration/ingest/store/influxdb.test.ts.
 */

const common = {
  url: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }),
  /** Per HTTP request, including reading the answer. */
  timeoutMs: z.number().int().positive().default(10_000),
  /** Retries of a request that failed on the network, timed out, or got 429 / 5xx. */
  maxRetries: z.number().int().nonnegative().default(3),
  initialBackoffMs: z.number().int().nonnegative().default(250),
  maxBackoffMs: z.number().int().nonnegative().default(5_000),
};

/** Connection to InfluxDB. (Moves to contracts/ with the rest of the configuration.) */
export const InfluxStoreOptions = z
  .discriminatedUnion("api", [
    z.strictObject({
      ...common,
      /** InfluxDB 1.x: `/write`, user and password by basic auth. */
      api: z.literal("v1"),
      v1: z.strictObject({
        database: z.string().min(1),
        retentionPolicy: z.string().min(1).optional(),
        username: z.string().min(1).optional(),
        password: z.string().optional(),
      }),
    }),
    z.strictObject({
      ...common,
      /** InfluxDB 2.x / 3.x: `/api/v2/write` with a token; queries through the DBRP mapping. */
      api: z.literal("v2"),
      v2: z.strictObject({
        org: z.string().min(1),
        bucket: z.string().min(1),
        token: z.string().min(1),
        /** The DBRP database InfluxQL names; InfluxDB 2.x maps each bucket to its own name by default. */
        database: z.string().min(1).optional(),
        retentionPolicy: z.string().min(1).optional(),
      }),
    }),
  ])
  .refine((o) => o.maxBackoffMs >= o.initialBackoffMs, {
    error: "maxBackoffMs must be >= initialBackoffMs",
    path: ["maxBackoffMs"],
  });
export type InfluxStoreOptions = z.input<typeof InfluxStoreOptions>;

export interface InfluxStoreDeps {
  readonly log: Logger;
  /** Another HTTP stack (tests); by default node:http with keep-alive (see http-transport.ts). */
  readonly fetch?: typeof fetch;
  /** Waits between retries; by default a timer that close() cuts short. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  /** Epoch ms, to read a Retry-After date. */
  readonly now?: () => number;
}

/** InfluxDB answered a query with an error (bad InfluxQL, unknown database, no permission…). */
export class InfluxQueryError extends Error {
  readonly code = "INGEST_STORE_QUERY";
  constructor(message: string) {
    super(message);
    this.name = "InfluxQueryError";
  }
}

/** InfluxQL string escapes (`\\`, `\'`, `\"`, `\n`), shared by quoted identifiers and strings. */
function escapeInfluxQL(value: string): string {
  return value.replace(/[\\'"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}
/** A double-quoted InfluxQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${escapeInfluxQL(name)}"`;
}
/** A single-quoted InfluxQL string literal. */
export function quoteString(value: string): string {
  return `'${escapeInfluxQL(value)}'`;
}

/**
 * 400 answers that are about some lines rather than the request. influxd 1.6.7: `partial write:
 * unable to parse '<line>': <reason> dropped=0`, `partial write: field type conflict: … dropped=N`,
 * and `unable to parse …` alone when no line parsed; 2.x/3.x say `partial write …` too. Any
 * other 400 (`database is required`, a bad org…) refuses the whole request: no line is to blame.
 */
const LINE_LEVEL = /partial write|unable to parse|field type conflict|beyond retention policy/i;

/** InfluxDB 1.x capacity limits, reported like partial writes; not a problem of the points. */
const STORE_LIMIT =
  /max-values-per-tag limit exceeded|max series per database exceeded|max-series-per-database/i;

const TAGS: ReadonlySet<string> = new Set(TAG_KEYS);

const SeriesAnswer = z.object({
  /** The series' GROUP BY tags (latestOf: the device). */
  tags: z.record(z.string(), z.string()).optional(),
  columns: z.array(z.string()),
  values: z.array(z.array(z.unknown())).default([]),
});
type SeriesAnswer = z.infer<typeof SeriesAnswer>;
const QueryAnswer = z.object({
  results: z
    .array(z.object({ error: z.string().optional(), series: z.array(SeriesAnswer).optional() }))
    .optional(),
  error: z.string().optional(),
});

type HttpAnswer = HttpResponse;

type Rejection = { index: number; reason: string };

/** Lines [from, to) of an encoded batch: the whole write, or a half of a half… */
interface Run {
  readonly from: number;
  readonly to: number;
}

type WriteAnswer =
  | { readonly kind: "stored" }
  | { readonly kind: "refused-lines" | "too-large"; readonly message: string };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined; // not JSON: the caller falls back to the header or the raw text
  }
}

/** InfluxDB's own words: 1.x `{"error"}`, 2.x/3.x `{"message"}`, or the X-Influxdb-Error header. */
function errorMessage(answer: HttpAnswer): string {
  const body = parseJson(answer.text);
  if (typeof body === "object" && body !== null) {
    const { error, message } = body as { error?: unknown; message?: unknown };
    if (typeof error === "string") return error;
    if (typeof message === "string") return message;
  }
  const header = answer.header("x-influxdb-error");
  if (header !== null && header !== "") return header;
  const text = answer.text.trim();
  return text === "" ? `HTTP ${answer.status}` : text.slice(0, 500);
}

function describeFailure(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && err.name === "TimeoutError") return `timed out after ${timeoutMs} ms`;
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    const detail =
      typeof cause?.code === "string"
        ? cause.code
        : typeof cause?.message === "string"
          ? cause.message
          : undefined;
    return detail === undefined ? err.message : `${err.message} (${detail})`;
  }
  return String(err);
}

/**
 * Lines named by a parse-error answer, when that answer accounts for every line InfluxDB dropped.
 * influxd 1.6.7 writes the lines that parse and lists each one that does not as
 * `unable to parse '<line>': <reason>`, joined by newlines, with ` dropped=0`; a write error
 * (a type conflict) replaces that message altogether, so a parse-only answer that names only
 * lines of this batch, and dropped nothing else, is complete. Anything else: undefined.
 */
function linesNamedInParseError(
  message: string,
  lines: EncodedBatch,
  run: Run,
): Rejection[] | undefined {
  const dropped = / dropped=(\d+)$/.exec(message);
  if (dropped !== null && dropped[1] !== "0") return undefined;
  const listed = message.replace(/^partial write: /, "").replace(/ dropped=\d+$/, "");
  const byLine = new Map<string, number[]>();
  for (let k = run.from; k < run.to; k++) {
    const index = lines.index(k);
    const line = lines.text(k);
    const indexes = byLine.get(line);
    if (indexes === undefined) byLine.set(line, [index]);
    else indexes.push(index);
  }
  const prefix = "unable to parse '";
  const rejected: Rejection[] = [];
  for (const part of listed.split("\n")) {
    // The reason ("invalid number", "invalid tag format"…) holds no "': ", the line may.
    const end = part.lastIndexOf("': ");
    if (!part.startsWith(prefix) || end < prefix.length) return undefined;
    const indexes = byLine.get(part.slice(prefix.length, end));
    if (indexes === undefined) return undefined;
    for (const index of indexes) rejected.push({ index, reason: part });
  }
  return rejected;
}

/** A TimeSeriesStore on InfluxDB. Validates `options` (InfluxStoreOptions) and throws on bad ones. */
export function createInfluxStore(
  options: InfluxStoreOptions,
  deps: InfluxStoreDeps,
): TimeSeriesStore {
  const config = InfluxStoreOptions.parse(options);
  const log = deps.log.child({ module: "ingest/store/influxdb" });
  const transport = deps.fetch !== undefined ? fetchTransport(deps.fetch) : nodeTransport();
  const now = deps.now ?? Date.now;
  const closing = new AbortController();
  const closedError = () => new StoreUnavailableError("the InfluxDB store is closed");
  const sleep =
    deps.sleep ??
    ((ms: number) =>
      delay(ms, undefined, { signal: closing.signal }).catch(() => {
        throw closedError();
      }));
  const retryDeps = (op: string): RetryDeps => ({
    sleep,
    random: deps.random ?? Math.random,
    onRetry: ({ attempt, delayMs, reason }) =>
      log.warn({ op, attempt, delayMs, reason }, "InfluxDB did not answer; retrying"),
  });

  const base = config.url.replace(/\/+$/, "");
  const db = config.api === "v1" ? config.v1.database : (config.v2.database ?? config.v2.bucket);
  const rp = config.api === "v1" ? config.v1.retentionPolicy : config.v2.retentionPolicy;
  const authorization =
    config.api === "v2"
      ? `Token ${config.v2.token}`
      : config.v1.username !== undefined
        ? `Basic ${Buffer.from(`${config.v1.username}:${config.v1.password ?? ""}`).toString("base64")}`
        : undefined;
  const writeUrl =
    config.api === "v1"
      ? endpoint("/write", { db, rp, precision: "ms" })
      : endpoint("/api/v2/write", {
          org: config.v2.org,
          bucket: config.v2.bucket,
          precision: "ms",
        });

  function endpoint(path: string, params: Record<string, string | undefined>): URL {
    const url = new URL(base + path);
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined) url.searchParams.set(key, value);
    }
    return url;
  }

  /** `"kind"`, or `"rp"."kind"` when a retention policy is configured. */
  function measurement(kind: SensorKind): string {
    return rp === undefined
      ? quoteIdentifier(kind)
      : `${quoteIdentifier(rp)}.${quoteIdentifier(kind)}`;
  }

  /**
   * One HTTP exchange. Network failures, timeouts, 429 and 5xx are failures worth a retry; any
   * other answer is returned for the caller to judge.
   */
  async function exchange(
    op: string,
    url: URL,
    init: { method: "GET" | "POST"; body?: string | Buffer; contentType?: string },
  ): Promise<Attempt<HttpAnswer>> {
    if (closing.signal.aborted) throw closedError();
    const headers: Record<string, string> = {};
    if (authorization !== undefined) headers["authorization"] = authorization;
    if (init.contentType !== undefined) headers["content-type"] = init.contentType;
    const where = `InfluxDB ${op} ${url.origin}${url.pathname}`;
    let answer: HttpAnswer;
    try {
      answer = await transport.send(url, {
        method: init.method,
        headers,
        body: init.body,
        signal: AbortSignal.any([closing.signal, AbortSignal.timeout(config.timeoutMs)]),
      });
    } catch (err) {
      if (closing.signal.aborted) throw closedError();
      return { ok: false, reason: `${where}: ${describeFailure(err, config.timeoutMs)}` };
    }
    if (answer.status === 429 || answer.status >= 500) {
      return {
        ok: false,
        reason: `${where}: HTTP ${answer.status} ${errorMessage(answer)}`,
        retryAfterMs: parseRetryAfterMs(answer.header("retry-after"), now()),
      };
    }
    return { ok: true, value: answer };
  }

  async function postLines(lines: EncodedBatch, run: Run): Promise<WriteAnswer> {
    const body = lines.slice(run.from, run.to);
    const answer = await withRetries(
      () =>
        exchange("write", writeUrl, {
          method: "POST",
          body,
          contentType: "text/plain; charset=utf-8",
        }),
      config,
      retryDeps("write"),
    );
    if (answer.status >= 200 && answer.status < 300) return { kind: "stored" };
    const message = errorMessage(answer);
    if (answer.status === 413) return { kind: "too-large", message };
    // Store limits (max-values-per-tag, max-series-per-database) come as "partial write" too, but
    // the points are fine: keep them and retry, do not dead-letter good readings.
    if (STORE_LIMIT.test(message)) {
      log.error(
        { status: answer.status, reason: message },
        "InfluxDB is at a limit; holding the batch",
      );
      throw new StoreUnavailableError(`InfluxDB limit reached: ${message}`);
    }
    if (answer.status === 422 || (answer.status === 400 && LINE_LEVEL.test(message))) {
      return { kind: "refused-lines", message };
    }
    // 401/403/404 (bad credentials, no such database or bucket) and 400s about the request:
    // nothing wrong with the points, so the caller keeps them and tries again later.
    log.error({ status: answer.status, reason: message }, "InfluxDB refused the write request");
    throw new StoreUnavailableError(`InfluxDB refused the write: HTTP ${answer.status} ${message}`);
  }

  /**
   * Writes `batch` and adds the lines InfluxDB refused to `rejected`. influxd 1.x stores the good
   * lines of a partial write (checked against 1.6.7), so when the answer does not say which lines
   * failed, each half is sent again until the bad lines stand alone: a good line sent twice
   * overwrites itself (same series, same time).
   */
  async function writeLines(lines: EncodedBatch, run: Run, rejected: Rejection[]): Promise<void> {
    const answer = await postLines(lines, run);
    if (answer.kind === "stored") return;
    const size = run.to - run.from;
    if (answer.kind === "refused-lines") {
      const named = linesNamedInParseError(answer.message, lines, run);
      if (named !== undefined) {
        rejected.push(...named);
        return;
      }
      // `dropped=N` counts the lines that parsed but were not written: all of them, here (a
      // whole batch against a field of another type), so there is nothing to bisect.
      if (Number(/ dropped=(\d+)$/.exec(answer.message)?.[1]) === size) {
        for (let k = run.from; k < run.to; k++)
          rejected.push({ index: lines.index(k), reason: answer.message });
        return;
      }
    }
    if (size === 1) {
      rejected.push({ index: lines.index(run.from), reason: answer.message });
      return;
    }
    const middle = run.from + Math.ceil(size / 2);
    await writeLines(lines, { from: run.from, to: middle }, rejected);
    await writeLines(lines, { from: middle, to: run.to }, rejected);
  }

  /** Write bodies, used again once their write is over (every request of it has ended). */
  const bodies = new BodyPool();

  /** Send an encoded batch; what InfluxDB refused comes back with the points refused before. */
  async function send(lines: EncodedBatch, count: number): Promise<WriteOutcome> {
    const rejected: Rejection[] = [...lines.refused];
    try {
      if (lines.lineCount > 0) await writeLines(lines, { from: 0, to: lines.lineCount }, rejected);
    } finally {
      lines.release();
    }
    if (rejected.length > 0) {
      rejected.sort((a, b) => a.index - b.index);
      log.warn(
        { points: count, rejected: rejected.length, first: rejected[0] },
        "InfluxDB refused points",
      );
    }
    return { rejected };
  }

  async function query(q: string, method: "GET" | "POST" = "GET"): Promise<SeriesAnswer[]> {
    const params = { db, epoch: "ms", ...(method === "GET" ? { q } : {}) };
    const url = endpoint("/query", params);
    const answer = await withRetries(
      () =>
        exchange(
          "query",
          url,
          method === "GET"
            ? { method }
            : {
                method,
                body: new URLSearchParams({ q }).toString(),
                contentType: "application/x-www-form-urlencoded",
              },
        ),
      config,
      retryDeps("query"),
    );
    if (answer.status < 200 || answer.status >= 300) {
      throw new InfluxQueryError(`InfluxDB query: HTTP ${answer.status} ${errorMessage(answer)}`);
    }
    const parsed = QueryAnswer.safeParse(parseJson(answer.text));
    if (!parsed.success) {
      throw new InfluxQueryError(`InfluxDB query: unexpected answer ${answer.text.slice(0, 200)}`);
    }
    const error = parsed.data.error ?? parsed.data.results?.find((r) => r.error)?.error;
    if (error !== undefined) throw new InfluxQueryError(`InfluxDB query: ${error}`);
    return parsed.data.results?.[0]?.series ?? [];
  }

  function toReadings(kind: SensorKind, series: readonly SeriesAnswer[]): StoredReading[] {
    const readings: StoredReading[] = [];
    for (const { columns, values: rows } of series) {
      for (const row of rows) {
        let timeMs: unknown;
        let quality: unknown;
        let seq: unknown;
        const values: Record<string, number | boolean> = {};
        columns.forEach((column, i) => {
          const cell = row[i];
          if (column === "time") timeMs = cell;
          else if (column === "quality") quality = cell;
          else if (column === "seq") seq = cell;
          else if (!TAGS.has(column) && (typeof cell === "number" || typeof cell === "boolean")) {
            values[column] = cell;
          }
        });
        const flag = QualityFlag.safeParse(quality);
        if (typeof timeMs !== "number" || !flag.success || !Number.isSafeInteger(seq)) {
          throw new InfluxQueryError(
            `stored ${kind} point at ${String(timeMs)} lacks a time, a known quality tag or an integer seq`,
          );
        }
        readings.push({ timeMs, quality: flag.data, seq: seq as number, values });
      }
    }
    return readings;
  }

  return {
    name: "influxdb",

    async open() {
      const ping = await withRetries(
        () => exchange("ping", endpoint("/ping", {}), { method: "GET" }),
        config,
        retryDeps("ping"),
      );
      if (ping.status < 200 || ping.status >= 300) {
        throw new StoreUnavailableError(`InfluxDB ping: HTTP ${ping.status} ${errorMessage(ping)}`);
      }
      if (config.api === "v2") {
        log.info({ api: config.api, bucket: config.v2.bucket }, "InfluxDB store open");
        return; // buckets are made by whoever issues the token
      }
      try {
        // A no-op when the database exists (influxd 1.x); needs admin rights.
        await query(`CREATE DATABASE ${quoteIdentifier(db)}`, "POST");
      } catch (err) {
        if (!(err instanceof InfluxQueryError)) throw err;
        const [databases] = await query("SHOW DATABASES");
        if (!databases?.values.some((row) => row[0] === db)) throw err;
      }
      log.info({ api: config.api, database: db }, "InfluxDB store open");
    },

    batch(): WriteBatch {
      const encoder = new LineEncoder(undefined, bodies);
      return {
        add: (point) => encoder.add(point),
        get size() {
          return encoder.size;
        },
        write: () => send(encoder.finish(), encoder.size),
      };
    },

    write(points: readonly Point[]): Promise<WriteOutcome> {
      // Encoded before anything waits, and not an async function: an async function keeps its
      // arguments until it returns, and the points would wait on InfluxDB with the body. Only
      // the body (outside the JS heap) does.
      try {
        return send(encodeBatch(points, bodies), points.length);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },

    async readings(q: ReadingsQuery): Promise<StoredReading[]> {
      checkReadingsQuery(q);
      const series = await query(
        `SELECT * FROM ${measurement(q.kind)} WHERE "device" = ${quoteString(q.deviceId)}` +
          ` AND time >= ${q.fromMs}ms AND time < ${q.toMs}ms ORDER BY time ASC LIMIT ${q.limit}`,
      );
      return toReadings(q.kind, series);
    },

    async aggregate(q: AggregateQuery): Promise<AggregateBucket[]> {
      // InfluxDB answers nothing at all when no reading falls in the range, so the buckets are
      // laid out first and filled from its answer.
      const buckets = aggregateBuckets(q);
      const first = buckets[0]?.timeMs;
      if (first === undefined) return [];

      const field = quoteIdentifier(q.quantity);
      const from = measurement(q.kind);
      const device = `"device" = ${quoteString(q.deviceId)}`;
      const range = `time >= ${q.fromMs}ms AND time < ${q.toMs}ms`;
      const groupBy = `GROUP BY time(${q.intervalMs}ms) fill(null)`;
      let influxQL: string;
      switch (q.fn) {
        case "mean":
        case "max":
          influxQL = `SELECT ${q.fn.toUpperCase()}(${field}) AS "value" FROM ${from} WHERE ${device} AND ${range} ${groupBy}`;
          break;
        case "energy_mean":
          // influxd 1.6.7 refuses MEAN(POW(10, "LAeq" / 10)) ("expected field argument in
          // mean()") but takes the transformation in a subquery, and applies the outer time
          // range to it; the outer GROUP BY makes the same buckets as mean and max. The base must
          // be the float 10.0: with the integer 10 the subquery's column is typed integer and
          // 10^5.5 reaches MEAN truncated to 316227 (55 dB came back as 54.99999).
          influxQL =
            `SELECT 10 * LOG10(MEAN("energy")) AS "value" FROM` +
            ` (SELECT POW(10.0, ${field} / 10.0) AS "energy" FROM ${from} WHERE ${device})` +
            ` WHERE ${range} ${groupBy}`;
          break;
      }

      for (const { columns, values: rows } of await query(influxQL)) {
        const timeAt = columns.indexOf("time");
        const valueAt = columns.indexOf("value");
        for (const row of rows) {
          const time = row[timeAt];
          const value = row[valueAt];
          const bucket =
            typeof time === "number" ? buckets[(time - first) / q.intervalMs] : undefined;
          if (bucket === undefined || bucket.timeMs !== time) {
            throw new InfluxQueryError(`aggregate: InfluxDB answered a bucket at ${String(time)}`);
          }
          bucket.value = typeof value === "number" ? value : null;
        }
      }
      return buckets;
    },

    async latest(deviceId: string, kind: SensorKind): Promise<StoredReading | undefined> {
      const series = await query(
        `SELECT * FROM ${measurement(kind)} WHERE "device" = ${quoteString(deviceId)} ORDER BY time DESC LIMIT 1`,
      );
      return toReadings(kind, series)[0];
    },

    // The newest point of every device's series in one query (GROUP BY device, the other tags stay
    // columns), kept for the devices asked. Over the last day first: unbounded, InfluxDB opens
    // every shard of the measurement (1.3 s for five kinds at 30 days of 1,000 devices, 0.25 s
    // bounded to a day; bench query); the devices with nothing in it are asked over 30 days, then
    // over all time. The newest reading within a window that holds any is the newest of all.
    async latestOf(kind: SensorKind, deviceIds: readonly string[]) {
      const out = new Map<string, StoredReading>();
      const missing = new Set(deviceIds);
      for (const window of [`WHERE time > now() - 1d `, `WHERE time > now() - 30d `, ""]) {
        if (missing.size === 0) break;
        const series = await query(
          `SELECT * FROM ${measurement(kind)} ${window}GROUP BY "device" ORDER BY time DESC LIMIT 1`,
        );
        for (const one of series) {
          const device = one.tags?.["device"];
          if (device === undefined || !missing.has(device)) continue;
          const reading = toReadings(kind, [one])[0];
          if (reading === undefined) continue;
          out.set(device, reading);
          missing.delete(device);
        }
      }
      return out;
    },

    async ping(): Promise<boolean> {
      if (closing.signal.aborted) return false;
      try {
        const answer = await exchange("ping", endpoint("/ping", {}), { method: "GET" });
        return answer.ok && answer.value.status >= 200 && answer.value.status < 300;
      } catch (err) {
        if (err instanceof StoreUnavailableError) return false; // closed while asking
        throw err;
      }
    },

    close() {
      closing.abort();
      transport.close();
      return Promise.resolve();
    },
  };
}
