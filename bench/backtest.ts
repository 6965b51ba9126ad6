/**
 * Backtest benchmark (`npm run bench -- backtest`): readings replayed per second from the embedded
 * store through the rules engine, and the peak memory of doing it.
 *
 * A history of the bench city (bench/backtest-city.ts: blocks of a construction site, restaurant,
 * river gauge, underpass, tunnel segment and ambient station, 8 devices each, 1-minute readings
 * and 30-s tunnel monitors) is written to an embedded store on a real SQLite file once; then each
 * phase runs in a child process of its own (bench/backtest-child.ts), so its peak RSS and heap
 * are its own:
 *
 *   store read      the readings only read back and merged in time order: the store's ceiling
 *   no rules        the same replay into a RulesDriver with no rules: the harness's own cost
 *   pack, live tick the default pack on the live clock (ingest.rules.tickMs, 5 s): the default run
 *   pack, 1 m tick  the default pack with `--tick 1m`
 *   … N workers     the same split by site into N worker threads (one per CPU), as
 *                   `citywatch rules backtest` runs by default: the goal's figure
 *
 * The first two are the baseline of the same run: what is left is the engine's. Goal: 200,000
 * readings/s through the default pack. Each phase replays the whole city by default: a small one
 * measures the loading of the rules and the process more than the replay.
 *
 * Size: BENCH_BACKTEST_BLOCKS (default 20) blocks of history, replayed whole by the baselines;
 * BENCH_BACKTEST_ENGINE_BLOCKS (default: all) of them through the rules; BENCH_BACKTEST_HOURS
 * (default 96) hours of range after a 2-hour warm-up (the longest window of the pack's rules on
 * these sites; the goal is a month, and a day measures mostly the workers' start, about a second
 * of CPU each); BENCH_BACKTEST_WORKERS (default: the CPUs) worker threads for the split phases;
 * BENCH_BACKTEST_ONE_THREAD=0 leaves out the pack's one-thread phases (a month-long run). BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each phase's child into <dir>.
 *
 * BENCH_BACKTEST_DIR=<dir> keeps the history in <dir> and reuses it when a later run asks for the
 * same size on the same day (a month of 1,000 devices takes about 7 minutes to write);
 * BENCH_BACKTEST_PHASES=read,none,pack,pack-1m,workers,workers-1m runs only the phases named.
 */
import { fork } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { createSqliteStore } from "../ingest/store/sqlite.js";
import type { Point } from "../ingest/store/types.js";
import { benchHistoryCity, DEVICES_PER_BLOCK, emitHistory } from "./backtest-city.js";
import { type PhaseArgs, PhaseResult } from "./backtest-child.js";
import { formatCount, formatTable } from "./table.js";

