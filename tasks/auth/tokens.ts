import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import type { ApiRole } from "../../contracts/model/tasks.js";
import { openSqlite } from "../../infra/sqlite-file.js";
import { type User } from "../../contracts/model/people.js";
import { USER_MIGRATION, UserStore } from "./users.js";

/*
 * API tokens (`{dataDir}/tokens.db`). A token is 32 random bytes shown once; only its SHA-256 is
 * stored. An unsalted hash is enough here: the token has 256 bits of entropy, so there is no
 * dictionary to precompute, and a lookup by hash stays one index probe per request. The CLI
 * (`citywatch tokens`) writes this file while the ingest reads it, so it is not opened exclusively.
 */

export const TOKEN_PREFIX = "cwt_";

export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  readonly role: ApiRole;
  readonly createdAt: string;
  readonly revokedAt?: string | undefined;
  /** The user the token acts for (their roles and scope); absent: a service account's token. */
  readonly userId?: string | undefined;
}

/** A row of api_token (auth_api_token in PostgreSQL, read as these types). */
export interface TokenRow {
  id: string;
  name: string;
  role: ApiRole;
  created_ms: number;
  revoked_ms: number | null;
  user_id: string | null;
}

export const tokenRecord = (r: TokenRow): TokenRecord => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: new Date(r.created_ms).toISOString(),
  ...(r.revoked_ms === null ? {} : { revokedAt: new Date(r.revoked_ms).toISOString() }),
  ...(r.user_id === null ? {} : { userId: r.user_id }),
});

/** The stored form of a token: its SHA-256 (the token itself is never stored). */
export const tokenHash = (token: string): string =>
  createHash("sha256").update(token, "utf8").digest("hex");

/** A new token (the only copy) and its id. */
export const newToken = (): { token: string; id: string } => ({
  token: `${TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`,
  id: randomBytes(6).toString("hex"),
});

/** The errors both token stores refuse with. */
export const tokenRefusal = {
  activeName: (name: string) =>
    new TokenError(`an active token named ${name} exists; revoke it first`),
  noUser: (userId: string) => new TokenError(`no user ${userId}`),
  noActive: (idOrName: string) => new TokenError(`no active token with id or name ${idOrName}`),
};

/** Refuses a token name outside 1-64 characters of A-Z a-z 0-9 _ . @ - (TokenError). */
export function checkTokenName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) {
    throw new TokenError(
      "a token name must be 1-64 characters of A-Z a-z 0-9 _ . @ - starting with a letter or digit",
    );
  }
}

/** Refuses a token for `userId` (found as `user`) with a role the user does not have. */
export function checkTokenUser(userId: string, user: User | undefined, role: ApiRole): void {
  if (user === undefined) throw tokenRefusal.noUser(userId);
  if (!user.roles.includes(role)) {
    throw new TokenError(
      `user ${userId} has the roles ${user.roles.join(", ")}; a token for them cannot have the role ${role}`,
    );
  }
}

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS api_token (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     role TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     created_ms INTEGER NOT NULL,
     revoked_ms INTEGER
   );
   CREATE UNIQUE INDEX IF NOT EXISTS api_token_active_name ON api_token(name) WHERE revoked_ms IS NULL;`,
  USER_MIGRATION,
];

/** A token problem the CLI reports as it is (duplicate name, unknown token). */
export class TokenError extends Error {
  readonly code = "TOKEN_INVALID";
}

export class TokenStore {
  private readonly db: Database.Database;
  private readonly dataVersion: Database.Statement;
  private readonly active: Database.Statement;
  /** `PRAGMA data_version` last seen, plus changes made through this connection. */
  private seen: { data: number; local: number };
  private local = 0;
  /** User accounts and their sessions, in the same file. */
  readonly users: UserStore;

  constructor(
    readonly file: string,
    private readonly now: () => number = Date.now,
  ) {
    this.db = openSqlite(file, { synchronous: "FULL", migrations: MIGRATIONS });
    this.dataVersion = this.db.prepare("PRAGMA data_version").pluck();
    this.active = this.db
      .prepare(
        `SELECT 1 FROM api_token t LEFT JOIN app_user u ON u.id = t.user_id
         WHERE t.id = ? AND t.revoked_ms IS NULL AND (t.user_id IS NULL OR u.disabled = 0)`,
      )
      .pluck();
    this.seen = { data: this.dataVersion.get() as number, local: 0 };
    this.users = new UserStore(this.db, now, () => this.local++);
  }

  /**
   * Whether the token table may have changed since the last call: written by another process
   * (`citywatch tokens revoke`: SQLite's data_version, one read of shared memory) or through this
   * store. Cheap enough to ask before every request and every stream event.
   */
  changed(): boolean {
    const data = this.dataVersion.get() as number;
    if (data === this.seen.data && this.local === this.seen.local) return false;
    this.seen = { data, local: this.local };
    return true;
  }

  /** Whether the token with this id exists and is not revoked. */
  isActive(id: string): boolean {
    return this.active.get(id) !== undefined;
  }

  close(): void {
    this.db.close();
  }

  /**
   * Create a token; the returned secret is the only copy. A token for a user (`userId`) acts with
   * that user's roles and scope and stops working when the user is disabled; `role` must be one
   * of the user's roles.
   */
  add(name: string, role: ApiRole, userId?: string): { record: TokenRecord; token: string } {
    checkTokenName(name);
    const active = this.db
      .prepare("SELECT 1 FROM api_token WHERE name = ? AND revoked_ms IS NULL")
      .get(name);
    if (active !== undefined) throw tokenRefusal.activeName(name);
    if (userId !== undefined) checkTokenUser(userId, this.users.get(userId), role);
    const { token, id } = newToken();
    const createdMs = this.now();
    this.db
      .prepare(
        "INSERT INTO api_token (id, name, role, hash, created_ms, user_id) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(id, name, role, tokenHash(token), createdMs, userId ?? null);
    this.local++;
    return {
      record: tokenRecord({
        id,
        name,
        role,
        created_ms: createdMs,
        revoked_ms: null,
        user_id: userId ?? null,
      }),
      token,
    };
  }

  list(): TokenRecord[] {
    return (
      this.db.prepare("SELECT * FROM api_token ORDER BY created_ms, id").all() as TokenRow[]
    ).map(tokenRecord);
  }

  /** Revoke the active token with this id or name. */
  revoke(idOrName: string): TokenRecord {
    const row = this.db
      .prepare("SELECT * FROM api_token WHERE (id = ? OR name = ?) AND revoked_ms IS NULL")
      .get(idOrName, idOrName) as TokenRow | undefined;
    if (row === undefined) throw tokenRefusal.noActive(idOrName);
    const revokedMs = this.now();
    this.db.prepare("UPDATE api_token SET revoked_ms = ? WHERE id = ?").run(revokedMs, row.id);
    this.local++;
    return tokenRecord({ ...row, revoked_ms: revokedMs });
  }

  /** The active token a bearer secret belongs to (not of a disabled user), or undefined. */
  authenticate(token: string): TokenRecord | undefined {
    if (!token.startsWith(TOKEN_PREFIX)) return undefined;
    const row = this.db
      .prepare(
        `SELECT t.* FROM api_token t LEFT JOIN app_user u ON u.id = t.user_id
         WHERE t.hash = ? AND t.revoked_ms IS NULL AND (t.user_id IS NULL OR u.disabled = 0)`,
      )
      .get(tokenHash(token)) as TokenRow | undefined;
    return row === undefined ? undefined : tokenRecord(row);
  }
}
