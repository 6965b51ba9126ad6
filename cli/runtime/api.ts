import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance, type FastifySerializerCompiler } from "fastify";
import {
  createJsonSchemaTransform,
  createJsonSchemaTransformObject,
  type FastifyPluginAsyncZod,
  validatorCompiler,
} from "fastify-type-provider-zod";
import { pino } from "pino";
import { Registry } from "prom-client";
import { z } from "zod";
import { IngestConfig } from "../../contracts/index.js";
import type { StoreRetention } from "../../contracts/model/backtest.js";
import type { RegistryView } from "../../ingest/app.js";
import { readingsApi } from "../../ingest/http/readings.js";
import type { ReadingsState } from "../../ingest/http/readings.js";
import { storeRetention } from "../../ingest/store/retention.js";
import type { TimeSeriesStore } from "../../ingest/store/types.js";
import { backtestApi } from "../../rules/http/backtest.js";
import { ruleListApi } from "../../rules/http/list.js";
import { type LoadedRule, loadRules } from "../../rules/load.js";
import { bearerAuth } from "../../tasks/auth/bearer.js";
import type { TaskApiDeps } from "../../tasks/app.js";
import { taskApi } from "../../tasks/http/index.js";
import { sessionApi } from "../../tasks/http/session.js";
import { partyApi } from "../../tasks/http/parties.js";
import { openPartyRegistry } from "./registry-file.js";
import { complaintApi } from "../../tasks/http/complaints.js";
import { assessmentApi } from "../../tasks/http/assessment.js";
import { LoginLimiter } from "../../tasks/auth/login-limit.js";
import { TasksConfig } from "../../contracts/config/tasks.js";
import {
  apiErrorHandler,
  notFoundHandler,
  refuseNul,
  securityHeaders,
  sendApiError,
} from "./api-errors.js";
import { backtestDeps } from "./backtest.js";
import { consoleUi } from "./console.js";
import { type DeviceRegistry, registryApi, tileOrigins } from "./registry-api.js";
import type { CitywatchConfig } from "../../contracts/config/citywatch.js";
import { healthApi } from "./health.js";
import { publicApi } from "./public-api.js";
import { DEFAULT_TIME_ZONE } from "../../contracts/model/rule-time.js";
import { DEFAULT_QUERY_LIMITS, type QueryLimitOptions, queryLimits } from "./query-limits.js";

export interface ApiDeps {
  readonly registry: RegistryView;
  readonly state: ReadingsState;
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
  /**
   * The backtest route (with the task routes: it needs an admin token): the configured rules
   * (`ingest.rules`) and how long the store keeps readings. Absent: the default rules, region and
   * tick, and the retention of an embedded store (for ever) or an unknown one.
   */
  readonly backtest?:
    | { readonly rules: IngestConfig["rules"]; readonly retention: () => Promise<StoreRetention> }
    | undefined;
  /**
   * The rules the running process evaluates (GET /api/v1/rules). Absent: the configured rules
   * (`backtest.rules`, else the default pack) loaded once, on the first request.
   */
  readonly rules?: (() => readonly LoadedRule[]) | undefined;
  /**
   * Whom to believe about a client's address (`http.trustProxy`, fastify's `trustProxy`); absent:
   * the socket's peer.
   */
  readonly trustProxy?: boolean | number | readonly string[] | undefined;
  /** Bounds of the readings queries (query-limits.ts); absent: DEFAULT_QUERY_LIMITS. */
  readonly queryLimits?: QueryLimitOptions | undefined;
  /**
   * Users' browser sessions (`ingest.tasks.sessions`) and whether the cookie is marked Secure.
   * Absent: the defaults, not Secure.
   */
  readonly sessions?:
    { readonly config: TasksConfig["sessions"]; readonly secureCookie: boolean } | undefined;
  /**
   * The registry's routes for the console (registry-api.ts: sites, an admin's device changes,
   * the map's settings), with the task routes' auth. Absent: none of them.
   */
  readonly registryAdmin?:
    | {
        readonly registry: DeviceRegistry;
        readonly mqttPort: number;
        readonly map: CitywatchConfig["console"]["map"];
      }
    | undefined;
  /**
   * The public page's figures (`console.public`, public-api.ts): served without sign-in only
   * when enabled. Absent or disabled: the path is a 404.
   */
  readonly publicPage?: CitywatchConfig["console"]["public"] | undefined;
}

