import type { Logger } from "pino";
import type { AsyncTokenStore } from "./store-port.js";

/*
 * Revocation of API tokens at once. The API holds a lookup cache (bearer.ts) and open streams,
 * while users and tokens change elsewhere too: `citywatch tokens revoke` writes tokens.db from
 * another process, and with the stores on PostgreSQL other nodes write the shared tables. The
 * watch asks the store whether anything changed (`changed()`: SQLite's data_version, no query;
 * PostgreSQL's auth_change counter, one indexed row) every `intervalMs`, one ask at a time, and
 * on a change runs its listeners (the bearer cache empties, the live stream closes the streams
 * of tokens no longer active) and waits for them.
 *
 * `everyUse` (the embedded store, whose ask reads shared memory): requests and stream events ask
 * too (`beforeUse`), so a token revoked by the CLI is refused at its next request and its
 * streams are closed before they carry another event. Without it (PostgreSQL: an ask is a round
 * trip, the one the cache is there to save), a change made on another node is seen within
 * `intervalMs`, and one made through this node's API at once (the API asks after it, `check`).
 */
export class TokenWatch {
  private readonly listeners = new Set<() => unknown>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  /** The ask in flight, and the one to follow it (shared by every call made meanwhile). */
  private current: Promise<void> | undefined;
  private following: Promise<void> | undefined;
  /** A listener failed: every listener hears of a change again at the next ask. */
  private retry = false;
  /** The last ask failed (its failure was logged once). */
  private failing = false;

  constructor(
    private readonly tokens: Pick<AsyncTokenStore, "changed">,
    private readonly options: {
      readonly intervalMs: number;
      readonly log: Logger;
      /** Requests and stream events ask too (`beforeUse`); default true. */
      readonly everyUse?: boolean | undefined;
    },
  ) {}

  /**
   * Hear of every change of users and tokens; returns the unsubscribe function. An ask waits for
   * what the listener returns (a promise: until it settles).
   */
  onChange(listener: () => unknown): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Ask now; settles when the store answered and, on a change, the listeners ran (it never
   * rejects). Asks never overlap: a call while one is in flight waits for it and then for one
   * more, shared by every call made meanwhile, so what the caller hears of is newer than its call.
   */
  check(): Promise<void> {
    if (this.current === undefined) {
      this.current = this.ask().finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.following ??= this.current.then(() => {
      this.following = undefined;
      return this.check();
    });
    return this.following;
  }

  /** What a request or a stream event waits for before it uses what the listeners hold. */
  beforeUse(): Promise<void> {
    return this.options.everyUse === false ? Promise.resolve() : this.check();
  }

  /** Ask every `intervalMs`, each ask after the previous one settled. */
  start(): void {
    if (this.polling) return;
    this.polling = true;
    const schedule = () => {
      this.timer = setTimeout(() => {
        void this.check().then(() => {
          if (this.polling) schedule();
        });
      }, this.options.intervalMs);
      this.timer.unref();
    };
    schedule();
  }

  /** Stop asking; settles when the ask in flight (if any) has. */
  async stop(): Promise<void> {
    this.polling = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await (this.following ?? this.current);
  }

  private async ask(): Promise<void> {
    let changed: boolean;
    try {
      changed = await this.tokens.changed();
    } catch (error) {
      // The store is closed (shutdown) or does not answer: nothing is known to have changed, and
      // the next ask compares with the count seen last, so a change made meanwhile is not lost.
      const level = this.failing || !this.polling ? "debug" : "warn";
      this.options.log[level]({ err: (error as Error).message }, "token watch: store not readable");
      this.failing = true;
      return;
    }
    if (this.failing) this.options.log.info("token watch: store readable again");
    this.failing = false;
    if (!changed && !this.retry) return;
    this.retry = false;
    const results = await Promise.allSettled(
      [...this.listeners].map(async (listener) => {
        await listener();
      }),
    );
    for (const result of results) {
      if (result.status === "fulfilled") continue;
      this.retry = true;
      this.options.log.error(
        { err: (result.reason as Error).message },
        "token revocation listener failed",
      );
    }
  }
}
