import { parentPort } from "node:worker_threads";
import { pino } from "pino";
import type { PartRequest, PartRules } from "../../rules/backtest/index.js";
import { runPart } from "../../rules/backtest/index.js";
import { ruleSourceOf } from "../../rules/backtest/sources.js";
import { historyOf, type HistorySpec, openHistorySpec } from "./history.js";

/*
 * Parts of a backtest split by site (cli/runtime/backtest-parts.ts), in a worker thread. It
 * loads its modules as soon as it starts (a worker may be started before its part is known),
 * then takes its parts one at a time: opens the store the spec names, loads the rules from their
 * specs (once per backtest), replays the part's devices, and posts its progress and its result
 * (or its error). It ends when its port is closed.
 */

/** What the worker is sent: its part. */
export interface PartWorkerInput {
  readonly history: HistorySpec;
  readonly request: PartRequest;
}

/** What the worker posts. */
export type PartWorkerMessage =
  | { readonly type: "progress"; readonly readings: number; readonly atMs: number }
  | { readonly type: "done"; readonly result: unknown }
  | {
      readonly type: "error";
      readonly name: string;
      readonly message: string;
      readonly problems?: unknown;
    };

const post = (m: PartWorkerMessage) => parentPort?.postMessage(m);

/** The rules loaded for the parts of the backtest this worker serves. */
const rules: PartRules = {};

async function run(input: PartWorkerInput): Promise<void> {
  const log = pino({ level: "warn" });
  const store = openHistorySpec(input.history, log);
  try {
    const result = await runPart(
      log,
      historyOf(store),
      input.request,
      ruleSourceOf,
      (p) => post({ type: "progress", readings: p.readings, atMs: p.atMs }),
      rules,
    );
    post({ type: "done", result });
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error));
    post({
      type: "error",
      name: e.name,
      message: e.message,
      ...("problems" in e ? { problems: (e as { problems: unknown }).problems } : {}),
    });
  } finally {
    // The part's answer is posted: a store that fails to close must not end the worker.
    await store.close().catch(() => undefined);
  }
}

// One part at a time: the thread that sent it waits for its result before sending another.
parentPort?.on("message", (input: PartWorkerInput) => {
  void run(input);
});
