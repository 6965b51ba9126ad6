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