/** A store whose configuration the API was not given: the embedded one keeps everything. */
function retentionOf(store: TimeSeriesStore): () => Promise<StoreRetention> {
  if (store.name === "sqlite") return () => storeRetention({ type: "sqlite" });
  return () =>
    Promise.resolve({ ms: undefined, description: "the store's retention is not known" });
}

/** Where the interactive API documentation (Swagger UI) is served. */
export const DOCS_PATH = "/docs";
/** Where the OpenAPI document is served. */
export const OPENAPI_PATH = "/openapi.json";

/**
 * Responses are written as they are (JSON.stringify, as fastify does without a schema): the
 * route schemas document and type them, they do not reshape what a handler returns.
 */
const asIs: FastifySerializerCompiler<unknown> = () => (data) => JSON.stringify(data);

/*
 * The zod → JSON Schema conversion for the document, without the provider's default override:
 * its union clean-up empties the `anyOf` of a union of transforming branches (QueryInstant). Its
 * other cases (dates, undefined, OpenAPI 3.0 nullables) do not occur in these schemas.
 */
const zodToJsonConfig = { override: () => undefined };

/** GET /openapi.json: the document @fastify/swagger generates from every route's schema. */
const openApiRoute: FastifyPluginAsyncZod = (app) => {
  app.get(
    OPENAPI_PATH,
    {
      schema: {
        tags: ["operations"],
        summary: "This OpenAPI 3.1 document, generated from the routes' schemas",
        response: { 200: z.looseObject({ openapi: z.string() }) },
      },
    },
    () => app.swagger() as unknown as { openapi: string },
  );
  return Promise.resolve();
};

/**
 * The HTTP API (fastify): one plugin per area, each with its own auth hook — readings
 * (ingest/http), tasks, evidence and the live stream (tasks/http), health and metrics — plus the
 * OpenAPI document generated from the routes' zod schemas (/openapi.json) and Swagger UI (/docs).
 * Every error answers through the error catalogue (contracts/model/errors.ts).
 */
