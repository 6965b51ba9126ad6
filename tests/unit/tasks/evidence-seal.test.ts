import { createHash, createPublicKey, verify } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EvidencePackage,
  type EvidencePackageV2,
  EvidenceVerification,
} from "../../../contracts/index.js";
import { canonicalJson } from "../../../tasks/canonical-json.js";
import { EvidenceKeyring } from "../../../tasks/evidence-keys.js";
import {
  canonicalBytes,
  differingPaths,
  type EvidenceRecords,
  sealEvidence,
  verifyAgainstStore,
  verifyEvidencePackage,
} from "../../../tasks/evidence-seal.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { sampleBody, sampleV1 } from "./evidence-sample.js";

/*
 * Sealing and verification with real Ed25519 keys: every way of tampering with a package is
 * refused with its reason, a genuine package verifies with its public key alone, rotation keeps
 * old packages valid, format 1 packages are integrity-only.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const clone = <T>(v: T): T => structuredClone(v);

/** Every leaf path of a JSON value, as [path segments]. */
function leaves(value: Json, path: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(value))
    return value.length === 0 ? [path] : value.flatMap((v, i) => leaves(v, [...path, i]));
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    return keys.length === 0 ? [path] : keys.flatMap((k) => leaves(value[k]!, [...path, k]));
  }
  return [path];
}

function setAt(root: Json, path: Array<string | number>, next: (old: Json) => Json): void {
  let node = root as Record<string | number, Json>;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, Json>;
  const last = path.at(-1)!;
  node[last] = next(node[last]!);
}

/** A different value of the same kind (an edit a forger would make). */
function edited(old: Json): Json {
  if (typeof old === "number") return old + 1;
  if (typeof old === "string") return `${old}x`;
  if (typeof old === "boolean") return !old;
  if (old === null) return "x";
  if (Array.isArray(old)) return [...old, "x"];
  return { ...old, x: 1 };
}

const dotted = (path: Array<string | number>) =>
  path.reduce<string>(
    (s, seg) => (typeof seg === "number" ? `${s}[${seg}]` : s === "" ? seg : `${s}.${seg}`),
    "",
  );

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Recompute the hash of an edited package (a forger who knows the scheme). */
function rehash(pkg: EvidencePackageV2): EvidencePackageV2 {
  return { ...pkg, hash: { ...pkg.hash, value: sha256(canonicalBytes(pkg)) } };
}

const codes = (v: EvidenceVerification) => v.problems.map((p) => p.code).sort();

