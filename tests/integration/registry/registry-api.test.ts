import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../../contracts/index.js";
import { CitywatchConfig } from "../../../contracts/config/citywatch.js";
import { DEMO_REGISTRY_FILE, readRegistryFile } from "../../../cli/runtime/registry-file.js";
import { readAreas, tileOrigins } from "../../../cli/runtime/registry-api.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import { RegistryStore } from "../../../registry/store.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { startSystem, tasksConfig } from "../../unit/tasks/fixtures.js";

/*
 * The registry's routes for the console (cli/runtime/registry-api.ts, docs/api.md section 17) on
 * a real registry file: an admin registers a device (its secret once, which authenticates), rotates
 * its secret (the old one stops), disables and enables it; other roles read the sites and the map
 * and are refused every change; a bad record is a 400 naming its fields, a taken id a 409.
 */

describe("registry API: sites, device changes, the map", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let registry: RegistryStore;
  let app: FastifyInstance;
  let admin = "";
  let viewer = "";

  beforeAll(async () => {
    dir = await makeTempDir("cw-registry-api-");
    system = startSystem(dir, { now: Date.now, config: tasksConfig({}) });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    registry = new RegistryStore(join(dir, "registry.db"));
    registry.importFile(readRegistryFile(DEMO_REGISTRY_FILE));
    app = testApi({
      registry: registry.resolvedView(),
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
      registryAdmin: {
        registry,
        mqttPort: 18830,
        map: CitywatchConfig.parse({}).console.map,
      },
    });
    admin = system.tokens.add("registrar", "admin").token;
    viewer = system.tokens.add("watcher", "command_centre").token;
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    registry.close();
    await store.close();
    await removeTempDir(dir);
  });

  const call = (method: "GET" | "POST" | "PATCH", url: string, token: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}` },
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const record = {
    id: "noise-0777",
    kind: "noise",
    siteId: "demo-site-construction",
    model: "AWA6228+",
    serial: "N-0777",
    location: { lat: 30.657, lon: 104.081 },
    area: { district: "Jinjiang", street: "Chunxi", gridCell: "JJ-CX-014" },
    calibrationDueOn: "2027-01-31",
  };

  it("registers a device for an admin only; its secret once, which authenticates", async () => {
    expect((await call("POST", "/api/v1/devices", viewer, record)).statusCode).toBe(403);
    const res = await call("POST", "/api/v1/devices", admin, record);
    expect(res.statusCode).toBe(201);
    const body = res.json<{ deviceId: string; secret: string; mqtt: object }>();
    expect(body).toMatchObject({
      deviceId: "noise-0777",
      mqtt: { port: 18830, dataTopic: "citywatch/v1/devices/noise-0777/data" },
    });
    expect(registry.authenticate("noise-0777", body.secret).ok).toBe(true);
    // The list shows it with its calibration, never a secret.
    const list = await call("GET", "/api/v1/devices", viewer);
    const listed = list.json<{ devices: Array<Record<string, unknown>> }>().devices;
    expect(listed.find((d) => d.id === "noise-0777")).toMatchObject({
      model: "AWA6228+",
      calibrationDueOn: "2027-01-31",
    });
    expect(list.body).not.toContain(body.secret);
    // Again: 409; a bad record: 400 naming the fields; an unknown site: 404.
    expect((await call("POST", "/api/v1/devices", admin, record)).statusCode).toBe(409);
    const bad = await call("POST", "/api/v1/devices", admin, { ...record, id: "x y", kind: "?" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ problems: Array<{ path: string }> }>().problems.map((p) => p.path)).toEqual(
      expect.arrayContaining(["id", "kind"]),
    );
    const nowhere = await call("POST", "/api/v1/devices", admin, {
      ...record,
      id: "noise-0778",
      siteId: "no-such-site",
    });
    expect(nowhere.statusCode).toBe(404);
  });

  it("rotates a secret (the old one stops), disables and enables; others refused", async () => {
    const before = registry.rotateSecret("noise-0777");
    expect((await call("POST", "/api/v1/devices/noise-0777/secret", viewer)).statusCode).toBe(403);
    const rotated = await call("POST", "/api/v1/devices/noise-0777/secret", admin);
    expect(rotated.statusCode).toBe(200);
    const secret = rotated.json<{ secret: string }>().secret;
    expect(registry.authenticate("noise-0777", before).ok).toBe(false);
    expect(registry.authenticate("noise-0777", secret).ok).toBe(true);
    expect((await call("POST", "/api/v1/devices/nope/secret", admin)).statusCode).toBe(404);

    const patch = (enabled: unknown, token = admin) =>
      call("PATCH", "/api/v1/devices/noise-0777", token, { enabled });
    expect((await patch(false, viewer)).statusCode).toBe(403);
    expect((await patch("no")).statusCode).toBe(400);
    expect((await patch(false)).json()).toEqual({ id: "noise-0777", enabled: false });
    expect(registry.getDevice("noise-0777")?.enabled).toBe(false);
    expect(registry.authenticate("noise-0777", secret).ok).toBe(false);
    expect((await patch(true)).statusCode).toBe(200);
    expect(registry.authenticate("noise-0777", secret).ok).toBe(true);
  });

  it("answers the sites and the map's GeoJSON base to any role", async () => {
    const sites = (await call("GET", "/api/v1/sites", viewer)).json<{
      sites: Array<{ id: string; location: { lat: number } }>;
    }>().sites;
    expect(sites.find((s) => s.id === "demo-site-river")?.location.lat).toBe(30.6539);
    // A site's party with the key of its credit record; a gauge has none.
    const listed = sites as unknown as Array<{
      id: string;
      party?: { name: string; recordKey: string };
    }>;
    expect(listed.find((s) => s.id === "demo-site-restaurant")?.party).toEqual({
      name: "Demo Hotpot Catering Ltd.",
      recordKey: "site:demo-site-restaurant",
    });
    expect(listed.find((s) => s.id === "demo-site-river")?.party).toBeUndefined();
    const map = (await call("GET", "/api/v1/map", viewer)).json<{
      tiles: unknown;
      areas: { features: Array<{ properties: { kind: string; name: string } }> };
    }>();
    expect(map.tiles).toBeNull();
    const cells = map.areas.features.filter((f) => f.properties.kind === "grid");
    // Every grid cell of the demo registry has its polygon.
    const registered = new Set(
      sites.map((s) => (s as unknown as { area: { gridCell: string } }).area.gridCell),
    );
    expect(new Set(cells.map((c) => c.properties.name))).toEqual(registered);
    expect((await app.inject({ method: "GET", url: "/api/v1/map" })).statusCode).toBe(401);
  });

  it("takes a tile template's origins into the CSP and refuses a template without {z}/{x}/{y}", () => {
    const map = CitywatchConfig.parse({
      console: {
        map: {
          tileUrl:
            "https://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=vec&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=KEY",
          tileSubdomains: "01",
        },
      },
    }).console.map;
    expect(tileOrigins(map)).toEqual(["https://t0.tianditu.gov.cn", "https://t1.tianditu.gov.cn"]);
    expect(
      CitywatchConfig.safeParse({ console: { map: { tileUrl: "https://gis.example/tiles.png" } } })
        .success,
    ).toBe(false);
    expect(() => readAreas(join(dir, "missing.geojson"))).toThrow(ConfigError);
  });
});
