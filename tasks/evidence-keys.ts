import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from "node:crypto";
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import type { TasksConfig } from "../contracts/config/tasks.js";
import type { EvidenceKey } from "../contracts/model/evidence.js";

/*
 * The deployment's evidence signing keys (Ed25519, node:crypto only), in one JSON file readable
 * by its owner only (config `tasks.evidence.keyFile`, default `{dataDir}/evidence-keys.json`):
 *
 *   { "format": "citywatch-evidence-keys/1",
 *     "keys": [ { keyId, privateKeyPem (PKCS8) | null, publicKeyPem (SPKI), validFrom, validTo | null } ] }
 *
 * The newest key is the current one (`validTo: null`): it signs every new package. Rotation
 * closes it (`validTo` = now), erases its private key (`null`: nothing needs it again, and a
 * thief could otherwise sign packages dated inside its validity) and adds a new key. The public
 * keys of closed keys stay listed: the packages they signed while current still verify.
 *
 * The private keys are never logged, served or put in an error message; a file that is not the
 * owner's alone (group or world bits), unreadable or malformed is refused with a clear error.
 */

export const KEY_FILE_FORMAT = "citywatch-evidence-keys/1";
export const DEFAULT_KEY_FILE = "evidence-keys.json";

/** A problem with the key file: its message names the file and what is wrong, never key material. */
export class EvidenceKeyError extends Error {
  override readonly name = "EvidenceKeyError";
}

const Instant = z.iso.datetime({ error: "must be a UTC ISO 8601 instant (…Z)" });

const StoredKey = z.strictObject({
  keyId: z.string().regex(/^[0-9a-f]{32}$/, { error: "must be 32 lowercase hex digits" }),
  privateKeyPem: z
    .string()
    .startsWith("-----BEGIN PRIVATE KEY-----", { error: "must be a PKCS8 PEM private key" })
    .nullable(),
  publicKeyPem: z
    .string()
    .startsWith("-----BEGIN PUBLIC KEY-----", { error: "must be an SPKI PEM public key" }),
  validFrom: Instant,
  validTo: Instant.nullable(),
});
type StoredKey = z.infer<typeof StoredKey>;

const KeyFile = z.strictObject({
  format: z.literal(KEY_FILE_FORMAT, { error: `must be "${KEY_FILE_FORMAT}"` }),
  keys: z.array(StoredKey).min(1, { error: "must hold at least one key" }),
});
type KeyFile = z.infer<typeof KeyFile>;

/** The key id (fingerprint) of an Ed25519 public key: hex of the first 16 bytes of SHA-256 of its raw 32 bytes. */
export function keyIdOf(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" });
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string")
    throw new EvidenceKeyError("not an Ed25519 public key");
  const raw = Buffer.from(jwk.x, "base64url");
  return createHash("sha256").update(raw).digest("hex").slice(0, 32);
}

/** The key file of a deployment: `tasks.evidence.keyFile`, or `{dataDir}/evidence-keys.json`. */
export function evidenceKeyFile(config: TasksConfig, dataDir: string): string {
  return config.evidence.keyFile ?? join(dataDir, DEFAULT_KEY_FILE);
}

/** A new key, current from `nowMs`. */
function newKey(nowMs: number): StoredKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    keyId: keyIdOf(publicKey),
    privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicKeyPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
    validFrom: new Date(nowMs).toISOString(),
    validTo: null,
  };
}

const describeMode = (mode: number) => `0${(mode & 0o777).toString(8)}`;

/** A key of the file with its objects, checked: the id is the public key's, the private key is its pair. */
interface LoadedKey {
  readonly stored: StoredKey;
  readonly privateKey: KeyObject | null;
}

