import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/*
 * Passwords are kept as scrypt hashes (RFC 7914, Node's crypto): memory-hard, so a stolen user
 * table cannot be brute-forced on GPUs at the rate a plain hash allows. Parameters are stored with
 * each hash, so they can be raised later without breaking old ones:
 *
 *   scrypt$<log2 N>$<r>$<p>$<salt base64url>$<key base64url>
 *
 * N = 2^15, r = 8, p = 1 takes 32 MiB and about 60-100 ms on a server core: acceptable per login,
 * costly per guess (OWASP Password Storage Cheat Sheet's scrypt baseline is N = 2^17 for 128 MiB;
 * 2^15 keeps the login within a small container's memory; set by `hashPassword`'s options).
 */

export interface ScryptCost {
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT: ScryptCost = { log2N: 15, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;

/** At least this long; no composition rules (NIST SP 800-63B §5.1.1.2). */
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 256;

export class PasswordPolicyError extends Error {
  readonly code = "PASSWORD_POLICY";
}

/** Why a new password is refused, or undefined when it is acceptable. */
export function passwordProblem(password: string): string | undefined {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH)
    return `a password must be at least ${MIN_PASSWORD_LENGTH} characters`;
  if (length > MAX_PASSWORD_LENGTH)
    return `a password must be at most ${MAX_PASSWORD_LENGTH} characters`;
  if (/^(.)\1*$/u.test(password)) return "a password must not be one character repeated";
  return undefined;
}

function derive(password: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> {
  const N = 2 ** cost.log2N;
  return new Promise((resolve, reject) =>
    scrypt(
      password.normalize("NFKC"),
      salt,
      KEY_BYTES,
      // Node refuses N·r·128 above maxmem (32 MiB by default): allow the cost asked for.
      { N, r: cost.r, p: cost.p, maxmem: 128 * N * cost.r * 2 },
      (error, key) => (error === null ? resolve(key) : reject(error)),
    ),
  );
}

/** The stored form of a new password (refused by the policy with a PasswordPolicyError). */
export async function hashPassword(password: string, cost = DEFAULT_SCRYPT): Promise<string> {
  const problem = passwordProblem(password);
  if (problem !== undefined) throw new PasswordPolicyError(problem);
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, cost);
  return [
    "scrypt",
    cost.log2N,
    cost.r,
    cost.p,
    salt.toString("base64url"),
    key.toString("base64url"),
  ].join("$");
}

const STORED = /^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

/** Whether a password matches a stored hash (constant time over the derived key). */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = STORED.exec(stored);
  if (m === null) return false;
  const cost = { log2N: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (cost.log2N < 10 || cost.log2N > 20 || cost.r < 1 || cost.p < 1) return false;
  const expected = Buffer.from(m[5] ?? "", "base64url");
  if (expected.length !== KEY_BYTES) return false;
  const key = await derive(password, Buffer.from(m[4] ?? "", "base64url"), cost);
  return timingSafeEqual(key, expected);
}

/**
 * A hash no password matches, verified against for unknown users so that a login for a name that
 * does not exist takes as long as one for a name that does (no user enumeration by timing).
 */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(24).toString("base64url"));
  return decoy;
}
