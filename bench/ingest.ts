/**
 * Ingest benchmark (`npm run bench -- ingest`): sustained readings per second end to end,
 * publisher -> broker -> ingest -> store, counted in the store, for InfluxDB and SQLite at 1 and
 * 50 readings per message; the CPU time per reading of the all-in-one process (broker + ingest,
 * built as cli/commands/serve.ts builds them), and of the same broker alone, so the ingest's own
 * share is their difference; and the bare floor (JSON.parse + zod + line protocol) to hold it
 * against. The floor is timed three ways: at length in this process before and after the
 * children (its breakdown); briefly just before each timed round, on the quiet machine; and in
 * short bursts in a process of its own alongside each round (bench/floor-sampler.ts), under the
 * same load and at the same moments as the process under test. This machine's speed for the same
 * work moves by more than half from one second to the next, so the goal is judged on the floor
 * timed alongside: a figure is the median of its rounds' ratios, and the ratio over the quiet
 * floor is printed next to it. The InfluxDB rounds
 * at 50 readings per message run twice: as shipped (the rules driver evaluating every stored
 * batch, which the goal is judged on) and with the rules driver off (the ingest path alone), so
 * the two shares can be told apart.
 *
 * The system under test runs in a child process (bench/ingest-server.ts), InfluxDB (influxd
 * 1.6.7 from tests/support) in its own, and the devices' connections in this process: raw
 * sockets writing PUBLISH packets encoded before the round (bench/raw-mqtt-load.ts, a few µs per
 * message), and for the one-reading cross-check round MQTT.js connections (about 38 µs per
 * message of their own, enough to limit that round on two cores).
 * A round publishes a fixed number of readings from every device at once and ends when the
 * ingest's readings_stored counter holds all of them; the store itself is then counted
 * (InfluxDB `SELECT COUNT`, SQLite `count(*)`), and loss is published minus counted.
 *
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each child into <dir>.
 * BENCH_INGEST_CONFIG='<json>' is merged over the ingest configuration (e.g. `{"batch":{"maxPoints":10000}}`).
 * BENCH_INGEST_SIZES=50 keeps only the rounds of that many readings per message (a profile of one).
 */
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { provideInfluxDB } from "../tests/support/services.js";
import { FloorSampler } from "./floor-sampler.js";
import { findInfluxd, processCpuMicros } from "./proc-cpu.js";
import { IngestChild } from "./ingest-child.js";
import { floorPayloads, measureFloor, sampleFloor, type FloorFigure } from "./ingest-floor.js";
import { Fleet, type Prepared } from "./ingest-load.js";
import { RawFleet } from "./raw-mqtt-load.js";
import { benchDevices, DeviceStream, firstReadingMs } from "./ingest-payloads.js";
import type { BenchStore, IngestVariant, SampleMessage, ServerArgs } from "./ingest-protocol.js";
import { formatCount, formatTable, median } from "./table.js";

const DEVICES = 100;
/** QoS1 publishes in flight per device connection. */
const WINDOW = 10;
/**
 * Untimed, per child: JIT, SQLite pages, InfluxDB shards, the ingest's state and V8's heap (the
 * young generation grows to its 64 MiB over the first few hundred thousand readings) settle
 * first. With 60,000 the first timed round still ran a quarter above the next two.
 */
const WARMUP = [
  { readingsPerMessage: 50, readings: 200_000, publisher: "raw" },
  { readingsPerMessage: 1, readings: 2_000, publisher: "raw" },
] as const;
/**
 * Timed, per child, in this order, each `repeats` times: the round with the median CPU per
 * reading is reported (a burst of other load on this 2-core machine moves one round by 10 %),
 * loss is counted over all of them.
 */
const ROUNDS = [
  { readingsPerMessage: 50, readings: 300_000, repeats: 3, publisher: "raw" },
  { readingsPerMessage: 1, readings: 60_000, repeats: 1, publisher: "raw" },
  // The cross-check: the same round from MQTT.js connections (about 38 µs of its own per message).
  { readingsPerMessage: 1, readings: 30_000, repeats: 1, publisher: "mqtt.js" },
] as const;
/** BENCH_INGEST_SIZES: the message sizes whose rounds run (all when unset). */
const SIZES = (process.env["BENCH_INGEST_SIZES"] ?? "")
  .split(",")
  .filter((s) => s.trim() !== "")
  .map(Number);
function selected<T extends { readingsPerMessage: number }>(rounds: readonly T[]): T[] {
  return rounds.filter((r) => SIZES.length === 0 || SIZES.includes(r.readingsPerMessage));
}
/** One round at most; a round that makes no progress for STALL_MS ends early, as a failure. */
const ROUND_TIMEOUT_MS = 60_000;
const STALL_MS = 15_000;
/** How often the child's counters are read while a round runs. */
const POLL_MS = 20;
/** The whole bench: past this, rounds are cut short and later targets skipped (~90 s is usual). */
const BENCH_BUDGET_MS = 300_000;
/** performance.now() at which BENCH_BUDGET_MS runs out; set by run(). */
let deadline = Number.POSITIVE_INFINITY;

