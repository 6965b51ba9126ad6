/**
 * `npm run bench -- query` (issue #20 item 4): what people's queries cost on a city's month of
 * readings, on both stores. Each store (the embedded SQLite store, then InfluxDB 1.x started by
 * tests/support on a free loopback port in a temporary directory) is loaded with 30 days of a
 * 1,000-device city at one reading a minute (43.2 million readings, bench/query-city.ts) through
 * its own write path, in large batches, and the loading time and rate are printed. Then the real
 * API (buildApi, as `citywatch start` serves it, with bearer auth and the readers' bounds of
 * cli/runtime/query-limits.ts) answers on a loopback socket, over that store, a task store with
 * 10,000 open tasks (the console bench's queue, tests/unit/tasks/queue-fixture.ts) and one
 * enforcement case sealed with readings from the store:
 *
 * - a device's 30 days aggregated to 1 h (GET /api/v1/devices/{id}/aggregate, the device page's
 *   chart: energy mean for dB(A), mean otherwise), over the devices in turn;
 * - the latest reading of every device: GET /api/v1/devices answers every device's delivery
 *   state (last seen, online, seqs) but no values, and GET /api/v1/readings/latest every device's
 *   newest reading in one request (one store query per kind), which the console's devices page
 *   asks; the one-device-at-a-time sweep it made before (GET /api/v1/devices/{id}/latest, two at
 *   a time) is measured beside it. The goal is judged on the list plus the bulk request, what a
 *   person waits for;
 * - the open task queue, first page (the request `npm run bench -- console` measures with its
 *   other queue scenarios), here on the server holding the month of readings;
 * - one task's evidence package, as JSON (the API's default) and as the printable HTML.
 *
 * Baselines of the same run: GET /healthz on the same server, and each query answered by the
 * store (or the task store) directly, without HTTP. Figures are printed with the goals, met or
 * missed; nothing is asserted. The embedded store's size on disk per million readings is printed
 * (InfluxDB's beside it).
 *
 * Scale for development: CITYWATCH_BENCH_QUERY_DEVICES (default 1000), CITYWATCH_BENCH_QUERY_DAYS
 * (default 30), CITYWATCH_BENCH_QUERY_STORES (default `sqlite,influxdb`),
 * CITYWATCH_BENCH_QUERY_REQUESTS (timed requests per scenario, default 300) and
 * CITYWATCH_BENCH_QUERY_SWEEPS (latest-of-every-device sweeps, default 20).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import type { Device, Site } from "../contracts/index.js";
import type { EvidenceReading } from "../contracts/model/alarms.js";
import { IngestState } from "../ingest/state.js";
import { createInfluxStore } from "../ingest/store/influxdb.js";
import { createSqliteStore } from "../ingest/store/sqlite.js";
import { withLatestCache } from "../ingest/store/latest-cache.js";
import type { TimeSeriesStore } from "../ingest/store/types.js";
import type { TaskSystem } from "../tasks/app.js";
import { testApi } from "../tests/support/ingest.js";
import { makeTempDir, removeTempDir } from "../tests/support/process.js";
import { provideInfluxDB } from "../tests/support/services.js";
import { NOISE, startSystem } from "../tests/unit/tasks/fixtures.js";
import { fillQueue } from "../tests/unit/tasks/queue-fixture.js";
import {
  chartQuantity,
  DAY_MS,
  loadCity,
  MINUTE_MS,
  queryCity,
  READINGS_PER_DAY,
  type QueryCity,
} from "./query-city.js";
import { formatCount, formatTable } from "./table.js";

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`${name}=${raw}: a whole number ≥ 1`);
  return value;
};

const SCALE = {
  devices: envInt("CITYWATCH_BENCH_QUERY_DEVICES", 1_000),
  days: envInt("CITYWATCH_BENCH_QUERY_DAYS", 30),
  requests: envInt("CITYWATCH_BENCH_QUERY_REQUESTS", 300),
  sweeps: envInt("CITYWATCH_BENCH_QUERY_SWEEPS", 20),
};
const STORES = (process.env["CITYWATCH_BENCH_QUERY_STORES"] ?? "sqlite,influxdb")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");
const WARMUP = 20;
/** The console's devices page asks two latest readings at a time (console/src/devices.ts). */
const SWEEP_CONCURRENCY = 2;
/** The console bench's queue: 10,000 open tasks and 2,000 closed. */
const OPEN_TASKS = 10_000;
const CLOSED_TASKS = 2_000;
/** Points per write: one SQLite transaction; InfluxDB's recommended 5,000-10,000 lines. */
const BATCH = { sqlite: 50_000, influxdb: 10_000 } as const;
const IN_FLIGHT = { sqlite: 1, influxdb: 2 } as const;
/** How long InfluxDB may take to finish its compactions after the load before the queries. */
const SETTLE_LIMIT_MS = 15 * 60_000;

