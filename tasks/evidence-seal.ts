import { createHash, createPublicKey, type KeyObject, verify } from "node:crypto";
import type { EvidencePackageV2 } from "../contracts/model/evidence.js";
import {
  type EvidenceKey,
  EvidencePackage,
  type EvidenceVerification,
} from "../contracts/model/evidence.js";
import { canonicalJson } from "./canonical-json.js";
import type { EvidenceSigner } from "./evidence-keys.js";

/*
 * Sealing and verification of evidence packages (format `citywatch-evidence/2`).
 *
 * Sealing: the canonical bytes are the RFC 8785 JSON of the package without its `hash` and
 * `signature` members (the `previous` link is inside them); `hash.value` is their SHA-256,
 * `signature.value` their Ed25519 signature by the deployment's current key.
 *
 * Verification names every reason a package is refused (EvidenceVerification.problems):
 *   malformed            the package is not a package of any format (zod, each problem named)
 *   hash_mismatch        the content does not hash to `hash.value` (edited, or hashed wrongly)
 *   unknown_key          `signature.keyId` is none of the deployment's keys (re-signed by another key)
 *   bad_signature        the signature does not verify under that key (content or hash edited)
 *   key_not_valid_then   the key was not valid at `createdAt` (validFrom <= createdAt < validTo)
 *   bad_previous_link    the link to the previous package is inconsistent with `sequence`
 *   unsigned_format      format 1: sealed before packages were signed, integrity only
 *   unknown_task         no such task: a package of a task that does not exist is never valid
 *   not_stored           the task has no package with this sequence
 *   not_this_package     the package is another task's or sequence's than the one asked about
 *   differs_from_stored  it differs from the stored package; `paths` says where
 *   previous_mismatch    (with the store) its link names a hash the stored previous package has not
 * `valid` is true only when there is no problem.
 */

type Unsealed = Omit<EvidencePackageV2, "hash" | "signature">;
/** What the body builder gives: the package without its seal and its link to the previous one. */
export type EvidenceBodyInput = Omit<EvidencePackageV2, "hash" | "signature" | "previous">;

/** The bytes hashed and signed: RFC 8785 JSON of the package without `hash` and `signature`. */
export function canonicalBytes(pkg: Unsealed | EvidencePackageV2): Buffer {
  const { hash: _hash, signature: _signature, ...body } = pkg as EvidencePackageV2;
  return Buffer.from(canonicalJson(body), "utf8");
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Format 1's hash: RFC 8785 JSON of the package without `hash` (it had no signature). */
function v1Hash(pkg: Record<string, unknown>): string {
  const { hash: _hash, ...body } = pkg;
  return sha256(Buffer.from(canonicalJson(body), "utf8"));
}

/**
 * Seal a package: link it to the task's previous package (null for the first), hash and sign it.
 * The signing key is the keyring's current key, which must be valid at `nowMs` (default: the
 * package's `createdAt`).
 */
export function sealEvidence(
  body: EvidenceBodyInput,
  previous: { readonly sequence: number; readonly hash: string } | null,
  keyring: EvidenceSigner,
  nowMs: number = Date.parse(body.createdAt),
): EvidencePackageV2 {
  const unsealed: Unsealed = {
    ...body,
    previous: previous === null ? null : { sequence: previous.sequence, hash: previous.hash },
  };
  const bytes = canonicalBytes(unsealed);
  const signature = keyring.sign(bytes, nowMs);
  return {
    ...unsealed,
    hash: { algorithm: "sha256", canonicalization: "RFC 8785", value: sha256(bytes) },
    signature: { algorithm: "Ed25519", keyId: signature.keyId, value: signature.value },
  };
}

/** The link to a package for the next one of its task. */
export function linkTo(
  pkg: EvidencePackage | undefined,
): { sequence: number; hash: string } | null {
  return pkg === undefined ? null : { sequence: pkg.sequence, hash: pkg.hash.value };
}

type Problem = EvidenceVerification["problems"][number];

const MAX_PATHS = 50;

/** JSON paths where `a` and `b` differ (`computation.value`, `readings[3].values.LAeq`), at most MAX_PATHS. */
export function differingPaths(a: unknown, b: unknown, path = "", out: string[] = []): string[] {
  if (out.length >= MAX_PATHS) return out;
  const here = path === "" ? "(package)" : path;
  if (a === b) return out;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (i >= a.length || i >= b.length) {
        out.push(`${path}[${i}]`);
        if (out.length >= MAX_PATHS) break;
      } else differingPaths(a[i], b[i], `${path}[${i}]`, out);
    }
    return out;
  }
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    // Plain members before nested ones, each group by name: a swapped package shows its
    // `taskId` and `sequence` first, not fifty audit entries.
    const nested = (k: string) => typeof (a[k] ?? b[k]) === "object" && (a[k] ?? b[k]) !== null;
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort(
      (x, y) => Number(nested(x)) - Number(nested(y)) || (x < y ? -1 : x > y ? 1 : 0),
    );
    for (const key of keys) {
      const sub = path === "" ? key : `${path}.${key}`;
      if (!(key in a) || !(key in b)) {
        if (a[key] !== undefined || b[key] !== undefined) out.push(sub);
      } else differingPaths(a[key], b[key], sub, out);
      if (out.length >= MAX_PATHS) break;
    }
    return out;
  }
  // Numbers compare by value; NaN never appears in JSON.
  out.push(here);
  return out;
}