export function buildApi(deps: ApiDeps): FastifyInstance {
  const trustProxy = deps.trustProxy ?? false;
  const app = Fastify({
    logger: false,
    // request.ip: the sign-in throttle and the readers' bounds count it.
    trustProxy:
      typeof trustProxy === "number"
        ? (_address: string, hop: number) => hop < trustProxy
        : Array.isArray(trustProxy)
          ? [...(trustProxy as readonly string[])]
          : trustProxy === true,
    // A URL that cannot be decoded answers through the catalogue too.
    frameworkErrors: (error, _request, reply) => {
      void sendApiError(reply, "bad_request", { error: "bad_request", message: error.message });
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(asIs);
  app.setErrorHandler(apiErrorHandler);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook("onRequest", securityHeaders);
  app.addHook("preValidation", refuseNul);

  void app.register(fastifySwagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "citywatch API",
        version: "1.0.0",
        description:
          "Readings, device state and dead letters; tasks, evidence and the live task stream; rule backtests; health and metrics. Errors: the ApiError body, codes in docs/api.md.",
      },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer" },
          // A signed-in user's browser session (POST /api/v1/session); changes also need the
          // session's CSRF token in the x-csrf-token header.
          session: { type: "apiKey", in: "cookie", name: "cw_session" },
        },
      },
      tags: [
        { name: "readings", description: "Devices, readings, aggregates, dead letters" },
        { name: "tasks", description: "Tasks and the live task stream" },
        { name: "evidence", description: "Evidence export and verification" },
        { name: "people", description: "Sign-in sessions and user accounts" },
        { name: "parties", description: "Regulated parties and the credit record" },
        { name: "rules", description: "The rules in force; rule backtests over stored history" },
        { name: "public", description: "The public page's figures (off unless enabled)" },
        { name: "operations", description: "Health, metrics and this document" },
      ],
    },
    transform: createJsonSchemaTransform({ zodToJsonConfig }),
    transformObject: createJsonSchemaTransformObject({ zodToJsonConfig }),
  });
  void app.register(fastifySwaggerUi, { routePrefix: DOCS_PATH });
  void app.register(openApiRoute);
  // Readings queries: in flight at most so many (429), aggregates cost-bounded (400) and, on the
  // embedded store, answered in chunks that yield to the devices (query-limits.ts).
  const apiMetrics = new Registry();
  const limits = queryLimits(
    deps.store,
    { registry: deps.registry, metrics: apiMetrics },
    deps.queryLimits ?? DEFAULT_QUERY_LIMITS,
  );
  app.addHook("onRequest", limits.onRequest);
  void app.register(healthApi, { metrics: [...deps.metrics, apiMetrics], health: deps.health });

  const sessionConfig = deps.sessions?.config ?? TasksConfig.parse({}).sessions;
  const auth =
    deps.tasks === undefined
      ? undefined
      : bearerAuth(deps.tasks.tokens, {
          cacheMs: deps.tasks.tokenCacheMs,
          now: deps.tasks.now,
          watch: deps.tasks.tokenWatch,
          sessions: sessionConfig,
        });
  void app.register(readingsApi, {
    registry: deps.registry,
    state: deps.state,
    store: limits.store,
    onlineIntervals: deps.onlineIntervals,
    now: deps.now,
    // Any role may read; without tasks there are no tokens.
    authenticate: (deps.readings ?? "token") === "token" ? auth?.authenticate : undefined,
  });
  if (deps.tasks !== undefined && auth !== undefined) {
    void app.register(sessionApi, {
      tokens: deps.tasks.tokens,
      auth,
      limiter: new LoginLimiter(sessionConfig, deps.tasks.now),
      secureCookie: deps.sessions?.secureCookie ?? false,
    });
    void app.register(taskApi, { deps: deps.tasks, auth });
    void app.register(partyApi, { deps: deps.tasks, auth, openRegistry: openPartyRegistry });
    void app.register(complaintApi, {
      deps: deps.tasks,
      auth,
      store: limits.store,
      registry: deps.registry,
    });
    void app.register(assessmentApi, { deps: deps.tasks, auth });
    const rulesConfig = deps.backtest?.rules ?? IngestConfig.parse({}).rules;
    let loaded: readonly LoadedRule[] | undefined;
    const inForce =
      deps.rules ??
      (() => {
        if (loaded === undefined) {
          const load = loadRules({
            defaultPack: rulesConfig.defaultPack,
            directories: rulesConfig.directories,
          });
          loaded = load.ok ? load.rules : [];
        }
        return loaded;
      });
    void app.register(ruleListApi, {
      rules: () => ({ region: rulesConfig.region, rules: inForce() }),
      authenticate: auth.authenticate,
    });
    void app.register(backtestApi, {
      deps: backtestDeps({
        store: deps.store,
        registry: deps.registry,
        log: pino({ level: "silent" }),
        now: deps.now,
        retention: deps.backtest?.retention ?? retentionOf(deps.store),
      }),
      rules: rulesConfig,
      admin: auth.admin,
    });
    if (deps.registryAdmin !== undefined)
      void app.register(registryApi, {
        ...deps.registryAdmin,
        authenticate: auth.authenticate,
        admin: auth.admin,
      });
  }
  if (deps.publicPage?.enabled === true)
    void app.register(publicApi, {
      registry: deps.registry,
      store: limits.store,
      tasks: deps.tasks?.store,
      settings: deps.publicPage,
      timeZone: DEFAULT_TIME_ZONE,
      now: deps.now,
    });
  // The operators' console at / (console.ts; docs/console.md): every path outside the API.
  void app.register(consoleUi, {
    imageOrigins: deps.registryAdmin === undefined ? [] : tileOrigins(deps.registryAdmin.map),
  });
  return app;
}
