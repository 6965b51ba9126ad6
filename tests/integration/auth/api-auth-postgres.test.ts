import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionInfo, TaskApiError, TaskDetailResponse, User } from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import { buildSharedTaskSystem, type SharedTaskSystem } from "../../../tasks/app.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { until } from "../../support/broker.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  countQueries,
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { openStream, type SseReader } from "../tasks/sse-reader.js";
import {
  DEVICES,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/*
 * The API's authentication with users, sessions and tokens in PostgreSQL (issue #21): two API
 * instances ("nodes"), each with its own task system, data directory and pool, share one schema's
 * auth_* tables. Everything goes through HTTP (inject; the stream over a socket): a sign-in on one
 * node is a session on both; a token issued on one is accepted on both; a revocation made on one
 * is refused on the other within its watch interval although the lookup is cached there (for a
 * minute), and closes the token's stream there; a user disabled through one node's API is refused
 * there at once; a password change ends the user's sessions on the other node at once.
 */

const postgres = await requireService("the API's auth on PostgreSQL", providePostgres);

const PASSWORD = "correct horse battery";
const NEW_PASSWORD = "a brand new passphrase";
/** The watch's interval; lookups are cached far longer, so only the watch can refuse in time. */
const WATCH_MS = 100;
const CACHE_MS = 60_000;

interface Node {
  readonly system: SharedTaskSystem;
  readonly app: FastifyInstance;
  readonly pool: pg.Pool;
  readonly auth: PostgresTokenStore;
  base(): Promise<string>;
  close(): Promise<void>;
}

/** One node: its own directory and pool; its task and auth stores on the shared schema. */
async function openNode(schema: TestSchema, prefix: string): Promise<Node> {
  const dir = await makeTempDir(prefix);
  const pool = await schema.pool(4);
  const auth = new PostgresTokenStore(pool);
  const system = buildSharedTaskSystem(
    {
      log: pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" }),
      config: tasksConfig({ tokens: { cacheMs: CACHE_MS, watchMs: WATCH_MS } }),
      dataDir: dir,
      registry,
      metricsRegistry: new Registry(),
      now: Date.now,
      random: () => 0.5,
    },
    // The tasks on a pool of their own: the test counts the auth store's queries on `pool`.
    { tasks: new PostgresTaskStore(await schema.pool(2)), tokens: auth, holder: prefix },
  );
  system.start();
  const state = new IngestState(join(dir, "ingest.db"));
  const store: TimeSeriesStore = createSqliteStore(join(dir, "timeseries.db"));
  await store.open();
  const app = testApi({
    registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
    state,
    store,
    metrics: [system.metrics.registry],
    tasks: system.api,
  });
  let base: string | undefined;
  return {
    system,
    app,
    pool,
    auth,
    base: async () => {
      if (base === undefined) {
        await app.listen({ host: "127.0.0.1", port: 0 });
        base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      }
      return base;
    },
    async close() {
      await app.close();
      await system.stop();
      state.close();
      await store.close();
      await removeTempDir(dir);
    },
  };
}

describe.runIf(postgres)("the API's users, sessions and tokens on PostgreSQL, two nodes", () => {
  let schema: TestSchema;
  let a: Node;
  let b: Node;
  /** A service account's admin token, issued on node a. */
  let admin: string;
  const streams: SseReader[] = [];

  beforeAll(async () => {
    ({ schema } = await createMigratedSchema(postgresUrl(postgres)));
    a = await openNode(schema, "cw-auth-pg-a-");
    b = await openNode(schema, "cw-auth-pg-b-");
    for (const [id, name, district] of [
      ["zhang.wei", "Zhang Wei", "pudong"],
      ["li.na", "Li Na", "xuhui"],
    ] as const) {
      await a.auth.users.add(
        { id, name, roles: ["enforcement"], scope: { districts: [district] } },
        PASSWORD,
      );
    }
    admin = (await a.auth.add("ops-admin", "admin")).token;
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await Promise.all([a?.close(), b?.close()]);
    await schema?.drop();
  });

  const signIn = (node: Node, username: string, password = PASSWORD) =>
    node.app.inject({
      method: "POST",
      url: "/api/v1/session",
      payload: { username, password },
    });
  const session = async (node: Node, username: string, password = PASSWORD) => {
    const res = await signIn(node, username, password);
    expect(res.statusCode).toBe(200);
    const cookie = String(res.headers["set-cookie"]).split(";")[0] ?? "";
    expect(cookie).toMatch(/^cw_session=cws_/);
    return { cookie, info: SessionInfo.parse(res.json()) };
  };
  const withCookie = (node: Node, cookie: string, url = "/api/v1/session") =>
    node.app.inject({ method: "GET", url, headers: { cookie } });
  const withToken = (node: Node, token: string, url = "/api/v1/tasks") =>
    node.app.inject({ method: "GET", url, headers: { authorization: `Bearer ${token}` } });
  /** Ask `node` with `token` until it answers 401; how long that took. */
  const refusedWithin = async (node: Node, token: string, timeoutMs: number) => {
    const from = Date.now();
    let status = 0;
    while (Date.now() - from < timeoutMs) {
      status = (await withToken(node, token)).statusCode;
      if (status === 401) return Date.now() - from;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`still ${status} after ${timeoutMs} ms`);
  };

  it("signs in on one node: the session works on the other, and signing out there ends it on both", async () => {
    const wrong = await signIn(b, "zhang.wei", "not the password!");
    expect(wrong.statusCode).toBe(401);
    expect(TaskApiError.parse(wrong.json()).message).toBe("wrong user name or password");

    const { cookie, info } = await session(a, "zhang.wei");
    expect(info.user).toMatchObject({ id: "zhang.wei", roles: ["enforcement"] });
    const onB = await withCookie(b, cookie);
    expect(onB.statusCode).toBe(200);
    expect(SessionInfo.parse(onB.json()).csrfToken).toBe(info.csrfToken);
    expect((await withCookie(b, cookie, "/api/v1/tasks")).statusCode).toBe(200);

    const out = await b.app.inject({
      method: "DELETE",
      url: "/api/v1/session",
      headers: { cookie, "x-csrf-token": info.csrfToken },
    });
    expect(out.statusCode).toBe(204);
    for (const node of [a, b]) expect((await withCookie(node, cookie)).statusCode).toBe(401);
  });

  it("accepts a token on both nodes from their caches, without a round trip per request", async () => {
    const { token } = await a.auth.add("li.na@tablet", "enforcement", "li.na");
    for (const node of [a, b]) expect((await withToken(node, token)).statusCode).toBe(200);
    const counted = countQueries(b.pool);
    try {
      for (let i = 0; i < 20; i++) expect((await withToken(b, token)).statusCode).toBe(200);
    } finally {
      counted.stop();
    }
    // Only the watch's polls (one query each) — a lookup per request would be 40.
    expect(counted.count()).toBeLessThan(10);
    await a.auth.revoke("li.na@tablet");
  });

  it("refuses a token revoked on one node on the other within its watch interval, and closes its stream there", async () => {
    const { token } = await a.auth.add("li.na@laptop", "enforcement", "li.na");
    for (const node of [a, b]) expect((await withToken(node, token)).statusCode).toBe(200);
    const stream = await openStream(await b.base(), token);
    streams.push(stream);
    expect(stream.status).toBe(200);
    await until(() => b.system.stream.size() === 1, "the stream attached on b");
    // Cached on b now for a minute: only the watch can refuse it in time.
    expect((await withToken(b, token)).statusCode).toBe(200);

    const revokedAt = Date.now();
    await a.auth.revoke("li.na@laptop");
    const tookMs = await refusedWithin(b, token, 2_000);
    expect(tookMs).toBeLessThan(10 * WATCH_MS);
    const refused = await withToken(b, token);
    expect(refused.headers["www-authenticate"]).toBe('Bearer realm="citywatch"');
    expect(TaskApiError.parse(refused.json())).toMatchObject({
      error: "unauthorized",
      message: "unknown or revoked token",
    });
    await until(() => stream.ended(), "the revoked token's stream on b ended", 2_000);
    expect(Date.now() - revokedAt).toBeLessThan(2_000);
    expect(b.system.stream.size()).toBe(0);
    expect((await b.system.metrics.sseRevoked.get()).values[0]?.value).toBe(1);
    // Revoked past a's API too (as the CLI would): a polls like b.
    expect(await refusedWithin(a, token, 2_000)).toBeLessThan(10 * WATCH_MS);
  });

  it("refuses a user disabled through one node's API there at once, on the other within the interval", async () => {
    const { token } = await b.auth.add("zhang.wei@phone", "enforcement", "zhang.wei");
    const { cookie } = await session(b, "zhang.wei");
    for (const node of [a, b]) expect((await withToken(node, token)).statusCode).toBe(200);
    const patch = (disabled: boolean) =>
      a.app.inject({
        method: "PATCH",
        url: "/api/v1/users/zhang.wei",
        headers: { authorization: `Bearer ${admin}` },
        payload: { disabled },
      });
    const disabled = await patch(true);
    expect(disabled.statusCode).toBe(200);
    expect(User.parse(disabled.json()).disabled).toBe(true);
    // At once on a, whose cache held the lookup: the change was made there.
    const onA = await withToken(a, token);
    expect(onA.statusCode).toBe(401);
    expect(TaskApiError.parse(onA.json()).message).toBe("unknown or revoked token");
    // The sessions ended with the disabling, on every node at once.
    expect((await withCookie(b, cookie)).statusCode).toBe(401);
    expect(await refusedWithin(b, token, 2_000)).toBeLessThan(10 * WATCH_MS);

    expect((await patch(false)).statusCode).toBe(200);
    expect((await withToken(a, token)).statusCode).toBe(200);
    const back = Date.now();
    while ((await withToken(b, token)).statusCode !== 200) {
      expect(Date.now() - back).toBeLessThan(2_000);
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  it("ends the user's sessions on the other node when the password changes on one", async () => {
    const onB = await session(b, "li.na");
    const onA = await session(a, "li.na");
    expect((await withCookie(b, onB.cookie)).statusCode).toBe(200);
    const changed = await a.app.inject({
      method: "PUT",
      url: "/api/v1/session/password",
      headers: { cookie: onA.cookie, "x-csrf-token": onA.info.csrfToken },
      payload: { current: PASSWORD, password: NEW_PASSWORD },
    });
    expect(changed.statusCode).toBe(204);
    expect(String(changed.headers["set-cookie"])).toContain("Max-Age=0");
    for (const [node, cookie] of [
      [b, onB.cookie],
      [a, onA.cookie],
      [b, onA.cookie],
    ] as const) {
      const res = await withCookie(node, cookie, "/api/v1/tasks");
      expect(res.statusCode).toBe(401);
      expect(TaskApiError.parse(res.json()).message).toContain("the session ended");
    }
    expect((await signIn(b, "li.na")).statusCode).toBe(401);
    expect((await session(b, "li.na", NEW_PASSWORD)).info.user.id).toBe("li.na");
  });

  it("manages users on one node that the other lists and assigns tasks to", async () => {
    const headers = { authorization: `Bearer ${admin}` };
    const created = await b.app.inject({
      method: "POST",
      url: "/api/v1/users",
      headers,
      payload: {
        id: "zhou.min",
        name: "Zhou Min",
        roles: ["enforcement"],
        scope: { districts: ["pudong"] },
        password: PASSWORD,
      },
    });
    expect(created.statusCode).toBe(201);
    const dup = await a.app.inject({
      method: "POST",
      url: "/api/v1/users",
      headers,
      payload: { id: "zhou.min", name: "Z", roles: ["viewer"], scope: { cityWide: true } },
    });
    expect(dup.statusCode).toBe(409);
    const listed = await a.app.inject({ method: "GET", url: "/api/v1/users", headers });
    expect(
      listed
        .json<{ users: User[] }>()
        .users.map((u) => u.id)
        .sort(),
    ).toEqual(["li.na", "zhang.wei", "zhou.min"]);

    // cs-1 is in pudong: a task on node a, assigned to the user added on node b.
    const now = Date.now();
    await a.system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    const [task] = await a.system.shared.listTasks({ limit: 1 });
    const assign = (userId: string) =>
      a.app.inject({
        method: "POST",
        url: `/api/v1/tasks/${task?.id ?? ""}/assign`,
        headers,
        payload: { userId },
      });
    const ok = await assign("zhou.min");
    expect(ok.statusCode).toBe(200);
    expect(TaskDetailResponse.parse(ok.json()).task.assignee).toMatchObject({
      userId: "zhou.min",
      name: "Zhou Min",
    });
    expect((await assign("nobody")).statusCode).toBe(404);
  });
});
