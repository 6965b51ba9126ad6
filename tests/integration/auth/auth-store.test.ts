import { createHash } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import type { UserInput } from "../../../contracts/model/people.js";
import { PasswordPolicyError, verifyPassword } from "../../../tasks/auth/password.js";
import { asyncTokenStore, type AsyncTokenStore } from "../../../tasks/auth/store-port.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { TokenError, TokenStore } from "../../../tasks/auth/tokens.js";
import { UserError } from "../../../tasks/auth/users.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { createMigratedSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * Users, sessions and API tokens (tasks/auth/store-port.ts, issue #21), one suite for both
 * implementations: the embedded tokens.db (TokenStore and its UserStore behind asyncTokenStore)
 * and PostgreSQL (tasks/auth/store-postgres.ts). Every case runs on empty storage of its own,
 * on a clock of its own; what the SQLite stores do is the contract. A second store on the same
 * storage stands for another process (SQLite: the CLI on the same file) or another node
 * (PostgreSQL). Stored rows are read past the stores only to see that no secret is kept in
 * clear. Then what only the shared database does: concurrent writers.
 */

const postgres = await requireService("users and tokens in PostgreSQL", providePostgres);

const NOW = Date.parse("2026-12-05T08:00:00.000Z");
const MINUTE = 60_000;
const LIMITS = { idleMs: 30 * MINUTE, maxMs: 2 * 60 * MINUTE };
const PASSWORD = "a long enough password";
const OTHER_PASSWORD = "another long password";

/** What the storage holds, read past the stores. */
interface Stored {
  readonly tokenHashes: string[];
  readonly passwords: Array<string | null>;
  readonly sessionHashes: string[];
}

