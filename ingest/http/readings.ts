import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  type Device,
  AggregateQueryParams,
  AggregateResponse,
  apiFailure,
  DeadLettersQueryParams,
  DeadLettersResponse,
  DevicesResponse,
  LatestQueryParams,
  LatestResponse,
  errorResponses,
  QUANTITIES,
  type QuantitySpec,
  ReadingsQueryParams,
  ReadingsResponse,
  type SensorKind,
} from "../../contracts/index.js";
import type { RegistryView } from "../app.js";
import type { DeviceProgress, StoredDeadLetter } from "../state.js";
import { instantProblem, QueryRangeError } from "../store/checks.js";
import type { StoredReading, TimeSeriesStore } from "../store/types.js";

/*
 * The readings API: registered devices with their delivery state, a device's raw readings,
 * per-interval aggregates and latest reading, and the dead letters. Every query is validated by
 * its zod schema in contracts/model/api.ts (a bad one is a 400 naming each problem, before the
 * device is looked up). Authentication comes from the composition root as a hook, added to this
 * plugin's own context: the readings endpoints need a token unless http.readings is open.
 */

/**
 * What the readings API reads of the ingest's state: every device's progress and the dead
 * letters. The embedded IngestState answers at once; a cluster node's (PostgresIngestState) with
 * promises.
 */
export interface ReadingsState {
  readonly ledger: { all(): DeviceProgress[] | Promise<DeviceProgress[]> };
  readonly deadLetters: {
    list(options: {
      limit: number;
      beforeId?: number | undefined;
      deviceId?: string | undefined;
      reason?: string | undefined;
    }): StoredDeadLetter[] | Promise<StoredDeadLetter[]>;
  };
}

export interface ReadingsApiOptions {
  readonly registry: RegistryView;
  readonly state: ReadingsState;
  readonly store: TimeSeriesStore;
  /** A device is online when it was seen within this many expected intervals. */
  readonly onlineIntervals: number;
  readonly now: () => number;
  /** An onRequest hook that refuses (throws) a request without valid credentials; absent: open. */
  readonly authenticate?: ((request: FastifyRequest) => Promise<void>) | undefined;
}

/** Buckets one aggregate request may produce at most. */
const MAX_BUCKETS = 10_000;
const DEFAULT_LIMIT = 1_000;
const DEFAULT_DEAD_LETTERS = 100;

const DeviceIdParams = z.object({ id: z.string().describe("device id") });

/**
 * A query range every store can answer, or a 400 `bad_range` naming `from` or `to`. InfluxDB
 * answered `to=9999999999999` with its own error as a 503; the embedded store answered nothing.
 */
function checkedRange(fromMs: number, toMs: number): { fromMs: number; toMs: number } {
  for (const [path, ms] of [
    ["from", fromMs],
    ["to", toMs],
  ] as const) {
    const problem = instantProblem(ms);
    if (problem !== undefined)
      throw apiFailure("bad_range", `${path}: ${problem}`, [{ path, message: problem }]);
  }
  return { fromMs, toMs };
}

/** A store's own range refusal (QueryRangeError) as the same 400. */
function rangeAs400(error: unknown): never {
  if (error instanceof QueryRangeError)
    throw apiFailure("bad_range", error.message, [{ path: error.field, message: error.message }]);
  throw error;
}

/**
 * Where a device's current registration begins, for a device registered again (generation 2
 * on): its readings are those timed from then on, so an id registered again at another site
 * never shows the old device's readings (issue #16 item 5). Undefined for a first registration.
 */
function registrationStart(device: Device): number | undefined {
  if ((device.generation ?? 1) <= 1 || device.registeredAt === undefined) return undefined;
  return Date.parse(device.registeredAt);
}

/** A query's from, moved to the start of the device's current registration when later. */
export const fromOf = (device: Device, fromMs: number) =>
  Math.max(fromMs, registrationStart(device) ?? fromMs);

/** A store without `latestOf`: each device's `latest`, one after the other. */
async function latestOneByOne(
  store: TimeSeriesStore,
  kind: SensorKind,
  devices: readonly Device[],
): Promise<Map<string, StoredReading>> {
  const out = new Map<string, StoredReading>();
  for (const device of devices) {
    const latest = await store.latest(device.id, kind);
    if (latest !== undefined) out.set(device.id, latest);
  }
  return out;
}

type ApiReadingBody = ReturnType<typeof apiReading>;

function apiReading(r: StoredReading) {
  return { ts: new Date(r.timeMs).toISOString(), quality: r.quality, seq: r.seq, values: r.values };
}

