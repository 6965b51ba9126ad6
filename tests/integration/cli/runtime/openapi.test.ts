import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, RouteOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_ERRORS, ApiError } from "../../../../contracts/index.js";
import { DOCS_PATH, OPENAPI_PATH } from "../../../../cli/runtime/api.js";
import { IngestState } from "../../../../ingest/state.js";
import { createSqliteStore } from "../../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../../ingest/store/types.js";
import type { TaskSystem } from "../../../../tasks/app.js";
import { testApi } from "../../../support/ingest.js";
import { CitywatchConfig } from "../../../../contracts/config/citywatch.js";
import { RegistryStore } from "../../../../registry/store.js";
import { makeTempDir, removeTempDir } from "../../../support/process.js";
import {
  DEVICES,
  registry,
  SITES,
  startSystem,
  tasksConfig,
} from "../../../unit/tasks/fixtures.js";

/*
 * The API's documents agree with the API: every route the app registers is in the generated
 * OpenAPI document, docs/api.md's endpoint table lists exactly the document's operations and its
 * error table exactly the error catalogue, and /docs serves Swagger UI from the package.
 */

const API_MD = new URL("../../../../docs/api.md", import.meta.url);
const METHODS = ["get", "head", "post", "put", "patch", "delete", "options"] as const;

