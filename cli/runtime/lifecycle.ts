import type { Logger } from "pino";

/**
 * Run until SIGINT or SIGTERM, then stop in reverse order of start. A second signal forces exit.
 * `stops` are called last-started first; a failing stop is logged and the rest still run.
 */
export function stopOnSignal(
  log: Logger,
  stops: Array<{ name: string; stop: () => Promise<void> }>,
): AbortSignal {
  const controller = new AbortController();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, "stopping");
    // Libraries may still reject work in flight while their connections close (ioredis rejects
    // commands queued behind QUIT with "Connection is closed."). The process is exiting; record
    // them instead of crashing with a non-zero code.
    process.on("unhandledRejection", (reason) =>
      log.warn({ err: reason }, "rejection during shutdown"),
    );
    controller.abort();
    void (async () => {
      for (const { name, stop } of [...stops].reverse()) {
        try {
          await stop();
        } catch (error) {
          log.error({ err: error, component: name }, "stop failed");
        }
      }
      process.exitCode = 0;
      // Let pino flush, then leave even if a library keeps a handle open.
      setTimeout(() => process.exit(), 200).unref();
    })();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return controller.signal;
}
