import type { Logger } from "pino";
import type { TokenStore } from "./tokens.js";

/*
 * Revocation of API tokens at once. `citywatch tokens revoke` writes the token file from another
 * process; the API holds a lookup cache and open streams. The watch asks the token store whether
 * its table changed (SQLite's data_version: no query, no disk read) every `intervalMs`, and the
 * API asks again before each request and each stream event, so a revoked token's request in
 * flight is refused and its streams are closed before they carry another event. Listeners (the
 * bearer cache, the live stream) run on a change and check what they hold.
 */
export class TokenWatch {
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly tokens: Pick<TokenStore, "changed">,
    private readonly options: { readonly intervalMs: number; readonly log: Logger },
  ) {}

  /** Hear of every change of the token table; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ask now (synchronous); the listeners run when the table changed since the last ask. */
  check(): void {
    let changed: boolean;
    try {
      changed = this.tokens.changed();
    } catch (error) {
      // The store is closed (shutdown): nothing to revoke any more.
      this.options.log.debug({ err: (error as Error).message }, "token watch: store not readable");
      return;
    }
    if (!changed) return;
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (error) {
        this.options.log.error(
          { err: (error as Error).message },
          "token revocation listener failed",
        );
      }
    }
  }

  start(): void {
    this.timer ??= setInterval(() => this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
