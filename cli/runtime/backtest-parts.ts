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
 * A backtest split by site into parts, replayed in worker threads (a CPU each), each worker
 * taking one part after another: rules/backtest/partition.ts says why the parts decide what one
 * replay decides. Each worker opens the store the spec names and loads the rules from their
 * specs; it posts its progress and its result, which the backtest merges. An aborted part's
 * worker is terminated; one that finished a part waits for the next until `close`.
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
  /** Worker threads started so far (at most parts − 1: each takes part after part). */
  readonly started: number;
  /** Stops the workers (call it when the backtest is over: a worker waits for parts until then). */
  close(): Promise<void>;
}

function startWorker(): Worker {
  return new Worker(BOOT, { workerData: { module: PART_WORKER } });
}

/** Parts run in worker threads reading the store `history` names; `parts` threads at most. */
export function workerParts(history: HistorySpec, parts: number): WorkerParts {
  /** Started ahead of their parts (prestart), or done with a part: free for the next. */
  const idle: Worker[] = [];
  let started = 0;
  const start = () => {
    started += 1;
    const worker = startWorker();
    // For the worker's whole life: one that fails or ends between parts leaves the pool (its
    // error is not thrown in this thread, and no part is sent to a worker that is gone).
    const leave = () => {
      const at = idle.indexOf(worker);
      if (at >= 0) idle.splice(at, 1);
    };
    worker.on("error", leave);
    worker.on("exit", leave);
    return worker;
  };
  return {
    parts,
    get started() {
      return started;
    },
    prestart() {
      // The first thread is the backtest's own.
      while (idle.length < parts - 1) idle.push(start());
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
        const worker = idle.pop() ?? start();
        const input: PartWorkerInput = { history, request };
        worker.postMessage(input);
        let settled = false;
        /** The part's end; `free`: the worker took it to its end and may take another. */
        const settle = (fn: () => void, free: boolean) => {
          if (settled) return;
          settled = true;
          signal.removeEventListener("abort", onAbort);
          worker.off("message", onMessage);
          worker.off("error", onError);
          worker.off("exit", onExit);
          if (free) idle.push(worker);
          else void worker.terminate();
          fn();
        };
        const onAbort = () => settle(() => reject(signal.reason as Error), false);
        const onMessage = (m: PartWorkerMessage) => {
          if (m.type === "progress") onProgress({ readings: m.readings, atMs: m.atMs });
          else if (m.type === "done") settle(() => resolve(m.result as PartResult), true);
          else settle(() => reject(rebuild(m)), true);
        };
        const onError = (error: Error) => settle(() => reject(error), false);
        const onExit = (code: number) =>
          settle(
            () => reject(new Error(`backtest worker exited with ${code} before its result`)),
            false,
          );
        signal.addEventListener("abort", onAbort);
        worker.on("message", onMessage);
        worker.on("error", onError);
        worker.on("exit", onExit);
      }),
  };
}