export const readingsApi: FastifyPluginAsyncZod<ReadingsApiOptions> = (app, deps) => {
  const open = deps.authenticate === undefined;
  if (deps.authenticate !== undefined) app.addHook("onRequest", deps.authenticate);
  // A bearer token of any role, unless the deployment set http.readings to open.
  const security = open ? [] : [{ bearer: [] }, { session: [] }];
  const unauthorized = open ? {} : { unauthorized: "no valid bearer token" };

  const deviceOr404 = (id: string) => {
    const device = deps.registry.device(id);
    if (device === undefined) throw apiFailure("not_found", `device ${id} is not registered`);
    return device;
  };

  app.get(
    "/api/v1/devices",
    {
      schema: {
        tags: ["readings"],
        summary: "Registered devices with last-seen time and online state",
        security,
        response: { 200: DevicesResponse, ...errorResponses({ ...unauthorized }) },
      },
    },
    async () => {
      const progress = new Map((await deps.state.ledger.all()).map((p) => [p.deviceId, p]));
      const now = deps.now();
      return {
        devices: deps.registry.devices().map((d) => {
          // Progress of an earlier registration of the id is not this device's.
          const found = progress.get(d.id);
          const p =
            found !== undefined && found.generation === (d.generation ?? 1) ? found : undefined;
          return {
            id: d.id,
            kind: d.kind,
            siteId: d.siteId,
            area: d.area,
            location: d.location,
            enabled: d.enabled,
            standby: d.standby === true,
            lastSeen: p === undefined ? null : new Date(p.lastSeenMs).toISOString(),
            online:
              p !== undefined &&
              now - p.lastSeenMs <= d.expectedIntervalS * 1000 * deps.onlineIntervals,
            committedSeq: p?.committedSeq ?? null,
            lastSeq: p?.lastSeq ?? null,
            model: d.model,
            ...(d.calibrationDueOn !== undefined ? { calibrationDueOn: d.calibrationDueOn } : {}),
          };
        }),
      };
    },
  );

  app.get(
    "/api/v1/devices/:id/readings",
    {
      schema: {
        tags: ["readings"],
        summary: "Raw readings of a device in [from, to), oldest first",
        security,
        params: DeviceIdParams,
        querystring: ReadingsQueryParams,
        response: {
          200: ReadingsResponse,
          ...errorResponses({
            bad_request:
              "a query parameter is missing, malformed, unknown or out of range (bad_range: from or to beyond what every store holds)",
            ...unauthorized,
            not_found: "the device is not registered",
            unavailable: "the time-series store could not answer",
          }),
        },
      },
    },
    async (request) => {
      const query = request.query;
      const device = deviceOr404(request.params.id);
      const readings = await deps.store
        .readings({
          deviceId: device.id,
          kind: device.kind,
          ...checkedRange(fromOf(device, query.from), query.to ?? deps.now() + 1),
          limit: query.limit ?? DEFAULT_LIMIT,
        })
        .catch(rangeAs400);
      return { deviceId: device.id, kind: device.kind, readings: readings.map(apiReading) };
    },
  );

  app.get(
    "/api/v1/devices/:id/aggregate",
    {
      schema: {
        tags: ["readings"],
        summary:
          "Per-interval aggregate of one quantity: mean, max, or energy mean 10·log10(mean(10^(L/10))) for levels in dB",
        security,
        params: DeviceIdParams,
        querystring: AggregateQueryParams,
        response: {
          200: AggregateResponse,
          ...errorResponses({
            bad_request:
              "a query parameter is missing, malformed, unknown or out of range; a quantity the device's kind does not have; energy_mean on a quantity not in dB(A); more than 10000 intervals (bad_range: from or to beyond what every store holds)",
            ...unauthorized,
            not_found: "the device is not registered",
            unavailable: "the time-series store could not answer",
          }),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const device = deviceOr404(request.params.id);
      const spec = (QUANTITIES[device.kind] as Record<string, { type: string; unit?: string }>)[
        q.quantity
      ];
      if (spec === undefined || spec.type !== "number") {
        const known = (Object.entries(QUANTITIES[device.kind]) as Array<[string, QuantitySpec]>)
          .filter(([, s]) => s.type === "number")
          .map(([n]) => n);
        throw apiFailure(
          "bad_request",
          `quantity: ${q.quantity} is not a numeric ${device.kind} quantity; known: ${known.join(", ")}`,
          [{ path: "quantity", message: `known: ${known.join(", ")}` }],
        );
      }
      if (q.fn === "energy_mean" && spec.unit !== "dB(A)") {
        throw apiFailure(
          "bad_request",
          `fn: energy_mean applies to levels in dB, not ${q.quantity} (${spec.unit})`,
          [{ path: "fn", message: "energy_mean needs a quantity in dB(A)" }],
        );
      }
      const { fromMs, toMs } = checkedRange(fromOf(device, q.from), q.to ?? deps.now() + 1);
      if ((toMs - q.from) / q.interval > MAX_BUCKETS) {
        throw apiFailure(
          "bad_request",
          `interval: the range holds more than ${MAX_BUCKETS} intervals; widen the interval or narrow the range`,
          [{ path: "interval", message: `more than ${MAX_BUCKETS} buckets` }],
        );
      }
      const buckets = await deps.store
        .aggregate({
          deviceId: device.id,
          kind: device.kind,
          quantity: q.quantity,
          fromMs,
          toMs,
          intervalMs: q.interval,
          fn: q.fn,
        })
        .catch(rangeAs400);
      return {
        deviceId: device.id,
        kind: device.kind,
        quantity: q.quantity,
        fn: q.fn,
        intervalMs: q.interval,
        buckets: buckets.map((b) => ({ ts: new Date(b.timeMs).toISOString(), value: b.value })),
      };
    },
  );

  app.get(
    "/api/v1/devices/:id/latest",
    {
      schema: {
        tags: ["readings"],
        summary: "The newest reading of a device (by reading time)",
        security,
        params: DeviceIdParams,
        response: {
          200: ReadingsResponse,
          ...errorResponses({
            bad_request: "the device id is malformed",
            ...unauthorized,
            not_found: "the device is not registered, or has no readings yet",
            unavailable: "the time-series store could not answer",
          }),
        },
      },
    },
    async (request) => {
      const device = deviceOr404(request.params.id);
      const found = await deps.store.latest(device.id, device.kind);
      const start = registrationStart(device);
      const latest =
        start !== undefined && found !== undefined && found.timeMs < start ? undefined : found;
      if (latest === undefined)
        throw apiFailure("not_found", `device ${device.id} has no readings yet`);
      return { deviceId: device.id, kind: device.kind, readings: [apiReading(latest)] };
    },
  );

  app.get(
    "/api/v1/readings/latest",
    {
      schema: {
        tags: ["readings"],
        summary:
          "The newest reading of many devices at once (all registered, or by kind and/or ids): one query per kind where the store has one",
        security,
        querystring: LatestQueryParams,
        response: {
          200: LatestResponse,
          ...errorResponses({
            bad_request: "kind is not a sensor kind, or ids is empty or names more than 1000",
            ...unauthorized,
            unavailable: "the time-series store could not answer",
          }),
        },
      },
    },
    async (request) => {
      const { kind, ids } = request.query;
      const unknown: string[] = [];
      const asked =
        ids === undefined
          ? deps.registry.devices()
          : [...new Set(ids)].flatMap((id) => {
              const device = deps.registry.device(id);
              if (device === undefined) unknown.push(id);
              return device === undefined ? [] : [device];
            });
      const byKind = new Map<SensorKind, Device[]>();
      for (const device of asked) {
        if (kind !== undefined && device.kind !== kind) continue;
        byKind.set(device.kind, [...(byKind.get(device.kind) ?? []), device]);
      }
      const readings: Array<{ deviceId: string; kind: SensorKind; reading: ApiReadingBody }> = [];
      for (const [k, devices] of byKind) {
        const found =
          deps.store.latestOf !== undefined
            ? await deps.store.latestOf(
                k,
                devices.map((d) => d.id),
              )
            : await latestOneByOne(deps.store, k, devices);
        for (const device of devices) {
          const latest = found.get(device.id);
          const start = registrationStart(device);
          if (latest === undefined || (start !== undefined && latest.timeMs < start)) continue;
          readings.push({ deviceId: device.id, kind: k, reading: apiReading(latest) });
        }
      }
      readings.sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
      return { readings, unknown };
    },
  );

  app.get(
    "/api/v1/dead-letters",
    {
      schema: {
        tags: ["readings"],
        summary: "Rejected messages with raw payload, topic, reason and time, newest first",
        security,
        querystring: DeadLettersQueryParams,
        response: {
          200: DeadLettersResponse,
          ...errorResponses({
            bad_request: "a query parameter is malformed, unknown or out of range",
            ...unauthorized,
          }),
        },
      },
    },
    async (request) => {
      const query = request.query;
      const rows = await deps.state.deadLetters.list({
        limit: query.limit ?? DEFAULT_DEAD_LETTERS,
        beforeId: query.before,
        deviceId: query.device,
        reason: query.reason,
      });
      const decoder = new TextDecoder("utf-8", { fatal: true });
      return {
        deadLetters: rows.map((d) => {
          let text: string | null;
          try {
            text = decoder.decode(d.payload);
          } catch {
            text = null; // not UTF-8: only payloadBase64 carries it
          }
          return {
            id: d.id,
            receivedAt: new Date(d.receivedMs).toISOString(),
            topic: d.topic,
            deviceId: d.deviceId ?? null,
            seq: d.seq ?? null,
            reason: d.reason,
            detail: d.detail,
            payload: text,
            payloadBase64: d.payload.toString("base64"),
          };
        }),
      };
    },
  );
  return Promise.resolve();
};
