import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Device and service-account secrets.
 *
 * Secrets are generated here, 32 random bytes (256 bits), never chosen by a person. For a secret of
 * that entropy a salted SHA-256 is as strong as a slow KDF (guessing is infeasible either way), and
 * it costs microseconds instead of tens of milliseconds per CONNECT, so a reconnect storm of
 * thousands of devices cannot pin the broker's CPU. Stored form: `sha256$<salt>$<digest>`, both
 * base64url; the secret itself is shown once and never stored.
 */
const SCHEME = "sha256";

/** A new secret, 43 characters of base64url. */
export function generateSecret(): string {
  return randomBytes(32).toString("base64url");
}

function digest(salt: Buffer, secret: string): Buffer {
  return createHash("sha256").update(salt).update(secret, "utf8").digest();
}

/** The stored form of `secret`, with a fresh 16-byte salt. */
export function hashSecret(secret: string): string {
  const salt = randomBytes(16);
  return `${SCHEME}$${salt.toString("base64url")}$${digest(salt, secret).toString("base64url")}`;
}

/** Does `secret` match the stored hash? Constant time in the digest comparison. */
export function verifySecret(secret: string, stored: string): boolean {
  const [scheme, saltText, digestText] = stored.split("$");
  if (scheme !== SCHEME || saltText === undefined || digestText === undefined) return false;
  const expected = Buffer.from(digestText, "base64url");
  const actual = digest(Buffer.from(saltText, "base64url"), secret);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
