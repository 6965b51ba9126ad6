import type { ChildProcess } from "node:child_process";

/**
 * Wait for a bench child told to stop to exit; SIGKILL it (by pid) if it has not within the
 * grace period, then wait for that exit. The broker, ingest and fleet children's `stop` share it.
 */
export async function awaitExitOrKill(
  child: ChildProcess,
  exited: Promise<unknown>,
  graceMs: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), graceMs);
  });
  const outcome = await Promise.race([exited.then(() => "exited" as const), graceOver]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Children still running; killed synchronously if the bench exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Track `child` until it exits: a bench that exits without stopping it kills it (SIGKILL). */
export function killOnBenchExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
  live.add(child);
  child.once("exit", () => live.delete(child));
}

/**
 * A bench child's stop, once however often asked: `steps`, then leave the parent and exit.
 * Exiting (rather than being killed) is what makes --cpu-prof write its profile.
 */
export function stopThenExit(steps: () => Promise<void>): () => Promise<void> {
  let stopping = false;
  return async () => {
    if (stopping) return;
    stopping = true;
    try {
      await steps();
    } finally {
      if (process.connected) process.disconnect();
      process.exit(0);
    }
  };
}