/** Goals and the reference figures on the bench machine (the issues'). */
const GOAL_READINGS_PER_SECOND = 60_000;
const GOAL_FLOOR_RATIO = 2;
/** Issue #20's goals: 50 readings/message, and one reading per message (raw publisher). */
const GOAL_BATCHED_READINGS_PER_SECOND = 120_000;
const GOAL_SINGLE_READINGS_PER_SECOND = 40_000;
const GOAL_SINGLE_CHILD_MICROS = 25;
const REFERENCE = {
  floorMicrosPerReading: 5,
  influxdbAlonePointsPerSecond: 280_000,
  influxdbAloneBatchLines: 5_000,
};
const FLOOR_MESSAGES = 200;

/**
 * `influxdb-rules-off`: the same as `influxdb` with the rules driver disabled, 50 readings per
 * message only: the ingest path alone (issue #3's scope), next to the shipped configuration.
 */
type Target = "influxdb" | "influxdb-rules-off" | "sqlite" | "broker-only";

/**
 * Who publishes a round: `raw` writes PUBLISH packets encoded before the round to raw sockets
 * (bench/raw-mqtt-load.ts, a few µs per message); `mqtt.js` publishes through MQTT.js
 * connections (bench/ingest-load.ts), the cross-check.
 */
type PublisherName = "raw" | "mqtt.js";

interface Publisher {
  readonly name: PublisherName;
  /** The round's messages, made untimed; `publish` sends them and resolves when all are acked. */
  prepare(
    readingsPerMessage: number,
    readings: number,
  ): { prepared: Prepared; publish: (window: number) => Promise<void> };
  close(): Promise<void>;
}

/** Either fleet as a Publisher: its own prepared messages go back to its own publish. */
function publisherOf<P extends Prepared>(
  name: PublisherName,
  fleet: {
    prepare(readingsPerMessage: number, readings: number): P;
    publish(prepared: P, window: number): Promise<void>;
    close(): Promise<void>;
  },
): Publisher {
  return {
    name,
    prepare(readingsPerMessage, readings) {
      const prepared = fleet.prepare(readingsPerMessage, readings);
      return { prepared, publish: (window) => fleet.publish(prepared, window) };
    },
    close: () => fleet.close(),
  };
}

interface RoundResult {
  readonly target: Target;
  readonly publisher: PublisherName;
  readonly readingsPerMessage: number;
  readonly messages: number;
  readonly published: number;
  /** Readings counted in the store (broker-only: let through by its counting gate). */
  readonly stored: number;
  /** The ingest's readings_stored counter over the round (all-in-one only). */
  readonly counterStored: number | null;
  readonly loss: number;
  /** From the first publish to the moment the store held every reading. */
  readonly seconds: number;
  /** From the first publish to the broker's last PUBACK. */
  readonly publishSeconds: number | null;
  readonly readingsPerSecond: number;
  /** CPU of the child (broker + ingest, or broker alone) per reading, µs. */
  readonly childCpu: number;
  /** Child CPU time / wall time: cores the child kept busy. */
  readonly childCores: number;
  readonly publisherCpu: number;
  readonly influxdCpu: number | null;
  readonly deadLetters: number;
  readonly duplicates: number;
  readonly storeErrors: number;
  readonly storeWrites: number;
  readonly storeWriteSeconds: number;
  readonly error?: string;
  /** Rounds this result is the median of (its figures are the median round's; loss is all of theirs). */
  readonly repeats?: number;
  /** Readings published in all of those rounds. */
  readonly allPublished?: number;
  /** The least and most child CPU per reading of those rounds. */
  readonly childCpuRange?: readonly [number, number];
  /** The floor sampled just before the round on the quiet machine, µs per reading (timed rounds only). */
  readonly floor?: number;
  /** The floor timed in bursts alongside the round (bench/floor-sampler.ts), µs per reading. */
  readonly floorAlongside?: number;
  /** Each repeat's child CPU and floor samples (on the median result). */
  readonly repeatFigures?: ReadonlyArray<RepeatFigure>;
}

