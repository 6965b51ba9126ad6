import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LoginLimiter } from "../../../../tasks/auth/login-limit.js";
import {
  hashPassword,
  PasswordPolicyError,
  verifyPassword,
} from "../../../../tasks/auth/password.js";
import { TokenStore } from "../../../../tasks/auth/tokens.js";

const dir = mkdtempSync(join(tmpdir(), "cw-users-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("passwords", () => {
  it("hashes with scrypt and a salt, verifies, and refuses what the policy refuses", async () => {
    const a = await hashPassword("correct horse battery");
    const b = await hashPassword("correct horse battery");
    expect(a).toMatch(/^scrypt\$15\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword("correct horse battery", a)).toBe(true);
    expect(await verifyPassword("correct horse batterY", a)).toBe(false);
    expect(await verifyPassword("correct horse battery", "plain")).toBe(false);
    await expect(hashPassword("short")).rejects.toBeInstanceOf(PasswordPolicyError);
    await expect(hashPassword("aaaaaaaaaaaaaaaa")).rejects.toThrow(/repeated/);
  });
});

describe("sessions", () => {
  let now = Date.parse("2026-12-05T08:00:00Z");
  const tokens = new TokenStore(join(dir, "tokens.db"), () => now);
  afterAll(() => tokens.close());
  const limits = { idleMs: 30 * 60_000, maxMs: 2 * 3_600_000 };

  it("ends a session when idle, at its maximum age, and when the password changes", async () => {
    await tokens.users.add(
      { id: "wu", name: "Wu", roles: ["emergency"], scope: { cityWide: true } },
      "a long enough password",
    );
    expect(await tokens.users.checkPassword("WU ", "a long enough password")).toMatchObject({
      id: "wu",
    });
    const idle = tokens.users.startSession("wu", limits).cookie;
    now += 29 * 60_000;
    expect(tokens.users.session(idle, limits)?.user.id).toBe("wu");
    now += 29 * 60_000; // used 29 min ago: still alive (the idle clock restarted)
    expect(tokens.users.session(idle, limits)).toBeDefined();
    now += 31 * 60_000;
    expect(tokens.users.session(idle, limits)).toBeUndefined();

    const busy = tokens.users.startSession("wu", limits).cookie;
    for (let i = 0; i < 7; i++) {
      now += 20 * 60_000;
      expect(tokens.users.session(busy, limits) !== undefined).toBe(i < 5);
    }

    const third = tokens.users.startSession("wu", limits).cookie;
    await tokens.users.setPassword("wu", "another long password");
    expect(tokens.users.session(third, limits)).toBeUndefined();
    expect(tokens.users.session("cws_forged", limits)).toBeUndefined();
  });
});

describe("the sign-in limiter", () => {
  it("blocks a user name after its failures for the window, and an address after more", () => {
    let now = 0;
    const limiter = new LoginLimiter(
      { failuresPerUser: 3, failuresPerAddress: 5, windowMs: 60_000 },
      () => now,
    );
    for (let i = 0; i < 3; i++) limiter.failed("a", `ip${i}`);
    expect(limiter.waitMs("a", "ip9")).toBe(60_000);
    expect(limiter.waitMs("b", "ip9")).toBe(0);
    now = 60_001;
    expect(limiter.waitMs("a", "ip9")).toBe(0);
    for (let i = 0; i < 5; i++) limiter.failed(`u${i}`, "ipX");
    expect(limiter.waitMs("fresh", "ipX")).toBeGreaterThan(0);
    limiter.failed("c", "ipY");
    limiter.succeeded("c");
    expect(limiter.waitMs("c", "ipZ")).toBe(0);
  });
});
