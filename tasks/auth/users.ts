import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import type { ApiRole } from "../../contracts/model/tasks.js";
import type { UserScope } from "../../contracts/model/people.js";
import { User, UserInput, type UserInput as UserInputType } from "../../contracts/model/people.js";
import { decoyHash, hashPassword, verifyPassword } from "./password.js";

/*
 * User accounts and their browser sessions, in the API's access database (`{dataDir}/tokens.db`,
 * next to the API tokens; the same file so one watch sees a disabled user and a revoked token).
 * Passwords: scrypt (password.ts). Sessions: 32 random bytes in an httpOnly cookie; only their
 * SHA-256 is stored, like tokens. A session ends when idle for `idleMs`, `maxMs` after sign-in,
 * at sign-out, when the user is disabled or their password changes.
 */

export const USER_MIGRATION = `
  CREATE TABLE IF NOT EXISTS app_user (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    badge TEXT,
    roles TEXT NOT NULL,
    scope TEXT NOT NULL,
    team TEXT,
    password TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS user_session (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS user_session_user ON user_session(user_id);
  ALTER TABLE api_token ADD COLUMN user_id TEXT;`;

export class UserError extends Error {
  readonly code = "USER_INVALID";
}

/** A row of app_user (auth_user in PostgreSQL, read as these types). */
export interface UserRow {
  id: string;
  name: string;
  badge: string | null;
  roles: string;
  scope: string;
  team: string | null;
  password: string | null;
  disabled: number;
  created_ms: number;
  updated_ms: number;
}

/** A row of user_session (auth_session in PostgreSQL, read as these types). */
export interface SessionRow {
  hash: string;
  user_id: string;
  csrf: string;
  created_ms: number;
  last_ms: number;
  expires_ms: number;
}

export interface SessionLimits {
  /** A session unused this long ends. */
  readonly idleMs: number;
  /** A session ends this long after sign-in, used or not. */
  readonly maxMs: number;
}

export interface ActiveSession {
  readonly user: User;
  readonly csrf: string;
  readonly expiresAt: string;
}

export const toUser = (r: UserRow): User =>
  User.parse({
    id: r.id,
    name: r.name,
    badge: r.badge,
    roles: JSON.parse(r.roles) as ApiRole[],
    scope: JSON.parse(r.scope) as UserScope,
    team: r.team,
    disabled: r.disabled === 1,
    createdAt: new Date(r.created_ms).toISOString(),
    updatedAt: new Date(r.updated_ms).toISOString(),
  });

/** The stored form of a session cookie: its SHA-256 (the cookie itself is never stored). */
export const sessionHash = (text: string) =>
  createHash("sha256").update(text, "utf8").digest("hex");

/** The fields of a user a change may set (absent or undefined: unchanged). */
export type UserChange = {
  [K in keyof Omit<UserInputType, "id">]?: Omit<UserInputType, "id">[K] | undefined;
};

/** The prefix of a session cookie's value, so a leaked one is recognisable (like `cwt_`). */
export const SESSION_PREFIX = "cws_";

/** The errors both user stores refuse with. */
export const userRefusal = {
  exists: (id: string) => new UserError(`a user ${id} exists`),
  unknown: (id: string) => new UserError(`no user ${id}`),
  notEnabled: (id: string) => new UserError(`no enabled user ${id}`),
};

/** A user input checked (UserInput), or a UserError listing what is wrong. */
export function checkedUser(input: unknown): UserInputType {
  const parsed = UserInput.safeParse(input);
  if (!parsed.success) {
    throw new UserError(
      parsed.error.issues.map((i) => `${i.path.join(".") || "user"}: ${i.message}`).join("; "),
    );
  }
  return parsed.data;
}

/** `current` with `change` applied, checked (the id stays). */
export const changedUser = (id: string, current: User, change: UserChange): UserInputType =>
  checkedUser({
    id,
    name: change.name ?? current.name,
    roles: change.roles ?? current.roles,
    scope: change.scope ?? current.scope,
    ...((change.badge ?? current.badge) === null ? {} : { badge: change.badge ?? current.badge }),
    ...((change.team ?? current.team) === null ? {} : { team: change.team ?? current.team }),
  });