const GOALS = {
  aggregate: 100,
  latestOfEvery: 100,
  queue: 100,
  evidence: 50,
} as const;

type StoreName = "sqlite" | "influxdb";

// ---- Figures.

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const mib = (bytes: number) => `${(bytes / 1_048_576).toFixed(0)} MiB`;
const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));
/** Nearest-rank quantile of sorted samples. */
const quantile = (sorted: readonly number[], q: number) =>
  sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;

interface Timing {
  readonly scenario: string;
  readonly via: string;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly n: number;
  readonly kib: number;
}

/** `n` runs of `once` one after the other after `warmup` untimed ones; `once` returns bytes. */
async function timed(
  scenario: string,
  via: string,
  n: number,
  warmup: number,
  once: (i: number) => Promise<number>,
): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await once(i);
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    bytes += await once(warmup + i);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return {
    scenario,
    via,
    p50: quantile(times, 0.5),
    p99: quantile(times, 0.99),
    max: times[times.length - 1] ?? Number.NaN,
    n,
    kib: bytes / n / 1_024,
  };
}

// ---- The process's and influxd's resources, from /proc (Linux).

const peakRss = () => process.resourceUsage().maxRSS * 1_024;

/** /proc/<pid>/stat after the command: [state, ppid, ..., utime at 11, stime at 12]. */
function procStat(pid: number | string): { comm: string; fields: string[] } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    return {
      comm: stat.slice(stat.indexOf("(") + 1, close),
      fields: stat.slice(close + 2).split(" "),
    };
  } catch {
    return undefined;
  }
}

/** The influxd tests/support started as this process's child. */
function childInfluxd(): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (stat?.comm === "influxd" && Number(stat.fields[1]) === process.pid) return Number(entry);
  }
  return undefined;
}

