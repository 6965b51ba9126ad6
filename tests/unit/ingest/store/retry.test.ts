import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createInfluxStore, type InfluxStoreOptions } from "../../../../ingest/store/influxdb.js";
import { backoffCeilingMs, backoffDelayMs } from "../../../../infra/backoff.js";
import { parseRetryAfterMs, retryBackoff, withRetries } from "../../../../ingest/store/retry.js";
import { StoreUnavailableError, type Point } from "../../../../ingest/store/types.js";

const policy = { maxRetries: 5, initialBackoffMs: 100, maxBackoffMs: 1_000 };
const NOW = Date.parse("2026-03-01T08:00:00Z");

describe("backoff", () => {
  const backoff = retryBackoff(policy);

  it("doubles from the initial wait up to the maximum", () => {
    expect([0, 1, 2, 3, 4, 5, 9].map((n) => backoffCeilingMs(n, backoff))).toEqual([
      100, 200, 400, 800, 1_000, 1_000, 1_000,
    ]);
  });

  it("jitters uniformly below the ceiling (full jitter)", () => {
    expect(backoff.jitter).toBe("full");
    for (let retry = 0; retry < 8; retry++) {
      const ceiling = backoffCeilingMs(retry, backoff);
      expect(backoffDelayMs(retry, backoff, () => 0)).toBe(0);
      expect(backoffDelayMs(retry, backoff, () => 0.5)).toBe(ceiling / 2);
      expect(backoffDelayMs(retry, backoff, () => 0.999_999)).toBeLessThan(ceiling);
      expect(backoffDelayMs(retry, backoff, () => 0.999_999)).toBeGreaterThanOrEqual(ceiling - 1);
    }
  });
});

describe("Retry-After", () => {
  it("reads delay-seconds", () => {
    expect(parseRetryAfterMs("5", NOW)).toBe(5_000);
    expect(parseRetryAfterMs(" 0 ", NOW)).toBe(0);
    expect(parseRetryAfterMs("120", NOW)).toBe(120_000);
  });

  it("reads an HTTP-date, and a date in the past as no wait", () => {
    expect(parseRetryAfterMs(new Date(NOW + 7_000).toUTCString(), NOW)).toBe(7_000);
    expect(parseRetryAfterMs("Sun, 01 Mar 2026 08:00:30 GMT", NOW)).toBe(30_000);
    expect(parseRetryAfterMs("Sun, 01 Mar 2026 07:00:00 GMT", NOW)).toBe(0);
  });

  it("ignores what it cannot read", () => {
    for (const value of [null, "", "soon", "1.5", "-3", "5 seconds"]) {
      expect(parseRetryAfterMs(value, NOW)).toBeUndefined();
    }
  });
});

describe("withRetries", () => {
  it("retries until success and waits a growing backoff", async () => {
    const waits: number[] = [];
    let attempts = 0;
    const value = await withRetries(
      () =>
        Promise.resolve(
          ++attempts < 4 ? { ok: false as const, reason: "busy" } : { ok: true as const, value: 7 },
        ),
      policy,
      { sleep: (ms) => (waits.push(ms), Promise.resolve()), random: () => 0.999_999 },
    );
    expect(value).toBe(7);
    expect(attempts).toBe(4);
    expect(waits).toEqual([99, 199, 399]);
  });

  it("throws StoreUnavailableError after maxRetries retries", async () => {
    let attempts = 0;
    const failing = withRetries(
      () => (attempts++, Promise.resolve({ ok: false as const, reason: "down", retryAfterMs: 50 })),
      { ...policy, maxRetries: 2 },
      { sleep: () => Promise.resolve(), random: () => 0 },
    );
    await expect(failing).rejects.toThrow(StoreUnavailableError);
    await expect(failing).rejects.toMatchObject({
      message: "down (gave up after 3 attempts)",
      retryAfterMs: 50,
    });
    expect(attempts).toBe(3);
  });
});

// A fake InfluxDB peer: answers scripted in order, and the requests it was sent.
type Scripted = Response | Error | "hang";
function fakeInflux(script: Scripted[]) {
  const requests: Array<{ url: URL; method: string; headers: Headers; body: string }> = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    requests.push({
      url: new URL(input instanceof Request ? input.url : input),
      method: init?.method ?? "GET",
      headers: new Headers(init?.headers),
      body: typeof init?.body === "string" ? init.body : "",
    });
    const next = script.shift() ?? new Response(null, { status: 204 });
    if (next === "hang") {
      return new Promise((_, reject) => {
        const signal = init?.signal;
        signal?.addEventListener("abort", () => reject(signal.reason as Error));
      });
    }
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, requests };
}

const status = (code: number, headers: Record<string, string> = {}, body = "") =>
  new Response(code === 204 ? null : body, { status: code, headers });