/** A user's columns as stored (roles and scope as JSON text), in app_user's column order. */
export const userColumns = (u: UserInputType) =>
  [
    u.name,
    u.badge ?? null,
    JSON.stringify(u.roles),
    JSON.stringify(u.scope),
    u.team ?? null,
  ] as const;

/**
 * The enabled user a name and password belong to (`row`, looked up by `username.trim()
 * .toLowerCase()`), or undefined. Verifies against a decoy for an unknown user, so that it takes
 * as long for an unknown name or a disabled user as for a wrong password.
 */
export async function passwordUser(
  row: UserRow | undefined,
  password: string,
): Promise<User | undefined> {
  const stored = row?.password ?? (await decoyHash());
  const ok = await verifyPassword(password, stored);
  if (!ok || row === undefined || row.password === null || row.disabled === 1) return undefined;
  return toUser(row);
}

/** A new session's secrets and times: the cookie is the only copy; store `hash`. */
export function newSession(at: number, limits: SessionLimits) {
  const cookie = `${SESSION_PREFIX}${randomBytes(32).toString("base64url")}`;
  return {
    cookie,
    hash: sessionHash(cookie),
    csrf: randomBytes(32).toString("base64url"),
    expires: at + limits.maxMs,
  };
}

/** What a session shows: it ends at its maximum age or when idle from `at`, whichever is first. */
export const activeSession = (
  user: User,
  csrf: string,
  expiresMs: number,
  at: number,
  limits: SessionLimits,
): ActiveSession => ({
  user,
  csrf,
  expiresAt: new Date(Math.min(expiresMs, at + limits.idleMs)).toISOString(),
});

/** Whether a value can be a session cookie at all (else no lookup). */
export const sessionCookieShape = (cookie: string): boolean =>
  cookie.startsWith(SESSION_PREFIX) && cookie.length <= 100;

/** Whether a session has ended at `at`: its maximum age, or idle for `idleMs`. */
export const sessionEnded = (
  row: Pick<SessionRow, "expires_ms" | "last_ms">,
  at: number,
  limits: SessionLimits,
): boolean => at >= row.expires_ms || at - row.last_ms >= limits.idleMs;

/** The idle clock is written at most once a minute, not on every request. */
export const IDLE_CLOCK_MS = 60_000;

