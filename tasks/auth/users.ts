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

interface UserRow {
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

interface SessionRow {
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

const toUser = (r: UserRow): User =>
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

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/** The fields of a user a change may set (absent or undefined: unchanged). */
export type UserChange = {
  [K in keyof Omit<UserInputType, "id">]?: Omit<UserInputType, "id">[K] | undefined;
};

/** The prefix of a session cookie's value, so a leaked one is recognisable (like `cwt_`). */
export const SESSION_PREFIX = "cws_";

export class UserStore {
  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
    /** Called after every change, so the token store's change counter sees it. */
    private readonly touched: () => void,
  ) {}

  /** Add a user; with a password (checked by the policy) they can sign in at once. */
  async add(input: UserInputType, password?: string): Promise<User> {
    const parsed = UserInput.safeParse(input);
    if (!parsed.success) {
      throw new UserError(
        parsed.error.issues.map((i) => `${i.path.join(".") || "user"}: ${i.message}`).join("; "),
      );
    }
    const u = parsed.data;
    if (this.row(u.id) !== undefined) throw new UserError(`a user ${u.id} exists`);
    const hash = password === undefined ? null : await hashPassword(password);
    const at = this.now();
    this.db
      .prepare(
        `INSERT INTO app_user (id, name, badge, roles, scope, team, password, disabled, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
      )
      .run(
        u.id,
        u.name,
        u.badge ?? null,
        JSON.stringify(u.roles),
        JSON.stringify(u.scope),
        u.team ?? null,
        hash,
        at,
        at,
      );
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
    if (current === undefined) throw new UserError(`no user ${id}`);
    const merged = UserInput.safeParse({
      id,
      name: change.name ?? current.name,
      roles: change.roles ?? current.roles,
      scope: change.scope ?? current.scope,
      ...((change.badge ?? current.badge) === null ? {} : { badge: change.badge ?? current.badge }),
      ...((change.team ?? current.team) === null ? {} : { team: change.team ?? current.team }),
    });
    if (!merged.success) {
      throw new UserError(
        merged.error.issues.map((i) => `${i.path.join(".") || "user"}: ${i.message}`).join("; "),
      );
    }
    const u = merged.data;
    this.db
      .prepare(
        "UPDATE app_user SET name = ?, badge = ?, roles = ?, scope = ?, team = ?, updated_ms = ? WHERE id = ?",
      )
      .run(
        u.name,
        u.badge ?? null,
        JSON.stringify(u.roles),
        JSON.stringify(u.scope),
        u.team ?? null,
        this.now(),
        id,
      );
    this.touched();
    return this.get(id) as User;
  }

  /** Set a new password (policy-checked); the user's sessions end. */
  async setPassword(id: string, password: string): Promise<void> {
    if (this.row(id) === undefined) throw new UserError(`no user ${id}`);
    const hash = await hashPassword(password);
    this.db
      .prepare("UPDATE app_user SET password = ?, updated_ms = ? WHERE id = ?")
      .run(hash, this.now(), id);
    this.endSessionsOf(id);
  }

  /** Disable or enable a user. Disabling ends their sessions and refuses their tokens. */
  setDisabled(id: string, disabled: boolean): User {
    if (this.row(id) === undefined) throw new UserError(`no user ${id}`);
    this.db
      .prepare("UPDATE app_user SET disabled = ?, updated_ms = ? WHERE id = ?")
      .run(disabled ? 1 : 0, this.now(), id);
    if (disabled) this.endSessionsOf(id);
    this.touched();
    return this.get(id) as User;
  }

  /**
   * The enabled user a name and password belong to, or undefined. Takes as long for an unknown
   * name or a disabled user as for a wrong password.
   */
  async checkPassword(username: string, password: string): Promise<User | undefined> {
    const row = this.row(username.trim().toLowerCase());
    const stored = row?.password ?? (await decoyHash());
    const ok = await verifyPassword(password, stored);
    if (!ok || row === undefined || row.password === null || row.disabled === 1) return undefined;
    return toUser(row);
  }

  /** Start a session; the returned cookie value is the only copy. */
  startSession(userId: string, limits: SessionLimits): { cookie: string; session: ActiveSession } {
    const user = this.get(userId);
    if (user === undefined || user.disabled) throw new UserError(`no enabled user ${userId}`);
    const cookie = `${SESSION_PREFIX}${randomBytes(32).toString("base64url")}`;
    const csrf = randomBytes(32).toString("base64url");
    const at = this.now();
    const expires = at + limits.maxMs;
    this.db
      .prepare(
        "INSERT INTO user_session (hash, user_id, csrf, created_ms, last_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(sha256(cookie), userId, csrf, at, at, expires);
    this.prune(at, limits);
    return {
      cookie,
      session: {
        user,
        csrf,
        expiresAt: new Date(Math.min(expires, at + limits.idleMs)).toISOString(),
      },
    };
  }

  /** The live session of a cookie value (its idle clock restarted), or undefined. */
  session(cookie: string, limits: SessionLimits): ActiveSession | undefined {
    if (!cookie.startsWith(SESSION_PREFIX) || cookie.length > 100) return undefined;
    const hash = sha256(cookie);
    const row = this.db.prepare("SELECT * FROM user_session WHERE hash = ?").get(hash) as
      SessionRow | undefined;
    if (row === undefined) return undefined;
    const at = this.now();
    if (at >= row.expires_ms || at - row.last_ms >= limits.idleMs) {
      this.db.prepare("DELETE FROM user_session WHERE hash = ?").run(hash);
      return undefined;
    }
    const user = this.get(row.user_id);
    if (user === undefined || user.disabled) return undefined;
    // The idle clock: written at most once a minute, not on every request.
    if (at - row.last_ms >= 60_000) {
      this.db.prepare("UPDATE user_session SET last_ms = ? WHERE hash = ?").run(at, hash);
    }
    return {
      user,
      csrf: row.csrf,
      expiresAt: new Date(Math.min(row.expires_ms, at + limits.idleMs)).toISOString(),
    };
  }

  /** End one session (sign-out). */
  endSession(cookie: string): void {
    this.db.prepare("DELETE FROM user_session WHERE hash = ?").run(sha256(cookie));
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