/** CPU seconds a process has used (user + system; 100 ticks a second on Linux). */
function cpuSeconds(pid: number): number {
  const fields = procStat(pid)?.fields;
  return fields === undefined ? Number.NaN : (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A process's peak resident set (VmHWM), bytes. */
function peakRssOf(pid: number): number {
  try {
    const line = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(line?.[1]) * 1_024;
  } catch {
    return Number.NaN;
  }
}

/** Bytes allocated on disk under `path` (a file or a directory tree). */
function diskBytes(path: string): number {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const entry of readdirSync(path)) total += diskBytes(join(path, entry));
  return total;
}

// ---- Loading.

interface Loaded {
  readonly readings: number;
  readonly seconds: number;
  readonly benchCpuSeconds: number;
  readonly storeCpuSeconds: number | undefined;
}

async function loadStore(
  name: StoreName,
  store: TimeSeriesStore,
  city: QueryCity,
  fromMs: number,
  storePid: number | undefined,
): Promise<Loaded> {
  const total = city.devices.length * SCALE.days * READINGS_PER_DAY;
  console.log(
    `${name}: loading ${formatCount(total)} readings (${city.devices.length} devices × ${SCALE.days} days × ${READINGS_PER_DAY}), ${formatCount(BATCH[name])} points per write, ${IN_FLIGHT[name]} in flight; load average ${load()}`,
  );
  const cpu0 = process.cpuUsage();
  const store0 = storePid === undefined ? undefined : cpuSeconds(storePid);
  const t0 = performance.now();
  const every = Math.max(1, Math.round(SCALE.days / 6));
  const readings = await loadCity(store, city, {
    fromMs,
    days: SCALE.days,
    batchPoints: BATCH[name],
    inFlight: IN_FLIGHT[name],
    onDay: (day, written) => {
      if ((day + 1) % every !== 0 && day + 1 !== SCALE.days) return;
      const s = (performance.now() - t0) / 1_000;
      console.log(
        `  day ${day + 1}/${SCALE.days}: ${formatCount(written)} readings in ${s.toFixed(0)} s (${formatCount(written / s)}/s), RSS ${mib(process.memoryUsage().rss)}, load ${load()}`,
      );
    },
  });
  const seconds = (performance.now() - t0) / 1_000;
  const cpu = process.cpuUsage(cpu0);
  return {
    readings,
    seconds,
    benchCpuSeconds: (cpu.user + cpu.system) / 1e6,
    storeCpuSeconds:
      storePid === undefined || store0 === undefined ? undefined : cpuSeconds(storePid) - store0,
  };
}

/** Wait until influxd has used under 5 % of a core for 10 s (its compactions after the load). */
async function settle(pid: number): Promise<number> {
  const t0 = performance.now();
  const window: number[] = [cpuSeconds(pid)];
  while (performance.now() - t0 < SETTLE_LIMIT_MS) {
    await sleep(2_000);
    window.push(cpuSeconds(pid));
    if (window.length > 6) window.shift();
    const used = (window[window.length - 1] ?? 0) - (window[0] ?? 0);
    if (window.length === 6 && used < 0.05 * 10) break;
  }
  return (performance.now() - t0) / 1_000;
}

// ---- The API over a loaded store.

interface Served {
  readonly base: string;
  readonly headers: Record<string, string>;
  readonly evidenceTaskId: string;
  readonly system: TaskSystem;
  close(): Promise<void>;
}

/** Energy mean of dB levels. */
const energyMean = (levels: readonly number[]) =>
  10 * Math.log10(levels.reduce((sum, l) => sum + 10 ** (l / 10), 0) / levels.length);

/**
 * The API as `citywatch start` builds it (testApi: buildApi with health, online intervals and the
 * clock filled in) over `store`, the city's registry, an ingest state where every device has
 * delivered, 10,000 open tasks and one night-noise case sealed with 20 readings of the store.
 */
async function serve(store: TimeSeriesStore, city: QueryCity, lastMs: number): Promise<Served> {
  const dir = await makeTempDir("cw-bench-query-api-");
  const devices = new Map<string, Device>(city.devices.map((d) => [d.id, d]));
  const sites = new Map<string, Site>(city.sites.map((s) => [s.id, s]));
  const lookup = { device: (id: string) => devices.get(id), site: (id: string) => sites.get(id) };
  const system = startSystem(dir, { now: Date.now, registry: lookup });
  // No SLA tick during the run: the figures are the API's.
  await system.service.stop();
  const state = new IngestState(join(dir, "ingest.db"));
  let app: ReturnType<typeof testApi> | undefined;
  try {
    state.applyBatch(
      {
        inboxIds: [],
        deadLetters: [],
        handled: city.devices.map((d) => ({ deviceId: d.id, seq: 1, receivedMs: lastMs })),
      },
      lastMs,
    );
    fillQueue(system.store, OPEN_TASKS + CLOSED_TASKS, { nowMs: Date.now(), closedEvery: 6 });
    const evidenceTaskId = await fileCase(system, store, city, lastMs);
    app = testApi({
      registry: {
        ...lookup,
        devices: () => [...city.devices] as Device[],
        sites: () => [...city.sites] as Site[],
      },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const token = system.tokens.add("bench-query", "command_centre").token;
    const served = app;
    return {
      base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
      headers: { authorization: `Bearer ${token}` },
      evidenceTaskId,
      system,
      async close() {
        await served.close();
        await system.stop();
        state.close();
        await removeTempDir(dir);
      },
    };
  } catch (error) {
    await app?.close();
    await system.stop();
    state.close();
    await removeTempDir(dir);
    throw error;
  }
}

/** A night-noise enforcement case at the first construction site, its evidence from the store. */
async function fileCase(
  system: TaskSystem,
  store: TimeSeriesStore,
  city: QueryCity,
  lastMs: number,
): Promise<string> {
  const device = city.devices.find((d) => d.kind === "noise");
  if (device === undefined) throw new Error("the city has no noise monitor");
  const windowMs = 20 * MINUTE_MS;
  const stored = await store.readings({
    deviceId: device.id,
    kind: device.kind,
    fromMs: lastMs - windowMs + 1,
    toMs: lastMs + 1,
    limit: 100,
  });
  const readings: EvidenceReading[] = stored.map((r) => ({
    deviceId: device.id,
    ts: new Date(r.timeMs).toISOString(),
    quality: r.quality,
    seq: r.seq,
    values: Object.fromEntries(
      Object.entries(r.values).filter((e): e is [string, number] => typeof e[1] === "number"),
    ),
  }));
  const value = energyMean(readings.map((r) => r.values["LAeq"] ?? 0));
  const iso = (t: number) => new Date(t).toISOString();
  await system.service.applyAlarm({
    rule: NOISE,
    subjectType: "site",
    subjectId: device.siteId,
    siteId: device.siteId,
    deviceIds: [device.id],
    decision: {
      type: "raise",
      alarmSeq: 1,
      level: undefined,
      levelIndex: 0,
      startedAt: lastMs - windowMs,
      at: lastMs,
      value,
      limit: 55,
      deviceId: device.id,
      detail: `LAeq ${value.toFixed(1)} dB(A) > 55 (night)`,
      replayed: false,
    },
    evidence: {
      readings,
      method: "energy mean of LAeq over the rolling 20 min window",
      windowStart: iso(lastMs - windowMs),
      windowEnd: iso(lastMs),
      value,
      limit: 55,
      deviceId: device.id,
      windowMs,
      align: "rolling",
    },
  });
  const task = system.store.openTask("site", device.siteId, NOISE.id);
  if (task === undefined || system.store.evidence(task.id) === undefined)
    throw new Error("the case was not filed with evidence");
  return task.id;
}

// ---- The queries.

interface StoreResult {
  readonly store: StoreName;
  readonly loaded: Loaded;
  readonly settleSeconds: number | undefined;
  readonly diskBytes: number;
  readonly timings: Timing[];
  readonly verdicts: ReadonlyArray<{ goal: string; p99: number; limit: number }>;
  readonly peakRss: number;
  readonly storePeakRss: number | undefined;
}

async function measure(
  store: TimeSeriesStore,
  served: Served,
  city: QueryCity,
  lastMs: number,
): Promise<{ timings: Timing[]; verdicts: StoreResult["verdicts"] }> {
  const get = async (path: string): Promise<number> => {
    const res = await fetch(`${served.base}${path}`, { headers: served.headers });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body.slice(0, 200)}`);
    return body.length;
  };
  const days = Math.min(30, SCALE.days);
  const toMs = lastMs + 1;
  const fromMs = toMs - days * DAY_MS;
  const noise = city.devices.filter((d) => d.kind === "noise");
  const others = city.devices.filter((d) => d.kind !== "noise");
  const aggregatePath = (d: Device) => {
    const { quantity, fn } = chartQuantity(d);
    const q = new URLSearchParams({
      quantity,
      fn,
      interval: "1h",
      from: new Date(fromMs).toISOString(),
      to: new Date(toMs).toISOString(),
    });
    return `/api/v1/devices/${encodeURIComponent(d.id)}/aggregate?${q.toString()}`;
  };
  const direct = async (d: Device) => {
    const { quantity, fn } = chartQuantity(d);
    const buckets = await store.aggregate({
      deviceId: d.id,
      kind: d.kind,
      quantity,
      fn,
      fromMs,
      toMs,
      intervalMs: 3_600_000,
    });
    return buckets.length * 40;
  };
  const nth = <T>(list: readonly T[], i: number) => list[(i * 7) % list.length] as T;
  const n = SCALE.requests;
  const timings: Timing[] = [];
  const run = async (t: Promise<Timing>) => {
    const timing = await t;
    timings.push(timing);
    console.log(
      `  ${timing.scenario} (${timing.via}): p50 ${ms(timing.p50)} ms, p99 ${ms(timing.p99)} ms`,
    );
    return timing;
  };

  await run(timed("baseline GET /healthz", "HTTP", n, WARMUP, () => get("/healthz")));

  const aggLabel = `aggregate ${days} d → 1 h`;
  await run(
    timed(`${aggLabel}, noise LAeq energy mean`, "store", n, 5, (i) => direct(nth(noise, i))),
  );
  const aggNoise = await run(
    timed(`${aggLabel}, noise LAeq energy mean`, "HTTP", n, 5, (i) =>
      get(aggregatePath(nth(noise, i))),
    ),
  );
  await run(timed(`${aggLabel}, other kinds mean`, "store", n, 5, (i) => direct(nth(others, i))));
  const aggOther = await run(
    timed(`${aggLabel}, other kinds mean`, "HTTP", n, 5, (i) => get(aggregatePath(nth(others, i)))),
  );

  await run(
    timed("latest, one device", "store", n, WARMUP, async (i) => {
      const d = nth(city.devices, i);
      return (await store.latest(d.id, d.kind)) === undefined ? 0 : 100;
    }),
  );
  const latestOne = await run(
    timed("latest, one device", "HTTP", n, WARMUP, (i) =>
      get(`/api/v1/devices/${encodeURIComponent(nth(city.devices, i).id)}/latest`),
    ),
  );
  const deviceList = await run(
    timed(`GET /api/v1/devices (${city.devices.length}, state, no values)`, "HTTP", n, WARMUP, () =>
      get("/api/v1/devices"),
    ),
  );
  const sweeps = SCALE.sweeps;
  await run(
    timed(`latest of every device, one by one`, "store", sweeps, 1, async () => {
      let bytes = 0;
      for (const d of city.devices)
        bytes += (await store.latest(d.id, d.kind)) === undefined ? 0 : 100;
      return bytes;
    }),
  );
  const sweep = await run(
    timed(
      `latest of every device: devices + ${city.devices.length} × latest, ${SWEEP_CONCURRENCY} at a time (console)`,
      "HTTP",
      sweeps,
      1,
      async () => {
        let bytes = await get("/api/v1/devices");
        const queue = city.devices.map((d) => d.id);
        await Promise.all(
          Array.from({ length: SWEEP_CONCURRENCY }, async () => {
            for (let id = queue.shift(); id !== undefined; id = queue.shift())
              bytes += await get(`/api/v1/devices/${encodeURIComponent(id)}/latest`);
          }),
        );
        return bytes;
      },
    ),
  );

  // What the console asks now: the device list, then every device's latest in one request,
  // answered by the last-value cache (filled by the asks above, as by the first ask after a
  // start); what the store takes without it is the latestOf line above.
  const kinds = [...new Set(city.devices.map((d) => d.kind))];
  await run(
    timed(
      "latest of every device: the store's latestOf per kind (what the last-value cache saves)",
      "store",
      sweeps,
      1,
      async () => {
        let bytes = 0;
        for (const kind of kinds) {
          const ids = city.devices.filter((d) => d.kind === kind).map((d) => d.id);
          bytes += ((await store.latestOf?.(kind, ids))?.size ?? 0) * 100;
        }
        return bytes;
      },
    ),
  );
  const bulk = await run(
    timed(
      `latest of every device: devices + GET /api/v1/readings/latest (one request)`,
      "HTTP",
      sweeps,
      1,
      async () => (await get("/api/v1/devices")) + (await get("/api/v1/readings/latest")),
    ),
  );

  const queue = await run(
    timed(`open queue, first page (100 of ${formatCount(OPEN_TASKS)})`, "HTTP", n, WARMUP, () =>
      get("/api/v1/tasks?state=open"),
    ),
  );
  const id = served.evidenceTaskId;
  await run(
    timed("one task's evidence", "task store", n, WARMUP, () =>
      Promise.resolve(JSON.stringify(served.system.store.evidence(id)).length),
    ),
  );
  const evidence = await run(
    timed("one task's evidence, JSON", "HTTP", n, WARMUP, () =>
      get(`/api/v1/tasks/${id}/evidence`),
    ),
  );
  const evidenceHtml = await run(
    timed("one task's evidence, printable HTML", "HTTP", n, WARMUP, () =>
      get(`/api/v1/tasks/${id}/evidence?format=html`),
    ),
  );
  return {
    timings,
    verdicts: [
      { goal: `${aggLabel} (noise, energy mean)`, p99: aggNoise.p99, limit: GOALS.aggregate },
      { goal: `${aggLabel} (other kinds, mean)`, p99: aggOther.p99, limit: GOALS.aggregate },
      {
        goal: "latest of every device (the console: list + one bulk request)",
        p99: bulk.p99,
        limit: GOALS.latestOfEvery,
      },
      {
        goal: "  · the same one device at a time (the console's old sweep)",
        p99: sweep.p99,
        limit: GOALS.latestOfEvery,
      },
      {
        goal: "  · GET /api/v1/devices (state only)",
        p99: deviceList.p99,
        limit: GOALS.latestOfEvery,
      },
      { goal: "  · one device's latest", p99: latestOne.p99, limit: GOALS.latestOfEvery },
      { goal: "open task queue, 10,000 open", p99: queue.p99, limit: GOALS.queue },
      { goal: "one task's evidence (JSON)", p99: evidence.p99, limit: GOALS.evidence },
      { goal: "one task's evidence (HTML)", p99: evidenceHtml.p99, limit: GOALS.evidence },
    ],
  };
}

// ---- Each store.

interface StoreUnderTest {
  readonly store: TimeSeriesStore;
  readonly pid: number | undefined;
  /** After the load: what the queries need done first (SQLite: reopen; InfluxDB: compactions). */
  afterLoad(): Promise<{ store: TimeSeriesStore; diskBytes: number; settleSeconds?: number }>;
  close(): Promise<void>;
}

async function sqliteUnderTest(): Promise<StoreUnderTest> {
  const dir = await makeTempDir("cw-bench-query-sqlite-");
  const file = join(dir, "timeseries.db");
  let store = createSqliteStore(file);
  await store.open();
  return {
    store,
    pid: undefined,
    async afterLoad() {
      // Closed and opened again, as a restarted `citywatch start` finds it: the WAL is copied
      // back into the file, whose size is then the store's.
      await store.close();
      const bytes = ["", "-wal", "-shm"].reduce((sum, s) => sum + diskBytes(`${file}${s}`), 0);
      store = createSqliteStore(file);
      await store.open();
      return { store, diskBytes: bytes };
    },
    async close() {
      await store.close();
      await removeTempDir(dir);
    },
  };
}

async function influxUnderTest(): Promise<StoreUnderTest | string> {
  const provided = await provideInfluxDB();
  if (!provided.ok) return provided.reason;
  const pid = childInfluxd();
  const store = createInfluxStore(
    { url: provided.service.url, api: "v1", v1: { database: "citywatch" }, timeoutMs: 60_000 },
    { log: pino({ level: "silent" }) },
  );
  try {
    await store.open();
  } catch (error) {
    await provided.service.stop();
    throw error;
  }
  console.log(
    `influxdb: ${provided.service.url} (${provided.service.source}${pid === undefined ? "" : `, pid ${pid}`})`,
  );
  return {
    store,
    pid,
    async afterLoad() {
      const settleSeconds = pid === undefined ? 0 : await settle(pid);
      // tests/support runs influxd in its temporary directory, data/ and wal/ below it.
      const cwd = pid === undefined ? undefined : `/proc/${pid}/cwd`;
      const bytes =
        cwd === undefined ? Number.NaN : diskBytes(join(cwd, "data")) + diskBytes(join(cwd, "wal"));
      return { store, diskBytes: bytes, settleSeconds };
    },
    async close() {
      await store.close();
      await provided.service.stop();
    },
  };
}

async function runStore(name: StoreName, city: QueryCity): Promise<StoreResult | string> {
  const underTest = name === "sqlite" ? await sqliteUnderTest() : await influxUnderTest();
  if (typeof underTest === "string") return underTest;
  try {
    // Minutes up to the current one: the last reading is the latest, the month ends now.
    const lastMs = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS;
    const fromMs = lastMs - SCALE.days * DAY_MS + MINUTE_MS;
    const loaded = await loadStore(name, underTest.store, city, fromMs, underTest.pid);
    console.log(
      `${name}: loaded ${formatCount(loaded.readings)} readings in ${loaded.seconds.toFixed(1)} s: ${formatCount(loaded.readings / loaded.seconds)} readings/s; bench process CPU ${loaded.benchCpuSeconds.toFixed(0)} s${loaded.storeCpuSeconds === undefined ? "" : `, influxd CPU ${loaded.storeCpuSeconds.toFixed(0)} s`}; load average ${load()}`,
    );
    const after = await underTest.afterLoad();
    if (after.settleSeconds !== undefined)
      console.log(
        `${name}: compactions settled ${after.settleSeconds.toFixed(0)} s after the load`,
      );
    console.log(
      `${name}: on disk ${mib(after.diskBytes)}, ${mib((after.diskBytes / loaded.readings) * 1e6)} per million readings`,
    );
    // As the ingest opens it for the API (ingest/app.ts): behind the last-value cache.
    const served = await serve(withLatestCache(after.store), city, lastMs);
    try {
      const { timings, verdicts } = await measure(after.store, served, city, lastMs);
      return {
        store: name,
        loaded,
        settleSeconds: after.settleSeconds,
        diskBytes: after.diskBytes,
        timings,
        verdicts,
        peakRss: peakRss(),
        storePeakRss: underTest.pid === undefined ? undefined : peakRssOf(underTest.pid),
      };
    } finally {
      await served.close();
    }
  } finally {
    await underTest.close();
  }
}

export async function run(): Promise<void> {
  const city = queryCity(SCALE.devices);
  console.log(
    `city: ${city.devices.length} devices at ${city.sites.length} sites, ${SCALE.days} days at one reading a minute; stores: ${STORES.join(", ")}; load average ${load()}`,
  );
  const results: StoreResult[] = [];
  for (const name of STORES) {
    if (name !== "sqlite" && name !== "influxdb") throw new Error(`unknown store ${name}`);
    const out = await runStore(name, city);
    if (typeof out === "string") console.log(`${name}: skipped: ${out}`);
    else results.push(out);
  }
  for (const r of results) {
    console.log(`\n${r.store}:`);
    console.log(
      formatTable(
        ["scenario", "via", "p50 ms", "p99 ms", "max ms", "n", "KiB/answer"],
        r.timings.map((t) => [
          t.scenario,
          t.via,
          ms(t.p50),
          ms(t.p99),
          ms(t.max),
          String(t.n),
          t.kib.toFixed(1),
        ]),
      ),
    );
  }
  console.log("");
  console.log(
    formatTable(
      [
        "store",
        "readings",
        "load s",
        "readings/s",
        "on disk",
        "per million",
        "peak RSS bench",
        "peak RSS influxd",
      ],
      results.map((r) => [
        r.store,
        formatCount(r.loaded.readings),
        r.loaded.seconds.toFixed(0),
        formatCount(r.loaded.readings / r.loaded.seconds),
        mib(r.diskBytes),
        mib((r.diskBytes / r.loaded.readings) * 1e6),
        mib(r.peakRss),
        r.storePeakRss === undefined ? "-" : mib(r.storePeakRss),
      ]),
    ),
  );
  console.log("");
  console.log(
    formatTable(
      ["issue #20 goal (p99, HTTP)", "store", "p99 ms", "goal ms", "verdict"],
      results.flatMap((r) =>
        r.verdicts.map((v) => [
          v.goal,
          r.store,
          ms(v.p99),
          `≤ ${v.limit}`,
          v.p99 <= v.limit ? "met" : "MISSED",
        ]),
      ),
    ),
  );
  console.log(
    `client and server in one process on loopback (fetch, keep-alive), requests one after the other after warm-up; load average ${load()}`,
  );
}