export class UserStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
    /** Called after every change, so the token store's change counter sees it. */
    private readonly touched: () => void,
  ) {}

  /** Add a user; with a password (checked by the policy) they can sign in at once. */
  async add(input: UserInputType, password?: string): Promise<User> {
    const u = checkedUser(input);
    if (this.row(u.id) !== undefined) throw userRefusal.exists(u.id);
    const hash = password === undefined ? null : await hashPassword(password);
    const at = this.now();
    this.db
      .prepare(
        `INSERT INTO app_user (id, name, badge, roles, scope, team, password, disabled, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
      )
      .run(u.id, ...userColumns(u), hash, at, at);
    this.touched();
    return this.get(u.id) as User;
  }

  get(id: string): User | undefined {
    const row = this.row(id);
    return row === undefined ? undefined : toUser(row);
  }

  list(): User[] {
    return (this.db.prepare("SELECT * FROM app_user ORDER BY id").all() as UserRow[]).map(toUser);
  }

  /** Change a user's name, badge, roles, scope or team (the id stays). */
  update(id: string, change: UserChange): User {
    const current = this.get(id);
    if (current === undefined) throw userRefusal.unknown(id);
    const u = changedUser(id, current, change);
    this.db
      .prepare(
        "UPDATE app_user SET name = ?, badge = ?, roles = ?, scope = ?, team = ?, updated_ms = ? WHERE id = ?",
      )
      .run(...userColumns(u), this.now(), id);
    this.touched();
    return this.get(id) as User;
  }

  /** Set a new password (policy-checked); the user's sessions end. */
  async setPassword(id: string, password: string): Promise<void> {
    if (this.row(id) === undefined) throw userRefusal.unknown(id);
    const hash = await hashPassword(password);
    // One transaction: a crash between the two must not leave the old password's sessions alive.
    this.db.transaction(() => {
      this.db
        .prepare("UPDATE app_user SET password = ?, updated_ms = ? WHERE id = ?")
        .run(hash, this.now(), id);
      this.endSessionsOf(id);
    })();
  }

  /** Disable or enable a user. Disabling ends their sessions and refuses their tokens. */
  setDisabled(id: string, disabled: boolean): User {
    if (this.row(id) === undefined) throw userRefusal.unknown(id);
    // One transaction: a crash between the two must not leave a disabled user's sessions to
    // come back to life when the user is enabled again.
    this.db.transaction(() => {
      this.db
        .prepare("UPDATE app_user SET disabled = ?, updated_ms = ? WHERE id = ?")
        .run(disabled ? 1 : 0, this.now(), id);
      if (disabled) this.endSessionsOf(id);
    })();
    this.touched();
    return this.get(id) as User;
  }

  /**
   * The enabled user a name and password belong to, or undefined. Takes as long for an unknown
   * name or a disabled user as for a wrong password.
   */
  async checkPassword(username: string, password: string): Promise<User | undefined> {
    return passwordUser(this.row(username.trim().toLowerCase()), password);
  }

  /** Start a session; the returned cookie value is the only copy. */
  startSession(userId: string, limits: SessionLimits): { cookie: string; session: ActiveSession } {
    const user = this.get(userId);
    if (user === undefined || user.disabled) throw userRefusal.notEnabled(userId);
    const at = this.now();
    const { cookie, hash, csrf, expires } = newSession(at, limits);
    this.db
      .prepare(
        "INSERT INTO user_session (hash, user_id, csrf, created_ms, last_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(hash, userId, csrf, at, at, expires);
    this.prune(at, limits);
    return { cookie, session: activeSession(user, csrf, expires, at, limits) };
  }

  /** The live session of a cookie value (its idle clock restarted), or undefined. */
  session(cookie: string, limits: SessionLimits): ActiveSession | undefined {
    if (!sessionCookieShape(cookie)) return undefined;
    const hash = sessionHash(cookie);
    const row = this.db.prepare("SELECT * FROM user_session WHERE hash = ?").get(hash) as
      SessionRow | undefined;
    if (row === undefined) return undefined;
    const at = this.now();
    if (sessionEnded(row, at, limits)) {
      this.db.prepare("DELETE FROM user_session WHERE hash = ?").run(hash);
      return undefined;
    }
    const user = this.get(row.user_id);
    if (user === undefined || user.disabled) return undefined;
    // The idle clock: written at most once a minute, not on every request.
    if (at - row.last_ms >= IDLE_CLOCK_MS) {
      this.db.prepare("UPDATE user_session SET last_ms = ? WHERE hash = ?").run(at, hash);
    }
    return activeSession(user, row.csrf, row.expires_ms, at, limits);
  }

  /** End one session (sign-out). */
  endSession(cookie: string): void {
    this.db.prepare("DELETE FROM user_session WHERE hash = ?").run(sessionHash(cookie));
  }

  /** End every session of a user. */
  endSessionsOf(userId: string): void {
    this.db.prepare("DELETE FROM user_session WHERE user_id = ?").run(userId);
    this.touched();
  }

  private prune(at: number, limits: SessionLimits): void {
    this.db
      .prepare("DELETE FROM user_session WHERE expires_ms <= ? OR last_ms <= ?")
      .run(at, at - limits.idleMs);
  }

  private row(id: string): UserRow | undefined {
    return this.db.prepare("SELECT * FROM app_user WHERE id = ?").get(id) as UserRow | undefined;
  }
}
