import { createHash, createPublicKey, verify } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EvidenceKey } from "../../../contracts/index.js";
import { TasksConfig } from "../../../contracts/config/tasks.js";
import {
  EvidenceKeyError,
  EvidenceKeyring,
  evidenceKeyFile,
  keyIdOf,
} from "../../../tasks/evidence-keys.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";

/*
 * The evidence keyring: a real Ed25519 key file on disk (node:crypto), created owner-only on first
 * start, refused when unreadable, malformed or readable by others, rotated keeping old public keys.
 */

interface StoredFile {
  format: string;
  keys: Array<{
    keyId: string;
    privateKeyPem: string | null;
    publicKeyPem: string;
    validFrom: string;
    validTo: string | null;
  }>;
}

/** A pino logger writing into an array, to see what the keyring logs. */
function capturingLog() {
  const lines: string[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => lines.push(line) });
  return { log, lines };
}

describe("evidence keyring", () => {
  let dir: string;
  let n = 0;
  const fresh = () => join(dir, `k${++n}`, "evidence-keys.json");
  const read = (file: string) => JSON.parse(readFileSync(file, "utf8")) as StoredFile;

  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-keys-");
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("is created on first start, owner-only, with one current key; the log names the file, never the key", () => {
    const file = fresh();
    const { log, lines } = capturingLog();
    const t0 = Date.parse("2026-12-01T00:00:00Z");
    const keyring = EvidenceKeyring.open(file, { log, now: () => t0, create: true });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = read(file);
    expect(stored.format).toBe("citywatch-evidence-keys/1");
    expect(stored.keys).toHaveLength(1);
    const key = stored.keys[0]!;
    expect(key).toMatchObject({ validFrom: "2026-12-01T00:00:00.000Z", validTo: null });
    expect(key.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // keyId: first 16 bytes of SHA-256 of the raw 32-byte public key.
    const raw = Buffer.from(
      createPublicKey(key.publicKeyPem).export({ format: "jwk" }).x!,
      "base64url",
    );
    expect(raw).toHaveLength(32);
    expect(key.keyId).toBe(createHash("sha256").update(raw).digest("hex").slice(0, 32));
    expect(keyIdOf(createPublicKey(key.publicKeyPem))).toBe(key.keyId);
    // One log line, naming the file and the key id; no private key material anywhere in the log.
    const logged = lines.join("\n");
    expect(lines).toHaveLength(1);
    expect(logged).toContain(file);
    expect(logged).toContain(key.keyId);
    expect(logged).not.toContain("PRIVATE");
    expect(logged).not.toContain(key.privateKeyPem!.split("\n")[1]!);
    // The public listing has no private key.
    const listed = keyring.publicKeys();
    expect(listed.map((k) => EvidenceKey.parse(k))).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain("PRIVATE");
    // Opened again: the same key, no new log line.
    const again = EvidenceKeyring.open(file, { log, create: true });
    expect(again.current().keyId).toBe(key.keyId);
    expect(lines).toHaveLength(1);
  });

  it("signs with the current key, verifiable with its public key alone", () => {
    const file = fresh();
    const keyring = EvidenceKeyring.open(file, { now: () => 1_000, create: true });
    const bytes = Buffer.from("some canonical bytes");
    const signed = keyring.sign(bytes, 2_000);
    const pub = createPublicKey(keyring.current().publicKeyPem);
    expect(signed.keyId).toBe(keyring.current().keyId);
    expect(verify(null, bytes, pub, Buffer.from(signed.value, "base64"))).toBe(true);
    expect(verify(null, Buffer.from("other bytes"), pub, Buffer.from(signed.value, "base64"))).toBe(
      false,
    );
    // Before the key's validFrom (a clock behind) it refuses to sign.
    expect(() => keyring.sign(bytes, 500)).toThrow(/valid from .* after the sealing time/);
  });

  it("without create, an absent file is a clear error", () => {
    expect(() => EvidenceKeyring.open(fresh())).toThrow(
      /no evidence key file at .*a start creates it/,
    );
  });

  it("refuses a key file readable or writable by group or others, naming the mode and the fix", () => {
    const file = fresh();
    EvidenceKeyring.open(file, { create: true });
    for (const mode of [0o640, 0o604, 0o620]) {
      chmodSync(file, mode);
      let error: unknown;
      try {
        EvidenceKeyring.open(file, { create: true });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(EvidenceKeyError);
      expect((error as Error).message).toContain(`mode 0${mode.toString(8)}`);
      expect((error as Error).message).toContain(`chmod 600 ${file}`);
    }
    chmodSync(file, 0o600);
    expect(() => EvidenceKeyring.open(file)).not.toThrow();
  });

  it("refuses an unreadable key file", () => {
    // A directory where the file should be cannot be read as one (whoever runs the test).
    const folder = fresh();
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    expect(() => EvidenceKeyring.open(folder, { create: true })).toThrow(/is not a file/);
    if (process.getuid?.() === 0) return; // root reads a 0000 file
    const file = fresh();
    EvidenceKeyring.open(file, { create: true });
    chmodSync(file, 0o000);
    expect(() => EvidenceKeyring.open(file)).toThrow(/cannot be read: EACCES/);
    chmodSync(file, 0o600);
  });

  it("refuses malformed key files with a clear message that quotes no key material", () => {
    const file = fresh();
    EvidenceKeyring.open(file, { create: true });
    const good = read(file);
    const key = good.keys[0]!;
    const other = read(
      (() => {
        const f = fresh();
        EvidenceKeyring.open(f, { create: true });
        return f;
      })(),
    ).keys[0]!;
    const cases: Array<[string, unknown, RegExp]> = [
      ["not JSON", "{ not json", /is not valid JSON/],
      ["wrong format", { ...good, format: "x" }, /format: must be "citywatch-evidence-keys\/1"/],
      ["no keys", { ...good, keys: [] }, /keys: must hold at least one key/],
      ["unknown member", { ...good, extra: 1 }, /malformed/],
      [
        "bad key id",
        { ...good, keys: [{ ...key, keyId: "xyz" }] },
        /keys\.0\.keyId: must be 32 lowercase hex digits/,
      ],
      [
        "key id of another key",
        { ...good, keys: [{ ...key, keyId: other.keyId }] },
        /keyId is not the fingerprint of its public key/,
      ],
      [
        "private key of another key",
        { ...good, keys: [{ ...key, privateKeyPem: other.privateKeyPem }] },
        /privateKeyPem does not belong to its public key/,
      ],
      [
        "garbled private key",
        {
          ...good,
          keys: [
            {
              ...key,
              privateKeyPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            },
          ],
        },
        /privateKeyPem is not a readable PKCS8 PEM private key/,
      ],
      [
        "not a PEM",
        { ...good, keys: [{ ...key, publicKeyPem: "ssh-ed25519 AAAA" }] },
        /publicKeyPem: must be an SPKI PEM public key/,
      ],
      [
        "no current key",
        { ...good, keys: [{ ...key, validTo: "2030-01-01T00:00:00.000Z" }] },
        /exactly one key, the last, must be current/,
      ],
      [
        "bad instant",
        { ...good, keys: [{ ...key, validFrom: "yesterday" }] },
        /validFrom: must be a UTC ISO 8601 instant/,
      ],
    ];
    for (const [what, content, message] of cases) {
      writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content), {
        mode: 0o600,
      });
      let error: unknown;
      try {
        EvidenceKeyring.open(file);
      } catch (e) {
        error = e;
      }
      expect(error, what).toBeInstanceOf(EvidenceKeyError);
      const text = (error as Error).message;
      expect(text, what).toMatch(message);
      expect(text, what).toContain(file);
      for (const pem of [key.privateKeyPem!, other.privateKeyPem!])
        expect(text, what).not.toContain(pem.split("\n")[1]!);
    }
  });

  it("rotates: the old key closed at now with its private key erased, a new current key; a running keyring sees the file change", () => {
    const file = fresh();
    let now = Date.parse("2026-12-01T00:00:00Z");
    const service = EvidenceKeyring.open(file, { now: () => now, create: true });
    const first = service.current();
    now += 86_400_000;
    // Another keyring over the same file (the CLI's), while the service's stays open.
    const cli = EvidenceKeyring.open(file, { now: () => now });
    const { closed, added } = cli.rotate();
    expect(closed).toMatchObject({ keyId: first.keyId, validTo: "2026-12-02T00:00:00.000Z" });
    expect(added).toMatchObject({ validFrom: "2026-12-02T00:00:00.000Z", validTo: null });
    expect(added.keyId).not.toBe(first.keyId);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = read(file);
    expect(stored.keys.map((k) => [k.keyId, k.privateKeyPem === null])).toEqual([
      [first.keyId, true],
      [added.keyId, false],
    ]);
    // The service signs with the new key at once and lists both public keys.
    expect(service.sign(Buffer.from("x"), now).keyId).toBe(added.keyId);
    expect(service.publicKeys().map((k) => k.keyId)).toEqual([first.keyId, added.keyId]);
    expect(existsSync(`${file}.${process.pid}.tmp`)).toBe(false);
  });

  it("finds its file at tasks.evidence.keyFile, else in the data directory", () => {
    expect(evidenceKeyFile(TasksConfig.parse({}), "/data")).toBe("/data/evidence-keys.json");
    expect(
      evidenceKeyFile(TasksConfig.parse({ evidence: { keyFile: "/secrets/k.json" } }), "/data"),
    ).toBe("/secrets/k.json");
  });
});