/** One implementation, on empty storage of its own. */
interface Backend {
  readonly store: AsyncTokenStore;
  /** Another store on the same storage (another process or node), on the same clock. */
  readonly another: () => AsyncTokenStore;
  readonly stored: () => Promise<Stored>;
  readonly clock: { now: number };
  readonly close: () => Promise<void>;
  readonly pool?: pg.Pool;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

const wu: UserInput = {
  id: "wu",
  name: "Wu Lei",
  roles: ["emergency", "viewer"],
  scope: { cityWide: true },
};
const li: UserInput = {
  id: "li.na",
  name: "Li Na",
  badge: "CD-0042",
  roles: ["enforcement"],
  scope: { districts: ["wuhou"] },
  team: "Wuhou squad 2",
};

/** The error `promise` rejects with: an instance of `kind`, its message matching `why`. */
async function refused(
  promise: Promise<unknown>,
  kind: new (...args: never[]) => Error,
  why: RegExp,
): Promise<void> {
  const error: unknown = await promise.then(
    () => expect.unreachable("expected a refusal"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(kind);
  expect((error as Error).message).toMatch(why);
}

// ---------------------------------------------------------------------------------------------
// The implementations

async function openSqlite(): Promise<Backend> {
  const dir = await makeTempDir("cw-auth-store-");
  const file = join(dir, "tokens.db");
  const clock = { now: NOW };
  const opened: AsyncTokenStore[] = [];
  const open = () => {
    const store = asyncTokenStore(new TokenStore(file, () => clock.now));
    opened.push(store);
    return store;
  };
  const store = open();
  return {
    store,
    another: open,
    clock,
    stored: () => {
      const db = new Database(file, { readonly: true });
      try {
        const column = (sql: string) => db.prepare(sql).pluck().all() as Array<string | null>;
        return Promise.resolve({
          tokenHashes: column("SELECT hash FROM api_token ORDER BY hash") as string[],
          passwords: column("SELECT password FROM app_user ORDER BY id"),
          sessionHashes: column("SELECT hash FROM user_session ORDER BY hash") as string[],
        });
      } finally {
        db.close();
      }
    },
    close: async () => {
      for (const s of opened) await s.close();
      await removeTempDir(dir);
    },
  };
}

async function openPostgres(): Promise<Backend> {
  const { schema, pool } = await createMigratedSchema(postgresUrl(postgres), 8);
  const clock = { now: NOW };
  const open = () => new PostgresTokenStore(pool, () => clock.now);
  const column = async (sql: string) =>
    (await pool.query<{ v: string | null }>(sql)).rows.map((r) => r.v);
  return {
    store: open(),
    another: open,
    clock,
    pool,
    stored: async () => ({
      tokenHashes: (await column("SELECT hash AS v FROM auth_api_token ORDER BY hash")) as string[],
      passwords: await column("SELECT password AS v FROM auth_user ORDER BY id"),
      sessionHashes: (await column("SELECT hash AS v FROM auth_session ORDER BY hash")) as string[],
    }),
    close: () => schema.drop(),
  };
}

// ---------------------------------------------------------------------------------------------
// The contract

/** Opens a backend per call, each closed after its test (call inside a describe). */
function freshBackends(open: () => Promise<Backend>): () => Promise<Backend> {
  const backends: Backend[] = [];
  afterEach(async () => {
    await Promise.all(backends.splice(0).map((b) => b.close()));
  });
  return async () => {
    const backend = await open();
    backends.push(backend);
    return backend;
  };
}

function suite(name: string, open: () => Promise<Backend>) {
  describe(`auth store: ${name}`, () => {
    const fresh = freshBackends(open);
    /** A backend with wu (signing in with PASSWORD) and li.na (no password). */
    const withUsers = async () => {
      const backend = await fresh();
      await backend.store.users.add(wu, PASSWORD);
      await backend.store.users.add(li);
      return backend;
    };

    describe("users", () => {
      it("adds users and gives them back, listed by id", async () => {
        const { store, clock } = await fresh();
        const added = await store.users.add(wu, PASSWORD);
        clock.now += 1_000;
        await store.users.add(li);
        expect(added).toEqual({
          id: "wu",
          name: "Wu Lei",
          badge: null,
          roles: ["emergency", "viewer"],
          scope: { cityWide: true, districts: [], streets: [], gridCells: [] },
          team: null,
          disabled: false,
          createdAt: new Date(NOW).toISOString(),
          updatedAt: new Date(NOW).toISOString(),
        });
        expect(await store.users.get("wu")).toEqual(added);
        expect(await store.users.get("li.na")).toMatchObject({
          badge: "CD-0042",
          team: "Wuhou squad 2",
          scope: { cityWide: false, districts: ["wuhou"] },
          createdAt: new Date(NOW + 1_000).toISOString(),
        });
        expect(await store.users.get("nobody")).toBeUndefined();
        // Byte order: "li.na" < "wu", and "0a" before both.
        await store.users.add({ ...li, id: "0a" });
        expect((await store.users.list()).map((u) => u.id)).toEqual(["0a", "li.na", "wu"]);
      });

      it("refuses an invalid user, an id taken and a weak password, storing nothing", async () => {
        const { store } = await withUsers();
        await refused(store.users.add({ ...wu, id: "Wu Lei" }), UserError, /^id: a user name/);
        await refused(
          store.users.add({ ...wu, id: "zh", roles: [] }),
          UserError,
          /roles: a user needs at least one role/,
        );
        await refused(
          store.users.add({ ...li, name: "Wu again" }),
          UserError,
          /^a user li\.na exists$/,
        );
        await refused(
          store.users.add({ ...wu, id: "zhao" }, "short"),
          PasswordPolicyError,
          /at least 12/,
        );
        expect((await store.users.list()).map((u) => u.id)).toEqual(["li.na", "wu"]);
        expect((await store.users.get("li.na"))?.name).toBe("Li Na");
      });

      it("changes a user's fields, keeping the others and the id, and refuses what is invalid", async () => {
        const { store, clock } = await withUsers();
        clock.now += 5_000;
        const changed = await store.users.update("li.na", {
          name: "Li Na (2)",
          roles: ["enforcement", "viewer"],
        });
        expect(changed).toMatchObject({
          id: "li.na",
          name: "Li Na (2)",
          roles: ["enforcement", "viewer"],
          badge: "CD-0042",
          team: "Wuhou squad 2",
          scope: { districts: ["wuhou"] },
          createdAt: new Date(NOW).toISOString(),
          updatedAt: new Date(NOW + 5_000).toISOString(),
        });
        expect(await store.users.get("li.na")).toEqual(changed);
        expect((await store.users.update("li.na", { team: "HQ", badge: undefined })).team).toBe(
          "HQ",
        );
        await refused(store.users.update("nobody", { name: "x" }), UserError, /^no user nobody$/);
        await refused(
          store.users.update("li.na", { roles: [] }),
          UserError,
          /roles: a user needs at least one role/,
        );
        expect((await store.users.get("li.na"))?.roles).toEqual(["enforcement", "viewer"]);
      });

      it("checks a password: name trimmed and lower-cased; wrong, unknown, none and disabled refused", async () => {
        const { store } = await withUsers();
        expect((await store.users.checkPassword(" WU ", PASSWORD))?.id).toBe("wu");
        expect(await store.users.checkPassword("wu", "a long enough passworD")).toBeUndefined();
        expect(await store.users.checkPassword("nobody", PASSWORD)).toBeUndefined();
        // li.na has no password: nothing signs her in.
        expect(await store.users.checkPassword("li.na", "")).toBeUndefined();
        expect(await store.users.checkPassword("li.na", PASSWORD)).toBeUndefined();
        await store.users.setDisabled("wu", true);
        expect(await store.users.checkPassword("wu", PASSWORD)).toBeUndefined();
        await store.users.setDisabled("wu", false);
        expect((await store.users.checkPassword("wu", PASSWORD))?.id).toBe("wu");
      });

      it("sets a new password: the old one stops, the user's sessions end, and the policy holds", async () => {
        const { store } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        await store.users.setPassword("wu", OTHER_PASSWORD);
        expect(await store.users.checkPassword("wu", PASSWORD)).toBeUndefined();
        expect((await store.users.checkPassword("wu", OTHER_PASSWORD))?.id).toBe("wu");
        expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
        // A user without a password gets one.
        await store.users.setPassword("li.na", PASSWORD);
        expect((await store.users.checkPassword("li.na", PASSWORD))?.id).toBe("li.na");
        await refused(store.users.setPassword("nobody", PASSWORD), UserError, /^no user nobody$/);
        await refused(
          store.users.setPassword("wu", "aaaaaaaaaaaaaaaa"),
          PasswordPolicyError,
          /repeated/,
        );
        expect((await store.users.checkPassword("wu", OTHER_PASSWORD))?.id).toBe("wu");
      });

      it("disables a user: sessions end, tokens refused, sign-in refused; enabling restores the tokens", async () => {
        const { store, clock } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        const { token, record } = await store.add("wu-phone", "emergency", "wu");
        clock.now += 1_000;
        const disabled = await store.users.setDisabled("wu", true);
        expect(disabled).toMatchObject({
          disabled: true,
          updatedAt: new Date(NOW + 1_000).toISOString(),
        });
        expect(await store.users.get("wu")).toEqual(disabled);
        expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
        expect(await store.authenticate(token)).toBeUndefined();
        expect(await store.isActive(record.id)).toBe(false);
        await refused(store.users.startSession("wu", LIMITS), UserError, /^no enabled user wu$/);

        expect((await store.users.setDisabled("wu", false)).disabled).toBe(false);
        expect((await store.authenticate(token))?.id).toBe(record.id);
        expect(await store.isActive(record.id)).toBe(true);
        // The session ended for good.
        expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
        await refused(store.users.setDisabled("nobody", true), UserError, /^no user nobody$/);
      });
    });

    describe("sessions", () => {
      it("starts a session: the cookie is the only copy, the session shows its user and CSRF token", async () => {
        const { store, stored } = await withUsers();
        const { cookie, session } = await store.users.startSession("wu", LIMITS);
        expect(cookie).toMatch(/^cws_[A-Za-z0-9_-]{43}$/);
        expect(session).toEqual({
          user: await store.users.get("wu"),
          csrf: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) as unknown,
          expiresAt: new Date(NOW + LIMITS.idleMs).toISOString(),
        });
        expect(await store.users.session(cookie, LIMITS)).toEqual(session);
        // Only the cookie's hash is kept.
        expect((await stored()).sessionHashes).toEqual([sha256(cookie)]);
        // Two sign-ins are two sessions, with their own CSRF tokens.
        const second = await store.users.startSession("wu", LIMITS);
        expect(second.cookie).not.toBe(cookie);
        expect(second.session.csrf).not.toBe(session.csrf);
        expect((await store.users.session(second.cookie, LIMITS))?.csrf).toBe(second.session.csrf);
        await refused(
          store.users.startSession("nobody", LIMITS),
          UserError,
          /^no enabled user nobody$/,
        );
      });

      it("refuses an unknown cookie, one not shaped like a cookie and a hash offered as the cookie", async () => {
        const { store } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        expect(await store.users.session(`cws_${"A".repeat(43)}`, LIMITS)).toBeUndefined();
        expect(await store.users.session(cookie.slice(4), LIMITS)).toBeUndefined();
        expect(await store.users.session(sha256(cookie), LIMITS)).toBeUndefined();
        expect(await store.users.session(`${cookie}${"x".repeat(60)}`, LIMITS)).toBeUndefined();
        expect(await store.users.session(cookie, LIMITS)).toBeDefined();
      });

      it("ends a session idle for idleMs; use restarts the idle clock", async () => {
        const { store, clock, stored } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        clock.now += 29 * MINUTE;
        expect((await store.users.session(cookie, LIMITS))?.expiresAt).toBe(
          new Date(clock.now + LIMITS.idleMs).toISOString(),
        );
        clock.now += 29 * MINUTE; // used 29 min ago: alive
        expect(await store.users.session(cookie, LIMITS)).toBeDefined();
        clock.now += 30 * MINUTE; // idle exactly idleMs: ended, and gone from storage
        expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
        expect((await stored()).sessionHashes).toEqual([]);
        clock.now -= 30 * MINUTE;
        expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
      });

      it("ends a session maxMs after sign-in however busy it is", async () => {
        const { store, clock } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        const alive: boolean[] = [];
        for (let i = 0; i < 7; i++) {
          clock.now += 20 * MINUTE;
          alive.push((await store.users.session(cookie, LIMITS)) !== undefined);
        }
        expect(alive).toEqual([true, true, true, true, true, false, false]);
      });

      it("shows the earlier of the idle end and the maximum age as expiresAt", async () => {
        const { store, clock } = await withUsers();
        const { cookie } = await store.users.startSession("wu", LIMITS);
        for (let i = 0; i < 3; i++) {
          clock.now += 25 * MINUTE;
          expect((await store.users.session(cookie, LIMITS))?.expiresAt).toBe(
            new Date(clock.now + LIMITS.idleMs).toISOString(),
          );
        }
        clock.now += 25 * MINUTE; // idle end 30 min on, past the maximum age 20 min on
        expect((await store.users.session(cookie, LIMITS))?.expiresAt).toBe(
          new Date(NOW + LIMITS.maxMs).toISOString(),
        );
      });

      it("removes ended sessions of anyone at a sign-in", async () => {
        const { store, clock, stored } = await withUsers();
        await store.users.setPassword("li.na", PASSWORD);
        await store.users.startSession("li.na", LIMITS);
        clock.now += LIMITS.idleMs;
        const { cookie } = await store.users.startSession("wu", LIMITS);
        expect((await stored()).sessionHashes).toEqual([sha256(cookie)]);
      });

      it("signs out one session, or every session of a user, on any store of the storage", async () => {
        const { store, another } = await withUsers();
        const other = another();
        const a = await store.users.startSession("wu", LIMITS);
        const b = await store.users.startSession("wu", LIMITS);
        const c = await store.users.startSession("li.na", LIMITS).catch(() => undefined);
        expect(c).toBeDefined(); // no password, but a session can be started for her
        await other.users.endSession(a.cookie);
        expect(await store.users.session(a.cookie, LIMITS)).toBeUndefined();
        expect(await store.users.session(b.cookie, LIMITS)).toBeDefined();
        await other.users.endSessionsOf("wu");
        expect(await store.users.session(b.cookie, LIMITS)).toBeUndefined();
        expect(await store.users.session(c?.cookie ?? "", LIMITS)).toBeDefined();
        // Ending what is not there is no error.
        await other.users.endSession(a.cookie);
        await other.users.endSessionsOf("nobody");
      });

      it("refuses a session on another store once the password changed or the user was disabled there", async () => {
        const { store, another } = await withUsers();
        const other = another();
        const first = await store.users.startSession("wu", LIMITS);
        await other.users.setPassword("wu", OTHER_PASSWORD);
        expect(await store.users.session(first.cookie, LIMITS)).toBeUndefined();
        const second = await store.users.startSession("wu", LIMITS);
        await other.users.setDisabled("wu", true);
        expect(await store.users.session(second.cookie, LIMITS)).toBeUndefined();
      });
    });

    describe("API tokens", () => {
      it("issues a token shown once, keeps only its hash, and authenticates it", async () => {
        const { store, stored } = await fresh();
        const { token, record } = await store.add("duty-officer", "emergency");
        expect(token).toMatch(/^cwt_[A-Za-z0-9_-]{43}$/);
        expect(record).toEqual({
          id: expect.stringMatching(/^[0-9a-f]{12}$/) as unknown,
          name: "duty-officer",
          role: "emergency",
          createdAt: new Date(NOW).toISOString(),
        });
        expect(await store.authenticate(token)).toEqual(record);
        expect(await store.isActive(record.id)).toBe(true);
        expect((await stored()).tokenHashes).toEqual([sha256(token)]);
      });

      it("refuses a wrong token, one without the prefix, and the stored hash offered as a token", async () => {
        const { store } = await fresh();
        const { token } = await store.add("duty-officer", "emergency");
        expect(
          await store.authenticate(`${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`),
        ).toBeUndefined();
        expect(await store.authenticate(token.slice(4))).toBeUndefined();
        expect(await store.authenticate(sha256(token))).toBeUndefined();
        expect(await store.authenticate(`cwt_${sha256(token)}`)).toBeUndefined();
        expect(await store.isActive("000000000000")).toBe(false);
      });

      it("lists tokens by creation time, revoked ones too", async () => {
        const { store, clock } = await fresh();
        const b = await store.add("b-token", "viewer");
        clock.now -= 1_000;
        const a = await store.add("a-token", "operator");
        clock.now += 5_000;
        const revoked = await store.revoke("b-token");
        expect(await store.list()).toEqual([a.record, revoked]);
        expect(revoked).toEqual({ ...b.record, revokedAt: new Date(NOW + 4_000).toISOString() });
      });

      it("refuses a bad name, and a name an active token has until it is revoked", async () => {
        const { store } = await fresh();
        for (const name of ["", "-lead", "a b", "x".repeat(65), "名字"])
          await refused(
            store.add(name, "viewer"),
            TokenError,
            /^a token name must be 1-64 characters/,
          );
        await store.add("x".repeat(64), "viewer");
        const first = await store.add("ops", "operator");
        await refused(
          store.add("ops", "viewer"),
          TokenError,
          /^an active token named ops exists; revoke it first$/,
        );
        await store.revoke(first.record.id);
        const second = await store.add("ops", "viewer");
        expect(second.record.id).not.toBe(first.record.id);
        expect((await store.list()).filter((t) => t.name === "ops")).toHaveLength(2);
      });

      it("issues a token for a user with one of the user's roles only", async () => {
        const { store } = await withUsers();
        const { record, token } = await store.add("wu@phone", "viewer", "wu");
        expect(record).toMatchObject({ name: "wu@phone", role: "viewer", userId: "wu" });
        expect(await store.authenticate(token)).toEqual(record);
        await refused(
          store.add("wu@laptop", "admin", "wu"),
          TokenError,
          /^user wu has the roles emergency, viewer; a token for them cannot have the role admin$/,
        );
        await refused(store.add("ghost@x", "viewer", "ghost"), TokenError, /^no user ghost$/);
        expect((await store.list()).map((t) => t.name)).toEqual(["wu@phone"]);
      });

      it("revokes by id or by name, once; a revoked token authenticates no more", async () => {
        const { store, clock } = await fresh();
        const a = await store.add("a-token", "viewer");
        const b = await store.add("b-token", "viewer");
        clock.now += 1_000;
        expect(await store.revoke(a.record.id)).toEqual({
          ...a.record,
          revokedAt: new Date(NOW + 1_000).toISOString(),
        });
        expect(await store.revoke("b-token")).toMatchObject({
          id: b.record.id,
          revokedAt: expect.any(String) as unknown,
        });
        for (const t of [a, b]) {
          expect(await store.authenticate(t.token)).toBeUndefined();
          expect(await store.isActive(t.record.id)).toBe(false);
        }
        await refused(
          store.revoke(a.record.id),
          TokenError,
          new RegExp(`^no active token with id or name ${a.record.id}$`),
        );
        await refused(
          store.revoke("b-token"),
          TokenError,
          /^no active token with id or name b-token$/,
        );
        await refused(
          store.revoke("nothing"),
          TokenError,
          /^no active token with id or name nothing$/,
        );
      });

      it("revokes on one store what another store then refuses, and tells it something changed", async () => {
        const { store, another } = await fresh();
        const api = another();
        const { token, record } = await store.add("ops", "operator");
        await api.changed(); // the API's first look
        expect(await api.changed()).toBe(false);
        expect((await api.authenticate(token))?.id).toBe(record.id);
        await store.revoke("ops");
        expect(await api.changed()).toBe(true);
        expect(await api.changed()).toBe(false);
        expect(await api.authenticate(token)).toBeUndefined();
        expect(await api.isActive(record.id)).toBe(false);
      });

      it("tells of a user disabled, a user's sessions ended and a token added, each as a change", async () => {
        const { store, another } = await withUsers();
        await store.users.startSession("li.na", LIMITS);
        const api = another();
        await api.changed();
        const steps: Array<() => Promise<unknown>> = [
          () => store.users.setDisabled("wu", true),
          () => store.users.endSessionsOf("li.na"),
          () => store.add("ops", "operator"),
          () => store.users.update("li.na", { name: "Li" }),
        ];
        for (const step of steps) {
          await step();
          expect(await api.changed()).toBe(true);
          expect(await api.changed()).toBe(false);
        }
      });
    });

    it("keeps no password in clear: scrypt hashes that verify, unique per user", async () => {
      const { store, stored } = await fresh();
      await store.users.add(wu, PASSWORD);
      await store.users.add({ ...wu, id: "wu2" }, PASSWORD);
      await store.users.add(li);
      const { passwords } = await stored();
      expect(passwords[0]).toBeNull(); // li.na
      const [, a, b] = passwords as string[];
      for (const hash of [a, b]) {
        expect(hash).toMatch(/^scrypt\$15\$8\$1\$/);
        expect(hash).not.toContain(PASSWORD);
        expect(await verifyPassword(PASSWORD, hash ?? "")).toBe(true);
      }
      expect(a).not.toBe(b);
    });
  });
}

suite("SQLite (tokens.db)", openSqlite);
if (postgres !== undefined) suite("PostgreSQL", openPostgres);

// ---------------------------------------------------------------------------------------------
// What only the shared database does

describe.runIf(postgres)("users and tokens in PostgreSQL", () => {
  const open = freshBackends(openPostgres);
  const fresh = async () => {
    const backend = await open();
    await backend.store.users.add(wu, PASSWORD);
    return backend as Backend & { pool: pg.Pool; store: PostgresTokenStore };
  };

  /** Resolves once a statement on `pool`'s database waits for a row lock. */
  async function someoneWaits(pool: pg.Pool): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const { rows } = await pool.query(
        `SELECT 1 FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query LIKE '%auth\\_%' AND pid <> pg_backend_pid()`,
      );
      if (rows.length > 0) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error("no statement waited for a lock");
  }

  /** `work` on a view of the store inside a transaction held open until `release` resolves. */
  async function held(
    pool: pg.Pool,
    store: PostgresTokenStore,
    work: (tx: PostgresTokenStore) => Promise<unknown>,
    release: (commit: () => void) => Promise<void>,
  ): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await work(store.on(client));
      let commit = () => undefined as void;
      const committed = new Promise<void>((resolve) => (commit = resolve));
      await release(commit);
      await committed;
      await client.query("COMMIT");
    } finally {
      client.release();
    }
  }

