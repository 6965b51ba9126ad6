import type { ApiRole } from "../../contracts/model/tasks.js";
import type { User, UserInput } from "../../contracts/model/people.js";
import type { TokenRecord, TokenStore } from "./tokens.js";
import type { ActiveSession, SessionLimits, UserChange } from "./users.js";

/*
 * Users, browser sessions and API tokens behind an asynchronous interface (issue #21): one
 * contract, two implementations, one test suite run against both
 * (tests/integration/auth/auth-store.test.ts).
 *
 * - `TokenStore` with its `users` (tokens.ts, users.ts): the embedded `tokens.db` on
 *   better-sqlite3, synchronous; `asyncTokenStore` below puts it behind this interface unchanged.
 * - `PostgresTokenStore` with its `PostgresUserStore` (store-postgres.ts): the same tables in
 *   PostgreSQL, shared by the nodes.
 *
 * The methods mean what TokenStore's and UserStore's mean (see their doc comments there), with
 * the same validation and the same errors (a TokenError, a UserError, a PasswordPolicyError), as
 * rejections; secrets are hashed by the same functions. What differs:
 * - Every method answers with a promise, `changed()` too: in SQLite it reads data_version (shared
 *   memory, no query); in PostgreSQL it reads a change counter (auth_change, one indexed row,
 *   migration 7) that every change of a user or token, and every end of sessions, advances in
 *   its own transaction, on whichever node it was made. What counts differs a little: in SQLite
 *   any write to tokens.db by another connection counts (a sign-in too, a session's idle clock);
 *   in PostgreSQL a sign-in or a session's use does not, unless it deletes ended sessions. Its
 *   first call on a PostgreSQL store answers true (no count seen yet). TokenWatch (watch.ts)
 *   asks it, on either store.
 * - `revoke(idOrName)` where one token's id is another active token's name: SQLite revokes
 *   whichever row it meets first; PostgreSQL the one whose id it is.
 * - `file` (the SQLite file's path) is not part of it: PostgreSQL has none.
 */
export interface AsyncTokenStore {
  /** User accounts and their sessions (in the same database, so one change counter sees both). */
  readonly users: AsyncUserStore;

  /** Whether users or tokens may have changed since this store's last call (anyone's change). */
  changed(): Promise<boolean>;
  /** Whether the token with this id exists and is not revoked (nor its user disabled). */
  isActive(id: string): Promise<boolean>;
  add(
    name: string,
    role: ApiRole,
    userId?: string,
  ): Promise<{ record: TokenRecord; token: string }>;
  list(): Promise<TokenRecord[]>;
  revoke(idOrName: string): Promise<TokenRecord>;
  authenticate(token: string): Promise<TokenRecord | undefined>;

  close(): Promise<void>;
}

/** UserStore's methods, answering with promises. */
export interface AsyncUserStore {
  add(input: UserInput, password?: string): Promise<User>;
  get(id: string): Promise<User | undefined>;
  list(): Promise<User[]>;
  update(id: string, change: UserChange): Promise<User>;
  setPassword(id: string, password: string): Promise<void>;
  setDisabled(id: string, disabled: boolean): Promise<User>;
  checkPassword(username: string, password: string): Promise<User | undefined>;
  startSession(
    userId: string,
    limits: SessionLimits,
  ): Promise<{ cookie: string; session: ActiveSession }>;
  session(cookie: string, limits: SessionLimits): Promise<ActiveSession | undefined>;
  endSession(cookie: string): Promise<void>;
  endSessionsOf(userId: string): Promise<void>;
}

type TokenMethod = Exclude<keyof AsyncTokenStore, "users" | "close">;
type UserMethod = keyof AsyncUserStore;

/**
 * The embedded TokenStore (and its UserStore) behind the asynchronous interface. Calls that
 * write run one at a time, each after the previous one settled (the user store's add and
 * setPassword are asynchronous: scrypt), so that a check and the write it guards are not
 * interleaved with another call. Calls that only read (READS below) run at once: each reads in
 * one synchronous step (checkPassword then verifies off the main thread), so it cannot see half
 * a write, and the API's reads on the request path (a bearer lookup, the watch's `changed()`, a
 * sign-in's password check) do not wait behind a sign-in's or an admin's scrypt. A synchronous
 * throw (a TokenError, say) becomes a rejection.
 */
export function asyncTokenStore(store: TokenStore): AsyncTokenStore {
  let queue: Promise<unknown> = Promise.resolve();
  const invoke = <T>(run: () => T | Promise<T>) => new Promise<T>((resolve) => resolve(run()));
  const serial = <T>(run: () => T | Promise<T>): Promise<T> => {
    const next = queue.then(
      () => invoke(run),
      () => invoke(run),
    );
    queue = next.catch(() => undefined);
    return next;
  };
  const forward = <M extends string>(target: object, names: readonly M[]) =>
    Object.fromEntries(
      names.map((name) => {
        const call = (args: unknown[]) => () =>
          (target as Record<M, (...a: unknown[]) => unknown>)[name](...args);
        const reads = (READS as readonly string[]).includes(name);
        return [name, (...args: unknown[]) => (reads ? invoke(call(args)) : serial(call(args)))];
      }),
    );
  return {
    ...(forward(store, TOKEN_METHODS) as unknown as Pick<AsyncTokenStore, TokenMethod>),
    users: forward(store.users, USER_METHODS) as unknown as AsyncUserStore,
    close: () => serial(() => store.close()),
  };
}

/**
 * The methods that only read, of either store (none writes, session() does: the idle clock and
 * an ended session's removal).
 */
const READS = [
  "changed",
  "isActive",
  "list",
  "authenticate",
  "get",
  "checkPassword",
] as const satisfies ReadonlyArray<TokenMethod | UserMethod>;

/** Every forwarded method, checked against the interfaces by the compiler (none missing or extra). */
const TOKEN_METHODS = Object.keys({
  changed: true,
  isActive: true,
  add: true,
  list: true,
  revoke: true,
  authenticate: true,
} satisfies Record<TokenMethod, true>) as TokenMethod[];
const USER_METHODS = Object.keys({
  add: true,
  get: true,
  list: true,
  update: true,
  setPassword: true,
  setDisabled: true,
  checkPassword: true,
  startSession: true,
  session: true,
  endSession: true,
  endSessionsOf: true,
} satisfies Record<UserMethod, true>) as UserMethod[];