interface RepeatFigure {
  readonly childCpu: number;
  readonly floor: number;
  readonly floorAlongside?: number | undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function loadText(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function cpuMicros(usage: NodeJS.CpuUsage): number {
  return usage.user + usage.system;
}

// ---- Counting in the store.

interface StoreCounter {
  count(): Promise<number>;
  close(): void;
}

function influxCounter(url: string, database: string): StoreCounter {
  return {
    async count() {
      const q = `SELECT COUNT("seq") FROM "dust","utility_tunnel"`;
      const response = await fetch(
        `${url}/query?db=${encodeURIComponent(database)}&q=${encodeURIComponent(q)}`,
        { signal: AbortSignal.timeout(30_000) },
      );
      const body = (await response.json()) as {
        results?: Array<{ error?: string; series?: Array<{ values?: unknown[][] }> }>;
        error?: string;
      };
      const error = body.error ?? body.results?.[0]?.error;
      if (!response.ok || error !== undefined) {
        throw new Error(`InfluxDB count: HTTP ${response.status} ${error ?? ""}`);
      }
      let total = 0;
      for (const series of body.results?.[0]?.series ?? []) {
        total += Number(series.values?.[0]?.[1] ?? 0);
      }
      return total;
    },
    close() {},
  };
}

function sqliteCounter(file: string): StoreCounter {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  // The store's one table of readings, whatever ingest/store/sqlite.ts calls it.
  const tables = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'reading%'")
    .all() as Array<{ name: string }>;
  const [table] = tables;
  if (table === undefined || tables.length > 1) {
    db.close();
    throw new Error(`${file}: expected one table of readings, found ${tables.length}`);
  }
  const stmt = db.prepare(`SELECT count(*) AS n FROM "${table.name.replace(/"/g, '""')}"`);
  return {
    count: () => Promise.resolve((stmt.get() as { n: number }).n),
    close: () => db.close(),
  };
}

// ---- Rounds.

interface Session {
  readonly target: Target;
  readonly child: IngestChild;
  /** The devices' connections, of the publisher the round asks for (opened on first use). */
  publisherFor(name: PublisherName): Promise<Publisher>;
  readonly counter?: StoreCounter;
  readonly influxd: number | undefined;
  /** Times the floor alongside each round. */
  readonly sampler?: FloorSampler | undefined;
}

/** Wait for `done()` while `progress()` moves; the time it became true, or why it did not. */
async function waitFor(
  startedAt: number,
  done: () => Promise<boolean>,
  progress: () => number,
  failed: () => Error | undefined,
): Promise<{ at: number } | { error: string }> {
  let last = progress();
  let movedAt = performance.now();
  for (;;) {
    if (await done()) return { at: performance.now() };
    const error = failed();
    if (error !== undefined) return { error: error.message };
    const now = performance.now();
    const seen = progress();
    if (seen !== last) {
      last = seen;
      movedAt = now;
    } else if (now - movedAt > STALL_MS) {
      return { error: `no progress for ${STALL_MS / 1000} s` };
    }
    if (now - startedAt > ROUND_TIMEOUT_MS) {
      return { error: `not done in ${ROUND_TIMEOUT_MS / 1000} s` };
    }
    if (now > deadline) return { error: "the bench's time budget ran out" };
    await sleep(POLL_MS);
  }
}

async function round(
  session: Session,
  readingsPerMessage: number,
  readings: number,
  publisherName: PublisherName,
): Promise<RoundResult> {
  const { child, counter, target } = session;
  const publisher = await session.publisherFor(publisherName);
  const { prepared, publish } = publisher.prepare(readingsPerMessage, readings);
  const statsBefore = await child.stats();
  const countBefore = (await counter?.count()) ?? 0;
  const before = await child.sample();
  let latest: SampleMessage = before;
  const influxBefore = processCpuMicros(session.influxd);
  const publisherBefore = process.cpuUsage();
  session.sampler?.begin();
  const startedAt = performance.now();

  let publishedAt: number | undefined;
  let publishError: Error | undefined;
  const publishing = publish(WINDOW).then(
    () => {
      publishedAt = performance.now();
    },
    (error: unknown) => {
      publishError = error instanceof Error ? error : new Error(String(error));
    },
  );

  // All-in-one: done when the ingest's readings_stored holds the round. Broker alone: when its
  // counting gate let every message through.
  const done = (sample: SampleMessage) =>
    target === "broker-only"
      ? sample.messagesReceived - before.messagesReceived >= prepared.messages
      : sample.readingsStored - before.readingsStored >= prepared.readings;
  const outcome = await waitFor(
    startedAt,
    async () => {
      latest = await child.sample();
      return done(latest);
    },
    () => latest.readingsStored + latest.messagesReceived,
    () => publishError,
  );
  // CPU up to the moment the round was done (the child idles after it).
  const end = latest;
  const publisherCpu = cpuMicros(process.cpuUsage(publisherBefore));
  const alongside = await session.sampler?.end();
  const influxAfter = processCpuMicros(session.influxd);
  await withTimeout(publishing, 10_000, "publishing").catch(() => undefined);

  const doneAt = "at" in outcome ? outcome.at : performance.now();
  const seconds = (doneAt - startedAt) / 1000;
  const stored =
    target === "broker-only"
      ? (end.messagesReceived - before.messagesReceived) * readingsPerMessage
      : ((await counter?.count()) ?? 0) - countBefore;
  const statsAfter = await child.stats();
  const perReading = (micros: number) => micros / prepared.readings;
  return {
    target,
    publisher: publisherName,
    readingsPerMessage,
    messages: prepared.messages,
    published: prepared.readings,
    stored,
    counterStored: target === "broker-only" ? null : end.readingsStored - before.readingsStored,
    loss: prepared.readings - stored,
    seconds,
    publishSeconds: publishedAt === undefined ? null : (publishedAt - startedAt) / 1000,
    readingsPerSecond: stored / seconds,
    childCpu: perReading(end.cpuMicros - before.cpuMicros),
    childCores: (end.cpuMicros - before.cpuMicros) / 1e6 / seconds,
    publisherCpu: perReading(publisherCpu),
    influxdCpu:
      influxBefore !== undefined && influxAfter !== undefined && target.startsWith("influxdb")
        ? perReading(influxAfter - influxBefore)
        : null,
    deadLetters: statsAfter.deadLetters - statsBefore.deadLetters,
    duplicates: statsAfter.duplicates - statsBefore.duplicates,
    storeErrors: statsAfter.storeErrors - statsBefore.storeErrors,
    storeWrites: statsAfter.storeWrites - statsBefore.storeWrites,
    storeWriteSeconds: statsAfter.storeWriteSeconds - statsBefore.storeWriteSeconds,
    ...(alongside !== undefined ? { floorAlongside: alongside.micros } : {}),
    ...("error" in outcome ? { error: outcome.error } : {}),
  };
}

/** The round with the median CPU per reading, with the loss and spread of all of them. */
function medianRound(repeats: readonly RoundResult[]): RoundResult {
  const sorted = [...repeats].sort((a, b) => a.childCpu - b.childCpu);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as RoundResult;
  return {
    ...median,
    loss: repeats.reduce((sum, r) => sum + r.loss, 0),
    allPublished: repeats.reduce((sum, r) => sum + r.published, 0),
    repeats: repeats.length,
    childCpuRange: [sorted[0]?.childCpu ?? 0, sorted[sorted.length - 1]?.childCpu ?? 0],
    repeatFigures: repeats.flatMap((r) =>
      r.floor !== undefined
        ? [{ childCpu: r.childCpu, floor: r.floor, floorAlongside: r.floorAlongside }]
        : [],
    ),
  };
}

/**
 * The ingest's CPU over the floor: per timed round, (child - broker) / the floor timed alongside
 * it (`alongside`) or sampled on the quiet machine just before it (`quiet`), and the median of
 * those; null when a round lacks that floor.
 */
function floorRatio(r: RoundResult, broker: number, which: "alongside" | "quiet"): number | null {
  const ratios: number[] = [];
  for (const f of r.repeatFigures ?? []) {
    const floor = which === "alongside" ? f.floorAlongside : f.floor;
    if (floor === undefined) return null;
    ratios.push((f.childCpu - broker) / floor);
  }
  return ratios.length > 0 ? median(ratios) : null;
}

function meanFloor(a: FloorFigure, b: FloorFigure): FloorFigure {
  const mean = (x: number, y: number) => (x + y) / 2;
  return {
    parse: mean(a.parse, b.parse),
    validate: mean(a.validate, b.validate),
    serialize: mean(a.serialize, b.serialize),
    total: mean(a.total, b.total),
    best: Math.min(a.best, b.best),
    repetitions: a.repetitions + b.repetitions,
    readingsPerMessage: a.readingsPerMessage,
  };
}

function progressLine(label: string, r: RoundResult): string {
  const loss = r.loss !== 0 ? `, LOSS ${formatCount(r.loss)}` : "";
  const error = r.error !== undefined ? `  FAILED: ${r.error}` : "";
  const published =
    r.publishSeconds !== null ? `, published in ${r.publishSeconds.toFixed(2)} s` : "";
  return (
    `  ${label} ${r.target} ${r.readingsPerMessage}/msg (${r.publisher}): ${formatCount(r.stored)} of ${formatCount(r.published)} readings ` +
    `in ${r.seconds.toFixed(2)} s = ${formatCount(r.readingsPerSecond)}/s${published}; ` +
    `child ${r.childCpu.toFixed(2)} µs/reading (${r.childCores.toFixed(2)} cores)` +
    `${r.floor !== undefined ? `; floor just before ${r.floor.toFixed(2)} µs` : ""}` +
    `${r.floorAlongside !== undefined ? `, alongside ${r.floorAlongside.toFixed(2)} µs` : ""}${loss}${error}`
  );
}

async function runTarget(
  target: Target,
  store: BenchStore,
  influxd: number | undefined,
  ingestConfig: Record<string, unknown> | undefined,
  cpuProfileDir: string | undefined,
  /** A short floor sample, taken before each timed round. */
  floorSample: () => number,
  sampler: FloorSampler | undefined,
  /** Only the rounds of these message sizes (default: all that BENCH_INGEST_SIZES selects). */
  sizes?: readonly number[],
): Promise<{ results: RoundResult[]; error?: string; cumulative?: string }> {
  const pick = <T extends { readingsPerMessage: number }>(rounds: readonly T[]) =>
    selected(rounds).filter((r) => sizes === undefined || sizes.includes(r.readingsPerMessage));
  const devices = benchDevices(DEVICES);
  const variant: IngestVariant = target === "broker-only" ? "broker-only" : "all-in-one";
  const args: ServerArgs = {
    variant,
    store,
    devices,
    ...(ingestConfig !== undefined ? { ingestConfig } : {}),
  };
  const results: RoundResult[] = [];
  if (performance.now() > deadline)
    return { results, error: "skipped: the bench's time budget ran out" };
  let child: IngestChild | undefined;
  let publisher: Publisher | undefined;
  let counter: StoreCounter | undefined;
  try {
    const started = await IngestChild.start(target, args, { cpuProfileDir });
    child = started.child;
    const { ready } = started;
    const url = `mqtt://127.0.0.1:${ready.port}`;
    if (store.type === "influxdb" && variant === "all-in-one") {
      counter = influxCounter(store.url, store.database);
    } else if (ready.timeseriesFile !== undefined) {
      counter = sqliteCounter(ready.timeseriesFile);
    }
    const startMs = firstReadingMs(Date.now());
    const streams = devices.map((d, i) => new DeviceStream(d.id, d.kind, i, startMs));
    // One publisher's connections at a time: the other's would take over their client ids.
    const publisherFor = async (name: PublisherName): Promise<Publisher> => {
      if (publisher?.name === name) return publisher;
      await publisher?.close();
      publisher = undefined;
      publisher =
        name === "raw"
          ? publisherOf(name, await RawFleet.open(url, ready.devices, streams))
          : publisherOf(name, await Fleet.open(url, ready.devices, streams));
      return publisher;
    };
    const session: Session = {
      target,
      child,
      publisherFor,
      influxd,
      sampler,
      ...(counter !== undefined ? { counter } : {}),
    };
    let published = 0;
    for (const w of pick(WARMUP)) {
      const r = await round(session, w.readingsPerMessage, w.readings, w.publisher);
      published += r.published;
      console.log(progressLine("warm-up", r));
      if (r.error !== undefined || r.loss !== 0) {
        return { results, error: `warm-up: ${r.error ?? `lost ${r.loss}`}` };
      }
    }
    for (const spec of pick(ROUNDS)) {
      const repeats: RoundResult[] = [];
      for (let i = 0; i < spec.repeats; i++) {
        const floor = floorSample();
        const r = {
          ...(await round(session, spec.readingsPerMessage, spec.readings, spec.publisher)),
          floor,
        };
        published += r.published;
        repeats.push(r);
        console.log(progressLine("round", r));
        if (r.error !== undefined) {
          results.push(r);
          return { results, error: r.error };
        }
      }
      results.push(medianRound(repeats));
    }
    if (counter !== undefined) {
      const total = await counter.count();
      return {
        results,
        cumulative: `${target}: the store holds ${formatCount(total)} readings of ${formatCount(published)} published in this child (warm-up included)${total === published ? "" : `: LOSS ${formatCount(published - total)}`}`,
      };
    }
    return { results };
  } catch (error) {
    console.log(`  ${target} failed: ${messageOf(error)}`);
    return { results, error: messageOf(error) };
  } finally {
    await publisher?.close().catch(() => undefined);
    counter?.close();
    await child?.stop();
  }
}

// ---- Report.

function find(
  results: readonly RoundResult[],
  target: Target,
  perMessage: number,
  publisher: PublisherName = "raw",
) {
  return results.find(
    (r) => r.target === target && r.readingsPerMessage === perMessage && r.publisher === publisher,
  );
}

function verdict(pass: boolean | null): string {
  return pass === null ? "n/a" : pass ? "PASS" : "MISS";
}

export async function run(): Promise<void> {
  const cpuProfileDir = process.env["BENCH_CPU_PROF"] || undefined;
  const ingestConfigText = process.env["BENCH_INGEST_CONFIG"] || undefined;
  const ingestConfig =
    ingestConfigText !== undefined
      ? (JSON.parse(ingestConfigText) as Record<string, unknown>)
      : undefined;
  deadline = performance.now() + BENCH_BUDGET_MS;
  const cores = cpus();
  const loadBefore = loadText();
  console.log(
    `ingest bench: ${cores.length} x ${cores[0]?.model ?? "cpu"}, node ${process.version}, load ${loadBefore}`,
  );
  console.log(
    `${DEVICES} devices (dust and utility_tunnel, 2-5 quantities per reading), one connection each in this process (raw sockets; MQTT.js where a round says so), ` +
      `QoS1, ${WINDOW} in flight per device; broker + ingest in one child process (as \`citywatch start\`); influxd its own process`,
  );
  console.log(
    `rounds per child: warm-up ${selected(WARMUP)
      .map((w) => `${formatCount(w.readings)} x ${w.readingsPerMessage}/msg`)
      .join(", ")}; ` +
      `timed ${selected(ROUNDS)
        .map((r) => `${formatCount(r.readings)} readings at ${r.readingsPerMessage}/msg`)
        .join(", ")}` +
      (ingestConfig !== undefined
        ? `; ingest config override ${JSON.stringify(ingestConfig)}`
        : ""),
  );

  // The floor, in this process before any load starts, over the bench's own 50-reading messages.
  const payloads = floorPayloads(DEVICES, FLOOR_MESSAGES);
  // Measured before the children and again after them: the mean of the two is the floor, so a
  // burst of other load during one measurement moves it half as much.
  const floorBefore: FloorFigure = measureFloor(payloads, 50);
  const floorLine = (label: string, f: FloorFigure) =>
    `floor ${label}: ${f.total.toFixed(2)} µs/reading (JSON.parse ${f.parse.toFixed(2)} + zod ${f.validate.toFixed(2)} + points & toLine ${f.serialize.toFixed(2)}; best ${f.best.toFixed(2)})`;
  console.log(floorLine("before", floorBefore));
  const floorSample = () => sampleFloor(payloads);
  const sampler = await FloorSampler.start({ devices: DEVICES, messages: FLOOR_MESSAGES }).catch(
    (error: unknown) => {
      console.log(
        `  floor sampler unavailable (${messageOf(error)}): rounds are held against the quiet floor only`,
      );
      return undefined;
    },
  );

  const results: RoundResult[] = [];
  const errors: string[] = [];
  const cumulative: string[] = [];
  const provided = await provideInfluxDB().catch(
    (error: unknown) => ({ ok: false, reason: messageOf(error) }) as const,
  );
  try {
    if (provided.ok) {
      const influxd = findInfluxd();
      console.log(
        `InfluxDB: ${provided.service.url} (${provided.service.source}${influxd !== undefined ? `, pid ${influxd}` : ""})`,
      );
      for (const target of ["influxdb", "influxdb-rules-off"] as const) {
        const rulesOff = target === "influxdb-rules-off";
        const out = await runTarget(
          target,
          { type: "influxdb", url: provided.service.url, database: `bench_${Date.now()}` },
          influxd,
          rulesOff ? { ...ingestConfig, rules: { enabled: false } } : ingestConfig,
          cpuProfileDir,
          floorSample,
          sampler,
          rulesOff ? [50] : undefined,
        );
        results.push(...out.results);
        if (out.error !== undefined) errors.push(`${target}: ${out.error}`);
        if (out.cumulative !== undefined) cumulative.push(out.cumulative);
      }
    } else {
      errors.push(`influxdb: ${provided.reason}`);
      console.log(`  InfluxDB unavailable: ${provided.reason}`);
    }
  } finally {
    if (provided.ok) await provided.service.stop();
  }
  for (const target of ["sqlite", "broker-only"] as const) {
    const out = await runTarget(
      target,
      { type: "sqlite" },
      undefined,
      ingestConfig,
      cpuProfileDir,
      floorSample,
      sampler,
    );
    results.push(...out.results);
    if (out.error !== undefined) errors.push(`${target}: ${out.error}`);
    if (out.cumulative !== undefined) cumulative.push(out.cumulative);
  }
  sampler?.close();
  const loadAfter = loadText();
  const floorAfter: FloorFigure = measureFloor(payloads, 50);
  console.log(floorLine("after", floorAfter));
  const floor = meanFloor(floorBefore, floorAfter);

  // Per store and message size: total, broker share, ingest share.
  const rows: string[][] = [];
  const summary = results
    .filter((r) => r.target !== "broker-only")
    .map((r) => {
      const broker = find(results, "broker-only", r.readingsPerMessage, r.publisher);
      const ingestOnly = broker !== undefined ? r.childCpu - broker.childCpu : null;
      const ratio = broker !== undefined ? floorRatio(r, broker.childCpu, "alongside") : null;
      const quietRatio = broker !== undefined ? floorRatio(r, broker.childCpu, "quiet") : null;
      return { ...r, brokerCpu: broker?.childCpu ?? null, ingestOnly, ratio, quietRatio };
    });
  for (const r of summary) {
    rows.push([
      r.target,
      r.publisher,
      String(r.readingsPerMessage),
      formatCount(r.published),
      formatCount(r.stored),
      formatCount(r.loss),
      r.seconds.toFixed(2),
      formatCount(r.readingsPerSecond),
      r.childCpuRange !== undefined && (r.repeats ?? 1) > 1
        ? `${r.childCpu.toFixed(2)} (${r.childCpuRange[0].toFixed(2)}-${r.childCpuRange[1].toFixed(2)})`
        : r.childCpu.toFixed(2),
      r.brokerCpu !== null ? r.brokerCpu.toFixed(2) : "-",
      r.ingestOnly !== null ? r.ingestOnly.toFixed(2) : "-",
      r.ratio !== null ? `${r.ratio.toFixed(2)}x` : "-",
      r.quietRatio !== null ? `${r.quietRatio.toFixed(2)}x` : "-",
      r.influxdCpu !== null ? r.influxdCpu.toFixed(2) : "-",
      r.publisherCpu.toFixed(2),
    ]);
  }
  console.log("");
  console.log(
    "End to end, publisher -> broker -> ingest -> store, counted in the store; CPU in µs per reading " +
      "(child = broker + ingest; broker-only = the same load through the broker alone; ingest = child - broker-only; " +
      "each row is the median of its rounds, the least and most child CPU in brackets; " +
      "/ floor = the median over the rounds of each round's ingest CPU over the floor timed in bursts alongside it, under the same load on the machine; " +
      "/ quiet floor = the same over the floor sampled just before the round, with the machine quiet):",
  );
  console.log(
    formatTable(
      [
        "store",
        "publisher",
        "rdg/msg",
        "published",
        "stored",
        "loss",
        "s",
        "readings/s",
        "child µs",
        "broker µs",
        "ingest µs",
        "/ floor",
        "/ quiet floor",
        "influxd µs",
        "publishers µs",
      ],
      rows,
    ),
  );
  for (const r of summary) {
    const extra: string[] = [];
    if (r.counterStored !== null && r.counterStored !== r.stored) {
      extra.push(
        `readings_stored counter ${formatCount(r.counterStored)} != store count ${formatCount(r.stored)}`,
      );
    }
    if (r.deadLetters > 0) extra.push(`${formatCount(r.deadLetters)} dead letters`);
    if (r.duplicates > 0) extra.push(`${formatCount(r.duplicates)} duplicates`);
    if (r.storeErrors > 0) extra.push(`${formatCount(r.storeErrors)} store errors`);
    const batch = r.storeWrites > 0 ? r.published / r.storeWrites : 0;
    console.log(
      `  ${r.target} ${r.readingsPerMessage}/msg (${r.publisher}): broker acked every publish in ${r.publishSeconds?.toFixed(2) ?? "-"} s; ` +
        `${formatCount(r.storeWrites)} store writes of ${formatCount(batch)} points, ${r.storeWriteSeconds.toFixed(2)} s waiting on the store; ` +
        `child busy ${r.childCores.toFixed(2)} cores${extra.length > 0 ? `; ${extra.join("; ")}` : ""}`,
    );
  }
  for (const line of cumulative) console.log(`  ${line}`);
  const brokerRows = results.filter((r) => r.target === "broker-only");
  for (const r of brokerRows) {
    console.log(
      `  broker-only ${r.readingsPerMessage}/msg (${r.publisher}): ${formatCount(r.readingsPerSecond)} readings/s through the broker's counting gate, ` +
        `broker ${r.childCpu.toFixed(2)} µs/reading${r.loss !== 0 ? `, LOSS ${formatCount(r.loss)}` : ""}`,
    );
  }
  for (const error of errors) console.log(`  failed: ${error}`);

  console.log("");
  console.log(
    `Floor (this process, ${FLOOR_MESSAGES} messages of ${floor.readingsPerMessage} readings, mean of the medians of ${floorBefore.repetitions} repetitions before the children and ${floorAfter.repetitions} after): ` +
      `${floor.total.toFixed(2)} µs/reading = JSON.parse ${floor.parse.toFixed(2)} + Uplink.safeParse ${floor.validate.toFixed(2)} + points & toLine ${floor.serialize.toFixed(2)}; ` +
      `reference about ${REFERENCE.floorMicrosPerReading} µs.`,
  );
  console.log(
    `Reference: InfluxDB 1.6.7 alone takes about ${formatCount(REFERENCE.influxdbAlonePointsPerSecond)} points/s in ${formatCount(REFERENCE.influxdbAloneBatchLines)}-line batches using both cores ` +
      `(about ${((2 * 1e6) / REFERENCE.influxdbAlonePointsPerSecond).toFixed(1)} µs of CPU per point).`,
  );

  const main = find(results, "influxdb", 50);
  const mainSummary = summary.find((r) => r.target === "influxdb" && r.readingsPerMessage === 50);
  const rulesOff = summary.find((r) => r.target === "influxdb-rules-off");
  const throughputPass =
    main === undefined
      ? null
      : main.readingsPerSecond >= GOAL_READINGS_PER_SECOND &&
        main.loss === 0 &&
        main.error === undefined;
  const allStored =
    results.length > 0 && errors.length === 0 ? results.every((r) => r.loss === 0) : null;
  const cpuFigure = mainSummary?.ingestOnly ?? mainSummary?.childCpu ?? null;
  // Without the sampler (it failed to start) the goal falls back to the quiet floor, and says so.
  const onQuietFloor = mainSummary !== undefined && mainSummary.ratio === null;
  const cpuRatio = mainSummary?.ratio ?? mainSummary?.quietRatio ?? null;
  const cpuPass = cpuRatio !== null ? cpuRatio <= GOAL_FLOOR_RATIO : null;
  const ratioText = (figure: number | null | undefined, ratio: number | null | undefined) =>
    figure === null || figure === undefined || ratio === null || ratio === undefined
      ? "not run"
      : `${figure.toFixed(2)} µs, ${ratio.toFixed(2)}x`;
  console.log("");
  console.log(
    formatTable(
      ["goal (InfluxDB, 50 readings/msg)", "measured", "verdict"],
      [
        [
          `>= ${formatCount(GOAL_READINGS_PER_SECOND)} readings/s end to end, zero loss`,
          main === undefined
            ? "not run"
            : `${formatCount(main.readingsPerSecond)}/s, loss ${formatCount(main.loss)}`,
          verdict(throughputPass),
        ],
        [
          onQuietFloor
            ? `ingest CPU <= ${GOAL_FLOOR_RATIO}x floor (each round / the quiet floor: no sampler)`
            : `ingest CPU <= ${GOAL_FLOOR_RATIO}x floor (each round / the floor timed alongside it)`,
          ratioText(cpuFigure, cpuRatio),
          verdict(cpuPass),
        ],
        [
          "zero loss in every configuration (counted in the store)",
          `${formatCount(results.reduce((sum, r) => sum + r.loss, 0))} lost of ${formatCount(results.reduce((sum, r) => sum + (r.allPublished ?? r.published), 0))}${errors.length > 0 ? `, ${errors.length} failed` : ""}`,
          verdict(allStored),
        ],
        [
          "  the same over the floor sampled on the quiet machine before each round",
          ratioText(cpuFigure, mainSummary?.quietRatio),
          "",
        ],
        [
          "  ingest CPU with the rules driver off (the ingest path alone)",
          ratioText(rulesOff?.ingestOnly, rulesOff?.ratio ?? rulesOff?.quietRatio),
          "",
        ],
        [
          "  ingest CPU with the broker's share included",
          ratioText(
            mainSummary?.childCpu,
            mainSummary === undefined
              ? null
              : floorRatio(mainSummary, 0, onQuietFloor ? "quiet" : "alongside"),
          ),
          "",
        ],
      ],
    ),
  );
  const single = summary.find(
    (r) => r.target === "influxdb" && r.readingsPerMessage === 1 && r.publisher === "raw",
  );
  const singleCross = summary.find(
    (r) => r.target === "influxdb" && r.readingsPerMessage === 1 && r.publisher === "mqtt.js",
  );
  const batchedPass =
    main === undefined
      ? null
      : main.readingsPerSecond >= GOAL_BATCHED_READINGS_PER_SECOND &&
        main.loss === 0 &&
        main.error === undefined;
  const singleRatePass =
    single === undefined
      ? null
      : single.readingsPerSecond >= GOAL_SINGLE_READINGS_PER_SECOND &&
        single.loss === 0 &&
        single.error === undefined;
  const singleCpuPass = single === undefined ? null : single.childCpu <= GOAL_SINGLE_CHILD_MICROS;
  const perMessage = (r: (typeof summary)[number] | undefined) =>
    r === undefined
      ? "not run"
      : `${r.childCpu.toFixed(1)} µs (broker ${r.brokerCpu?.toFixed(1) ?? "-"} + ingest ${r.ingestOnly?.toFixed(1) ?? "-"}), publisher ${r.publisherCpu.toFixed(1)} µs`;
  console.log("");
  console.log(
    formatTable(
      ["issue #20 goals (InfluxDB, rules on, QoS1)", "measured", "verdict"],
      [
        [
          `50 readings/msg: >= ${formatCount(GOAL_BATCHED_READINGS_PER_SECOND)} readings/s, zero loss`,
          main === undefined
            ? "not run"
            : `${formatCount(main.readingsPerSecond)}/s, loss ${formatCount(main.loss)}`,
          verdict(batchedPass),
        ],
        [
          `1 reading/msg (raw publisher): >= ${formatCount(GOAL_SINGLE_READINGS_PER_SECOND)} readings/s, zero loss`,
          single === undefined
            ? "not run"
            : `${formatCount(single.readingsPerSecond)}/s, loss ${formatCount(single.loss)}`,
          verdict(singleRatePass),
        ],
        [
          `1 reading/msg: broker + ingest CPU <= ${GOAL_SINGLE_CHILD_MICROS} µs per message`,
          perMessage(single),
          verdict(singleCpuPass),
        ],
        [
          "  the same from MQTT.js publishers (the cross-check)",
          singleCross === undefined
            ? "not run"
            : `${formatCount(singleCross.readingsPerSecond)}/s; ${perMessage(singleCross)}`,
          "",
        ],
      ],
    ),
  );
  console.log(
    `\nload average before ${loadBefore}, after ${loadAfter} (the bench itself keeps about 2 busy)`,
  );
  if (cpuProfileDir !== undefined) console.log(`CPU profiles of the children: ${cpuProfileDir}`);

  const result = {
    bench: "ingest",
    devices: DEVICES,
    window: WINDOW,
    rounds: ROUNDS,
    ingestConfig: ingestConfig ?? null,
    floor,
    floorBefore,
    floorAfter,
    results: summary,
    brokerOnly: brokerRows,
    errors,
    goals: {
      readingsPerSecond: GOAL_READINGS_PER_SECOND,
      readingsPerSecondMeasured: main?.readingsPerSecond ?? null,
      lossMeasured: main?.loss ?? null,
      readingsPerSecondPass: throughputPass,
      floorRatio: GOAL_FLOOR_RATIO,
      floorRatioMeasured: cpuRatio,
      floorRatioQuiet: mainSummary?.quietRatio ?? null,
      floorRatioOnQuietFloor: onQuietFloor,
      floorRatioPass: cpuPass,
      floorRatioRulesOff: rulesOff?.ratio ?? rulesOff?.quietRatio ?? null,
      zeroLossEverywhere: allStored,
      batchedReadingsPerSecond: GOAL_BATCHED_READINGS_PER_SECOND,
      batchedReadingsPerSecondPass: batchedPass,
      singleReadingsPerSecond: GOAL_SINGLE_READINGS_PER_SECOND,
      singleReadingsPerSecondMeasured: single?.readingsPerSecond ?? null,
      singleReadingsPerSecondPass: singleRatePass,
      singleChildMicrosPerMessage: GOAL_SINGLE_CHILD_MICROS,
      singleChildMicrosMeasured: single?.childCpu ?? null,
      singleChildMicrosPass: singleCpuPass,
    },
    reference: REFERENCE,
    loadAverage: { before: loadBefore, after: loadAfter },
  };
  console.log(`\nBENCH_RESULT ${JSON.stringify(result)}`);
}