function checked(file: string, keys: readonly StoredKey[]): LoadedKey[] {
  const loaded = keys.map((stored, i): LoadedKey => {
    const where = `${file}: keys[${i}]`;
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(stored.publicKeyPem);
    } catch {
      throw new EvidenceKeyError(`${where}.publicKeyPem is not a readable SPKI PEM public key`);
    }
    if (publicKey.asymmetricKeyType !== "ed25519")
      throw new EvidenceKeyError(`${where}.publicKeyPem is not an Ed25519 key`);
    if (keyIdOf(publicKey) !== stored.keyId)
      throw new EvidenceKeyError(
        `${where}.keyId is not the fingerprint of its public key (SHA-256 of the raw key, first 16 bytes, hex)`,
      );
    let privateKey: KeyObject | null = null;
    if (stored.privateKeyPem !== null) {
      try {
        privateKey = createPrivateKey(stored.privateKeyPem);
      } catch {
        throw new EvidenceKeyError(
          `${where}.privateKeyPem is not a readable PKCS8 PEM private key`,
        );
      }
      const pair = createPublicKey(privateKey).export({ format: "der", type: "spki" });
      if (!pair.equals(publicKey.export({ format: "der", type: "spki" })))
        throw new EvidenceKeyError(`${where}.privateKeyPem does not belong to its public key`);
    }
    if (stored.validTo !== null && Date.parse(stored.validTo) < Date.parse(stored.validFrom))
      throw new EvidenceKeyError(`${where}.validTo is before its validFrom`);
    return { stored, privateKey };
  });
  const ids = new Set(loaded.map((k) => k.stored.keyId));
  if (ids.size !== loaded.length) throw new EvidenceKeyError(`${file}: a keyId is listed twice`);
  const current = loaded.filter((k) => k.stored.validTo === null);
  if (current.length !== 1 || loaded.at(-1)?.stored.validTo !== null)
    throw new EvidenceKeyError(
      `${file}: exactly one key, the last, must be current (validTo null); found ${current.length}`,
    );
  if (loaded.at(-1)?.privateKey === null)
    throw new EvidenceKeyError(`${file}: the current key has no privateKeyPem`);
  return loaded;
}