const options: InfluxStoreOptions = {
  url: "http://influx.test:8086",
  api: "v1",
  v1: { database: "citywatch" },
  timeoutMs: 1_000,
  ...policy,
};

const point: Point = {
  measurement: "noise",
  tags: { device: "n1", site: "s1", district: "Jinjiang", grid_cell: "JJ-01", quality: "normal" },
  fields: { LAeq: 61.5 },
  seq: 1,
  timeMs: 1_700_000_000_000,
};

function storeOn(script: Scripted[], over: Partial<InfluxStoreOptions> = {}, random = () => 0) {
  const peer = fakeInflux(script);
  const waits: number[] = [];
  const store = createInfluxStore({ ...options, ...over } as InfluxStoreOptions, {
    log: pino({ level: "silent" }),
    fetch: peer.fetch,
    sleep: (ms) => (waits.push(ms), Promise.resolve()),
    random,
    now: () => NOW,
  });
  return { store, peer, waits };
}

describe("InfluxDB store retries", () => {
  it("retries 5xx, 429 and network errors with growing backoff, then stores", async () => {
    const { store, peer, waits } = storeOn(
      [
        status(503),
        new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } }),
        status(500, {}, '{"error":"timeout"}'),
        status(429),
        status(204),
      ],
      {},
      () => 0.999_999,
    );
    await expect(store.write([point])).resolves.toEqual({ rejected: [] });
    expect(peer.requests).toHaveLength(5);
    expect(waits).toEqual([99, 199, 399, 799]);
    // Every attempt sent the same batch.
    expect(new Set(peer.requests.map((r) => r.body)).size).toBe(1);
  });

  it("waits at least Retry-After given in seconds", async () => {
    const { store, waits } = storeOn([status(429, { "retry-after": "1" }), status(204)]);
    await store.write([point]);
    expect(waits).toEqual([1_000]);
  });

  it("waits at least Retry-After given as an HTTP-date", async () => {
    const at = new Date(NOW + 3_000).toUTCString();
    const { store, waits } = storeOn([status(503, { "retry-after": at }), status(204)], {
      maxBackoffMs: 5_000,
    });
    await store.write([point]);
    expect(waits).toEqual([3_000]);
  });

  it("gives the batch back at once when Retry-After exceeds the longest backoff", async () => {
    const { store, peer, waits } = storeOn([status(503, { "retry-after": "30" })]);
    const error = await store.write([point]).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ retryAfterMs: 30_000, code: "INGEST_STORE_UNAVAILABLE" });
    expect(peer.requests).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it("throws StoreUnavailableError after maxRetries, with the last Retry-After", async () => {
    const { store, peer } = storeOn(
      [status(502), status(502), status(503, { "retry-after": "0" })],
      { maxRetries: 2 },
    );
    const error = await store.write([point]).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ retryAfterMs: 0 });
    expect((error as Error).message).toMatch(/HTTP 503.*gave up after 3 attempts/);
    expect(peer.requests).toHaveLength(3);
  });

  it("retries a request that times out", async () => {
    const { store, peer } = storeOn(["hang", status(204)], { timeoutMs: 20 });
    await expect(store.write([point])).resolves.toEqual({ rejected: [] });
    expect(peer.requests).toHaveLength(2);
    const { store: stuck } = storeOn(["hang", "hang"], { timeoutMs: 20, maxRetries: 1 });
    await expect(stuck.write([point])).rejects.toThrow(/timed out after 20 ms/);
  });

  it("does not retry a refusal of the request itself (401, 404)", async () => {
    for (const code of [401, 404]) {
      const { store, peer } = storeOn([status(code, {}, `{"error":"nope ${code}"}`)]);
      await expect(store.write([point])).rejects.toThrow(
        new StoreUnavailableError(`InfluxDB refused the write: HTTP ${code} nope ${code}`),
      );
      expect(peer.requests).toHaveLength(1);
    }
  });

  it("close() cuts a backoff wait short", async () => {
    const peer = fakeInflux([status(503)]);
    const store = createInfluxStore(
      { ...options, initialBackoffMs: 60_000, maxBackoffMs: 60_000 },
      { log: pino({ level: "silent" }), fetch: peer.fetch, random: () => 0.5 },
    );
    const writing = store.write([point]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.close();
    await expect(writing).rejects.toThrow(
      new StoreUnavailableError("the InfluxDB store is closed"),
    );
    expect(peer.requests).toHaveLength(1);
  });

  it("retries queries too, and turns a dead peer into StoreUnavailableError", async () => {
    const refused = new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } });
    const { store, peer } = storeOn([refused, refused], { maxRetries: 1 });
    const error = await store.latest("n1", "noise").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/ECONNREFUSED.*gave up after 2 attempts/);
    expect(peer.requests).toHaveLength(2);
    expect(peer.requests[0]?.url.pathname).toBe("/query");
  });
});
