import { AsyncLocalStorage } from "node:async_hooks";
import type { Held } from "./sqlite-file.js";

/*
 * A synchronous SQLite store (better-sqlite3) behind an asynchronous interface, the shape its
 * PostgreSQL twin has (tasks/store-port.ts, registry/store-port.ts). better-sqlite3 cannot keep
 * a transaction open across an `await` for one caller while others use the connection, so the
 * store's users take turns:
 *
 * - a call outside a transaction runs when every transaction begun before it has ended;
 * - a transaction's `work` runs inside BEGIN IMMEDIATE … COMMIT (`hold`), its calls at once;
 * - a synchronous throw (a ZodError, a RangeError) becomes a rejection, as PostgreSQL's would.
 *
 * That is one writer at a time, as SQLite has anyway. A call on the store itself (not on the
 * transaction's view) from inside `work` would wait for the transaction that waits for it: it is
 * refused at once with an error saying so, instead of hanging.
 */

export interface SqliteTurns {
  /** Runs `fn` in its turn (`inTx` false) or at once (`inTx`: inside the transaction's work). */
  run(inTx: boolean): <T>(fn: () => T) => Promise<T>;
  /** Runs `work` with `view` (the store's transaction view) in a transaction of its turn. */
  transaction<V, T>(view: V, work: (tx: V) => Promise<T>): Promise<T>;
  /**
   * `names` of `target` as asynchronous methods that run in turn (or at once inside a
   * transaction): what an adapter forwards unchanged.
   */
  forward<N extends string>(
    target: object,
    names: readonly N[],
    inTx: boolean,
  ): Record<N, (...args: unknown[]) => Promise<unknown>>;
}

/** Turn-taking over one store whose write transactions `hold` opens. */
export function sqliteTurns(hold: () => Held): SqliteTurns {
  let queue: Promise<unknown> = Promise.resolve();
  const insideWork = new AsyncLocalStorage<true>();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    if (insideWork.getStore() === true) {
      return Promise.reject(
        new Error(
          "a call on the store from inside its own transaction's work: use the transaction's view (tx), or the call would wait for the transaction that waits for it",
        ),
      );
    }
    const next = queue.then(run, run);
    queue = next.catch(() => undefined);
    return next;
  };
  const run =
    (inTx: boolean) =>
    <T>(fn: () => T): Promise<T> => {
      const invoke = () => new Promise<T>((resolve) => resolve(fn()));
      return inTx ? invoke() : serial(invoke);
    };
  return {
    run,
    transaction: <V, T>(view: V, work: (tx: V) => Promise<T>): Promise<T> =>
      serial(async () => {
        const held = hold();
        try {
          const value = await insideWork.run(true, () => work(view));
          held.commit();
          return value;
        } catch (error) {
          held.rollback();
          throw error;
        }
      }),
    forward: <N extends string>(target: object, names: readonly N[], inTx: boolean) => {
      const call = run(inTx);
      const methods = target as Record<N, (...a: unknown[]) => unknown>;
      return Object.fromEntries(
        names.map((name) => [name, (...args: unknown[]) => call(() => methods[name](...args))]),
      ) as Record<N, (...args: unknown[]) => Promise<unknown>>;
    },
  };
}
