import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import type { MqttClient } from "mqtt";
import { Registry } from "prom-client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { queryLimits } from "../../../cli/runtime/query-limits.js";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import {
  registryViewOf,
  startLocalIngest,
  testApi,
  type TestIngest,
} from "../../support/ingest.js";
import { bodyOf, getOwn, openStream } from "../../integration/tasks/sse-reader.js";
import { dataTopic, noiseUplink } from "../flapping/all-in-one.js";

/*
 * Issue #16 item 2 as a load test that asserts bounds, not times. One greedy reader fires 40
 * aggregates over three years (300,000 readings each) at once on the embedded store, three others
 * three each, while a device publishes and a probe asks /healthz: the greedy token gets 429 beyond its bound, the
 * others beyond the global bound; every /healthz is answered 200; every device message is
 * acknowledged and committed; the chunked aggregate answers exactly what the store answers in
 * one piece; an aggregate over a range whose readings exceed the cost bound is a 400 saying what
 * to ask instead. And 100 streams of one viewer token do not lock out an admin (item 2's SSE half).
 */

const YEAR = 365 * 86_400_000;
const DAY = 86_400_000;
const END = Date.UTC(2026, 0, 1);
const READINGS = 300_000;
const STEP = Math.floor((3 * YEAR) / READINGS); // one every ~5 min

let dir: string;
let t: TestBroker;
let ingest: TestIngest;
let app: FastifyInstance;
let base: string;
let device: MqttClient;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-readers-"));
  t = await startTestBroker(
    { limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } },
    { dataDir: dir },
  );
  t.addDevice("noise-big", "noise", { expectedIntervalS: 300 });
  t.addDevice("noise-fast", "noise", { expectedIntervalS: 1 });
  const secret = t.addDevice("noise-live", "noise");
  ingest = await startLocalIngest(t, { dataDir: dir });
  // Three years of history, written straight into the embedded store's table.
  const db = new Database(join(dir, "timeseries.db"));
  const insert = db.prepare(
    "INSERT INTO readings (measurement, device, time_ms, seq, quality, site, district, grid_cell, zone, fields) VALUES ('noise', 'noise-big', ?, ?, 'normal', 'site-1', 'Test', 'T-1', NULL, ?)",
  );
  db.transaction(() => {
    for (let i = 0; i < READINGS; i++)
      insert.run(END - 3 * YEAR + i * STEP, i + 1, `{"LAeq":${40 + (i % 37)}}`);
  })();
  db.close();
  app = testApi({
    registry: registryViewOf(t),
    state: ingest.state,
    store: ingest.store,
    metrics: [ingest.metrics.registry],
    tasks: ingest.tasks.api,
    queryLimits: {
      maxInFlight: 6,
      maxPerCaller: 2,
      maxScannedReadings: 1_000_000,
      chunkSpanMs: 30 * DAY,
    },
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  for (const [name, role] of [
    ["greedy", "viewer"],
    ["a", "viewer"],
    ["b", "viewer"],
    ["c", "viewer"],
    ["root", "admin"],
  ] as const)
    tokens[name] = ingest.tasks.tokens.add(name, role).token;
  device = await t.connect({ username: "noise-live", password: secret });
}, 60_000);

afterAll(async () => {
  await device.endAsync(true).catch(() => undefined);
  await app.close();
  await ingest.stop();
  await t.stop();
  rmSync(dir, { recursive: true, force: true });
});

const aggregatePath = (id: string, from: number, to: number, interval: number) =>
  `/api/v1/devices/${id}/aggregate?quantity=LAeq&fn=mean&from=${from}&to=${to}&interval=${interval}`;

async function status(path: string, token: string): Promise<{ status: number; body: string }> {
  const res = await getOwn(base, path, token);
  return { status: res.statusCode ?? 0, body: await bodyOf(res) };
}

