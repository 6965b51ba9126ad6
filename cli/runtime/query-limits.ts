import type { FastifyReply, FastifyRequest } from "fastify";
import { Counter, Gauge, type Registry } from "prom-client";
import { apiFailure } from "../../contracts/model/errors.js";
import type { RegistryView } from "../../ingest/app.js";
import type { AggregateBucket, AggregateQuery, TimeSeriesStore } from "../../ingest/store/types.js";
import { cookieValue, SESSION_COOKIE } from "../../tasks/auth/bearer.js";
import type { SensorKind } from "../../contracts/model/sensors.js";

/*
 * Bounds for readers of the readings API (issue #16 item 2). One reader must not starve the
 * devices or the other readers:
 *
 * - **Concurrency.** Queries of readings, aggregates and the latest reading in flight at once:
 *   at most `maxInFlight` in all and `maxPerCaller` per caller (its bearer token, else its
 *   browser session, else its address); beyond, 429 `too_many_requests` naming the bound (InfluxDB's answers are held in
 *   memory: 20 concurrent limit=10000 requests doubled the RSS).
 * - **Cost.** An aggregate scans the device's readings over its range: the range times the
 *   device's resolution (`expectedIntervalS`) is the readings it may scan, at most
 *   `maxScannedReadings`; beyond, 400 naming the range to ask for instead.
 * - **The event loop.** The embedded store answers synchronously, so a long aggregate blocked the
 *   whole process (devices' PUBACKs went from 3 ms to 1.2 s). It is run in chunks of
 *   `chunkSpanMs` aligned to the interval (a bucket never straddles two chunks, so the answer is
 *   the same), yielding to the event loop between chunks.
 */

export interface QueryLimitOptions {
  readonly maxInFlight: number;
  readonly maxPerCaller: number;
  readonly maxScannedReadings: number;
  readonly chunkSpanMs: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimitOptions = {
  maxInFlight: 16,
  maxPerCaller: 4,
  maxScannedReadings: 2_000_000,
  chunkSpanMs: 86_400_000,
};

/**
 * Whose queries count together: the bearer token, else the browser session (so a command
 * centre's screens behind one NAT address each have their own bound), else the address.
 */
export function callerKey(request: Pick<FastifyRequest, "headers" | "ip">): string {
  const bearer = request.headers.authorization;
  if (bearer !== undefined) return bearer;
  const session = cookieValue(request.headers.cookie, SESSION_COOKIE);
  return session === undefined ? `address ${request.ip}` : `session ${session}`;
}

/** The routes bounded: a device's readings, aggregate and latest reading; many devices' latest. */
const QUERY_ROUTE = /^\/api\/v1\/(devices\/:id\/(readings|aggregate|latest)|readings\/latest)$/;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface QueryLimits {
  /** A root `onRequest` hook: counts a query in flight until its answer closes, or 429. */
  readonly onRequest: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  /** The store as the readings API should query it: cost-bounded, chunked when synchronous. */
  readonly store: TimeSeriesStore;
  /** Queries in flight now. */
  inFlight(): number;
}

export function queryLimits(
  store: TimeSeriesStore,
  deps: { registry: Pick<RegistryView, "device">; metrics: Registry },
  options: QueryLimitOptions = DEFAULT_QUERY_LIMITS,
): QueryLimits {
  let inFlight = 0;
  const perCaller = new Map<string, number>();
  const refused = new Counter({
    name: "citywatch_api_queries_refused_total",
    help: "Readings queries refused: 429 at the bound of queries in flight (all, caller) or 400 over the cost bound (cost).",
    labelNames: ["bound"] as const,
    registers: [deps.metrics],
  });
  new Gauge({
    name: "citywatch_api_queries_in_flight",
    help: "Readings, aggregate and latest queries being answered now.",
    registers: [deps.metrics],
    collect() {
      this.set(inFlight);
    },
  });

  const onRequest = (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!QUERY_ROUTE.test(request.routeOptions.url ?? "")) return Promise.resolve();
    const caller = callerKey(request);
    const mine = perCaller.get(caller) ?? 0;
    if (inFlight >= options.maxInFlight) {
      refused.inc({ bound: "all" });
      return Promise.reject(
        apiFailure(
          "too_many_requests",
          `${inFlight} readings queries are being answered, the limit (${options.maxInFlight}); try again shortly`,
        ),
      );
    }
    if (mine >= options.maxPerCaller) {
      refused.inc({ bound: "caller" });
      return Promise.reject(
        apiFailure(
          "too_many_requests",
          `this caller has ${mine} readings queries in flight, its limit (${options.maxPerCaller}); wait for one to finish`,
        ),
      );
    }
    inFlight++;
    perCaller.set(caller, mine + 1);
    // 'close' comes when the answer is sent and when the client goes away: once either way.
    reply.raw.once("close", () => {
      inFlight--;
      const left = (perCaller.get(caller) ?? 1) - 1;
      if (left <= 0) perCaller.delete(caller);
      else perCaller.set(caller, left);
    });
    return Promise.resolve();
  };

  const costChecked = (q: AggregateQuery): void => {
    const device = deps.registry.device(q.deviceId);
    const resolutionMs = (device?.expectedIntervalS ?? 1) * 1_000;
    const scanned = Math.ceil((q.toMs - q.fromMs) / resolutionMs);
    if (scanned <= options.maxScannedReadings) return;
    refused.inc({ bound: "cost" });
    const days = Math.floor((options.maxScannedReadings * resolutionMs) / 86_400_000);
    throw apiFailure(
      "bad_request",
      `from, to: the range holds up to ${scanned} readings of ${q.deviceId} (one every ${resolutionMs / 1_000} s), more than one aggregate may scan (${options.maxScannedReadings}); ask for ${days} days or less at a time`,
      [{ path: "from", message: `at most ${days} days for this device` }],
    );
  };

  /** An aggregate of the synchronous embedded store in interval-aligned chunks, yielding between. */
  const chunked = async (q: AggregateQuery): Promise<AggregateBucket[]> => {
    const span = Math.max(1, Math.ceil(options.chunkSpanMs / q.intervalMs)) * q.intervalMs;
    if (q.toMs - q.fromMs <= span) return store.aggregate(q);
    const out: AggregateBucket[] = [];
    let from = q.fromMs;
    while (from < q.toMs) {
      const to = Math.min(q.toMs, (Math.floor(from / span) + 1) * span);
      out.push(...(await store.aggregate({ ...q, fromMs: from, toMs: to })));
      from = to;
      await yieldToLoop();
    }
    return out;
  };

  const bounded: TimeSeriesStore = {
    name: store.name,
    open: () => store.open(),
    write: (points) => store.write(points),
    readings: (q) => store.readings(q),
    aggregate(q: AggregateQuery): Promise<AggregateBucket[]> {
      try {
        costChecked(q);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      return store.name === "sqlite" ? chunked(q) : store.aggregate(q);
    },
    latest: (deviceId, kind) => store.latest(deviceId, kind),
    ...(store.latestOf === undefined
      ? {}
      : {
          latestOf: (kind: SensorKind, ids: readonly string[]) =>
            (store.latestOf as NonNullable<TimeSeriesStore["latestOf"]>)(kind, ids),
        }),
    ping: () => store.ping(),
    close: () => store.close(),
  };
  return { onRequest, store: bounded, inFlight: () => inFlight };
}
