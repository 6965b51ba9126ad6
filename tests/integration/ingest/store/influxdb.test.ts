import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { Point as ReferencePoint } from "@influxdata/influxdb-client";
import { pino } from "pino";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SensorKind } from "../../../../contracts/index.js";
import {
  createInfluxStore,
  InfluxQueryError,
  type InfluxStoreOptions,
} from "../../../../ingest/store/influxdb.js";
import { StoreUnavailableError, type TimeSeriesStore } from "../../../../ingest/store/types.js";
import { withLatestCache } from "../../../../ingest/store/latest-cache.js";
import { freePort, provideInfluxDB, type ServiceHandle } from "../../../support/services.js";
import { requireService } from "../../../support/suite.js";
import { baseTags, mixedPoints, noise, reading, SITES, T0 } from "./points.js";
import { timeSeriesStoreSuite } from "./suite.js";

const influx = await requireService("ingest: InfluxDB store", provideInfluxDB);
afterAll(async () => {
  await influx?.stop();
});

const log = pino({ level: "silent" });

// describe.runIf does not narrow the type inside the suite.
function present(service: ServiceHandle | undefined): ServiceHandle {
  if (service === undefined) throw new Error("suite ran without its service");
  return service;
}

/** The real fetch, counting requests, so a test can tell a bisection from a single write. */
function countingFetch() {
  const paths: string[] = [];
  const counted: typeof fetch = (input, init) => {
    paths.push(new URL(input instanceof Request ? input.url : input).pathname);
    return fetch(input, init);
  };
  return { fetch: counted, paths };
}

/** InfluxQL straight to influxd, bypassing the store under test. */
async function influxQL(url: string, db: string, q: string): Promise<unknown[][]> {
  const response = await fetch(`${url}/query?db=${encodeURIComponent(db)}&epoch=ms`, {
    method: "POST",
    body: new URLSearchParams({ q }),
  });
  const body = (await response.json()) as {
    results: Array<{ error?: string; series?: Array<{ values: unknown[][] }> }>;
  };
  const [result] = body.results;
  if (result?.error !== undefined) throw new Error(result.error);
  return result?.series?.flatMap((s) => s.values) ?? [];
}

async function count(url: string, db: string, kind: SensorKind): Promise<number> {
  const [row] = await influxQL(url, db, `SELECT COUNT("seq") FROM "${kind}"`);
  return (row?.[1] as number | undefined) ?? 0;
}

/** A store on the test's influxd and database, with short retries. */
function testOptions(url: string, database: string): InfluxStoreOptions {
  return {
    url,
    api: "v1",
    v1: { database },
    timeoutMs: 10_000,
    maxRetries: 2,
    initialBackoffMs: 5,
    maxBackoffMs: 20,
  };
}

/** The store suite on the test's influxd, each open of the store wrapped by `wrap`. */
function influxSuite(wrap: (store: TimeSeriesStore) => TimeSeriesStore): void {
  timeSeriesStoreSuite({
    capabilities: {
      // InfluxDB fixes a field's type at its first write in a shard ("field type conflict").
      fixedFieldTypes: true,
      // Points are encoded into the request body as they are added (LineEncoder).
      pointByPointBatch: true,
    },
    fresh() {
      const url = present(influx).url;
      const db = `cw_${randomUUID().slice(0, 8)}`;
      const stores: TimeSeriesStore[] = [];
      return Promise.resolve({
        open: async () => {
          const store = wrap(createInfluxStore(testOptions(url, db), { log }));
          stores.push(store);
          await store.open();
          return store;
        },
        dispose: async () => {
          for (const store of stores) await store.close();
          await influxQL(url, db, `DROP DATABASE "${db}"`);
        },
      });
    },
  });
}

describe.runIf(influx)("InfluxDB store on a real influxd (v1 API): the store suite", () => {
  influxSuite((store) => store);
});

describe.runIf(influx)(
  "InfluxDB store behind the last-value cache (as the ingest opens it)",
  () => {
    influxSuite(withLatestCache);
  },
);