const CHILD_SCRIPT = fileURLToPath(new URL("./backtest-child.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const GOAL_READINGS_PER_SECOND = 200_000;
const WARM_UP_MS = 2 * 3_600_000;

function sizeFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number >= 1`);
  return n;
}

const CPU_PROFILE_DIR = process.env["BENCH_CPU_PROF"] || undefined;

function runPhase(args: PhaseArgs): Promise<PhaseResult> {
  // As `citywatch` runs (bin/citywatch.js, npm run citywatch): a 64 MiB young generation.
  const execArgv = ["--max-semi-space-size=64", "--import", "tsx"];
  if (CPU_PROFILE_DIR !== undefined)
    execArgv.push("--cpu-prof", `--cpu-prof-dir=${CPU_PROFILE_DIR}`);
  const child = fork(CHILD_SCRIPT, [JSON.stringify(args)], {
    cwd: REPO_ROOT,
    execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    child.once("message", (m) => {
      const parsed = PhaseResult.safeParse(m);
      if (parsed.success) resolve(parsed.data);
      else reject(new Error(`backtest child sent ${JSON.stringify(m)}`));
    });
    child.once("exit", (code) => reject(new Error(`backtest child exited with ${code}`)));
  });
}

const mb = (bytes: number) => (bytes / 1_048_576).toFixed(0);

export async function run(): Promise<void> {
  const blocks = sizeFromEnv("BENCH_BACKTEST_BLOCKS", 20);
  const engineBlocks = Math.min(blocks, sizeFromEnv("BENCH_BACKTEST_ENGINE_BLOCKS", blocks));
  const hours = sizeFromEnv("BENCH_BACKTEST_HOURS", 96);
  const workers = sizeFromEnv("BENCH_BACKTEST_WORKERS", availableParallelism());
  // The pack in one thread too (a month-long run may leave it out: it takes twice the time).
  const oneThread = process.env["BENCH_BACKTEST_ONE_THREAD"] !== "0";
  const keptDir = process.env["BENCH_BACKTEST_DIR"] || undefined;
  const only = process.env["BENCH_BACKTEST_PHASES"]?.split(",").map((x) => x.trim());
  const dir = keptDir ?? mkdtempSync(join(tmpdir(), "cw-bench-backtest-"));
  try {
    const city = benchHistoryCity(blocks);
    // Whole days back from today's midnight UTC: the same local hours at every run.
    const toMs = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 86_400_000;
    const fromMs = toMs - hours * 3_600_000;
    const points = await historyIn(dir, city, fromMs, toMs, { blocks, hours });
    const all = {
      dir,
      fromMs,
      toMs,
      warmUpMs: WARM_UP_MS,
      devices: city.devices.length,
      workers: 1,
    };
    const engine = { ...all, devices: engineBlocks * DEVICES_PER_BLOCK };
    const onePack = [
      {
        key: "pack",
        name: "default pack, 5 s tick",
        args: { ...engine, rules: "pack", tickMs: 5_000 },
      },
      {
        key: "pack-1m",
        name: "default pack, 1 m tick",
        args: { ...engine, rules: "pack", tickMs: 60_000 },
      },
    ] satisfies Array<{ key: string; name: string; args: PhaseArgs }>;
    const named: Array<{ key: string; name: string; args: PhaseArgs }> = [
      {
        key: "read",
        name: "store read (baseline)",
        args: { ...all, rules: "read", tickMs: 5_000 },
      },
      { key: "none", name: "no rules (baseline)", args: { ...all, rules: "none", tickMs: 5_000 } },
      ...(oneThread ? onePack : []),
      {
        key: "workers",
        name: `default pack, 5 s tick, ${workers} workers`,
        args: { ...engine, rules: "pack", tickMs: 5_000, workers },
      },
      {
        key: "workers-1m",
        name: `default pack, 1 m tick, ${workers} workers`,
        args: { ...engine, rules: "pack", tickMs: 60_000, workers },
      },
    ];
    const phases = named.filter((p) => only === undefined || only.includes(p.key));
    const results: Array<{ name: string; args: PhaseArgs; r: PhaseResult }> = [];
    for (const phase of phases) {
      const r = await runPhase(phase.args);
      results.push({ ...phase, r });
      console.log(`  ${phase.name}: ${r.seconds.toFixed(1)} s`);
    }
    const rate = (r: PhaseResult) => r.readings / r.seconds;
    console.log(
      `\nBacktest replay from the embedded store (each phase in its own process; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(", ")}):`,
    );
    console.log(
      formatTable(
        [
          "phase",
          "devices",
          "readings",
          "seconds",
          "CPU s",
          "readings/s",
          "evaluations",
          "µs/evaluation",
          "cases",
          "peak RSS MB",
          "peak heap MB",
        ],
        results.map(({ name, args, r }) => [
          name,
          String(args.devices),
          formatCount(r.readings),
          r.seconds.toFixed(2),
          r.cpuSeconds.toFixed(2),
          formatCount(rate(r)),
          r.evaluations === 0 ? "-" : formatCount(r.evaluations),
          r.evaluations === 0 ? "-" : ((r.seconds * 1e6) / r.evaluations).toFixed(1),
          r.evaluations === 0 ? "-" : formatCount(r.raised),
          mb(r.peakRssBytes),
          // A worker thread's heap is its own: the main thread's says nothing of it.
          args.workers > 1 ? "-" : mb(r.peakHeapBytes),
        ]),
      ),
    );
    // As `citywatch rules backtest` runs by default: split into a worker per CPU.
    const pack = results.find(
      (x) => x.name.startsWith("default pack, 5 s") && x.args.workers === workers,
    )?.r;
    const packRate = pack === undefined ? 0 : rate(pack);
    const pass = packRate >= GOAL_READINGS_PER_SECOND;
    console.log(
      `\ngoal: >= ${formatCount(GOAL_READINGS_PER_SECOND)} readings/s through the default pack: ` +
        `${formatCount(packRate)} readings/s on the live tick with ${workers} worker${workers === 1 ? "" : "s"} (as the CLI runs by default) -> ${pass ? "PASS" : "MISS"}`,
    );
    console.log(
      `BENCH_RESULT ${JSON.stringify({
        bench: "backtest",
        size: {
          blocks,
          engineBlocks,
          hours,
          workers,
          devices: city.devices.length,
          readings: points,
        },
        phases: results.map(({ name, args, r }) => ({
          name,
          devices: args.devices,
          ...r,
          readingsPerSecond: rate(r),
        })),
        goal: { readingsPerSecond: GOAL_READINGS_PER_SECOND, pass },
      })}`,
    );
  } finally {
    if (keptDir === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The bench city's history in `dir` (city.json and timeseries.db): written, or found there from
 * an earlier run of the same size and range (BENCH_BACKTEST_DIR). Returns the readings it holds.
 */
async function historyIn(
  dir: string,
  city: ReturnType<typeof benchHistoryCity>,
  fromMs: number,
  toMs: number,
  size: { blocks: number; hours: number },
): Promise<number> {
  const marker = join(dir, "history.json");
  const wanted = { ...size, fromMs, toMs };
  if (existsSync(marker)) {
    const found = JSON.parse(readFileSync(marker, "utf8")) as typeof wanted & { points: number };
    if (
      found.blocks === wanted.blocks &&
      found.hours === wanted.hours &&
      found.fromMs === fromMs &&
      found.toMs === toMs
    ) {
      console.log(
        `history: ${formatCount(found.points)} readings kept in ${dir} from an earlier run`,
      );
      return found.points;
    }
  }
  mkdirSync(dir, { recursive: true });
  for (const file of ["timeseries.db", "timeseries.db-wal", "timeseries.db-shm"])
    rmSync(join(dir, file), { force: true });
  rmSync(marker, { force: true });
  writeFileSync(join(dir, "city.json"), JSON.stringify(city));
  const store = createSqliteStore(join(dir, "timeseries.db"));
  const written = performance.now();
  let points = 0;
  let batch: Point[] = [];
  const flush = async () => {
    await store.write(batch);
    batch = [];
  };
  for (const [i, device] of city.devices.entries()) {
    const pointsOf: Point[] = [];
    emitHistory(device, i, fromMs - WARM_UP_MS, toMs, (p) => pointsOf.push(p));
    points += pointsOf.length;
    batch.push(...pointsOf);
    if (batch.length >= 20_000) await flush();
  }
  await flush();
  await store.close();
  const writeSeconds = (performance.now() - written) / 1000;
  console.log(
    `history: ${size.blocks} blocks, ${city.devices.length} devices, ${size.hours} h after a ${WARM_UP_MS / 3_600_000} h warm-up: ` +
      `${formatCount(points)} readings written to the embedded store in ${writeSeconds.toFixed(1)} s`,
  );
  writeFileSync(marker, JSON.stringify({ ...wanted, points }));
  return points;
}