  it("revokes a token once when two nodes revoke it at the same time", async () => {
    const { store, pool, another } = await fresh();
    const { record } = await store.add("ops", "operator");
    const nodes = [another(), another(), another()];
    let outcomes: Promise<Array<PromiseSettledResult<unknown>>> = Promise.resolve([]);
    await held(
      pool,
      store,
      (tx) => tx.revoke("ops"),
      async (commit) => {
        outcomes = Promise.allSettled(nodes.map((n) => n.revoke("ops")));
        await someoneWaits(pool);
        commit();
      },
    );
    // The first revocation was the held one: every node's waited for it and found none active.
    for (const o of await outcomes) {
      expect(o.status).toBe("rejected");
      if (o.status === "rejected") expect(o.reason).toBeInstanceOf(TokenError);
    }
    expect((await store.list()).map((t) => [t.id, t.revokedAt !== undefined])).toEqual([
      [record.id, true],
    ]);
  });

  it("gives an active token name and a user id to one of several nodes adding them at once", async () => {
    const { store, another } = await fresh();
    const nodes = [store, another(), another(), another()];
    const tokens = await Promise.allSettled(nodes.map((n) => n.add("ops", "operator")));
    expect(tokens.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const o of tokens.filter((o) => o.status === "rejected"))
      expect((o.reason as Error).message).toBe("an active token named ops exists; revoke it first");
    const users = await Promise.allSettled(nodes.map((n) => n.users.add(li)));
    expect(users.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const o of users.filter((o) => o.status === "rejected"))
      expect((o.reason as Error).message).toBe("a user li.na exists");
  });

