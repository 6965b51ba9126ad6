import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import type { ApiRole } from "../../contracts/model/tasks.js";
import { openSqlite } from "../../infra/sqlite-file.js";
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

interface TokenRow {
  id: string;
  name: string;
  role: ApiRole;
  created_ms: number;
  revoked_ms: number | null;
  user_id: string | null;
}

const record = (r: TokenRow): TokenRecord => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: new Date(r.created_ms).toISOString(),
  ...(r.revoked_ms === null ? {} : { revokedAt: new Date(r.revoked_ms).toISOString() }),
  ...(r.user_id === null ? {} : { userId: r.user_id }),
});

const hashOf = (token: string): string => createHash("sha256").update(token, "utf8").digest("hex");

/** A token problem the CLI reports as it is (duplicate name, unknown token). */
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
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) {
      throw new TokenError(
        "a token name must be 1-64 characters of A-Z a-z 0-9 _ . @ - starting with a letter or digit",
      );
    }
    const active = this.db
      .prepare("SELECT 1 FROM api_token WHERE name = ? AND revoked_ms IS NULL")
      .get(name);
    if (active !== undefined)
      throw new TokenError(`an active token named ${name} exists; revoke it first`);
    if (userId !== undefined) {
      const user = this.users.get(userId);
      if (user === undefined) throw new TokenError(`no user ${userId}`);
      if (!user.roles.includes(role)) {
        throw new TokenError(
          `user ${userId} has the roles ${user.roles.join(", ")}; a token for them cannot have the role ${role}`,
        );
      }
    }
    const token = `${TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
    const id = randomBytes(6).toString("hex");
    const createdMs = this.now();
    this.db
      .prepare(
        "INSERT INTO api_token (id, name, role, hash, created_ms, user_id) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(id, name, role, hashOf(token), createdMs, userId ?? null);
    this.local++;
    return {
      record: {
        id,
        name,
        role,
        createdAt: new Date(createdMs).toISOString(),
        ...(userId === undefined ? {} : { userId }),
      },
      token,
    };
  }

  list(): TokenRecord[] {
    return (
      this.db.prepare("SELECT * FROM api_token ORDER BY created_ms, id").all() as TokenRow[]
    ).map(record);
  }

  /** Revoke the active token with this id or name. */
  revoke(idOrName: string): TokenRecord {
    const row = this.db
      .prepare("SELECT * FROM api_token WHERE (id = ? OR name = ?) AND revoked_ms IS NULL")
      .get(idOrName, idOrName) as TokenRow | undefined;
    if (row === undefined) throw new TokenError(`no active token with id or name ${idOrName}`);
    const revokedMs = this.now();
    this.db.prepare("UPDATE api_token SET revoked_ms = ? WHERE id = ?").run(revokedMs, row.id);
    this.local++;
    return record({ ...row, revoked_ms: revokedMs });
  }

  /** The active token a bearer secret belongs to (not of a disabled user), or undefined. */
  authenticate(token: string): TokenRecord | undefined {
    if (!token.startsWith(TOKEN_PREFIX)) return undefined;
    const row = this.db
      .prepare(
        `SELECT t.* FROM api_token t LEFT JOIN app_user u ON u.id = t.user_id
         WHERE t.hash = ? AND t.revoked_ms IS NULL AND (t.user_id IS NULL OR u.disabled = 0)`,
      )
      .get(hashOf(token)) as TokenRow | undefined;
    return row === undefined ? undefined : record(row);
  }
}