interface KeyView {
  readonly key: EvidenceKey;
  readonly publicKey: KeyObject | null;
}

function keyView(key: EvidenceKey): KeyView {
  try {
    const publicKey = createPublicKey(key.publicKeyPem);
    return { key, publicKey: publicKey.asymmetricKeyType === "ed25519" ? publicKey : null };
  } catch {
    return { key, publicKey: null };
  }
}

/** Problems of the signature of a format 2 package under the given public keys. */
function signatureProblems(pkg: EvidencePackageV2, bytes: Buffer, keys: readonly EvidenceKey[]) {
  const problems: Problem[] = [];
  const { keyId, value } = pkg.signature;
  const listed = keys.find((k) => k.keyId === keyId);
  if (listed === undefined) {
    problems.push({
      code: "unknown_key",
      message: `signed by key ${keyId}, which is not one of this deployment's evidence keys (${keys.length === 0 ? "none given" : keys.map((k) => k.keyId).join(", ")})`,
    });
    return problems;
  }
  const view = keyView(listed);
  const signature = Buffer.from(value, "base64");
  if (view.publicKey === null) {
    problems.push({
      code: "unknown_key",
      message: `key ${keyId} is listed without a readable Ed25519 public key`,
    });
  } else if (
    signature.length !== 64 ||
    signature.toString("base64") !== value ||
    !verify(null, bytes, view.publicKey, signature)
  ) {
    problems.push({
      code: "bad_signature",
      message: `the Ed25519 signature does not verify under key ${keyId}: the signed content was changed after sealing, or the signature is not this key's`,
    });
  }
  const created = Date.parse(pkg.createdAt);
  const from = Date.parse(listed.validFrom);
  const to = listed.validTo === null ? Infinity : Date.parse(listed.validTo);
  if (!(created >= from && created < to)) {
    problems.push({
      code: "key_not_valid_then",
      message: `key ${keyId} is valid from ${listed.validFrom} ${listed.validTo === null ? "on" : `until ${listed.validTo}`}, but the package says it was sealed at ${pkg.createdAt}`,
    });
  }
  return problems;
}

/**
 * Verify a package someone holds (or the stored one): its shape, its hash, its signature under
 * the deployment's `keys` and that key's validity at `createdAt`; and, when given, that the task
 * exists (`taskExists`), that it is the package asked about (`expected`: a route's task id and
 * sequence) and that it equals the stored package (`stored`; null: the task has no such package).
 */
