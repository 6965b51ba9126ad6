import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { StoreUnavailableError } from "../../ingest/store/types.js";
import { InfluxQueryError } from "../../ingest/store/influxdb.js";
import {
  BacktestError,
  type BacktestProblem,
  type PartResult,
  type PartRunner,
} from "../../rules/backtest/index.js";
import type { HistorySpec } from "./history.js";
import type { PartWorkerInput, PartWorkerMessage } from "./backtest-part-worker.js";

/*
 * A backtest split by site into parts, each replayed in a worker thread of its own (a CPU each):
 * rules/backtest/partition.ts says why the parts decide what one replay decides. Each worker
 * opens the store the spec names and loads the rules from their specs; it posts its progress and
 * its result, which the backtest merges. An aborted part's worker is terminated.
 */

const BOOT = new URL("./ts-worker.js", import.meta.url);
const PART_WORKER = new URL("./backtest-part-worker.ts", import.meta.url).href;

/** Worker threads a backtest uses by default: one per CPU. */
export function defaultBacktestWorkers(): number {
  return availableParallelism();
}

/** The error a worker posted, as the class the callers know. */
function rebuild(m: Extract<PartWorkerMessage, { type: "error" }>): Error {
  switch (m.name) {
    case "BacktestError":
      return new BacktestError((m.problems ?? []) as BacktestProblem[]);
    case "StoreUnavailableError":
      return new StoreUnavailableError(m.message);
    case "InfluxQueryError":
      return new InfluxQueryError(m.message);
    default: {
      const error = new Error(`backtest worker: ${m.message}`);
      error.name = m.name;
      return error;
    }
  }
}

/** Parts run side by side, in worker threads: the backtest's PartRunner, and its workers' start. */
export interface WorkerParts extends PartRunner {
  /**
   * Starts the workers a backtest split into `parts` would use, now: each loads its modules
   * (about a second of CPU) while this thread plans the backtest.
   */
  prestart(): void;
  /** Stops the workers started and not used. */
  close(): Promise<void>;
}

function startWorker(): Worker {
  return new Worker(BOOT, { workerData: { module: PART_WORKER } });
}

/** Parts run in worker threads reading the store `history` names; `parts` parts at most. */
export function workerParts(history: HistorySpec, parts: number): WorkerParts {
  /** Started ahead of their parts (prestart), not used yet. */
  const idle: Worker[] = [];
  return {
    parts,
    prestart() {
      // The first part runs in the backtest's own thread.
      while (idle.length < parts - 1) idle.push(startWorker());
    },
    async close() {
      await Promise.all(idle.splice(0).map((w) => w.terminate()));
    },
    run: (request, onProgress, signal) =>
      new Promise<PartResult>((resolve, reject) => {
        if (signal.aborted) {
          reject(signal.reason as Error);
          return;
        }
        const worker = idle.pop() ?? startWorker();
        const input: PartWorkerInput = { history, request };
        worker.postMessage(input);
        let settled = false;
        const settle = (fn: () => void) => {
          if (settled) return;
          settled = true;
          signal.removeEventListener("abort", onAbort);
          fn();
        };
        const onAbort = () => {
          settle(() => reject(signal.reason as Error));
          void worker.terminate();
        };
        signal.addEventListener("abort", onAbort);
        worker.on("message", (m: PartWorkerMessage) => {
          if (m.type === "progress") onProgress({ readings: m.readings, atMs: m.atMs });
          else if (m.type === "done") settle(() => resolve(m.result as PartResult));
          else settle(() => reject(rebuild(m)));
        });
        worker.on("error", (error) => settle(() => reject(error)));
        worker.on("exit", (code) =>
          settle(() => reject(new Error(`backtest worker exited with ${code} before its result`))),
        );
      }),
  };
}
