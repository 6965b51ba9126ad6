import type pg from "pg";
import type { User, UserInput } from "../../contracts/model/people.js";
import type { ApiRole } from "../../contracts/model/tasks.js";
import { PostgresStore } from "../../infra/postgres/store-base.js";
import { hashPassword } from "./password.js";
import type { AsyncTokenStore, AsyncUserStore } from "./store-port.js";
import {
  checkTokenName,
  checkTokenUser,
  newToken,
  TOKEN_PREFIX,
  tokenHash,
  type TokenRecord,
  tokenRecord,
  tokenRefusal,
  type TokenRow,
} from "./tokens.js";
import {
  type ActiveSession,
  activeSession,
  changedUser,
  checkedUser,
  IDLE_CLOCK_MS,
  newSession,
  passwordUser,
  sessionCookieShape,
  sessionEnded,
  sessionHash,
  type SessionLimits,
  toUser,
  type UserChange,
  userColumns,
  userRefusal,
  type UserRow,
} from "./users.js";

/*
 * Users, browser sessions and API tokens in PostgreSQL (issue #21), shared by the nodes: the
 * tables of the embedded tokens.db (tasks/auth/tokens.ts and users.ts, whose doc comments say
 * what each method means), prefixed auth_ (migration 7, infra/postgres/schema.ts). The same suite
 * runs against both (tests/integration/auth/auth-store.test.ts). Validation, refusals, token and
 * cookie hashing (SHA-256) and password hashing (scrypt) are tokens.ts's and users.ts's own
 * functions; sessions expire by the same rule, on the clock the store is given.
 *
 * What differs from SQLite, and why (SQLite has one writer at a time; several nodes do not):
 * - A check and the write it guards cannot be split by another node's write: a new user or
 *   token is inserted ON CONFLICT DO NOTHING (two nodes adding the same user id or active token
 *   name: one is refused, as in SQLite, not failed by a key violation); a user changed from
 *   what was read (update) is read FOR UPDATE; a token for a user and a session of a user hold
 *   the user's row FOR SHARE while they are written, so that a concurrent disabling, role
 *   change or password change waits for them and then ends the session (or is seen by them);
 *   a revocation is one UPDATE of an active token, so of two at once one is told there is none.
 * - A password change (or a disabling) and the end of the user's sessions are one transaction,
 *   the sessions deleted by a statement after the user's row is written: a sign-in being written
 *   at that moment holds the row, so the change waits for it and then deletes its session too.
 *   (A sign-in whose password was checked before the change and whose session starts after it
 *   still gets a session, as in SQLite: checkPassword and startSession are two calls.)
 * - `revoke` of a value that is one token's id and another's name revokes the one with the id.
 * - `session` never writes an ended session back: it deletes a session only while it is still
 *   ended, and moves its idle clock forward only (nodes' clocks differ a little).
 * - `changed()` reads auth_change, which migration 7's triggers advance with every change of
 *   auth_user or auth_api_token and every deletion of sessions, in the changing transaction:
 *   a new count is seen with the change it counts. Its first call on a store answers true.
 * - Times are bigint; pg hands them over as strings, converted here.
 */

type PgUserRow = Omit<UserRow, "disabled" | "created_ms" | "updated_ms"> & {
  disabled: boolean;
  created_ms: string;
  updated_ms: string;
};

type PgTokenRow = Omit<TokenRow, "created_ms" | "revoked_ms"> & {
  created_ms: string;
  revoked_ms: string | null;
};

const userOf = (r: PgUserRow): UserRow => ({
  ...r,
  disabled: r.disabled ? 1 : 0,
  created_ms: Number(r.created_ms),
  updated_ms: Number(r.updated_ms),
});

const userOfRow = (r: PgUserRow | undefined): User | undefined =>
  r === undefined ? undefined : toUser(userOf(r));

const tokenOf = (r: PgTokenRow): TokenRecord =>
  tokenRecord({
    ...r,
    created_ms: Number(r.created_ms),
    revoked_ms: r.revoked_ms === null ? null : Number(r.revoked_ms),
  });

/** The token is active: not revoked, and of no user or of an enabled one. */
const ACTIVE_TOKEN = `t.revoked_ms IS NULL AND (t.user_id IS NULL OR NOT u.disabled)`;

export class PostgresUserStore extends PostgresStore<PostgresUserStore> implements AsyncUserStore {
  /** The pool must hold the schema at migration 7 or later; `now` is the sessions' clock. */
  constructor(
    pool: pg.Pool,
    private readonly now: () => number = Date.now,
  ) {
    super(pool);
  }

  protected another(): PostgresUserStore {
    return new PostgresUserStore(this.pool, this.now);
  }