export function verifyEvidencePackage(
  input: unknown,
  keys: readonly EvidenceKey[],
  stored?: EvidencePackage | null,
  taskExists?: boolean,
  expected?: { readonly taskId: string; readonly sequence?: number | undefined },
): EvidenceVerification {
  const parsed = EvidencePackage.safeParse(input);
  if (!parsed.success) {
    const raw = (typeof input === "object" && input !== null ? input : {}) as Record<
      string,
      unknown
    >;
    const hash = raw["hash"] as { value?: unknown } | undefined;
    return {
      taskId: typeof raw["taskId"] === "string" ? raw["taskId"] : "",
      sequence: Number.isInteger(raw["sequence"]) ? (raw["sequence"] as number) : 0,
      valid: false,
      expected: typeof hash?.value === "string" ? hash.value : "",
      actual: "",
      keyId: null,
      problems: [
        {
          code: "malformed",
          message: `not an evidence package: ${parsed.error.issues
            .slice(0, 10)
            .map((i) => `${i.path.length === 0 ? "(package)" : i.path.join(".")}: ${i.message}`)
            .join("; ")}`,
        },
      ],
    };
  }
  const pkg = parsed.data;
  // Hashed and compared as given: the schema ignores members it does not know, a hash must not.
  const given = input as Record<string, unknown>;
  const problems: Problem[] = [];
  let actual: string;
  let keyId: string | null = null;
  if (pkg.format === "citywatch-evidence/2") {
    const bytes = canonicalBytes(given as unknown as EvidencePackageV2);
    actual = sha256(bytes);
    keyId = pkg.signature.keyId;
    if (actual !== pkg.hash.value)
      problems.push({
        code: "hash_mismatch",
        message: `the content hashes to ${actual}, the package says ${pkg.hash.value}: it was changed after sealing`,
      });
    problems.push(...signatureProblems(pkg, bytes, keys));
    const link = pkg.previous;
    if (pkg.sequence === 1 ? link !== null : link === null || link.sequence !== pkg.sequence - 1)
      problems.push({
        code: "bad_previous_link",
        message:
          pkg.sequence === 1
            ? "package 1 links to a previous package"
            : `package ${pkg.sequence} must link to package ${pkg.sequence - 1}, it links to ${link === null ? "none" : `package ${link.sequence}`}`,
      });
  } else {
    actual = v1Hash(given);
    const matches = actual === pkg.hash.value;
    problems.push({
      code: "unsigned_format",
      message: `sealed before packages were signed (format 1): integrity only, the hash ${matches ? "matches" : "does not match"}; no signature proves who sealed it`,
    });
    if (!matches)
      problems.push({
        code: "hash_mismatch",
        message: `the content hashes to ${actual}, the package says ${pkg.hash.value}: it was changed after sealing`,
      });
  }
  if (taskExists === false) {
    problems.push({
      code: "unknown_task",
      message: `there is no task ${pkg.taskId}: a package of a task that does not exist is never valid`,
    });
  } else {
    if (
      expected !== undefined &&
      (pkg.taskId !== expected.taskId ||
        (expected.sequence !== undefined && pkg.sequence !== expected.sequence))
    ) {
      problems.push({
        code: "not_this_package",
        message: `this is package ${pkg.sequence} of task ${pkg.taskId}, not ${expected.sequence === undefined ? "a package" : `package ${expected.sequence}`} of task ${expected.taskId}`,
      });
    }
    if (stored === null) {
      problems.push({
        code: "not_stored",
        message: `task ${pkg.taskId} has no evidence package ${pkg.sequence}`,
      });
    } else if (stored !== undefined) {
      const paths = differingPaths(stored, given);
      if (paths.length > 0)
        problems.push({
          code: "differs_from_stored",
          message: `differs from the stored package ${stored.sequence} of task ${stored.taskId} at ${paths.join(", ")}${paths.length >= MAX_PATHS ? `, … (the first ${MAX_PATHS} listed)` : ""}`,
          paths,
        });
    }
  }
  return {
    taskId: pkg.taskId,
    sequence: pkg.sequence,
    valid: problems.length === 0,
    expected: pkg.hash.value,
    actual,
    keyId,
    problems,
  };
}

/** What verification reads of the task store: whether a task exists, and its stored packages. */
export interface EvidenceRecords {
  task(id: string): unknown;
  evidence(
    taskId: string,
    sequence?: number,
  ): EvidencePackage | undefined | Promise<EvidencePackage | undefined>;
}

/**
 * Verify a package against the deployment's keys and the task store: the task must exist, the
 * package must equal the stored one of its task and number, and its link must name the stored
 * previous package's hash (`previous_mismatch` otherwise). `expected`: the task (and number) the
 * package is presented as (a route's), refused as `not_this_package` when it is another's.
 */
export async function verifyAgainstStore(
  input: unknown,
  keys: readonly EvidenceKey[],
  records: EvidenceRecords,
  expected?: { readonly taskId: string; readonly sequence?: number | undefined },
): Promise<EvidenceVerification> {
  const parsed = EvidencePackage.safeParse(input);
  if (!parsed.success) return verifyEvidencePackage(input, keys);
  const { taskId, sequence } = parsed.data;
  const taskExists = (await records.task(taskId)) !== undefined;
  const stored = taskExists ? ((await records.evidence(taskId, sequence)) ?? null) : undefined;
  const result = verifyEvidencePackage(input, keys, stored, taskExists, expected);
  const link = parsed.data.format === "citywatch-evidence/2" ? parsed.data.previous : null;
  if (taskExists && link !== null) {
    const before = await records.evidence(taskId, link.sequence);
    if (before?.hash.value !== link.hash) {
      result.problems.push({
        code: "previous_mismatch",
        message:
          before === undefined
            ? `links to package ${link.sequence} of task ${taskId}, which is not stored`
            : `links to package ${link.sequence} with hash ${link.hash}, the stored package ${link.sequence} has ${before.hash.value}`,
      });
      result.valid = false;
    }
  }
  return result;
}
