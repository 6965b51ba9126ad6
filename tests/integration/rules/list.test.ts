import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuleList } from "../../../contracts/model/rule-list.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { startSystem } from "../../unit/tasks/fixtures.js";

/*
 * GET /api/v1/rules on the real API app (the default pack, as the configuration names it): any
 * signed-in role reads the rules in force with their clause, limits per period and placeholders;
 * no token is refused, a query parameter is a 400, and the route is in the OpenAPI document.
 */

let dir: string;
let store: TimeSeriesStore;
let state: IngestState;
let system: TaskSystem;
let app: FastifyInstance;
let viewer: string;

beforeAll(async () => {
  dir = await makeTempDir("cw-rule-list-");
  store = createSqliteStore(join(dir, "timeseries.db"));
  state = new IngestState(join(dir, "ingest.db"));
  system = startSystem(join(dir, "tasks"), { now: Date.now });
  viewer = system.tokens.add("reader", "viewer").token;
  app = testApi({
    registry: {
      devices: () => [],
      sites: () => [],
      device: () => undefined,
      site: () => undefined,
    },
    state,
    store,
    metrics: [system.metrics.registry],
    tasks: system.api,
  });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await system?.stop();
  state?.close();
  await store?.close();
  await removeTempDir(dir);
});

const get = (url: string, token: string | null = viewer) =>
  app.inject({
    method: "GET",
    url,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });

describe("GET /api/v1/rules", () => {
  it("lists the pack's rules with clause, limits per period and placeholders for a viewer", async () => {
    const res = await get("/api/v1/rules");
    expect(res.statusCode).toBe(200);
    const list = RuleList.parse(res.json());
    expect(list.region).toBe("default");
    const area = list.rules.find((r) => r.id === "noise.area.laeq");
    expect(area).toMatchObject({
      version: 2,
      file: "pack/noise.yaml",
      clause: { standard: "GB 3096-2008", section: "§5, Table 1" },
      taskKind: "environmental",
      confidence: "verified",
      condition: { type: "threshold" },
    });
    expect(area?.condition.summary).toBe(
      "energy_mean(LAeq) over 1h (clock) > day: limits.day | night: limits.night; clears at day: limits.day − 2 | night: limits.night − 2",
    );
    expect(area?.limits).toContainEqual({
      when: { zoneClass: "1" },
      values: { day: 55, night: 45 },
      clause: null,
    });
    expect(area?.periods.map((p) => [p.name, p.from, p.to])).toEqual([
      ["day", "06:00", "22:00"],
      ["night", "22:00", "06:00"],
    ]);
    expect(area?.unverified.map((u) => u.path)).toEqual(["condition.window"]);
    const placeholders = list.rules.filter((r) => r.confidence === "placeholder");
    expect(placeholders.length).toBeGreaterThan(0);
    for (const p of placeholders) expect(p.unverified.length).toBeGreaterThan(0);
    expect(new Set(list.rules.map((r) => r.id)).size).toBe(list.rules.length);
  });

  it("refuses a caller without a token and answers 400 to any query parameter", async () => {
    expect((await get("/api/v1/rules", null)).statusCode).toBe(401);
    const bad = await get("/api/v1/rules?kind=noise");
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: "bad_request" });
  });

  it("is in the OpenAPI document", async () => {
    const doc = (await get("/openapi.json")).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(doc.paths)).toContain("/api/v1/rules");
  });
});