  async #row(id: string, lock = ""): Promise<PgUserRow | undefined> {
    return this.row<PgUserRow>(`SELECT * FROM auth_user WHERE id = $1 ${lock}`, [id]);
  }

  /** The user, its row held FOR SHARE until the end of this view's transaction. */
  async sharedUser(id: string): Promise<User | undefined> {
    return userOfRow(await this.#row(id, "FOR SHARE"));
  }

  async add(input: UserInput, password?: string): Promise<User> {
    const u = checkedUser(input);
    if ((await this.#row(u.id)) !== undefined) throw userRefusal.exists(u.id);
    const hash = password === undefined ? null : await hashPassword(password);
    const at = this.now();
    const row = await this.row<PgUserRow>(
      `INSERT INTO auth_user (id, name, badge, roles, scope, team, password, disabled, created_ms,
         updated_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $8)
       ON CONFLICT (id) DO NOTHING RETURNING *`,
      [u.id, ...userColumns(u), hash, at],
    );
    if (row === undefined) throw userRefusal.exists(u.id);
    return toUser(userOf(row));
  }

  async get(id: string): Promise<User | undefined> {
    return userOfRow(await this.#row(id));
  }

  async list(): Promise<User[]> {
    const rows = await this.rows<PgUserRow>("SELECT * FROM auth_user ORDER BY id");
    return rows.map((r) => toUser(userOf(r)));
  }

  update(id: string, change: UserChange): Promise<User> {
    return this.within(async (tx) => {
      const current = userOfRow(await tx.#row(id, "FOR UPDATE"));
      if (current === undefined) throw userRefusal.unknown(id);
      const u = changedUser(id, current, change);
      const row = await tx.row<PgUserRow>(
        `UPDATE auth_user SET name = $1, badge = $2, roles = $3, scope = $4, team = $5,
           updated_ms = $6 WHERE id = $7 RETURNING *`,
        [...userColumns(u), this.now(), id],
      );
      return toUser(userOf(row as PgUserRow));
    });
  }

  async setPassword(id: string, password: string): Promise<void> {
    if ((await this.#row(id)) === undefined) throw userRefusal.unknown(id);
    const hash = await hashPassword(password);
    await this.within(async (tx) => {
      await tx.query("UPDATE auth_user SET password = $1, updated_ms = $2 WHERE id = $3", [
        hash,
        this.now(),
        id,
      ]);
      // A statement of its own: it sees a session committed while the UPDATE waited for the row.
      await tx.endSessionsOf(id);
    });
  }

  setDisabled(id: string, disabled: boolean): Promise<User> {
    return this.within(async (tx) => {
      const row = await tx.row<PgUserRow>(
        "UPDATE auth_user SET disabled = $1, updated_ms = $2 WHERE id = $3 RETURNING *",
        [disabled, this.now(), id],
      );
      if (row === undefined) throw userRefusal.unknown(id);
      if (disabled) await tx.endSessionsOf(id);
      return toUser(userOf(row));
    });
  }

  async checkPassword(username: string, password: string): Promise<User | undefined> {
    const row = await this.#row(username.trim().toLowerCase());
    return passwordUser(row === undefined ? undefined : userOf(row), password);
  }

  async startSession(
    userId: string,
    limits: SessionLimits,
  ): Promise<{ cookie: string; session: ActiveSession }> {
    const at = this.now();
    const started = await this.within(async (tx) => {
      // Held until the session is in: a disabling or password change waits, then ends it.
      const user = await tx.sharedUser(userId);
      if (user === undefined || user.disabled) throw userRefusal.notEnabled(userId);
      const { cookie, hash, csrf, expires } = newSession(at, limits);
      await tx.query(
        `INSERT INTO auth_session (hash, user_id, csrf, created_ms, last_ms, expires_ms)
         VALUES ($1, $2, $3, $4, $4, $5)`,
        [hash, userId, csrf, at, expires],
      );
      return { cookie, session: activeSession(user, csrf, expires, at, limits) };
    });
    await this.query("DELETE FROM auth_session WHERE expires_ms <= $1 OR last_ms <= $2", [
      at,
      at - limits.idleMs,
    ]);
    return started;
  }

  async session(cookie: string, limits: SessionLimits): Promise<ActiveSession | undefined> {
    if (!sessionCookieShape(cookie)) return undefined;
    const hash = sessionHash(cookie);
    const row = await this.row<{ csrf: string; last_ms: string; expires_ms: string } & PgUserRow>(
      `SELECT s.csrf AS csrf, s.last_ms AS last_ms, s.expires_ms AS expires_ms, u.*
       FROM auth_session s LEFT JOIN auth_user u ON u.id = s.user_id WHERE s.hash = $1`,
      [hash],
    );
    if (row === undefined) return undefined;
    const at = this.now();
    const times = { last_ms: Number(row.last_ms), expires_ms: Number(row.expires_ms) };
    if (sessionEnded(times, at, limits)) {
      await this.query(
        "DELETE FROM auth_session WHERE hash = $1 AND (expires_ms <= $2 OR last_ms <= $3)",
        [hash, at, at - limits.idleMs],
      );
      return undefined;
    }
    if (row.id === null) return undefined;
    const user = toUser(userOf(row));
    if (user.disabled) return undefined;
    if (at - times.last_ms >= IDLE_CLOCK_MS) {
      await this.query("UPDATE auth_session SET last_ms = $2 WHERE hash = $1 AND last_ms < $2", [
        hash,
        at,
      ]);
    }
    return activeSession(user, row.csrf, times.expires_ms, at, limits);
  }

  async endSession(cookie: string): Promise<void> {
    await this.query("DELETE FROM auth_session WHERE hash = $1", [sessionHash(cookie)]);
  }

  async endSessionsOf(userId: string): Promise<void> {
    await this.query("DELETE FROM auth_session WHERE user_id = $1", [userId]);
  }
}

export class PostgresTokenStore
  extends PostgresStore<PostgresTokenStore>
  implements AsyncTokenStore
{
  #users: PostgresUserStore;
  /** auth_change's count at this store's last `changed()`. */
  #seen: string | undefined;

  /** The pool must hold the schema at migration 7 or later; `now` is the tokens' and sessions' clock. */
  constructor(
    pool: pg.Pool,
    private readonly now: () => number = Date.now,
  ) {
    super(pool);
    this.#users = new PostgresUserStore(pool, now);
  }

  get users(): PostgresUserStore {
    return this.#users;
  }

  protected another(): PostgresTokenStore {
    return new PostgresTokenStore(this.pool, this.now);
  }

  /** A view on `client`, its users too. */
  override on(client: pg.PoolClient): PostgresTokenStore {
    const view = super.on(client);
    view.#users = this.#users.on(client);
    return view;
  }

  async changed(): Promise<boolean> {
    const row = await this.row<{ version: string }>("SELECT version FROM auth_change");
    if (row?.version === this.#seen) return false;
    this.#seen = row?.version;
    return true;
  }

  async isActive(id: string): Promise<boolean> {
    const row = await this.row(
      `SELECT 1 FROM auth_api_token t LEFT JOIN auth_user u ON u.id = t.user_id
       WHERE t.id = $1 AND ${ACTIVE_TOKEN}`,
      [id],
    );
    return row !== undefined;
  }

  async add(
    name: string,
    role: ApiRole,
    userId?: string,
  ): Promise<{ record: TokenRecord; token: string }> {
    checkTokenName(name);
    const active = await this.row(
      "SELECT 1 FROM auth_api_token WHERE name = $1 AND revoked_ms IS NULL",
      [name],
    );
    if (active !== undefined) throw tokenRefusal.activeName(name);
    return this.within(async (tx) => {
      if (userId !== undefined) {
        // Held until the token is in: a role change or disabling waits for it.
        checkTokenUser(userId, await tx.users.sharedUser(userId), role);
      }
      const { token, id } = newToken();
      const row = await tx.row<PgTokenRow>(
        `INSERT INTO auth_api_token (id, name, role, hash, created_ms, user_id)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING *`,
        [id, name, role, tokenHash(token), this.now(), userId ?? null],
      );
      // Another node's token of this name came in after the check above.
      if (row === undefined) throw tokenRefusal.activeName(name);
      return { record: tokenOf(row), token };
    });
  }

  async list(): Promise<TokenRecord[]> {
    const rows = await this.rows<PgTokenRow>(
      "SELECT * FROM auth_api_token ORDER BY created_ms, id",
    );
    return rows.map(tokenOf);
  }

  async revoke(idOrName: string): Promise<TokenRecord> {
    // One statement: of two revocations at once, the second finds the token revoked.
    const row = await this.row<PgTokenRow>(
      `UPDATE auth_api_token SET revoked_ms = $2
       WHERE id = (SELECT id FROM auth_api_token WHERE (id = $1 OR name = $1) AND revoked_ms IS NULL
                   ORDER BY id = $1 DESC LIMIT 1)
         AND revoked_ms IS NULL
       RETURNING *`,
      [idOrName, this.now()],
    );
    if (row === undefined) throw tokenRefusal.noActive(idOrName);
    return tokenOf(row);
  }

  async authenticate(token: string): Promise<TokenRecord | undefined> {
    if (!token.startsWith(TOKEN_PREFIX)) return undefined;
    const row = await this.row<PgTokenRow>(
      `SELECT t.* FROM auth_api_token t LEFT JOIN auth_user u ON u.id = t.user_id
       WHERE t.hash = $1 AND ${ACTIVE_TOKEN}`,
      [tokenHash(token)],
    );
    return row === undefined ? undefined : tokenOf(row);
  }

  /** The pool is the caller's: it ends it. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