describe("sealing and verifying evidence packages", () => {
  let dir: string;
  const clock = Date.parse("2026-12-05T14:00:00Z");
  let keyring: EvidenceKeyring;
  let forger: EvidenceKeyring;
  let genuine: EvidencePackageV2;

  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-seal-");
    keyring = EvidenceKeyring.open(join(dir, "keys.json"), { now: () => clock, create: true });
    forger = EvidenceKeyring.open(join(dir, "forger.json"), { now: () => clock, create: true });
    genuine = sealEvidence(sampleBody(), null, keyring);
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  const keys = () => keyring.publicKeys();

  it("seals: SHA-256 and Ed25519 over the RFC 8785 JSON without hash and signature", () => {
    expect(EvidencePackage.parse(genuine)).toEqual(genuine);
    const { hash, signature, ...rest } = genuine;
    const bytes = Buffer.from(canonicalJson(rest), "utf8");
    expect(canonicalBytes(genuine).equals(bytes)).toBe(true);
    expect(hash).toEqual({
      algorithm: "sha256",
      canonicalization: "RFC 8785",
      value: sha256(bytes),
    });
    expect(signature.keyId).toBe(keyring.current().keyId);
    expect(genuine.previous).toBeNull();
    // Offline, with the public key alone (no citywatch code): the signature verifies.
    const pub = createPublicKey(keyring.current().publicKeyPem);
    expect(verify(null, bytes, pub, Buffer.from(signature.value, "base64"))).toBe(true);
    const result = verifyEvidencePackage(genuine, keys());
    expect(result).toEqual({
      taskId: "enf-000001",
      sequence: 1,
      valid: true,
      expected: hash.value,
      actual: hash.value,
      keyId: signature.keyId,
      problems: [],
    });
    expect(EvidenceVerification.parse(result)).toEqual(result);
  });

  it("a re-seal links to the previous package; both verify", () => {
    const second = sealEvidence(
      sampleBody({ sequence: 2 }, "2026-12-05T15:00:00.000Z"),
      { sequence: genuine.sequence, hash: genuine.hash.value },
      keyring,
    );
    expect(second.previous).toEqual({ sequence: 1, hash: genuine.hash.value });
    expect(verifyEvidencePackage(second, keys()).valid).toBe(true);
    expect(verifyEvidencePackage(genuine, keys()).valid).toBe(true);
    // A link that does not fit the sequence is refused.
    const badLink = sealEvidence(
      sampleBody({ sequence: 3 }, "2026-12-05T15:00:00.000Z"),
      { sequence: 1, hash: genuine.hash.value },
      keyring,
    );
    expect(codes(verifyEvidencePackage(badLink, keys()))).toEqual(["bad_previous_link"]);
    const firstWithLink = sealEvidence(
      sampleBody(),
      { sequence: 1, hash: genuine.hash.value },
      keyring,
    );
    expect(codes(verifyEvidencePackage(firstWithLink, keys()))).toEqual(["bad_previous_link"]);
  });

  it("refuses an edit of any field (hash and signature both fail), naming the path against the stored copy", () => {
    const paths = leaves(genuine as unknown as Json).filter(
      (p) => p[0] !== "hash" && p[0] !== "signature",
    );
    expect(paths.length).toBeGreaterThan(80);
    let checked = 0;
    for (const path of paths) {
      const copy = clone(genuine) as unknown as Json;
      setAt(copy, path, edited);
      const result = verifyEvidencePackage(copy, keys(), genuine, true);
      const where = dotted(path);
      expect(result.valid, where).toBe(false);
      const got = codes(result);
      // An edit that breaks the shape (a value outside its enum, an extra member of a strict
      // object) is refused as malformed; every other one fails the hash and the signature.
      if (got[0] === "malformed") {
        expect(got, where).toEqual(["malformed"]);
        continue;
      }
      checked++;
      // (an edited sequence or createdAt also breaks the link or the key's validity then)
      expect(
        got.filter((c) => c !== "bad_previous_link" && c !== "key_not_valid_then"),
        where,
      ).toEqual(["bad_signature", "differs_from_stored", "hash_mismatch"]);
      const differs = result.problems.find((p) => p.code === "differs_from_stored");
      expect(differs?.paths, where).toHaveLength(1);
      expect(differs?.paths?.[0]?.startsWith(where), where).toBe(true);
    }
    expect(checked).toBeGreaterThan(paths.length * 0.8);
  });

  it("refuses computation.value 64.21… → 54.9 re-hashed: bad signature, and the stored copy names the path", () => {
    const forged = rehash({
      ...genuine,
      computation: { ...genuine.computation, value: 54.9, reported: "54.9" },
    });
    const alone = verifyEvidencePackage(forged, keys());
    expect(alone.valid).toBe(false);
    expect(codes(alone)).toEqual(["bad_signature"]);
    expect(alone.actual).toBe(alone.expected); // the hash matches: a hash alone proved nothing
    const stored = verifyEvidencePackage(forged, keys(), genuine, true);
    expect(codes(stored)).toEqual(["bad_signature", "differs_from_stored"]);
    expect(stored.problems.find((p) => p.code === "differs_from_stored")?.paths).toEqual([
      "computation.reported",
      "computation.value",
      "hash.value",
    ]);
  });

  it("refuses a package re-signed with another key: unknown key, or the deployment's key id with a signature it did not make", () => {
    const body = sampleBody();
    const edited = { ...body, computation: { ...body.computation, value: 54.9 } };
    const byForger = sealEvidence(edited, null, forger);
    const result = verifyEvidencePackage(byForger, keys());
    expect(codes(result)).toEqual(["unknown_key"]);
    expect(result.problems[0]?.message).toContain(byForger.signature.keyId);
    // Claiming the deployment's key id.
    const claimed = {
      ...byForger,
      signature: { ...byForger.signature, keyId: keyring.current().keyId },
    };
    expect(codes(verifyEvidencePackage(claimed, keys()))).toEqual(["bad_signature"]);
    // A signature that is not 64 bytes of base64.
    for (const value of ["", "not base64!", Buffer.alloc(63).toString("base64")])
      expect(
        codes(
          verifyEvidencePackage({ ...genuine, signature: { ...genuine.signature, value } }, keys()),
        ),
        value,
      ).toEqual(["bad_signature"]);
  });

  it("refuses members added after sealing (hashed as given, not as the schema reads it)", () => {
    const extra = { ...genuine, note: "paid", computation: { ...genuine.computation, extra: 1 } };
    const result = verifyEvidencePackage(extra, keys(), genuine, true);
    expect(codes(result)).toEqual(["bad_signature", "differs_from_stored", "hash_mismatch"]);
    expect(result.problems.find((p) => p.code === "differs_from_stored")?.paths).toEqual([
      "note",
      "computation.extra",
    ]);
  });

  it("refuses a changed sequence, and a package of another task presented as this one", () => {
    const resequenced = rehash({ ...genuine, sequence: 2 });
    expect(codes(verifyEvidencePackage(resequenced, keys()))).toEqual([
      "bad_previous_link",
      "bad_signature",
    ]);
    // A genuine package of task A asked about as task B's.
    const result = verifyEvidencePackage(genuine, keys(), genuine, true, {
      taskId: "enf-000002",
      sequence: 1,
    });
    expect(codes(result)).toEqual(["not_this_package"]);
    expect(result.problems[0]?.message).toBe(
      "this is package 1 of task enf-000001, not package 1 of task enf-000002",
    );
    expect(
      codes(
        verifyEvidencePackage(genuine, keys(), genuine, true, {
          taskId: "enf-000001",
          sequence: 2,
        }),
      ),
    ).toEqual(["not_this_package"]);
  });

  it("never answers valid for a package of an unknown task, or one the task does not hold", () => {
    const unknown = verifyEvidencePackage(genuine, keys(), undefined, false);
    expect(unknown.valid).toBe(false);
    expect(codes(unknown)).toEqual(["unknown_task"]);
    expect(unknown.problems[0]?.message).toContain("there is no task enf-000001");
    expect(codes(verifyEvidencePackage(genuine, keys(), null, true))).toEqual(["not_stored"]);
  });

  it("verifies against a store: unknown task, stored copy, previous link", async () => {
    const second = sealEvidence(
      sampleBody({ sequence: 2 }, "2026-12-05T15:00:00.000Z"),
      { sequence: 1, hash: genuine.hash.value },
      keyring,
    );
    const held = new Map<string, EvidencePackage>([
      ["enf-000001/1", genuine],
      ["enf-000001/2", second],
    ]);
    const records: EvidenceRecords = {
      task: (id) => (id === "enf-000001" ? { id } : undefined),
      evidence: (taskId, seq) => held.get(`${taskId}/${seq ?? 2}`),
    };
    expect((await verifyAgainstStore(second, keys(), records)).valid).toBe(true);
    expect(
      codes(await verifyAgainstStore({ ...genuine, taskId: "enf-404" }, keys(), records)),
    ).toEqual(["bad_signature", "hash_mismatch", "unknown_task"]);
    // The stored first package was replaced by another (genuinely signed) one: the link no longer fits.
    const other = sealEvidence(sampleBody({}, "2026-12-05T14:30:00.000Z"), null, keyring);
    held.set("enf-000001/1", other);
    const relinked = await verifyAgainstStore(second, keys(), records);
    expect(codes(relinked)).toEqual(["previous_mismatch"]);
    expect(relinked.valid).toBe(false);
  });

  it("refuses a key used outside its validity; rotation keeps packages of the old key valid", () => {
    const file = join(dir, "rotating.json");
    let now = Date.parse("2026-12-01T00:00:00Z");
    const ring = EvidenceKeyring.open(file, { now: () => now, create: true });
    const oldKey = ring.current().keyId;
    const before = sealEvidence(sampleBody({}, "2026-12-03T00:00:00.000Z"), null, ring);
    now = Date.parse("2026-12-04T00:00:00Z");
    ring.rotate();
    const after = sealEvidence(sampleBody({}, "2026-12-05T00:00:00.000Z"), null, ring);
    expect(after.signature.keyId).not.toBe(oldKey);
    expect(verifyEvidencePackage(before, ring.publicKeys()).valid).toBe(true);
    expect(verifyEvidencePackage(after, ring.publicKeys()).valid).toBe(true);
    // A package dated after the old key was closed, signed by it (someone kept its private key).
    const stolen = EvidenceKeyring.open(join(dir, "stolen.json"), {
      now: () => Date.parse("2026-12-01T00:00:00Z"),
      create: true,
    });
    const backdated = sealEvidence(sampleBody({}, "2026-12-05T00:00:00.000Z"), null, stolen);
    const listing = [
      { ...stolen.current(), validTo: "2026-12-04T00:00:00.000Z" },
      ...ring.publicKeys(),
    ];
    const result = verifyEvidencePackage(backdated, listing);
    expect(codes(result)).toEqual(["key_not_valid_then"]);
    expect(result.problems[0]?.message).toContain("until 2026-12-04T00:00:00.000Z");
    // Before a key's validFrom as well.
    const early = verifyEvidencePackage(
      sealEvidence(sampleBody({}, "2026-12-05T00:00:00.000Z"), null, ring),
      ring.publicKeys().map((k) => ({ ...k, validFrom: "2026-12-06T00:00:00.000Z" })),
    );
    expect(codes(early)).toEqual(["key_not_valid_then"]);
  });

  it("answers format 1 packages unsigned_format, never valid, saying whether the hash matches", () => {
    const v1 = sampleV1();
    const intact = verifyEvidencePackage(v1, keys());
    expect(intact.valid).toBe(false);
    expect(codes(intact)).toEqual(["unsigned_format"]);
    expect(intact.problems[0]?.message).toContain("integrity only, the hash matches");
    expect(intact.keyId).toBeNull();
    const edited = verifyEvidencePackage(
      { ...v1, computation: { ...v1.computation, value: 54.9 } },
      keys(),
    );
    expect(codes(edited)).toEqual(["hash_mismatch", "unsigned_format"]);
    expect(edited.problems.find((p) => p.code === "unsigned_format")?.message).toContain(
      "does not match",
    );
  });

  it("names what is malformed and does not throw on any input", () => {
    for (const input of [
      null,
      42,
      "x",
      [],
      {},
      { format: "citywatch-evidence/3" },
      { ...genuine, taskId: 7 },
    ]) {
      const result = verifyEvidencePackage(input, keys());
      expect(result.valid).toBe(false);
      expect(codes(result)).toEqual(["malformed"]);
    }
    const { computation: _c, ...missing } = genuine;
    expect(verifyEvidencePackage(missing, keys()).problems[0]?.message).toContain("computation");
    // Keys that are not keys verify nothing.
    expect(
      codes(verifyEvidencePackage(genuine, [{ ...keyring.current(), publicKeyPem: "garbage" }])),
    ).toEqual(["unknown_key"]);
  });

  it("lists differing JSON paths", () => {
    expect(differingPaths({ a: 1, b: [1, { c: 2 }] }, { a: 1, b: [1, { c: 3 }, 4] })).toEqual([
      "b[1].c",
      "b[2]",
    ]);
    expect(differingPaths({ a: 1 }, { a: 1 })).toEqual([]);
    expect(differingPaths(1, 2)).toEqual(["(package)"]);
    // Plain members first, then nested ones.
    expect(differingPaths({ a: { x: 1 }, b: 1 }, { a: { x: 2 }, b: 2 })).toEqual(["b", "a.x"]);
  });
});
