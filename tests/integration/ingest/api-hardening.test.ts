import { randomUUID } from "node:crypto";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Device } from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { createInfluxStore } from "../../../ingest/store/influxdb.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { provideInfluxDB } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * Issue #16 item 8, the API's part: a bad aggregate range on InfluxDB (`to=9999999999999`)
 * answered 503 with the raw InfluxDB error; 413 and 415 must carry their own codes; answers
 * carried neither `X-Content-Type-Options: nosniff` nor `Cache-Control: no-store`.
 */

const influx = await requireService("API ranges on InfluxDB", provideInfluxDB);

const device = {
  id: "noise-1",
  kind: "noise",
  model: "M",
  serial: "S",
  location: { lat: 30.6, lon: 104 },
  area: { district: "Jinjiang", gridCell: "JJ-1" },
  siteId: "site-1",
  expectedIntervalS: 60,
  enabled: true,
} as unknown as Device;

const BAD_RANGES: ReadonlyArray<[string, string]> = [
  ["/readings?from=0&to=9999999999999", "to"],
  ["/aggregate?quantity=LAeq&fn=mean&interval=1d&from=9999999999000&to=9999999999999", "from"],
  ["/aggregate?quantity=LAeq&fn=mean&interval=1d&from=0&to=9999999999999", "to"],
  ["/readings?from=2026-01-01T00:00:00Z&to=9999-12-31T00:00:00Z", "to"],
];

function apiOn(storeName: string, open: (dir: string) => TimeSeriesStore | undefined) {
  describe.runIf(storeName === "sqlite" || influx !== undefined)(`the API on ${storeName}`, () => {
    let dir: string;
    let state: IngestState;
    let store: TimeSeriesStore;
    let app: FastifyInstance;

    beforeAll(async () => {
      dir = await makeTempDir("cw-api-hardening-");
      state = new IngestState(join(dir, "ingest.db"));
      store = open(dir) as TimeSeriesStore;
      await store.open();
      app = testApi({
        registry: {
          device: (id) => (id === device.id ? device : undefined),
          site: () => undefined,
          devices: () => [device],
          sites: () => [],
        },
        state,
        store,
        metrics: [new Registry()],
      });
      // A POST route of the test's own: the framework's 413 and 415 go through the API's handler.
      app.post("/test/echo", (request) => request.body ?? {});
      await app.ready();
    });
    afterAll(async () => {
      await app.close();
      await store.close();
      state.close();
      await removeTempDir(dir);
    });

    it.each(BAD_RANGES)("answers %s with 400 bad_range naming %s", async (query, field) => {
      const res = await app.inject({ method: "GET", url: `/api/v1/devices/noise-1${query}` });
      expect(res.statusCode).toBe(400);
      const body = res.json<{ error: string; problems: Array<{ path: string }> }>();
      expect(body.error).toBe("bad_range");
      expect(body.problems.map((p) => p.path)).toEqual([field]);
      expect(JSON.stringify(body)).not.toMatch(/influx|time outside range/i);
    });

    it("answers a range at the edge of what every store holds", async () => {
      const res = await app.inject({
        method: "GET",
        url: "/api/v1/devices/noise-1/readings?from=0&to=9223372036854",
      });
      expect(res.statusCode).toBe(200);
    });

    it("answers 413 payload_too_large and 415 unsupported_media_type, not bad_request", async () => {
      const big = await app.inject({
        method: "POST",
        url: "/test/echo",
        headers: { "content-type": "application/json" },
        payload: `{"x":"${"a".repeat(2 * 1024 * 1024)}"}`,
      });
      expect(big.statusCode).toBe(413);
      expect(big.json<{ error: string }>().error).toBe("payload_too_large");
      const xml = await app.inject({
        method: "POST",
        url: "/test/echo",
        headers: { "content-type": "application/xml" },
        payload: "<x/>",
      });
      expect(xml.statusCode).toBe(415);
      expect(xml.json<{ error: string }>().error).toBe("unsupported_media_type");
    });

    it("refuses a NUL character (U+0000) anywhere in a request's text, before the route", async () => {
      const refused = await Promise.all([
        app.inject({
          method: "POST",
          url: "/test/echo",
          headers: { "content-type": "application/json" },
          payload: JSON.stringify({ note: "crew\u0000on the way" }),
        }),
        app.inject({
          method: "POST",
          url: "/test/echo",
          headers: { "content-type": "application/json" },
          payload: JSON.stringify({ deep: [{ ["k\u0000"]: 1 }] }),
        }),
        app.inject({ method: "GET", url: "/api/v1/devices/noise-1/readings?from=%00" }),
        app.inject({ method: "GET", url: "/api/v1/devices/noise%00-1/latest" }),
      ]);
      for (const answer of refused) {
        expect(answer.statusCode).toBe(400);
        expect(answer.json<{ error: string; message: string }>()).toEqual({
          error: "bad_request",
          message: "text in a request must not contain the NUL character (U+0000)",
        });
      }
      // Any other character passes through, control characters included.
      const kept = await app.inject({
        method: "POST",
        url: "/test/echo",
        headers: { "content-type": "application/json" },
        payload: JSON.stringify({ note: "a\u0001b 蓉城" }),
      });
      expect(kept.statusCode).toBe(200);
      expect(kept.json()).toEqual({ note: "a\u0001b 蓉城" });
    });

    it("puts nosniff and no-store on every answer: 200, 400, 404, 413", async () => {
      const answers = await Promise.all([
        app.inject({ method: "GET", url: "/api/v1/devices" }),
        app.inject({ method: "GET", url: "/api/v1/dead-letters" }),
        app.inject({ method: "GET", url: "/api/v1/devices/noise-1/readings?from=x" }),
        app.inject({ method: "GET", url: "/api/v1/devices/nobody/latest" }),
        app.inject({ method: "GET", url: "/no/such/route" }),
        app.inject({ method: "GET", url: "/api/v1/devices/%E0%A4%A/readings" }),
        app.inject({ method: "GET", url: "/healthz" }),
      ]);
      expect(answers.map((a) => a.statusCode)).toEqual([200, 200, 400, 404, 404, 400, 200]);
      for (const answer of answers) {
        expect(answer.headers["x-content-type-options"]).toBe("nosniff");
        expect(answer.headers["cache-control"]).toBe("no-store");
      }
    });
  });
}

apiOn("sqlite", (dir) => createSqliteStore(join(dir, "timeseries.db")));
apiOn("influxdb", () =>
  influx === undefined
    ? undefined
    : createInfluxStore(
        {
          url: influx.url,
          api: "v1",
          v1: { database: `cw_${randomUUID().slice(0, 8)}` },
          timeoutMs: 10_000,
          maxRetries: 1,
          initialBackoffMs: 5,
          maxBackoffMs: 20,
        },
        { log: pino({ level: "silent" }) },
      ),
);

afterAll(async () => {
  await influx?.stop();
});