describe.runIf(influx)("InfluxDB store on a real influxd (v1 API)", () => {
  let url: string;
  let db: string;
  let store: TimeSeriesStore;
  let requests: ReturnType<typeof countingFetch>;

  const open = async (over: Partial<InfluxStoreOptions> = {}) => {
    requests = countingFetch();
    const s = createInfluxStore({ ...testOptions(url, db), ...over } as InfluxStoreOptions, {
      log,
      fetch: requests.fetch,
    });
    await s.open();
    requests.paths.length = 0;
    return s;
  };

  beforeEach(async () => {
    url = present(influx).url;
    db = `cw_${randomUUID().slice(0, 8)}`;
    store = await open();
  });
  afterEach(async () => {
    await store.close();
    await influxQL(url, db, `DROP DATABASE "${db}"`);
  });

  it("open creates the database, and again changes nothing", async () => {
    const databases = await influxQL(url, db, "SHOW DATABASES");
    expect(databases.map((row) => row[0])).toContain(db);
    await store.write([noise(T0, { LAeq: 60 })]);
    await store.open();
    expect(await count(url, db, "noise")).toBe(1);
    expect(await store.ping()).toBe(true);
  });

  // Reading them back is the store suite's; here: one request, and the tags' escaping on the server.
  it("writes 1,000 points of mixed kinds in one request, tag values escaped and read back", async () => {
    const points = mixedPoints(1_000);
    expect(await store.write(points)).toEqual({ rejected: [] });
    expect(requests.paths).toEqual(["/write"]);
    // Tag values went through escaping and came back as written.
    const sites = await influxQL(url, db, `SHOW TAG VALUES FROM "dust" WITH KEY = "site"`);
    expect(sites.map((row) => row[1]).sort()).toEqual([...SITES].sort());
    const districts = await influxQL(url, db, `SHOW TAG VALUES FROM "noise" WITH KEY = "district"`);
    expect(districts.map((row) => row[1]).sort()).toEqual(["Jin jiang", "锦江区"]);
  });

  it("influxd 1.6.7 stores the good lines of a partial write and says how many it dropped", async () => {
    // What the store's bisection relies on, seen on the real server.
    const post = (body: string) =>
      fetch(`${url}/write?db=${db}&precision=ms`, { method: "POST", body });
    expect((await post("m x=1 1000")).status).toBe(204);
    const partial = await post("m x=2 2000\nm x=true 3000\nm x=4 4000");
    expect(partial.status).toBe(400);
    expect(await partial.json()).toEqual({
      error:
        'partial write: field type conflict: input field "x" on measurement "m" is type boolean, already exists as type float dropped=1',
    });
    const rows = await influxQL(url, db, `SELECT "x" FROM "m"`);
    expect(rows).toEqual([
      [1000, 1],
      [2000, 2],
      [4000, 4],
    ]);
    // A tag ending in a backslash is unparseable whatever the escaping, hence toLine refuses it.
    const reference = new ReferencePoint("m").tag("site", "east\\").floatField("x", 5);
    const line = reference.toLineProtocol({ convertTime: () => "5000" })!;
    const unparseable = await post(`${line}\nm x=6 6000`);
    expect(await unparseable.json()).toEqual({
      error: `partial write: unable to parse '${line}': invalid tag format dropped=0`,
    });
  });

  it("reports the points of a type conflict by index with InfluxDB's reason, and keeps the rest", async () => {
    await store.write([
      noise(T0, { LAeq: 60 }),
      { ...noise(T0, { fanOn: true }), measurement: "cooking_fume" },
    ]);
    requests.paths.length = 0;
    const batch = Array.from({ length: 40 }, (_, i) =>
      noise(T0 + (i + 1) * 1_000, { LAeq: 50 + i }, { seq: i }),
    );
    batch[7] = noise(T0 + 8_000, { LAeq: true }, { seq: 7 });
    batch[31] = { ...noise(T0 + 32_000, { oilFume: 1.5, fanOn: 1 }), measurement: "cooking_fume" };

    const { rejected } = await store.write(batch);

    expect(rejected.map((r) => r.index)).toEqual([7, 31]);
    expect(rejected[0]?.reason).toBe(
      'partial write: field type conflict: input field "LAeq" on measurement "noise" is type boolean, already exists as type float dropped=1',
    );
    expect(rejected[1]?.reason).toMatch(
      /field type conflict: input field "fanOn" on measurement "cooking_fume" is type float, already exists as type boolean/,
    );
    // The answer did not say which lines; halves were sent again to find them.
    expect(requests.paths.length).toBeGreaterThan(2);
    expect(requests.paths.length).toBeLessThan(30);
    const stored = await store.readings({
      deviceId: "n1",
      kind: "noise",
      fromMs: T0,
      toMs: T0 + 100_000,
      limit: 100,
    });
    const good = batch.filter((_, i) => i !== 7 && i !== 31 && batch[i]?.measurement === "noise");
    expect(stored).toEqual([reading(noise(T0, { LAeq: 60 })), ...good.map(reading)]);
  });

  it("rejects a batch whose every point conflicts without sending it again", async () => {
    await store.write([noise(T0, { LAeq: 60 })]);
    requests.paths.length = 0;
    const batch = [1, 2, 3, 4, 5].map((i) => noise(T0 + i * 1_000, { LAeq: i % 2 === 0 }));
    const { rejected } = await store.write(batch);
    expect(rejected.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(rejected[0]?.reason).toMatch(/field type conflict: .* dropped=5$/);
    expect(requests.paths).toEqual(["/write"]);
    expect(await count(url, db, "noise")).toBe(1);
  });

  it("takes the refused lines from a parse-error answer without sending again", async () => {
    const huge = noise(
      T0 + 1_000,
      { LAeq: 61 },
      { tags: { ...baseTags, site: "y".repeat(70_000) } },
    );
    const batch = [noise(T0, { LAeq: 60 }), huge, noise(T0 + 2_000, { LAeq: 62 })];
    const { rejected } = await store.write(batch);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.index).toBe(1);
    expect(rejected[0]?.reason).toMatch(
      /^unable to parse 'noise,device=n1,.*': max key length exceeded: 70\d+ > 65535$/s,
    );
    expect(requests.paths).toEqual(["/write"]);
    expect(await count(url, db, "noise")).toBe(2);
  });

  it("writes a batch filled point by point as write() does, rejections by order of adding", async () => {
    await store.write([noise(T0, { LAeq: 60 })]);
    const batch = store.batch?.();
    if (batch === undefined) throw new Error("the InfluxDB store fills batches point by point");
    const points = [
      noise(T0 + 1_000, { LAeq: 61 }),
      noise(T0 + 2_000, { LAeq: Number.NaN }),
      noise(T0 + 3_000, { LAeq: true }),
      noise(T0 + 4_000, { LAeq: 64 }),
    ];
    for (const point of points) batch.add(point);
    expect(batch.size).toBe(4);
    const { rejected } = await batch.write();
    expect(rejected.map((r) => r.index)).toEqual([1, 2]);
    expect(rejected[0]?.reason).toMatch(/LAeq is NaN/);
    expect(rejected[1]?.reason).toMatch(/field type conflict/);
    const stored = await store.readings({
      deviceId: "n1",
      kind: "noise",
      fromMs: T0,
      toMs: T0 + 10_000,
      limit: 10,
    });
    expect(stored.map((r) => r.values["LAeq"])).toEqual([60, 61, 64]);
  });

  it("turns an InfluxQL error into a thrown InfluxQueryError", async () => {
    const elsewhere = createInfluxStore(
      { url, api: "v1", v1: { database: "no_such_db_here" } },
      { log },
    );
    const error = await elsewhere.latest("n1", "noise").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InfluxQueryError);
    expect((error as Error).message).toBe("InfluxDB query: database not found: no_such_db_here");
    await elsewhere.close();
  });

  it("throws StoreUnavailableError after its retries when influxd is not there", async () => {
    const port = await freePort();
    const counting = countingFetch();
    const gone = createInfluxStore(
      {
        url: `http://127.0.0.1:${port}`,
        api: "v1",
        v1: { database: db },
        maxRetries: 3,
        initialBackoffMs: 1,
        maxBackoffMs: 5,
      },
      { log, fetch: counting.fetch },
    );
    const error = await gone.write([noise(T0, { LAeq: 60 })]).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/ECONNREFUSED.*gave up after 4 attempts/);
    expect(counting.paths).toEqual(["/write", "/write", "/write", "/write"]);
    expect(await gone.ping()).toBe(false);
    await expect(gone.open()).rejects.toThrow(StoreUnavailableError);
    await gone.close();
  });
});