/** Read and check the key file; every problem is an EvidenceKeyError naming the file. */
function readKeyFile(file: string): { keys: LoadedKey[]; stamp: string } {
  let stat;
  try {
    stat = statSync(file);
  } catch (error) {
    throw new EvidenceKeyError(
      `evidence key file ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  if (!stat.isFile()) throw new EvidenceKeyError(`evidence key file ${file} is not a file`);
  if ((stat.mode & 0o077) !== 0)
    throw new EvidenceKeyError(
      `evidence key file ${file} is readable or writable by others than its owner (mode ${describeMode(stat.mode)}); it holds private keys: chmod 600 ${file}`,
    );
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new EvidenceKeyError(
      `evidence key file ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // The parser's message may quote the text (key material): only say where it broke.
    throw new EvidenceKeyError(`evidence key file ${file} is not valid JSON`);
  }
  const parsed = KeyFile.safeParse(json);
  if (!parsed.success) {
    // Issue messages and paths only: zod does not echo the values, which may be keys.
    const problems = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.length === 0 ? "(file)" : i.path.join(".")}: ${i.message}`)
      .join("; ");
    throw new EvidenceKeyError(`evidence key file ${file} is malformed: ${problems}`);
  }
  return { keys: checked(file, parsed.data.keys), stamp: stampOf(stat) };
}

/** What tells a changed file: a rename (rotation), a write, a chmod (a file made readable to others is refused). */
const stampOf = (stat: {
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  size: number;
  mode: number;
}) => `${stat.ino}:${stat.mtimeMs}:${stat.ctimeMs}:${stat.size}:${stat.mode}`;

/** Write the key file owner-only (0600) in one step: a temporary file in the same directory, then a rename. */
function writeKeyFile(file: string, content: KeyFile): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, `${JSON.stringify(content, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (error) {
    unlinkSync(tmp);
    throw error;
  }
}

/** Create the key file with a first key; false when it was there already (another process won). */
function createKeyFile(file: string, nowMs: number): boolean {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = openSync(file, "wx", 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new EvidenceKeyError(
      `evidence key file ${file} cannot be created: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  try {
    fchmodSync(fd, 0o600);
    const content: KeyFile = { format: KEY_FILE_FORMAT, keys: [newKey(nowMs)] };
    writeSync(fd, `${JSON.stringify(content, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

const publicOf = (k: StoredKey): EvidenceKey => ({
  keyId: k.keyId,
  algorithm: "Ed25519",
  publicKeyPem: k.publicKeyPem,
  validFrom: k.validFrom,
  validTo: k.validTo,
});

export interface OpenKeyringOptions {
  readonly log?: Logger | undefined;
  /** The clock of the first key's `validFrom` and of rotation. */
  readonly now?: (() => number) | undefined;
  /** Create the file with a first key when it is absent (a start does; `evidence keys` does not). */
  readonly create?: boolean | undefined;
}

/** What sealing needs of the keyring: a signature by the current key. */
export interface EvidenceSigner {
  /** Sign `bytes` with the key current at `atMs`; throws when no key may sign then. */
  sign(bytes: Uint8Array, atMs: number): { keyId: string; value: string };
}

/**
 * The keyring of a deployment. It reads the file again when it changed on disk (a rotation by
 * `citywatch evidence rotate-key` while the service runs), so the service signs with the new key
 * at once and serves the new public key; a file changed into one it would refuse at start (made
 * readable to others, malformed) makes signing and listing fail with that error until repaired.
 */
export class EvidenceKeyring implements EvidenceSigner {
  private keys: LoadedKey[];
  private stamp: string;

  private constructor(
    readonly file: string,
    loaded: { keys: LoadedKey[]; stamp: string },
    private readonly now: () => number,
  ) {
    this.keys = loaded.keys;
    this.stamp = loaded.stamp;
  }

  /** Open the keyring at `file`; with `create`, make it with a first key when absent (logged, never the key). */
  static open(file: string, options: OpenKeyringOptions = {}): EvidenceKeyring {
    const now = options.now ?? Date.now;
    let exists = true;
    try {
      statSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      exists = false;
    }
    if (!exists) {
      if (options.create !== true)
        throw new EvidenceKeyError(
          `no evidence key file at ${file}: a start creates it (or give the data directory / tasks.evidence.keyFile of the deployment)`,
        );
      if (createKeyFile(file, now())) {
        const keyring = new EvidenceKeyring(file, readKeyFile(file), now);
        options.log?.warn(
          { file, keyId: keyring.current().keyId },
          "evidence signing key created (Ed25519) in this owner-only file: back it up with the data; whoever holds it can sign packages in this deployment's name",
        );
        return keyring;
      }
    }
    return new EvidenceKeyring(file, readKeyFile(file), now);
  }

  /** Read the file again if it changed since it was read. */
  private refresh(): void {
    let stamp: string;
    try {
      stamp = stampOf(statSync(this.file));
    } catch {
      stamp = "";
    }
    if (stamp === this.stamp) return;
    const loaded = readKeyFile(this.file);
    this.keys = loaded.keys;
    this.stamp = loaded.stamp;
  }

  /** The public keys, oldest first, as `GET /api/v1/evidence/keys` serves them. */
  publicKeys(): EvidenceKey[] {
    this.refresh();
    return this.keys.map((k) => publicOf(k.stored));
  }

  /** The current key (public part). */
  current(): EvidenceKey {
    this.refresh();
    const last = this.keys.at(-1);
    if (last === undefined) throw new EvidenceKeyError(`${this.file}: no key`);
    return publicOf(last.stored);
  }

  sign(bytes: Uint8Array, atMs: number): { keyId: string; value: string } {
    this.refresh();
    const last = this.keys.at(-1);
    if (last?.privateKey == null) throw new EvidenceKeyError(`${this.file}: no current key`);
    if (atMs < Date.parse(last.stored.validFrom))
      throw new EvidenceKeyError(
        `the current evidence key ${last.stored.keyId} is valid from ${last.stored.validFrom}, after the sealing time ${new Date(atMs).toISOString()} (is the clock behind?)`,
      );
    return {
      keyId: last.stored.keyId,
      value: sign(null, bytes, last.privateKey).toString("base64"),
    };
  }

  /**
   * Close the current key at now (its private key erased) and add a new current key. Returns the
   * closed and the new key (public parts).
   */
  rotate(): { closed: EvidenceKey; added: EvidenceKey } {
    this.refresh();
    const nowMs = this.now();
    const last = this.keys.at(-1);
    if (last === undefined) throw new EvidenceKeyError(`${this.file}: no key`);
    if (nowMs < Date.parse(last.stored.validFrom))
      throw new EvidenceKeyError(
        `the current key is valid from ${last.stored.validFrom}, after now (${new Date(nowMs).toISOString()}): is the clock behind?`,
      );
    const at = new Date(nowMs).toISOString();
    const closed: StoredKey = { ...last.stored, validTo: at, privateKeyPem: null };
    const added = newKey(nowMs);
    const content: KeyFile = {
      format: KEY_FILE_FORMAT,
      keys: [...this.keys.slice(0, -1).map((k) => k.stored), closed, added],
    };
    writeKeyFile(this.file, content);
    const loaded = readKeyFile(this.file);
    this.keys = loaded.keys;
    this.stamp = loaded.stamp;
    return { closed: publicOf(closed), added: publicOf(added) };
  }
}
