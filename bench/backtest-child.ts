/**
 * One phase of the backtest bench (bench/backtest.ts), alone in its process so its peak memory is
 * its own: the embedded store of the parent's history replayed with the phase's rules and tick,
 * or only read back (the store's own ceiling). Sends its figures to the parent and exits.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getHeapStatistics } from "node:v8";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { z } from "zod";
import { Device, Site } from "../contracts/index.js";
import { createSqliteStore } from "../ingest/store/sqlite.js";
import { historyOf } from "../cli/runtime/history.js";
import { backtest } from "../rules/backtest/index.js";
import { replay } from "../rules/backtest/replay.js";
import { inlineRules, packRules } from "../rules/backtest/sources.js";
import { workerParts } from "../cli/runtime/backtest-parts.js";

export const PhaseArgs = z.object({
  dir: z.string(),
  /** read: the store only; none: the driver with no rules; pack: the default pack. */
  rules: z.enum(["read", "none", "pack"]),
  fromMs: z.number(),
  toMs: z.number(),
  tickMs: z.number(),
  warmUpMs: z.number(),
  /** Only the city's first this many devices. */
  devices: z.number(),
  /** Worker threads the replay is split into (1: this thread), as `citywatch rules backtest`. */
  workers: z.number(),
});
export type PhaseArgs = z.infer<typeof PhaseArgs>;

export const PhaseResult = z.object({
  readings: z.number(),
  seconds: z.number(),
  /** CPU time of the replay, user and system, every thread: steadier than wall time when busy. */
  cpuSeconds: z.number(),
  evaluations: z.number(),
  raised: z.number(),
  peakRssBytes: z.number(),
  peakHeapBytes: z.number(),
});
export type PhaseResult = z.infer<typeof PhaseResult>;

async function main(args: PhaseArgs): Promise<PhaseResult> {
  const city = JSON.parse(readFileSync(join(args.dir, "city.json"), "utf8")) as {
    sites: unknown[];
    devices: unknown[];
  };
  const sites = city.sites.map((s) => Site.parse(s));
  const devices = city.devices.slice(0, args.devices).map((d) => Device.parse(d));
  const store = createSqliteStore(join(args.dir, "timeseries.db"));
  let peakHeap = 0;
  const sample = () => {
    // The heap only (process.memoryUsage() reads the RSS from /proc too: 1 % of the run).
    peakHeap = Math.max(peakHeap, getHeapStatistics().used_heap_size);
  };
  const sampler = setInterval(sample, 20);
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  // As `citywatch rules backtest` runs: its workers started before it plans (in the time measured).
  const parts =
    args.workers > 1
      ? workerParts({ type: "sqlite", file: join(args.dir, "timeseries.db") }, args.workers)
      : undefined;
  parts?.prestart();
  try {
    if (args.rules === "read") {
      const replayed = await replay({
        history: historyOf(store),
        devices,
        targets: [],
        setNow: () => undefined,
        warmUpFromMs: args.fromMs - args.warmUpMs,
        fromMs: args.fromMs,
        toMs: args.toMs,
        tickMs: args.tickMs,
        onProgress: sample,
      });
      return result(replayed.readings + replayed.warmUpReadings, 0, 0);
    }
    const report = await backtest(
      {
        log: pino({ level: "silent" }),
        history: historyOf(store),
        registry: { devices: () => devices, sites: () => sites },
        retention: () => Promise.resolve({ ms: undefined, description: "the bench store" }),
        now: Date.now,
        parts,
      },
      {
        fromMs: args.fromMs,
        toMs: args.toMs,
        region: "default",
        tickMs: args.tickMs,
        warmUpMs: args.warmUpMs,
        rules: args.rules === "pack" ? packRules() : inlineRules("none", [], false),
        onProgress: sample,
      },
    );
    return result(
      report.data.readings + report.data.warmUpReadings,
      report.run.evaluations,
      report.run.totals.raised,
    );
  } finally {
    await parts?.close();
    clearInterval(sampler);
    await store.close();
  }

  function result(readings: number, evaluations: number, raised: number): PhaseResult {
    sample();
    const cpu = process.cpuUsage(cpuStarted);
    return {
      readings,
      seconds: (performance.now() - started) / 1000,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      evaluations,
      raised,
      // The kernel's high-water mark of this process's resident memory, startup included.
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      peakHeapBytes: peakHeap,
    };
  }
}

if (process.send !== undefined) {
  const args = PhaseArgs.parse(JSON.parse(process.argv[2] ?? "{}"));
  main(args).then(
    (r) => process.send?.(r, () => process.exit(0)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
