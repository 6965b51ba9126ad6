import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import type { Registry } from "prom-client";
import { z } from "zod";
import {
  AggregateQueryParams,
  AggregateResponse,
  ApiError,
  DeadLettersQueryParams,
  DeadLettersResponse,
  DevicesResponse,
  problemsOf,
  QUANTITIES,
  type QuantitySpec,
  ReadingsQueryParams,
  ReadingsResponse,
} from "../../contracts/index.js";
import type { RegistryView } from "../../ingest/app.js";
import type { IngestState } from "../../ingest/state.js";
import type { StoredReading, TimeSeriesStore } from "../../ingest/store/types.js";
import { bearerAuth } from "../../tasks/auth/bearer.js";
import { registerTaskRoutes, type TaskApiDeps, taskOpenApiPaths } from "../../tasks/routes.js";

export interface ApiDeps {
  readonly registry: RegistryView;
  readonly state: IngestState;
  readonly store: TimeSeriesStore;
  readonly metrics: readonly Registry[];
  readonly health: () => { ok: boolean; detail: Record<string, unknown> };
  readonly onlineIntervals: number;
  readonly now: () => number;
  /** The task routes (ingest.tasks.api); absent: the API serves readings only. */
  readonly tasks?: TaskApiDeps | undefined;
  /**
   * `token` (default): the readings endpoints (devices, readings, aggregates, latest, dead
   * letters) need a bearer token of any role, checked against `tasks.tokens`; `open`: they need
   * none (a proxy in front authenticates). Without `tasks` there are no tokens, so they are open.
   */
  readonly readings?: "token" | "open" | undefined;
}

/** The readings endpoints: devices, a device's readings, aggregates and latest, dead letters. */
const READINGS_PATH = /^\/api\/v1\/(?:devices|dead-letters)(?:\/|$)/;

/** Buckets one aggregate request may produce at most. */
const MAX_BUCKETS = 10_000;
const DEFAULT_LIMIT = 1_000;

function send(reply: FastifyReply, status: number, body: ApiError) {
  return reply.code(status).send(body);
}

function badRequest(reply: FastifyReply, error: z.ZodError) {
  const problems = problemsOf(error);
  return send(reply, 400, {
    error: "bad_request",
    message: problems.map((p) => `${p.path}: ${p.message}`).join("; "),
    problems,
  });
}

function apiReading(r: StoredReading) {
  return { ts: new Date(r.timeMs).toISOString(), quality: r.quality, seq: r.seq, values: r.values };
}

const json = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: "output", unrepresentable: "any" });