  it("refuses a sign-in that waited for the user being disabled on another node", async () => {
    const { store, pool, stored } = await fresh();
    let signIn: Promise<unknown> = Promise.resolve();
    await held(
      pool,
      store,
      (tx) => tx.users.setDisabled("wu", true),
      async (commit) => {
        signIn = store.users.startSession("wu", LIMITS).then(
          () => "started",
          (e: unknown) => e,
        );
        await someoneWaits(pool);
        commit();
      },
    );
    const outcome = await signIn;
    expect(outcome).toBeInstanceOf(UserError);
    expect((await stored()).sessionHashes).toEqual([]);
  });

  it("ends a session whose sign-in was being written while the password changed", async () => {
    const { store, pool } = await fresh();
    let cookie = "";
    let change: Promise<void> = Promise.resolve();
    await held(
      pool,
      store,
      async (tx) => {
        cookie = (await tx.users.startSession("wu", LIMITS)).cookie;
      },
      async (commit) => {
        change = store.users.setPassword("wu", OTHER_PASSWORD);
        await someoneWaits(pool);
        commit();
      },
    );
    await change;
    expect(await store.users.session(cookie, LIMITS)).toBeUndefined();
  });

  it("refuses a token for a user whose role was taken away while it was being issued", async () => {
    const { store, pool } = await fresh();
    let issue: Promise<unknown> = Promise.resolve();
    await held(
      pool,
      store,
      (tx) => tx.users.update("wu", { roles: ["viewer"] }),
      async (commit) => {
        issue = store.add("wu@phone", "emergency", "wu").catch((e: unknown) => e);
        await someoneWaits(pool);
        commit();
      },
    );
    expect(await issue).toBeInstanceOf(TokenError);
    expect(await store.list()).toEqual([]);
  });

  it("keeps both of two changes made to one user at once", async () => {
    const { store, another } = await fresh();
    await Promise.all([
      store.users.update("wu", { name: "Wu L." }),
      another().users.update("wu", { team: "night shift" }),
    ]);
    expect(await store.users.get("wu")).toMatchObject({ name: "Wu L.", team: "night shift" });
  });

  it('sorts user ids in byte order (COLLATE "C")', async () => {
    const { pool } = await fresh();
    const { rows } = await pool.query<{ column: string; collation: string | null }>(
      `SELECT table_name || '.' || column_name AS column, collation_name AS collation
       FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name LIKE 'auth%'
         AND column_name IN ('id', 'name', 'user_id', 'hash')
       ORDER BY 1`,
    );
    expect(rows).toEqual(
      [
        "auth_api_token.hash",
        "auth_api_token.id",
        "auth_api_token.name",
        "auth_api_token.user_id",
        "auth_session.hash",
        "auth_session.user_id",
        "auth_user.id",
      ]
        .map((column): { column: string; collation: string | null } => ({ column, collation: "C" }))
        // A user's display name sorts nothing.
        .concat([{ column: "auth_user.name", collation: null }]),
    );
  });
});