/** `GET /a/{id}` pairs of docs/api.md's endpoint table (rows that start with an operation). */
function documentedOperations(markdown: string): string[] {
  return [
    ...markdown.matchAll(/^\|\s*`(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (\/[^`\s]*)`\s*\|/gm),
  ]
    .map((m) => `${m[1]} ${m[2]}`)
    .sort();
}

/** `400 bad_request` pairs of docs/api.md's error table. */
function documentedErrors(markdown: string): string[] {
  return [...markdown.matchAll(/^\|\s*(\d{3})\s*\|\s*`([a-z_]+)`\s*\|/gm)]
    .map((m) => `${m[1]} ${m[2]}`)
    .sort();
}

/** A fastify route path in the document's form: `/a/:id` → `/a/{id}`. */
const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

interface Document {
  openapi: string;
  paths: Record<string, Partial<Record<(typeof METHODS)[number], { security?: unknown }>>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
}

describe("OpenAPI document, docs/api.md and /docs", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  let deviceRegistry: RegistryStore;
  const routes: Array<{ method: string; url: string; hidden: boolean }> = [];
  let doc: Document;

  beforeAll(async () => {
    dir = await makeTempDir("cw-openapi-");
    system = startSystem(dir, { now: Date.now, config: tasksConfig({}) });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    deviceRegistry = new RegistryStore(join(dir, "registry.db"));
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
      registryAdmin: {
        registry: deviceRegistry,
        mqttPort: 18830,
        map: CitywatchConfig.parse({}).console.map,
      },
      // Off by default; on here so the document and the table cover it.
      publicPage: { enabled: true, title: "", days: 30 },
    });
    // The plugins register their routes when the app loads, so this hook sees every one.
    app.addHook("onRoute", (route: RouteOptions) => {
      for (const method of [route.method].flat())
        routes.push({
          method,
          url: route.url,
          hidden: (route.schema as { hide?: boolean } | undefined)?.hide === true,
        });
    });
    await app.ready();
    const res = await app.inject({ method: "GET", url: OPENAPI_PATH });
    expect(res.statusCode).toBe(200);
    doc = res.json<Document>();
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    deviceRegistry.close();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  const operations = () =>
    Object.entries(doc.paths)
      .flatMap(([path, item]) =>
        METHODS.filter((m) => item[m] !== undefined).map((m) => `${m.toUpperCase()} ${path}`),
      )
      .sort();

  it("documents every registered route (HEAD twins and the UI's own routes aside)", () => {
    expect(doc.openapi).toBe("3.1.0");
    const visible = routes.filter((r) => !r.hidden && r.method !== "HEAD");
    expect(visible.length).toBeGreaterThanOrEqual(15);
    const missing = visible
      .map((r) => `${r.method} ${openApiPath(r.url)}`)
      .filter((op) => !operations().includes(op));
    expect(missing).toEqual([]);
    // Every GET answers HEAD too.
    const heads = new Set(routes.filter((r) => r.method === "HEAD").map((r) => r.url));
    expect(visible.filter((r) => r.method === "GET" && !heads.has(r.url))).toEqual([]);
    // The UI's routes are there, and hidden.
    expect(routes.some((r) => r.hidden && r.url.startsWith(DOCS_PATH))).toBe(true);
  });

  it("docs/api.md lists exactly the document's operations", () => {
    const listed = documentedOperations(readFileSync(API_MD, "utf8"));
    expect(listed).toEqual([...new Set(listed)].sort()); // none twice
    expect(listed).toEqual(operations());
  });

  it("docs/api.md lists exactly the error catalogue, and the document answers errors with it", () => {
    expect(documentedErrors(readFileSync(API_MD, "utf8"))).toEqual(
      Object.entries(API_ERRORS)
        .map(([code, e]) => `${e.status} ${code}`)
        .sort(),
    );
    const schema = doc.components.schemas.ApiError as {
      properties: { error: { enum: string[] } };
    };
    expect(schema.properties.error.enum.sort()).toEqual(Object.keys(API_ERRORS).sort());
    // Every documented error answer is the catalogue's, at the catalogue's status.
    for (const [path, item] of Object.entries(doc.paths))
      for (const method of METHODS) {
        const responses = (item[method] as { responses?: Record<string, unknown> } | undefined)
          ?.responses;
        for (const [status, response] of Object.entries(responses ?? {})) {
          if (Number(status) < 400 || path === "/healthz") continue;
          const r = response as { description: string; content: Record<string, unknown> };
          expect(r.content["application/json"], `${method} ${path} ${status}`).toEqual({
            schema: { $ref: "#/components/schemas/ApiError" },
          });
          const code = r.description.split(":")[0] as keyof typeof API_ERRORS;
          expect(API_ERRORS[code]?.status, `${method} ${path} ${status}`).toBe(Number(status));
        }
      }
  });

  it("names the bearer and session schemes on the operations that need a caller, none on the open ones", () => {
    expect(doc.components.securitySchemes).toEqual({
      bearer: { type: "http", scheme: "bearer" },
      session: { type: "apiKey", in: "cookie", name: "cw_session" },
    });
    // Open: signing in, the public evidence keys and the public page's figures. Session only: who
    // is signed in, signing out.
    const open = new Set([
      "POST /api/v1/session",
      "GET /api/v1/evidence/keys",
      "GET /api/v1/public/summary",
    ]);
    const sessionOnly = new Set(["GET /api/v1/session", "DELETE /api/v1/session"]);
    for (const op of operations()) {
      const [method, path] = op.split(" ") as [string, string];
      const security = doc.paths[path]?.[method.toLowerCase() as "get"]?.security;
      if (open.has(op)) expect(security, op).toEqual([]);
      else if (sessionOnly.has(op)) expect(security, op).toEqual([{ session: [] }]);
      else if (path.startsWith("/api/"))
        expect(security, op).toEqual([{ bearer: [] }, { session: [] }]);
      else expect(security, op).toBeUndefined();
    }
  });

  it("serves Swagger UI at /docs, its assets from the package, over the same document", async () => {
    const page = await app.inject({ method: "GET", url: DOCS_PATH });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.body).toContain("swagger-ui");
    // Every script and stylesheet the page loads is served here, none from another host.
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThan(0);
    for (const asset of assets) {
      expect(asset, asset).not.toMatch(/^(?:https?:)?\/\//);
      const url = asset.startsWith("/") ? asset : `${DOCS_PATH}/${asset.replace(/^\.\//, "")}`;
      expect((await app.inject({ method: "GET", url })).statusCode, url).toBe(200);
    }
    const json = await app.inject({ method: "GET", url: `${DOCS_PATH}/json` });
    expect(json.json<Document>().paths).toEqual(doc.paths);
  });

  it("answers unknown routes with the catalogue's not_found", async () => {
    const res = await app.inject({ method: "PUT", url: "/api/v1/devices" });
    expect(res.statusCode).toBe(404);
    expect(ApiError.parse(res.json())).toEqual({
      error: "not_found",
      message: "no route PUT /api/v1/devices",
    });
  });
});
