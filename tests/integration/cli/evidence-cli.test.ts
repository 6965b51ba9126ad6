import { spawn } from "node:child_process";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EvidenceKey, type EvidencePackageV2 } from "../../../contracts/index.js";
import { EvidenceKeyring } from "../../../tasks/evidence-keys.js";
import { sealEvidence } from "../../../tasks/evidence-seal.js";
import { startSystem, systemPorts } from "../../support/cli-process.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { sampleBody, sampleV1 } from "../../unit/tasks/evidence-sample.js";

/*
 * `citywatch evidence verify | keys | rotate-key` as an operator or a lawyer runs them (through
 * tsx, real files, a real HTTP keys endpoint), and the start's handling of the key file: created
 * owner-only on first start with a log line naming it, refused when readable by others.
 */

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Run the CLI without blocking this process (the keys server below answers meanwhile). */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("citywatch evidence", () => {
  let dir: string;
  let dataDir: string;
  let keyring: EvidenceKeyring;
  let genuine: EvidencePackageV2;
  let server: Server | undefined;
  const file = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content, null, 2));
    return path;
  };

  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-cli-");
    dataDir = join(dir, "data");
    keyring = EvidenceKeyring.open(join(dataDir, "evidence-keys.json"), {
      now: () => Date.parse("2026-12-01T00:00:00Z"),
      create: true,
    });
    genuine = sealEvidence(sampleBody(), null, keyring);
  });
  afterAll(async () => {
    await new Promise<void>((resolve) =>
      server === undefined ? resolve() : server.close(() => resolve()),
    );
    await removeTempDir(dir);
  });

  it("keys prints the public keys as the endpoint does; a data directory without keys is an error", async () => {
    const out = await cli(["evidence", "keys", "--data-dir", dataDir]);
    expect(out.status).toBe(0);
    const listing = JSON.parse(out.stdout) as { keys: unknown[] };
    expect(EvidenceKey.array().parse(listing.keys)).toEqual(keyring.publicKeys());
    expect(out.stdout).not.toContain("PRIVATE");
    const none = await cli(["evidence", "keys", "--data-dir", join(dir, "empty")]);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("no evidence key file at");
  });

  it("verify: a genuine package is VALID (exit 0) with a keys file, the data directory's keys or the keys URL", async () => {
    const pkg = file("genuine.json", genuine);
    const keys = file("keys.json", (await cli(["evidence", "keys", "--data-dir", dataDir])).stdout);
    const withFile = await cli(["evidence", "verify", pkg, "--keys", keys]);
    expect(withFile.stdout).toContain(
      `VALID: package 1 of task enf-000001, sha256 ${genuine.hash.value}`,
    );
    expect(withFile.stdout).toContain(`signed by key ${genuine.signature.keyId}`);
    expect(withFile.status).toBe(0);
    expect((await cli(["evidence", "--data-dir", dataDir, "verify", pkg])).status).toBe(0);
    // The keys endpoint of a running API (a plain HTTP server serving the same listing here).
    server = createServer((req, res) => {
      if (req.url === "/api/v1/evidence/keys") {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ keys: keyring.publicKeys() }));
      } else {
        res.statusCode = 404;
        res.end("{}");
      }
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const viaUrl = await cli(["evidence", "verify", pkg, "--keys", `${base}/api/v1/evidence/keys`]);
    expect(viaUrl.status).toBe(0);
    const json = await cli(["evidence", "verify", pkg, "--keys", keys, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ valid: true, problems: [] });
    const wrongUrl = await cli(["evidence", "verify", pkg, "--keys", `${base}/nope`]);
    expect(wrongUrl.status).toBe(2);
    expect(wrongUrl.stderr).toContain("answered HTTP 404");
  });

  it("verify: tampered, re-signed, unsigned packages are NOT VALID (exit 1) with each reason", async () => {
    const keys = file("keys2.json", { keys: keyring.publicKeys() });
    const edited = file("edited.json", {
      ...genuine,
      computation: { ...genuine.computation, value: 54.9 },
    });
    const out = await cli(["evidence", "verify", edited, "--keys", keys]);
    expect(out.status).toBe(1);
    expect(out.stdout).toContain("NOT VALID: package 1 of task enf-000001");
    expect(out.stdout).toContain("- hash_mismatch: the content hashes to");
    expect(out.stdout).toContain("- bad_signature: the Ed25519 signature does not verify");
    const forger = EvidenceKeyring.open(join(dir, "forger.json"), {
      now: () => Date.parse("2026-12-01T00:00:00Z"),
      create: true,
    });
    const { hash: _h, signature: _s, previous, ...body } = genuine;
    const resigned = file("resigned.json", sealEvidence(body, previous, forger));
    const byForger = await cli(["evidence", "verify", resigned, "--keys", keys]);
    expect(byForger.status).toBe(1);
    expect(byForger.stdout).toContain("- unknown_key: signed by key");
    const v1 = await cli(["evidence", "verify", file("v1.json", sampleV1()), "--keys", keys]);
    expect(v1.status).toBe(1);
    expect(v1.stdout).toContain("- unsigned_format: sealed before packages were signed");
    const malformed = await cli([
      "evidence",
      "verify",
      file("m.json", { format: "x" }),
      "--keys",
      keys,
    ]);
    expect(malformed.status).toBe(1);
    expect(malformed.stdout).toContain("- malformed: not an evidence package");
  });

  it("verify: usage errors and unreadable input exit 2 with a clear message", async () => {
    const keys = file("keys3.json", { keys: keyring.publicKeys() });
    const pkg = file("g3.json", genuine);
    const cases: Array<[string[], RegExp]> = [
      [["evidence", "verify"], /missing required argument 'file'/],
      [["evidence", "verify", join(dir, "absent.json"), "--keys", keys], /cannot be read: ENOENT/],
      [["evidence", "verify", file("text.json", "not json"), "--keys", keys], /not JSON/],
      [
        ["evidence", "verify", pkg, "--keys", file("badkeys.json", { keys: [{ keyId: 1 }] })],
        /not a key listing/,
      ],
      [["evidence", "verify", pkg, "--keys", join(dir, "nokeys.json")], /--keys .* cannot be read/],
      [["evidence", "verify", pkg, "--data-dir", join(dir, "empty")], /no evidence key file/],
    ];
    for (const [args, message] of cases) {
      const out = await cli(args);
      expect(out.stderr, args.join(" ")).toMatch(message);
      expect(out.status, args.join(" ")).toBe(2);
    }
  });

  it("rotate-key closes the current key and adds one; old packages still verify", async () => {
    const before = keyring.current().keyId;
    const out = await cli(["evidence", "rotate-key", "--data-dir", dataDir]);
    expect(out.status).toBe(0);
    expect(out.stdout).toContain(`Closed key ${before}`);
    expect(out.stdout).not.toContain("PRIVATE");
    expect(statSync(keyring.file).mode & 0o777).toBe(0o600);
    const keys = keyring.publicKeys();
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatchObject({ keyId: before });
    expect(keys[0]?.validTo).not.toBeNull();
    expect(out.stdout).toContain(`new current key ${keys[1]?.keyId}`);
    const stored = JSON.parse(readFileSync(keyring.file, "utf8")) as {
      keys: Array<{ privateKeyPem: string | null }>;
    };
    expect(stored.keys.map((k) => k.privateKeyPem === null)).toEqual([true, false]);
    // The package sealed under the closed key still verifies with the deployment's keys.
    expect(
      (await cli(["evidence", "verify", file("g4.json", genuine), "--data-dir", dataDir])).status,
    ).toBe(0);
  });

  it("keys and rotate-key refuse a key file readable by others, naming the fix", async () => {
    chmodSync(keyring.file, 0o644);
    try {
      for (const command of ["keys", "rotate-key"]) {
        const out = await cli(["evidence", command, "--data-dir", dataDir]);
        expect(out.status, command).toBe(1);
        expect(out.stderr, command).toContain(
          `(mode 0644); it holds private keys: chmod 600 ${keyring.file}`,
        );
      }
    } finally {
      chmodSync(keyring.file, 0o600);
    }
  });
});

