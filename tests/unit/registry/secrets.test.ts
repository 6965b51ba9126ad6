import { describe, expect, it } from "vitest";
import { generateSecret, hashSecret, verifySecret } from "../../../registry/secrets.js";

describe("device secrets", () => {
  it("verifies the issued secret and nothing else", () => {
    const secret = generateSecret();
    const stored = hashSecret(secret);
    expect(verifySecret(secret, stored)).toBe(true);
    expect(verifySecret(`${secret}x`, stored)).toBe(false);
    expect(verifySecret("", stored)).toBe(false);
    expect(verifySecret(secret, "garbage")).toBe(false);
    expect(verifySecret(secret, "md5$abc$def")).toBe(false);
  });

  it("never stores the secret and salts every hash", () => {
    const secret = generateSecret();
    const a = hashSecret(secret);
    const b = hashSecret(secret);
    expect(a).not.toContain(secret);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^sha256\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  });

  it("issues 256-bit secrets that differ", () => {
    const secrets = new Set(Array.from({ length: 100 }, generateSecret));
    expect(secrets.size).toBe(100);
    for (const s of secrets) expect(Buffer.from(s, "base64url")).toHaveLength(32);
  });
});