it("bounds concurrent aggregates per caller and in all, answers /healthz and the devices throughout", async () => {
  const path = aggregatePath("noise-big", END - 3 * YEAR, END, DAY);
  const queries = [
    ...Array.from({ length: 40 }, () => status(path, tokens["greedy"]!)),
    ...["a", "b", "c"].flatMap((n) => Array.from({ length: 3 }, () => status(path, tokens[n]!))),
  ];
  let health = 0;
  let healthOk = 0;
  let probing = true;
  const probe = (async () => {
    while (probing) {
      const res = await getOwn(base, "/healthz", "none");
      health++;
      if (res.statusCode === 200) healthOk++;
      await bodyOf(res);
    }
  })();
  let acked = 0;
  const sending = (async () => {
    for (let seq = 1; seq <= 100; seq++) {
      await device.publishAsync(
        dataTopic("noise-live"),
        noiseUplink("noise-live", seq, Date.now() - 60_000 + seq),
        { qos: 1 },
      );
      acked++;
    }
  })();
  const answers = await Promise.all(queries);
  await sending;
  probing = false;
  await probe;
  await until(() => ingest.state.ledger.progress("noise-live")?.committedSeq === 100, "committed");

  const greedy = answers.slice(0, 40);
  const others = answers.slice(40);
  const count = (list: typeof answers, code: number) =>
    list.filter((a) => a.status === code).length;
  console.log(
    `[fault] readers: aggregates=${answers.length} (300k readings each), greedy 200=${count(greedy, 200)} 429=${count(greedy, 429)}, others 200=${count(others, 200)} 429=${count(others, 429)}, healthz=${healthOk}/${health}, device acked=${acked}/100 committed=100, lost=0`,
  );
  // At most 2 of the greedy token's 40 in flight at once: most were refused at once.
  expect(count(greedy, 200) + count(greedy, 429)).toBe(40);
  expect(count(greedy, 429)).toBeGreaterThanOrEqual(30);
  expect(count(greedy, 200)).toBeGreaterThanOrEqual(2);
  expect(greedy.find((a) => a.status === 429)?.body).toContain("its limit (2)");
  // The other readers got answers (their own bound, not the greedy one's).
  expect(count(others, 200)).toBeGreaterThanOrEqual(3);
  expect(others.every((a) => a.status === 200 || a.status === 429)).toBe(true);
  expect(health).toBeGreaterThan(0);
  expect(healthOk).toBe(health);
  expect(acked).toBe(100);
}, 60_000);

it("answers a chunked aggregate exactly as the store does in one piece", async () => {
  const limits = queryLimits(
    ingest.store,
    { registry: registryViewOf(t), metrics: new Registry() },
    { maxInFlight: 1, maxPerCaller: 1, maxScannedReadings: 10_000_000, chunkSpanMs: 7 * DAY },
  );
  // A range that starts and ends off the interval's grid.
  const q = {
    deviceId: "noise-big",
    kind: "noise" as const,
    quantity: "LAeq",
    fn: "energy_mean" as const,
    fromMs: END - YEAR - 12_345,
    toMs: END - 3 * DAY + 777,
    intervalMs: 6 * 3_600_000,
  };
  const whole = await ingest.store.aggregate(q);
  const chunked = await limits.store.aggregate(q);
  expect(whole.length).toBeGreaterThan(1_000);
  expect(chunked).toEqual(whole);
});

it("refuses an aggregate over more readings than the cost bound with a 400 saying what to ask", async () => {
  const answer = await status(aggregatePath("noise-fast", END - 3 * YEAR, END, DAY), tokens["a"]!);
  expect(answer.status).toBe(400);
  expect(JSON.parse(answer.body)).toMatchObject({ error: "bad_request" });
  expect(answer.body).toContain("ask for 11 days or less at a time");
});

it("one viewer token's streams do not lock out an admin, and are freed when it is revoked", async () => {
  const greedy = ingest.tasks.tokens.add("hog", "viewer").token;
  const opened = await Promise.all(Array.from({ length: 100 }, () => openStream(base, greedy)));
  const ok = opened.filter((s) => s.status === 200).length;
  const capped = opened.filter((s) => s.status === 429).length;
  const admin = await openStream(base, tokens["root"]!);
  expect(admin.status).toBe(200);
  ingest.tasks.tokens.revoke("hog");
  await until(() => opened.every((s) => s.ended()), "the hog's streams ended", 2_000);
  console.log(
    `[fault] readers (streams): one token asked 100, open=${ok}, 429=${capped}, admin=${admin.status}, open after revocation=${ingest.tasks.stream.size() - 1}`,
  );
  expect(ok).toBe(5);
  expect(capped).toBe(95);
  expect(ingest.tasks.stream.size()).toBe(1);
  admin.close();
});
