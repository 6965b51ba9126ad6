import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Ingest } from "../../../ingest/app.js";
import { registryViewOf, startTestIngest, testApi } from "../../support/ingest.js";
import {
  collect,
  metricValue,
  startTestBroker,
  type TestBroker,
  until,
} from "../../support/broker.js";

const data = (id: string) => `citywatch/v1/devices/${id}/data`;
const iso = (ms: number) => new Date(ms).toISOString();

describe("ingest through the real broker into the embedded SQLite store", () => {
  let t: TestBroker;
  let ingest: Ingest;
  let dir: string;
  const secrets: Record<string, string> = {};
  // Five minutes past an hour boundary, so the three noise readings share one hourly bucket.
  const base = Math.floor((Date.now() - 2 * 3_600_000) / 3_600_000) * 3_600_000 + 300_000;

  beforeAll(async () => {
    t = await startTestBroker({ limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } });
    secrets.noise = t.addDevice("noise-1", "noise");
    secrets.dust = t.addDevice("dust-1", "dust");
    secrets.off = t.addDevice("noise-off", "noise");
    t.registry.setDeviceEnabled("noise-off", true);
    dir = mkdtempSync(join(tmpdir(), "cw-ingest-"));
    ingest = await startTestIngest(t, {
      dataDir: dir,
      clientId: "ingest-test",
      config: { gapTimeoutMs: 1_500 },
    });
  });

  afterAll(async () => {
    await ingest.stop();
    await t.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const noise = (seq: number, readings: Array<[number, number]>) =>
    JSON.stringify({
      v: 1,
      deviceId: "noise-1",
      seq,
      kind: "noise",
      readings: readings.map(([ms, LAeq]) => ({
        ts: iso(ms),
        quality: "normal",
        values: { LAeq },
      })),
    });

  it("stores exactly the valid messages and dead-letters each invalid one with its reason", async () => {
    const device = await t.connect({ username: "noise-1", password: secrets.noise ?? "" });
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/noise-1/commit", { qos: 1 });
    const messages: Array<[string, string]> = [
      [
        data("noise-1"),
        noise(1, [
          [base, 60],
          [base + 60_000, 70],
        ]),
      ],
      [data("noise-1"), "{not json"],
      [
        data("noise-1"),
        JSON.stringify({
          v: 1,
          deviceId: "noise-1",
          seq: 3,
          kind: "noise",
          readings: [{ ts: iso(base), quality: "normal", values: { LAeq: 500 } }],
        }),
      ],
      [
        data("noise-1"),
        JSON.stringify({
          v: 1,
          deviceId: "noise-1",
          seq: 4,
          kind: "dust",
          readings: [{ ts: iso(base), quality: "normal", values: { pm10: 50 } }],
        }),
      ],
      [data("noise-1"), noise(5, [[Date.now() + 3_600_000, 50]])],
      [data("noise-1"), noise(6, [[Date.now() - 90 * 86_400_000, 50]])],
      [data("noise-1"), noise(7, [[base + 120_000, 80]])],
    ];
    for (const [topic, payload] of messages) await device.publishAsync(topic, payload, { qos: 1 });
    await until(
      () =>
        ingest.state.inbox.depth() === 0 && ingest.state.ledger.progress("noise-1")?.lastSeq === 7,
      "all handled",
      10_000,
    );
    // The unparseable message carried seq 2 but nobody can read it: the commit waits at 1 for it.
    expect(ingest.state.ledger.progress("noise-1")?.committedSeq).toBe(1);
    // After the gap timeout the gap is recorded as a dead letter and the commit moves on.
    await until(
      () => ingest.state.ledger.progress("noise-1")?.committedSeq === 7,
      "gap closed",
      10_000,
    );

    const stored = await ingest.store.readings({
      deviceId: "noise-1",
      kind: "noise",
      fromMs: 0,
      toMs: Date.now() + 1e9,
      limit: 100,
    });
    expect(stored.map((r) => [r.timeMs, r.values.LAeq, r.seq])).toEqual([
      [base, 60, 1],
      [base + 60_000, 70, 1],
      [base + 120_000, 80, 7],
    ]);
    const dead = ingest.state.deadLetters.list({ limit: 10 }).reverse();
    expect(dead.map((d) => [d.seq ?? null, d.reason])).toEqual([
      [null, "not_json"],
      [3, "schema"],
      [4, "wrong_kind"],
      [5, "future_timestamp"],
      [6, "stale_timestamp"],
      [2, "missing_seq"],
    ]);
    expect(dead[1]?.detail).toContain("LAeq 500 is above the plausible range 0..150 dB(A)");
    expect(dead[0]?.payload.toString()).toBe("{not json");
    // What they hold is on /metrics, in bytes (payload and detail), as it stands in the file.
    expect(await metricValue(ingest, "citywatch_ingest_dead_letter_bytes")).toBe(
      dead.reduce((sum, d) => sum + d.payload.length + Buffer.byteLength(d.detail), 0),
    );
    await until(
      () =>
        commits.length > 0 &&
        (JSON.parse(commits.at(-1)?.payload ?? "{}") as { committedSeq?: number }).committedSeq ===
          7,
      "commit 7",
    );
    // The commit is retained: a fresh subscription gets it at once, flagged retained [MQTT-3.3.1-8].
    await device.unsubscribeAsync("citywatch/v1/devices/noise-1/commit");
    const before = commits.length;
    await device.subscribeAsync("citywatch/v1/devices/noise-1/commit", { qos: 1 });
    await until(() => commits.length > before, "retained commit");
    expect(commits.at(-1)).toMatchObject({ retain: true });
    expect(JSON.parse(commits.at(-1)?.payload ?? "{}")).toMatchObject({
      v: 1,
      deviceId: "noise-1",
      committedSeq: 7,
    });
  });

  it("stores a batch published twice once, and never commits ahead of the store", async () => {
    const device = await t.connect({ username: "dust-1", password: secrets.dust ?? "" });
    const commits = collect(device);
    await device.subscribeAsync("citywatch/v1/devices/dust-1/commit", { qos: 1 });
    const batch = Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({
        v: 1,
        deviceId: "dust-1",
        seq: 1 + i,
        kind: "dust",
        readings: Array.from({ length: 50 }, (_, j) => ({
          ts: iso(base + (i * 50 + j) * 1_000),
          quality: "normal",
          values: { pm10: 40 + j, windSpeed: 2.5 },
        })),
      }),
    );
    for (const payload of batch) await device.publishAsync(data("dust-1"), payload, { qos: 1 });
    for (const payload of batch) await device.publishAsync(data("dust-1"), payload, { qos: 1 });
    await until(
      () =>
        ingest.state.inbox.depth() === 0 &&
        ingest.state.ledger.progress("dust-1")?.committedSeq === 20,
      "dust committed",
      10_000,
    );
    const stored = await ingest.store.readings({
      deviceId: "dust-1",
      kind: "dust",
      fromMs: 0,
      toMs: Date.now() + 1e9,
      limit: 10_000,
    });
    expect(stored).toHaveLength(1_000);
    expect(new Set(stored.map((r) => r.timeMs)).size).toBe(1_000);
    // The second copies may still be on their way when the commit reaches 20.
    const deadline = Date.now() + 10_000;
    while (
      (await metricSum(ingest, "citywatch_ingest_duplicate_messages_total")) < 20 &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await metricSum(ingest, "citywatch_ingest_duplicate_messages_total")).toBe(20);
    await until(() => ingest.state.inbox.depth() === 0, "inbox drained");
    const after = await ingest.store.readings({
      deviceId: "dust-1",
      kind: "dust",
      fromMs: 0,
      toMs: Date.now() + 1e9,
      limit: 10_000,
    });
    expect(after).toHaveLength(1_000);

    // Every commit the device saw names only seqs whose readings were already in the store.
    await until(
      () =>
        commits.some(
          (c) => (JSON.parse(c.payload) as { committedSeq: number }).committedSeq === 20,
        ),
      "final commit",
    );
    for (const c of commits) {
      const { committedSeq } = JSON.parse(c.payload) as { committedSeq: number };
      const upTo = stored.filter((r) => r.seq <= committedSeq);
      expect(upTo.length).toBe(committedSeq * 50);
    }
  });

  it("answers the query API: ranges, energy mean, mean, max, latest, devices, dead letters, 400s", async () => {
    const api = testApi({
      registry: registryViewOf(t),
      state: ingest.state,
      store: ingest.store,
      metrics: [ingest.metrics.registry],
    });
    const get = async (url: string) => {
      const res = await api.inject({ method: "GET", url });
      return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
    };
    const from = encodeURIComponent(iso(base - (base % 600_000)));
    // noise-1 holds LAeq 60 at base, 70 at base+1m, 80 at base+2m (first test).
    const raw = await get(`/api/v1/devices/noise-1/readings?from=${base}&to=${base + 180_000}`);
    expect(raw.status).toBe(200);
    expect(
      (raw.body.readings as Array<{ values: { LAeq: number } }>).map((r) => r.values.LAeq),
    ).toEqual([60, 70, 80]);

    const hour = async (fn: string) => {
      const res = await get(
        `/api/v1/devices/noise-1/aggregate?quantity=LAeq&fn=${fn}&interval=1h&from=${Math.floor(base / 3_600_000) * 3_600_000}&to=${Math.floor(base / 3_600_000) * 3_600_000 + 2 * 3_600_000}`,
      );
      expect(res.status).toBe(200);
      return (res.body.buckets as Array<{ value: number | null }>)
        .map((b) => b.value)
        .filter((v) => v !== null);
    };
    // Hand-computed: 10·log10((10^6 + 10^7 + 10^8) / 3) = 75.6820…, arithmetic mean 70, max 80.
    const energy = await hour("energy_mean");
    expect(energy).toHaveLength(1);
    expect(energy[0]).toBeCloseTo(10 * Math.log10((1e6 + 1e7 + 1e8) / 3), 9);
    expect(energy[0]).toBeCloseTo(75.682, 3); // not the arithmetic mean of the dB values (70)
    expect(await hour("mean")).toEqual([70]);
    expect(await hour("max")).toEqual([80]);
    const minute = await get(
      `/api/v1/devices/noise-1/aggregate?quantity=LAeq&fn=energy_mean&interval=1m&from=${from}&to=${base + 180_000}`,
    );
    const values = (minute.body.buckets as Array<{ value: number | null }>)
      .map((b) => b.value)
      .filter((v) => v !== null);
    expect(values).toHaveLength(3);
    [60, 70, 80].forEach((level, i) => expect(values[i]).toBeCloseTo(level, 9));

    const latest = await get("/api/v1/devices/noise-1/latest");
    expect((latest.body.readings as Array<{ values: { LAeq: number } }>)[0]?.values.LAeq).toBe(80);
    // Many devices at once: every registered device with readings, by kind, by ids.
    type Many = { readings: Array<{ deviceId: string; reading: unknown }>; unknown: string[] };
    const many = (await get("/api/v1/readings/latest")).body as Many;
    expect(many.readings.map((r) => r.deviceId)).toEqual(["dust-1", "noise-1"]);
    expect(many.readings.find((r) => r.deviceId === "noise-1")?.reading).toEqual(
      (latest.body.readings as unknown[])[0],
    );
    const dust = (await get("/api/v1/readings/latest?kind=dust")).body as Many;
    expect(dust.readings.map((r) => r.deviceId)).toEqual(["dust-1"]);
    const asked = (await get("/api/v1/readings/latest?ids=noise-1,ghost,noise-off")).body as Many;
    expect(asked).toMatchObject({ readings: [{ deviceId: "noise-1" }], unknown: ["ghost"] });
    expect((await get("/api/v1/readings/latest?kind=lava")).status).toBe(400);
    expect((await get("/api/v1/readings/latest?ids=")).status).toBe(400);
    const devices = await get("/api/v1/devices");
    const d = (
      devices.body.devices as Array<{
        id: string;
        online: boolean;
        committedSeq: number | null;
        lastSeen: string | null;
      }>
    ).find((x) => x.id === "dust-1");
    expect(d).toMatchObject({ online: true, committedSeq: 20 });
    const never = (
      devices.body.devices as Array<{ id: string; online: boolean; lastSeen: string | null }>
    ).find((x) => x.id === "noise-off");
    expect(never).toMatchObject({ online: false, lastSeen: null });
    const dead = await get("/api/v1/dead-letters?limit=2");
    expect(dead.body.deadLetters as unknown[]).toHaveLength(2);
    expect((await get("/api/v1/dead-letters?reason=not_json")).body.deadLetters).toMatchObject([
      { payload: "{not json", reason: "not_json" },
    ]);

    // Bad requests name the problem.
    const bad = await get(
      "/api/v1/devices/noise-1/aggregate?quantity=LAeq&fn=median&interval=1x&from=yesterday",
    );
    expect(bad.status).toBe(400);
    expect((bad.body.problems as Array<{ path: string }>).map((p) => p.path).sort()).toEqual([
      "fn",
      "from",
      "interval",
    ]);
    expect(
      (
        await get(
          "/api/v1/devices/dust-1/aggregate?quantity=pm10&fn=energy_mean&interval=1h&from=0",
        )
      ).status,
    ).toBe(400);
    expect(
      (await get("/api/v1/devices/dust-1/aggregate?quantity=LAeq&interval=1h&from=0")).body.message,
    ).toMatch(/not a numeric dust quantity/);
    expect(
      (await get("/api/v1/devices/noise-1/aggregate?quantity=LAeq&interval=1s&from=0")).body
        .message,
    ).toMatch(/more than 10000 intervals/);
    expect(
      (await get(`/api/v1/devices/noise-1/readings?from=${base}&to=${base - 1}`)).body.problems,
    ).toEqual([{ path: "to", message: "to must be after from" }]);
    expect((await get("/api/v1/devices/nobody/readings?from=0")).status).toBe(404);
    expect((await get("/api/v1/devices/noise-1/readings?from=0&colour=red")).status).toBe(400);
    const openapi = await get("/openapi.json");
    expect(openapi.body.openapi).toBe("3.1.0");
    expect(Object.keys(openapi.body.paths as object)).toContain("/api/v1/devices/{id}/aggregate");
    await api.close();
  });
});

async function metricSum(ingest: Ingest, name: string): Promise<number> {
  const metric = await ingest.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).reduce((sum, v) => sum + v.value, 0);
}
