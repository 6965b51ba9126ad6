import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiError,
  ApiRole,
  EvidencePackage,
  TaskApiError,
  TaskDetailResponse,
  TaskListResponse,
  type TaskKind,
} from "../../../contracts/index.js";

import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { testApi } from "../../support/ingest.js";
import {
  DEADMAN,
  DEVICES,
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  startSystem,
  T0,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/** The ingest's real fastify app with the task routes, driven through inject (real routing, hooks, serialisation). */
describe("task API", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  const tokens = {} as Record<ApiRole, string>;
  const ids = {} as Record<TaskKind, string>;

  beforeAll(async () => {
    dir = await makeTempDir("cw-task-api-");
    system = startSystem(dir, { now: Date.now, config: tasksConfig({ tokens: { cacheMs: 200 } }) });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    app = api();
    for (const role of ApiRole.options) tokens[role] = system.tokens.add(`${role}-1`, role).token;
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  /** The API over this suite's system; `readings` as http.readings sets it. */
  const api = (readings?: "token" | "open") =>
    testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
      readings,
    });

  /** Open one task of each kind, so every role meets every kind. */
  const openTasks = async () => {
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await system.service.applyAlarm(gasNotice(raise(now, { level: "IV", deviceId: "g-1" })));
    await system.service.applyAlarm({
      rule: DEADMAN,
      subjectType: "device",
      subjectId: "g-1",
      deviceIds: ["g-1"],
      decision: raise(now, { detail: "silent" }),
    });
    for (const task of system.store.listTasks({ limit: 10, state: "open" }))
      ids[task.kind] = task.id;
  };
  const get = (url: string, role?: ApiRole, headers: Record<string, string> = {}) =>
    app.inject({
      method: "GET",
      url,
      headers:
        role === undefined ? headers : { authorization: `Bearer ${tokens[role]}`, ...headers },
    });
  const move = (id: string, role: ApiRole, body: Record<string, unknown>) =>
    app.inject({
      method: "POST",
      url: `/api/v1/tasks/${id}/transitions`,
      headers: { authorization: `Bearer ${tokens[role]}` },
      payload: body,
    });

  it("answers 401 without a valid token, with a problem body and WWW-Authenticate", async () => {
    for (const headers of [
      {},
      { authorization: "Bearer cwt_wrong" },
      { authorization: "Basic abc" },
    ]) {
      const res = await get("/api/v1/tasks", undefined, headers);
      expect(res.statusCode).toBe(401);
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="citywatch"');
      expect(TaskApiError.parse(res.json()).error).toBe("unauthorized");
    }
    const revoked = system.tokens.add("leaver", "admin");
    expect(
      (
        await app.inject({
          method: "GET",
          url: "/api/v1/tasks",
          headers: { authorization: `Bearer ${revoked.token}` },
        })
      ).statusCode,
    ).toBe(200);
    system.tokens.revoke("leaver");
    await new Promise((r) => setTimeout(r, system.api.tokenCacheMs + 50));
    expect(
      (
        await app.inject({
          method: "GET",
          url: "/api/v1/tasks",
          headers: { authorization: `Bearer ${revoked.token}` },
        })
      ).statusCode,
    ).toBe(401);
  });

  it("lets every role read; refuses with 403 what a role must not do, and allows what it may", async () => {
    await openTasks();
    for (const role of ApiRole.options) {
      expect((await get("/api/v1/tasks", role)).statusCode).toBe(200);
      expect((await get(`/api/v1/tasks/${ids.emergency}`, role)).statusCode).toBe(200);
    }
    const may: Record<ApiRole, TaskKind[]> = {
      admin: ["enforcement", "emergency", "maintenance", "environmental"],
      command_centre: ["enforcement", "emergency", "maintenance", "environmental"],
      enforcement: ["enforcement", "environmental"],
      emergency: ["emergency"],
      operator: ["maintenance"],
      legal_reviewer: [],
      viewer: [],
    };
    for (const role of ApiRole.options) {
      for (const kind of ["enforcement", "emergency", "maintenance"] as const) {
        const res = await move(ids[kind], role, { to: "filed" }); // never legal: refused by role (403) or lifecycle (409)
        const expected = may[role].includes(kind) ? 409 : 403;
        expect([role, kind, res.statusCode]).toEqual([role, kind, expected]);
        if (expected === 403)
          expect(TaskApiError.parse(res.json()).message).toContain(
            `role ${role} may not act on ${kind} tasks`,
          );
      }
    }
    const ok = await move(ids.emergency, "emergency", {
      to: "acknowledged",
      note: "crew on the way",
    });
    expect(ok.statusCode).toBe(200);
    const body = TaskDetailResponse.parse(ok.json());
    expect(body.task.state).toBe("acknowledged");
    expect(body.audit.at(-1)).toMatchObject({
      actor: "emergency-1 (emergency)",
      from: "filed",
      to: "acknowledged",
      detail: "crew on the way",
    });
    expect((await move(ids.maintenance, "operator", { to: "dispatched" })).statusCode).toBe(200);
    expect((await move(ids.enforcement, "admin", { to: "dispatched" })).statusCode).toBe(200);
  });

  it("refuses bad bodies and queries with 400 naming each problem, illegal transitions with 409", async () => {
    const bad = await move(ids.enforcement, "enforcement", { to: "done", extra: 1 });
    expect(bad.statusCode).toBe(400);
    const problems = TaskApiError.parse(bad.json()).problems?.map((p) => p.path);
    expect(problems).toEqual(expect.arrayContaining(["to", "(root)"]) as unknown);
    const noReason = await move(ids.enforcement, "enforcement", { to: "closed" });
    expect(noReason.statusCode).toBe(409);
    expect(TaskApiError.parse(noReason.json()).message).toContain("closing needs a reason");
    const query = await get("/api/v1/tasks?kind=fire&limit=0", "viewer");
    expect(query.statusCode).toBe(400);
    expect(
      TaskApiError.parse(query.json())
        .problems?.map((p) => p.path)
        .sort(),
    ).toEqual(["kind", "limit"]);
    expect((await get("/api/v1/tasks/enf-999999", "viewer")).statusCode).toBe(404);
  });

  it("filters the list by kind, state, site, district, rule, flagged and filing time", async () => {
    const list = async (query: string) =>
      TaskListResponse.parse((await get(`/api/v1/tasks?${query}`, "viewer")).json())
        .tasks.map((t) => t.id)
        .sort();
    expect(await list("kind=emergency")).toEqual([ids.emergency]);
    expect(await list("state=dispatched")).toEqual([ids.enforcement, ids.maintenance].sort());
    expect(await list("site=ts-2")).toEqual([ids.emergency, ids.maintenance].sort());
    expect(await list("district=pudong&rule=noise.construction.laeq")).toEqual([ids.enforcement]);
    expect(await list("flagged=true")).toEqual([]);
    expect(await list(`from=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([]);
    expect(await list(`from=${T0}&to=${Date.now() + 1}&state=open`)).toHaveLength(3);
  });

  it("exports evidence as JSON and HTML and verifies it; a tampered copy fails", async () => {
    const json = await get(`/api/v1/tasks/${ids.enforcement}/evidence`, "viewer");
    expect(json.statusCode).toBe(200);
    const pkg = EvidencePackage.parse(json.json());
    expect(json.headers["content-disposition"]).toContain(`evidence-${ids.enforcement}-1.json`);
    const html = await get(`/api/v1/tasks/${ids.enforcement}/evidence?format=html`, "viewer");
    expect(html.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(html.headers["content-security-policy"]).toContain("default-src 'none'");
    // The document prints the hash (perhaps in groups) and escapes every value.
    expect(html.body.replace(/\s/g, "")).toContain(pkg.hash.value);
    expect(html.body).toContain("Acme &lt;Build&gt; Co.");
    expect(html.body).toContain('<html lang="zh-CN">');
    const english = await get(
      `/api/v1/tasks/${ids.enforcement}/evidence?format=html&language=en`,
      "viewer",
    );
    expect(english.body).toContain('<html lang="en">');
    expect(
      (await get(`/api/v1/tasks/${ids.enforcement}/evidence/verify`, "viewer")).json(),
    ).toMatchObject({ valid: true, problems: [] });
    const tampered = { ...pkg, computation: { ...pkg.computation, value: 54 } };
    const verify = await app.inject({
      method: "POST",
      url: "/api/v1/evidence/verify",
      headers: { authorization: `Bearer ${tokens.viewer}` },
      payload: tampered,
    });
    expect(verify.json()).toMatchObject({ valid: false, expected: pkg.hash.value });
    expect(
      verify
        .json<{ problems: Array<{ code: string }> }>()
        .problems.map((p) => p.code)
        .sort(),
    ).toEqual(["bad_signature", "differs_from_stored", "hash_mismatch"]);
    expect((await get(`/api/v1/tasks/${ids.emergency}/evidence`, "viewer")).statusCode).toBe(404); // no evidence given
  });

  it("documents the task routes in OpenAPI, and the readings endpoints need a token too", async () => {
    const doc = (await get("/openapi.json")).json<{
      paths: Record<string, { get?: { security?: unknown } }>;
    }>();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/tasks",
        "/api/v1/tasks/{id}/transitions",
        "/api/v1/tasks/stream",
      ]) as unknown,
    );
    for (const path of [
      "/api/v1/devices",
      "/api/v1/devices/{id}/readings",
      "/api/v1/devices/{id}/aggregate",
      "/api/v1/devices/{id}/latest",
      "/api/v1/dead-letters",
    ])
      expect(doc.paths[path]?.get?.security, path).toEqual([{ bearer: [] }, { session: [] }]);
    // No token, or a wrong one: 401 with the challenge. Any role reads.
    for (const url of [
      "/api/v1/devices",
      "/api/v1/dead-letters",
      "/api/v1/devices/g-1/readings?from=0",
    ]) {
      const refused = await get(url);
      expect(refused.statusCode, url).toBe(401);
      expect(refused.headers["www-authenticate"]).toBe('Bearer realm="citywatch"');
      // The body is the readings API's documented error.
      expect(ApiError.parse(refused.json())).toMatchObject({ error: "unauthorized" });
      expect((await get(url, undefined, { authorization: "Bearer nope" })).statusCode).toBe(401);
      expect((await get(url, "viewer")).statusCode, url).toBe(200);
    }
    // The documents a proxy or a probe needs stay open.
    for (const url of ["/openapi.json", "/healthz", "/metrics"])
      expect((await get(url)).statusCode, url).toBe(200);
  });

  it("serves the readings endpoints without a token when http.readings is open", async () => {
    const open = api("open");
    try {
      expect((await open.inject({ method: "GET", url: "/api/v1/devices" })).statusCode).toBe(200);
      // The task API keeps its tokens.
      expect((await open.inject({ method: "GET", url: "/api/v1/tasks" })).statusCode).toBe(401);
    } finally {
      await open.close();
    }
  });
});
