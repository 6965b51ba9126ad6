import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Device, type DeviceInput, PublicSummary } from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { Point } from "../../../ingest/store/types.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  type AssessmentFixture,
  buildAssessmentFixture,
  local,
} from "../../unit/tasks/assessment-fixture.js";
import { DEVICES, SITES } from "../../unit/tasks/fixtures.js";

/*
 * The public page's figures (GET /api/v1/public/summary, cli/runtime/public-api.ts) on the real
 * API with the real embedded store and the real task store of the assessment fixture (its
 * hand-written November timeline): no sign-in, nothing personal, hourly means that count a
 * monitor only with 45 valid minutes (GB 3095-2012 clause 8), flagged readings left out, and case
 * counts of the last 30 days worked out by hand from the fixture.
 */

const MIN = 60_000;
/** 10:20 local on Sat 5 Dec 2026: the hour shown is 09:00–10:00, the cases since 5 Nov 10:20. */
const NOW = local("2026-12-05T10:20:00");
const HOUR_FROM = local("2026-12-05T09:00:00");

const extra = (input: Partial<DeviceInput> & Pick<DeviceInput, "id" | "kind" | "siteId">) =>
  Device.parse({
    model: "M",
    serial: `SN-${input.id}`,
    location: { lat: 31.191234, lon: 121.436789 },
    area: { district: "xuhui", street: "Tianping", gridCell: "xh-002" },
    ...input,
  });

/** The fixture's devices (all in pudong) and, in xuhui, a dust monitor, a standby and a disabled one. */
const PUBLIC_DEVICES: Device[] = [
  ...DEVICES,
  extra({ id: "d-1", kind: "dust", siteId: "cs-3" }),
  extra({ id: "d-standby", kind: "dust", siteId: "cs-3", standby: true }),
  extra({ id: "n-off", kind: "noise", siteId: "cs-3", enabled: false }),
];

/** `n` one-minute readings stamped at the end of each minute from `startMs`. */
function minutes(
  device: Device,
  startMs: number,
  n: number,
  fields: (i: number) => Record<string, number>,
  quality: (i: number) => Point["tags"]["quality"] = () => "normal",
): Point[] {
  return Array.from({ length: n }, (_, i) => ({
    measurement: device.kind,
    tags: {
      device: device.id,
      site: device.siteId,
      district: device.area.district,
      grid_cell: device.area.gridCell,
      quality: quality(i),
    },
    fields: fields(i),
    seq: i + 1,
    timeMs: startMs + (i + 1) * MIN,
  }));
}

const byId = (id: string) => PUBLIC_DEVICES.find((d) => d.id === id) as Device;

