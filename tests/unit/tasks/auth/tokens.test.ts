import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiRole, TaskKind } from "../../../../contracts/index.js";
import { mayAct } from "../../../../tasks/auth/roles.js";
import { asyncTokenStore } from "../../../../tasks/auth/store-port.js";
import { TokenStore } from "../../../../tasks/auth/tokens.js";
import { makeTempDir, removeTempDir } from "../../../support/process.js";

describe("role matrix", () => {
  it("lets each role act on its own kind of task only; viewers on none, admin on all", () => {
    const matrix = Object.fromEntries(
      ApiRole.options.map((role) => [role, TaskKind.options.filter((kind) => mayAct(role, kind))]),
    );
    expect(matrix).toEqual({
      admin: ["enforcement", "emergency", "maintenance", "environmental"],
      command_centre: ["enforcement", "emergency", "maintenance", "environmental"],
      operator: ["maintenance"],
      emergency: ["emergency"],
      enforcement: ["enforcement", "environmental"],
      legal_reviewer: [],
      viewer: [],
    });
  });
});

describe("TokenStore", () => {
  let dir: string;
  let store: TokenStore;
  beforeEach(async () => {
    dir = await makeTempDir("cw-tokens-");
    store = new TokenStore(join(dir, "tokens.db"));
  });
  afterEach(async () => {
    store.close();
    await removeTempDir(dir);
  });

  it("stores only a hash, authenticates the token, and stops after revocation", () => {
    const { token, record } = store.add("duty-officer", "emergency");
    expect(token).toMatch(/^cwt_[A-Za-z0-9_-]{43}$/);
    expect(store.authenticate(token)).toMatchObject({ name: "duty-officer", role: "emergency" });
    expect(store.authenticate(`${token}x`)).toBeUndefined();
    expect(store.authenticate("not-a-token")).toBeUndefined();

    const reopened = new TokenStore(join(dir, "tokens.db"));
    const raw = (reopened as unknown as { db: { prepare(s: string): { all(): unknown[] } } }).db
      .prepare("SELECT * FROM api_token")
      .all();
    expect(JSON.stringify(raw)).not.toContain(token.slice(4));
    reopened.close();

    expect(() => store.add("duty-officer", "viewer")).toThrow(/active token named duty-officer/);
    expect(store.revoke(record.id).revokedAt).toBeDefined();
    expect(store.authenticate(token)).toBeUndefined();
    expect(() => store.revoke("duty-officer")).toThrow(/no active token/);
    expect(store.add("duty-officer", "viewer").record.role).toBe("viewer"); // the name is free again
    expect(store.list().map((t) => [t.name, t.role, t.revokedAt === undefined])).toEqual([
      ["duty-officer", "emergency", false],
      ["duty-officer", "viewer", true],
    ]);
  });

  it("refuses a bad token name", () => {
    expect(() => store.add("bad name/with slash", "viewer")).toThrow(/token name/);
  });
});

describe("TokenStore behind the asynchronous interface", () => {
  it("answers reads at once while a write waits for its scrypt; writes keep their turns", async () => {
    const dir = await makeTempDir("cw-tokens-async-");
    const file = new TokenStore(join(dir, "tokens.db"));
    const store = asyncTokenStore(file);
    try {
      const password = "correct horse battery";
      await store.users.add(
        { id: "wu", name: "Wu", roles: ["viewer"], scope: { cityWide: true } },
        password,
      );
      const { token } = await store.add("console", "viewer");
      const order: string[] = [];
      const note = (what: string) => (value: unknown) => {
        order.push(what);
        return value;
      };
      // A write with scrypt in it, then a write and reads called while it hashes.
      const adding = store.users
        .add({ id: "li", name: "Li", roles: ["viewer"], scope: { cityWide: true } }, password)
        .then(note("add"));
      const issuing = store.add("other", "viewer").then(note("token added"));
      const reads = Promise.all([
        store.authenticate(token).then(note("authenticate")),
        store.users.get("wu").then(note("get")),
        store.changed().then(note("changed")),
        store.users.checkPassword("wu", password).then(note("checkPassword")),
      ]);
      const [found, user, , checked] = await reads;
      await Promise.all([adding, issuing]);
      expect(found).toMatchObject({ name: "console" });
      expect(user).toMatchObject({ id: "wu" });
      expect(checked).toMatchObject({ id: "wu" });
      // Reads did not wait for the hashing write; the second write waited for the first.
      expect(order.indexOf("authenticate")).toBeLessThan(order.indexOf("add"));
      expect(order.indexOf("get")).toBeLessThan(order.indexOf("add"));
      expect(order.indexOf("add")).toBeLessThan(order.indexOf("token added"));
    } finally {
      await store.close();
      await removeTempDir(dir);
    }
  });
});
