import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { TokenStore } from "../../../tasks/auth/tokens.js";
import { until } from "../../support/broker.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DEVICES,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  startSystem,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";
import { bodyOf, getOwn, openStream, type SseReader } from "./sse-reader.js";

/*
 * Issue #16 items 1 and 2 (API side): a token revoked by `citywatch tokens revoke` — another
 * process, so another SQLite connection to tokens.db — is refused at its next request, its open
 * streams are closed at once and carry no event written after the revocation; streams are capped
 * per token and per user (429), and the global cap keeps room for admins.
 */
describe("token revocation and stream bounds", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  let base: string;
  /** The CLI's connection to the token file. */
  let cli: TokenStore;
  const open: SseReader[] = [];

  beforeEach(async () => {
    dir = await makeTempDir("cw-revoke-");
    system = startSystem(dir, {
      now: Date.now,
      config: tasksConfig({
        stream: {
          maxClients: 8,
          adminReserve: 2,
          maxPerToken: 3,
          maxPerUser: 4,
          heartbeatMs: 60_000,
        },
        // The old behaviour cached lookups this long; the watch must not depend on it.
        tokens: { cacheMs: 60_000, watchMs: 100 },
      }),
    });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    cli = new TokenStore(join(dir, "tokens.db"));
  });
  afterEach(async () => {
    for (const s of open.splice(0)) s.close();
    cli.close();
    await app.close();
    await system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  const stream = async (token: string) => {
    const s = await openStream(base, token);
    open.push(s);
    return s;
  };
  const get = (token: string) => getOwn(base, "/api/v1/tasks", token);

  it("refuses a revoked token's next request although its lookup is cached", async () => {
    const { token } = system.tokens.add("console", "viewer");
    const first = await get(token);
    await bodyOf(first);
    expect(first.statusCode).toBe(200); // cached for 60 s from here
    cli.revoke("console");
    const after = await get(token);
    expect(after.statusCode).toBe(401);
    expect(JSON.parse(await bodyOf(after))).toMatchObject({ error: "unauthorized" });
  });

  it("closes a revoked token's open streams at once, before any later event, and frees their slots", async () => {
    const viewer = system.tokens.add("console", "viewer").token;
    const admin = system.tokens.add("root", "admin").token;
    const revoked = await stream(viewer);
    const kept = await stream(admin);
    expect([revoked.status, kept.status]).toEqual([200, 200]);
    await until(() => system.stream.size() === 2, "two streams attached");

    cli.revoke("console");
    // An event written right after the revocation, before the watch's next poll: the publish
    // asks first, so it never reaches the revoked stream.
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await until(() => kept.events.length === 1, "the admin's stream gets the event");
    await until(() => revoked.ended(), "the revoked stream ended", 2_000);
    expect(revoked.events).toEqual([]);
    expect(system.stream.size()).toBe(1);
    expect((await system.metrics.sseRevoked.get()).values[0]?.value).toBe(1);
  });

  it("closes an idle revoked stream within the watch interval, with no event to carry", async () => {
    const viewer = system.tokens.add("console", "viewer").token;
    const s = await stream(viewer);
    await until(() => system.stream.size() === 1, "attached");
    const revokedAt = Date.now();
    cli.revoke("console");
    await until(() => s.ended(), "ended", 2_000);
    // Bound, not timing: far under the 5-s cache and the 45 s seen before.
    expect(Date.now() - revokedAt).toBeLessThan(2_000);
  });

  it("caps streams per token and per user with 429, keeps room for admins, and frees a revoked token's streams", async () => {
    const greedy = system.tokens.add("alice@laptop", "viewer").token;
    const second = system.tokens.add("alice@phone", "viewer").token;
    const bob = system.tokens.add("bob", "viewer").token;
    const carol = system.tokens.add("carol", "viewer").token;
    const admin = system.tokens.add("root", "admin").token;

    for (let i = 0; i < 3; i++) expect((await stream(greedy)).status).toBe(200);
    const overToken = await stream(greedy);
    expect(overToken.status).toBe(429);
    expect(JSON.parse(overToken.body)).toMatchObject({ error: "too_many_requests" });
    expect(overToken.body).toContain("maxPerToken = 3");
    expect((await stream(second)).status).toBe(200); // alice's 4th stream
    const overUser = await stream(second);
    expect(overUser.status).toBe(429);
    expect(overUser.body).toContain("user alice holds 4");

    // 8 clients at most, the last 2 kept for admins: bob fills to 6, carol is refused.
    for (let i = 0; i < 2; i++) expect((await stream(bob)).status).toBe(200);
    const full = await stream(carol);
    expect(full.status).toBe(503);
    expect((await stream(admin)).status).toBe(200);

    cli.revoke("alice@laptop");
    await until(() => system.stream.size() === 4, "alice@laptop's three streams freed", 2_000);
    expect((await stream(carol)).status).toBe(200);
    const capped = await system.metrics.sseCapped.get();
    expect(capped.values.map((v) => [v.labels["bound"], v.value]).sort()).toEqual([
      ["token", 1],
      ["user", 1],
    ]);
  });
});