describe("GET /api/v1/public/summary", () => {
  let dir: string;
  let fixture: AssessmentFixture;
  let app: FastifyInstance;
  let off: FastifyInstance;
  let state: IngestState;
  let store: ReturnType<typeof createSqliteStore>;
  let now = NOW;

  beforeAll(async () => {
    dir = await makeTempDir("cw-public-api-");
    fixture = await buildAssessmentFixture(dir);
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    await store.write([
      // n-1: a whole hour alternating 60 and 70 dB(A): energy mean 10·log10((10^6 + 10^7)/2).
      ...minutes(byId("n-1"), HOUR_FROM, 60, (i) => ({ LAeq: i % 2 === 0 ? 60 : 70 })),
      // n-1 at 09:00 sharp measured 08:59–09:00: the hour before, not counted.
      ...minutes(byId("n-1"), HOUR_FROM - MIN, 1, () => ({ LAeq: 120 })),
      // n-2: 44 valid minutes and 16 in maintenance at 90: not a valid hour.
      ...minutes(
        byId("n-2"),
        HOUR_FROM,
        60,
        (i) => ({ LAeq: i < 44 ? 50 : 90 }),
        (i) => (i < 44 ? "normal" : "maintenance"),
      ),
      // n-3: exactly 45 valid minutes at 55: a valid hour.
      ...minutes(byId("n-3"), HOUR_FROM + 15 * MIN, 45, () => ({ LAeq: 55 })),
      // d-1 in xuhui: PM10 100, PM2.5 40, and a fault-flagged spike left out.
      ...minutes(byId("d-1"), HOUR_FROM, 59, () => ({ pm10: 100, pm2_5: 40 })),
      ...minutes(
        byId("d-1"),
        HOUR_FROM + 59 * MIN,
        1,
        () => ({ pm10: 9_000, pm2_5: 9_000 }),
        () => "fault",
      ),
      // The standby monitor's readings are not published.
      ...minutes(byId("d-standby"), HOUR_FROM, 60, () => ({ pm10: 5_000, pm2_5: 5_000 })),
    ]);
    const common = {
      registry: {
        device: (id: string) => PUBLIC_DEVICES.find((d) => d.id === id),
        site: (id: string) => SITES.find((s) => s.id === id),
        devices: () => PUBLIC_DEVICES,
        sites: () => SITES,
      },
      state,
      store,
      metrics: [fixture.system.metrics.registry],
      tasks: fixture.system.api,
      now: () => now,
    };
    app = testApi({ ...common, publicPage: { enabled: true, title: "某市生态环境局", days: 30 } });
    off = testApi(common);
  });
  afterAll(async () => {
    await app.close();
    await off.close();
    await fixture.system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  const get = (on = app) => on.inject({ method: "GET", url: "/api/v1/public/summary" });

  it("is a 404 unless the deployment publishes it", async () => {
    const res = await get(off);
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ error: "not_found" });
  });

  it("answers anyone without a token, cacheable for a minute", async () => {
    const res = await get();
    expect(res.statusCode).toBe(200);
    expect(res.headers["cache-control"]).toBe("public, max-age=60");
    const summary = PublicSummary.parse(res.json());
    expect(summary.title).toBe("某市生态环境局");
    expect(summary.hour).toEqual({
      from: new Date(HOUR_FROM).toISOString(),
      to: new Date(HOUR_FROM + 60 * MIN).toISOString(),
    });
  });

  it("averages the monitors with a valid hour per district, flagged readings left out", async () => {
    const summary = PublicSummary.parse((await get()).json());
    const pudong = summary.districts.find((d) => d.district === "pudong");
    const xuhui = summary.districts.find((d) => d.district === "xuhui");
    // n-1: 10·log10(5.5·10^6) = 67.40; n-3: 55; n-2 not valid (44 minutes). (67.40 + 55) / 2.
    const n1 = 10 * Math.log10((1e6 + 1e7) / 2);
    expect(pudong?.readings).toEqual([
      {
        quantity: "LAeq",
        unit: "dB(A)",
        value: Math.round(((n1 + 55) / 2) * 10) / 10,
        monitors: 2,
        of: 3,
      },
    ]);
    expect(pudong?.readings[0]?.value).toBe(61.2);
    // The disabled noise monitor and the standby dust monitor are not counted at all.
    expect(xuhui?.readings).toEqual([
      { quantity: "pm10", unit: "µg/m³", value: 100, monitors: 1, of: 1 },
      { quantity: "pm2_5", unit: "µg/m³", value: 40, monitors: 1, of: 1 },
    ]);
  });

  it("counts the enforcement cases of the last 30 days per district, as worked out by hand", async () => {
    // Since Thu 5 Nov 10:20: B (pudong, closed), F (xuhui, closed), G (xuhui, still open); A
    // (2 Nov) is older; the emergencies and maintenance tasks are not published.
    const summary = PublicSummary.parse((await get()).json());
    const cases = Object.fromEntries(summary.districts.map((d) => [d.district, d.cases]));
    expect(cases).toEqual({
      pudong: [{ topic: "noise", casesFiled: 1, casesClosed: 1, alertsFiled: 0 }],
      xuhui: [{ topic: "noise", casesFiled: 2, casesClosed: 1, alertsFiled: 0 }],
    });
    expect(summary.cases.days).toBe(30);
  });

  it("lists where the monitors in service are, rounded to about 10 m", async () => {
    const summary = PublicSummary.parse((await get()).json());
    expect(summary.monitors).toEqual([
      { kind: "noise", district: "pudong", lat: 31.23, lon: 121.5 },
      { kind: "noise", district: "pudong", lat: 31.23, lon: 121.5 },
      { kind: "noise", district: "pudong", lat: 31.23, lon: 121.5 },
      { kind: "dust", district: "xuhui", street: "Tianping", lat: 31.1912, lon: 121.4368 },
    ]);
  });

  it("holds nothing personal: no party, site name, device or case id", async () => {
    const body = (await get()).body;
    for (const secret of [
      "Acme",
      "Other Builder",
      "Riverside",
      "91310000MA1FL0AB1X",
      "cs-1",
      "n-1",
      "d-1",
      ...Object.values(fixture.ids),
    ])
      expect(body).not.toContain(secret);
  });

  it("answers 503 unavailable when the store does not answer", async () => {
    const closed = createSqliteStore(join(dir, "closed.db"));
    await closed.open();
    await closed.close();
    const failing = testApi({
      registry: {
        device: (id: string) => PUBLIC_DEVICES.find((d) => d.id === id),
        site: (id: string) => SITES.find((s) => s.id === id),
        devices: () => PUBLIC_DEVICES,
        sites: () => SITES,
      },
      state,
      store: closed,
      metrics: [],
      now: () => now,
      publicPage: { enabled: true, title: "", days: 30 },
    });
    try {
      const res = await get(failing);
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ error: "unavailable" });
    } finally {
      await failing.close();
    }
  });

  it("computes once a minute: new data shows after the cache's minute", async () => {
    const before = PublicSummary.parse((await get()).json());
    await store.write(
      minutes(
        byId("n-2"),
        HOUR_FROM,
        60,
        () => ({ LAeq: 40 }),
        () => "normal",
      ).map((p) => ({
        ...p,
        timeMs: p.timeMs - 30_000,
      })),
    );
    now += 30_000;
    const cached = PublicSummary.parse((await get()).json());
    expect(cached.generatedAt).toBe(before.generatedAt);
    now += 31_000;
    const fresh = PublicSummary.parse((await get()).json());
    expect(fresh.generatedAt).not.toBe(before.generatedAt);
    // n-2 now has 60 valid minutes at 40 (and its 44 at 50): counted.
    expect(fresh.districts.find((d) => d.district === "pudong")?.readings[0]).toMatchObject({
      monitors: 3,
      of: 3,
    });
  });
});