// An InfluxDB 2.x peer outside the system, standing in for one: it records what it is sent.
interface Recorded {
  method: string;
  url: URL;
  headers: IncomingMessage["headers"];
  body: string;
}

async function recordingPeer(answer: (request: Recorded) => { status: number; body?: string }) {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const recorded = {
        method: req.method ?? "",
        url: new URL(req.url ?? "/", "http://peer"),
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(recorded);
      const { status, body } = answer(recorded);
      res.writeHead(status, { "content-type": "application/json" }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const EMPTY_QUERY = JSON.stringify({ results: [{ statement_id: 0 }] });

describe("InfluxDB store against a recording peer", () => {
  it("v2: writes to /api/v2/write with org, bucket, precision=ms and the token", async () => {
    const peer = await recordingPeer((r) =>
      r.url.pathname === "/query" ? { status: 200, body: EMPTY_QUERY } : { status: 204 },
    );
    const store = createInfluxStore(
      {
        url: `${peer.url}/`,
        api: "v2",
        v2: { org: "city ops", bucket: "citywatch/autogen", token: "s3cr3t" },
      },
      { log },
    );
    await store.open();
    const points = [noise(T0, { LAeq: 60.5 }), noise(T0 + 1_000, { LAeq: 61 }, { seq: 2 })];
    expect(await store.write(points)).toEqual({ rejected: [] });
    await store.latest("n1", "noise");

    const [ping, write, query] = peer.requests;
    expect(peer.requests).toHaveLength(3);
    expect(ping?.url.pathname).toBe("/ping");
    expect(write?.method).toBe("POST");
    expect(write?.url.pathname).toBe("/api/v2/write");
    expect(Object.fromEntries(write!.url.searchParams)).toEqual({
      org: "city ops",
      bucket: "citywatch/autogen",
      precision: "ms",
    });
    expect(write?.headers.authorization).toBe("Token s3cr3t");
    expect(write?.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(write?.body).toBe(
      "noise,device=n1,district=Jinjiang,grid_cell=JJ-01,quality=normal,site=s1 LAeq=60.5,seq=1i 1772352000000\n" +
        "noise,device=n1,district=Jinjiang,grid_cell=JJ-01,quality=normal,site=s1 LAeq=61,seq=2i 1772352001000",
    );
    expect(query?.method).toBe("GET");
    expect(query?.headers.authorization).toBe("Token s3cr3t");
    expect(Object.fromEntries(query!.url.searchParams)).toEqual({
      db: "citywatch/autogen",
      epoch: "ms",
      q: `SELECT * FROM "noise" WHERE "device" = 'n1' ORDER BY time DESC LIMIT 1`,
    });
    await store.close();
    await peer.close();
  });

  it("v2: queries through the configured DBRP database and retention policy", async () => {
    const peer = await recordingPeer(() => ({ status: 200, body: EMPTY_QUERY }));
    const store = createInfluxStore(
      {
        url: peer.url,
        api: "v2",
        v2: { org: "o", bucket: "b", token: "t", database: "citywatch", retentionPolicy: "raw" },
      },
      { log },
    );
    await store.aggregate({
      deviceId: "n1",
      kind: "noise",
      quantity: "LAeq",
      fromMs: T0,
      toMs: T0 + 60_000,
      intervalMs: 60_000,
      fn: "energy_mean",
    });
    const [query] = peer.requests;
    expect(query?.url.searchParams.get("db")).toBe("citywatch");
    expect(query?.url.searchParams.get("q")).toBe(
      `SELECT 10 * LOG10(MEAN("energy")) AS "value" FROM (SELECT POW(10.0, "LAeq" / 10.0) AS "energy" FROM "raw"."noise" WHERE "device" = 'n1') WHERE time >= ${T0}ms AND time < ${T0 + 60_000}ms GROUP BY time(60000ms) fill(null)`,
    );
    await store.close();
    await peer.close();
  });

  it("v1: sends credentials as basic auth, never in the URL", async () => {
    const peer = await recordingPeer((r) =>
      r.url.pathname === "/query" ? { status: 200, body: EMPTY_QUERY } : { status: 204 },
    );
    const store = createInfluxStore(
      {
        url: peer.url,
        api: "v1",
        v1: { database: "cw", retentionPolicy: "raw", username: "ingest", password: "pa:ss" },
      },
      { log },
    );
    await store.open();
    await store.write([noise(T0, { LAeq: 60 })]);
    const [, create, write] = peer.requests;
    expect(create?.method).toBe("POST");
    expect(create?.body).toBe(new URLSearchParams({ q: 'CREATE DATABASE "cw"' }).toString());
    expect(write?.url.pathname).toBe("/write");
    expect(Object.fromEntries(write!.url.searchParams)).toEqual({
      db: "cw",
      rp: "raw",
      precision: "ms",
    });
    for (const r of peer.requests) {
      expect(r.headers.authorization).toBe(
        `Basic ${Buffer.from("ingest:pa:ss").toString("base64")}`,
      );
      expect(r.url.search).not.toContain("pa");
    }
    await store.close();
    await peer.close();
  });

  it("splits a batch the peer finds too large (413) until it fits", async () => {
    const peer = await recordingPeer((r) =>
      r.body.split("\n").length > 2
        ? { status: 413, body: '{"error":"Request Entity Too Large"}' }
        : { status: 204 },
    );
    const store = createInfluxStore(
      { url: peer.url, api: "v2", v2: { org: "o", bucket: "b", token: "t" } },
      { log },
    );
    const points = [0, 1, 2, 3, 4].map((i) => noise(T0 + i, { LAeq: 60 + i }));
    expect(await store.write(points)).toEqual({ rejected: [] });
    const stored = peer.requests
      .filter((r) => r.body.split("\n").length <= 2)
      .flatMap((r) => r.body.split("\n"));
    expect(stored.map((line) => / LAeq=(\d+)/.exec(line)?.[1])).toEqual([
      "60",
      "61",
      "62",
      "63",
      "64",
    ]);
    await store.close();
    await peer.close();
  });
});