describe("citywatch start and the evidence key file", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await makeTempDir("cw-evidence-start-");
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  /** `citywatch start` on free ports, with its key file at `keyFile` (outside the data directory). */
  const start = async (dataDir: string, keyFile: string) => {
    const ports = await systemPorts();
    return startSystem(dataDir, ports, [], { CITYWATCH_EVIDENCE_KEY_FILE: keyFile });
  };

  it("creates the key file owner-only on first start with a line naming it; refuses one readable by others", async () => {
    const dataDir = join(dir, "data");
    // Outside the data directory (which the start makes owner-only, tightening what is in it).
    const keyFile = join(dir, "secrets", "evidence-keys.json");
    const first = await start(dataDir, keyFile);
    try {
      await first.waitFor(/evidence signing key created/, 60_000);
      await first.waitFor(/API on \/api\/v1/, 60_000);
    } finally {
      await first.stop();
    }
    expect(first.output()).toContain(keyFile);
    expect(first.output()).not.toContain("PRIVATE KEY");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    chmodSync(keyFile, 0o640);
    const second = await start(dataDir, keyFile);
    const code = await new Promise<number | null>((resolve) => {
      if (second.child.exitCode !== null) resolve(second.child.exitCode);
      else second.child.once("exit", resolve);
    });
    expect(second.output()).toContain("ingest.tasks.evidence.keyFile");
    expect(second.output()).toContain(`(mode 0640); it holds private keys: chmod 600 ${keyFile}`);
    expect(second.output()).not.toContain("PRIVATE KEY");
    expect(code).toBe(1);
  });
});