/** The OpenAPI 3.1 document, generated from the zod schemas in contracts/api.ts. */
export function openApiDocument(): Record<string, unknown> {
  const idParam = {
    name: "id",
    in: "path",
    required: true,
    schema: { type: "string" },
    description: "device id",
  };
  const query = (names: Record<string, string>) =>
    Object.entries(names).map(([name, description]) => ({
      name,
      in: "query",
      required: description.startsWith("(required)"),
      schema: { type: "string" },
      description,
    }));
  // A bearer token of any role, unless the deployment set http.readings to open.
  const security = [{ bearer: [] }];
  const responses = (ok: z.ZodType) => ({
    "200": { description: "OK", content: { "application/json": { schema: json(ok) } } },
    "400": {
      description: "Bad request; every problem named",
      content: { "application/json": { schema: json(ApiError) } },
    },
    "401": {
      description: "No valid bearer token (unless http.readings is open)",
      content: { "application/json": { schema: json(ApiError) } },
    },
    "404": {
      description: "Unknown device",
      content: { "application/json": { schema: json(ApiError) } },
    },
  });
  return {
    openapi: "3.1.0",
    info: {
      title: "citywatch ingest API",
      version: "1.0.0",
      description:
        "Readings, device state and dead letters; tasks, evidence and the live task stream.",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths: {
      ...taskOpenApiPaths(),
      "/api/v1/devices": {
        get: {
          summary: "Registered devices with last-seen time and online state",
          security,
          responses: responses(DevicesResponse),
        },
      },
      "/api/v1/devices/{id}/readings": {
        get: {
          summary: "Raw readings of a device in [from, to)",
          security,
          parameters: [
            idParam,
            ...query({
              from: "(required) RFC 3339 or epoch ms",
              to: "RFC 3339 or epoch ms; default now",
              limit: "1..10000, default 1000",
            }),
          ],
          responses: responses(ReadingsResponse),
        },
      },
      "/api/v1/devices/{id}/aggregate": {
        get: {
          summary:
            "Per-interval aggregate of one quantity: mean, max, or energy mean 10·log10(mean(10^(L/10))) for levels in dB",
          security,
          parameters: [
            idParam,
            ...query({
              quantity: "(required) e.g. LAeq, pm10, ch4",
              from: "(required) RFC 3339 or epoch ms",
              to: "default now",
              interval: "(required) 60s, 1m, 15m, 1h, 1d or ms",
              fn: "mean | max | energy_mean (default mean)",
            }),
          ],
          responses: responses(AggregateResponse),
        },
      },
      "/api/v1/devices/{id}/latest": {
        get: {
          summary: "The newest reading of a device",
          security,
          parameters: [idParam],
          responses: responses(ReadingsResponse),
        },
      },
      "/api/v1/dead-letters": {
        get: {
          summary: "Rejected messages with raw payload, topic, reason and time, newest first",
          security,
          parameters: query({
            limit: "1..1000, default 100",
            before: "dead-letter id to page from",
            device: "device id",
            reason: "reason code",
          }),
          responses: responses(DeadLettersResponse),
        },
      },
    },
  };
}

/**
 * The HTTP API (fastify): devices, readings, aggregates, dead letters, OpenAPI, metrics, health.
 * Every query is validated by its zod schema; a bad request gets 400 naming each problem.
 */
export function buildApi(deps: ApiDeps): FastifyInstance {
  const app = Fastify({ logger: false });
  const openapi = openApiDocument();

  app.setNotFoundHandler((request, reply) =>
    send(reply, 404, {
      error: "not_found",
      message: `no route ${request.method} ${request.url.split("?")[0]}`,
    }),
  );
  app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500)
      return send(reply, status, { error: "bad_request", message: error.message });
    return send(reply, 503, { error: "unavailable", message: error.message });
  });

  if (deps.tasks !== undefined && (deps.readings ?? "token") === "token") {
    const authenticate = bearerAuth(deps.tasks.tokens, {
      cacheMs: deps.tasks.tokenCacheMs,
      now: deps.tasks.now,
    });
    app.addHook("onRequest", async (request, reply) => {
      if (!READINGS_PATH.test(request.url.split("?")[0] ?? "")) return;
      // Any role may read; undefined means the 401 is already sent.
      if (authenticate(request, reply) === undefined) return reply;
    });
  }

  const deviceOr404 = (id: string, reply: FastifyReply) => {
    const device = deps.registry.device(id);
    if (device === undefined)
      void send(reply, 404, { error: "not_found", message: `device ${id} is not registered` });
    return device;
  };

  app.get("/openapi.json", () => openapi);
  app.get("/healthz", (_request, reply) => {
    const health = deps.health();
    return reply
      .code(health.ok ? 200 : 503)
      .send({ status: health.ok ? "ok" : "unavailable", ...health.detail });
  });
  app.get("/metrics", async (_request, reply) => {
    const texts = await Promise.all(deps.metrics.map((r) => r.metrics()));
    return reply.type(deps.metrics[0]?.contentType ?? "text/plain").send(texts.join("\n"));
  });

  app.get("/api/v1/devices", () => {
    const now = deps.now();
    const progress = new Map(deps.state.allProgress().map((p) => [p.deviceId, p]));
    return {
      devices: deps.registry.devices().map((d) => {
        const p = progress.get(d.id);
        return {
          id: d.id,
          kind: d.kind,
          siteId: d.siteId,
          area: d.area,
          location: d.location,
          enabled: d.enabled,
          lastSeen: p === undefined ? null : new Date(p.lastSeenMs).toISOString(),
          online:
            p !== undefined &&
            now - p.lastSeenMs <= d.expectedIntervalS * 1000 * deps.onlineIntervals,
          committedSeq: p?.committedSeq ?? null,
          lastSeq: p?.lastSeq ?? null,
        };
      }),
    };
  });

  app.get<{ Params: { id: string } }>("/api/v1/devices/:id/readings", async (request, reply) => {
    const query = ReadingsQueryParams.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const device = deviceOr404(request.params.id, reply);
    if (device === undefined) return reply;
    const readings = await deps.store.readings({
      deviceId: device.id,
      kind: device.kind,
      fromMs: query.data.from,
      toMs: query.data.to ?? deps.now() + 1,
      limit: query.data.limit ?? DEFAULT_LIMIT,
    });
    return { deviceId: device.id, kind: device.kind, readings: readings.map(apiReading) };
  });

  app.get<{ Params: { id: string } }>("/api/v1/devices/:id/aggregate", async (request, reply) => {
    const query = AggregateQueryParams.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const device = deviceOr404(request.params.id, reply);
    if (device === undefined) return reply;
    const q = query.data;
    const spec = (QUANTITIES[device.kind] as Record<string, { type: string; unit?: string }>)[
      q.quantity
    ];
    if (spec === undefined || spec.type !== "number") {
      const known = (Object.entries(QUANTITIES[device.kind]) as Array<[string, QuantitySpec]>)
        .filter(([, s]) => s.type === "number")
        .map(([n]) => n);
      return send(reply, 400, {
        error: "bad_request",
        message: `quantity: ${q.quantity} is not a numeric ${device.kind} quantity; known: ${known.join(", ")}`,
        problems: [{ path: "quantity", message: `known: ${known.join(", ")}` }],
      });
    }
    if (q.fn === "energy_mean" && spec.unit !== "dB(A)") {
      return send(reply, 400, {
        error: "bad_request",
        message: `fn: energy_mean applies to levels in dB, not ${q.quantity} (${spec.unit})`,
        problems: [{ path: "fn", message: "energy_mean needs a quantity in dB(A)" }],
      });
    }
    const toMs = q.to ?? deps.now() + 1;
    if ((toMs - q.from) / q.interval > MAX_BUCKETS) {
      return send(reply, 400, {
        error: "bad_request",
        message: `interval: the range holds more than ${MAX_BUCKETS} intervals; widen the interval or narrow the range`,
        problems: [{ path: "interval", message: `more than ${MAX_BUCKETS} buckets` }],
      });
    }
    const buckets = await deps.store.aggregate({
      deviceId: device.id,
      kind: device.kind,
      quantity: q.quantity,
      fromMs: q.from,
      toMs,
      intervalMs: q.interval,
      fn: q.fn,
    });
    return {
      deviceId: device.id,
      kind: device.kind,
      quantity: q.quantity,
      fn: q.fn,
      intervalMs: q.interval,
      buckets: buckets.map((b) => ({ ts: new Date(b.timeMs).toISOString(), value: b.value })),
    };
  });

  app.get<{ Params: { id: string } }>("/api/v1/devices/:id/latest", async (request, reply) => {
    const device = deviceOr404(request.params.id, reply);
    if (device === undefined) return reply;
    const latest = await deps.store.latest(device.id, device.kind);
    if (latest === undefined)
      return send(reply, 404, {
        error: "not_found",
        message: `device ${device.id} has no readings yet`,
      });
    return { deviceId: device.id, kind: device.kind, readings: [apiReading(latest)] };
  });

  app.get("/api/v1/dead-letters", (request, reply) => {
    const query = DeadLettersQueryParams.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const rows = deps.state.deadLetters({
      limit: query.data.limit ?? 100,
      beforeId: query.data.before,
      deviceId: query.data.device,
      reason: query.data.reason,
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
  });

  if (deps.tasks !== undefined) registerTaskRoutes(app, deps.tasks);
  return app;
}
