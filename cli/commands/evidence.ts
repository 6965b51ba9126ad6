import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { z } from "zod";
import { ConfigError, EvidenceKey, type EvidenceVerification } from "../../contracts/index.js";
import { EvidenceKeyError, EvidenceKeyring, evidenceKeyFile } from "../../tasks/evidence-keys.js";
import { verifyEvidencePackage } from "../../tasks/evidence-seal.js";
import { loadCitywatchConfig } from "../runtime/config.js";

/*
 * `citywatch evidence …`: evidence packages and the deployment's signing keys.
 *
 *   verify <file> [--keys <file|URL>]   check a package offline: its hash, its Ed25519 signature
 *                                       and its key's validity at sealing; exit 0 valid, 1 not
 *                                       valid, 2 usage error or unreadable input
 *   keys                                print the public keys as JSON, as GET /api/v1/evidence/keys
 *   rotate-key                          close the current key, add a new one
 *
 * The keys to verify with come from `--keys` (a file written by `citywatch evidence keys`, or the
 * URL of a running API's keys endpoint), else from the deployment's key file (data directory).
 */

interface GlobalFlags {
  config?: string;
  dataDir?: string;
}

/** `{ keys: [...] }` (the endpoint's and `evidence keys`' output) or a bare list. */
const KeyListing = z.union([z.object({ keys: z.array(EvidenceKey) }), z.array(EvidenceKey)]);

/** A usage error or input that cannot be read: exit 2. */
class UsageError extends Error {}

const describe = (error: unknown) =>
  error instanceof z.ZodError
    ? error.issues
        .slice(0, 5)
        .map((i) => `${i.path.length === 0 ? "(top)" : i.path.join(".")}: ${i.message}`)
        .join("; ")
    : (error as Error).message;

async function keysFrom(source: string): Promise<EvidenceKey[]> {
  let text: string;
  if (/^https?:\/\//i.test(source)) {
    let response: Response;
    try {
      response = await fetch(source, {
        headers: { accept: "application/json" },
        signal: AbortSignal.timeout(15_000),
      });
      text = await response.text();
    } catch (error) {
      throw new UsageError(`--keys ${source}: cannot be fetched: ${(error as Error).message}`);
    }
    if (!response.ok) throw new UsageError(`--keys ${source}: answered HTTP ${response.status}`);
  } else {
    try {
      text = readFileSync(source, "utf8");
    } catch (error) {
      throw new UsageError(
        `--keys ${source}: cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UsageError(`--keys ${source}: not JSON`);
  }
  const parsed = KeyListing.safeParse(json);
  if (!parsed.success)
    throw new UsageError(
      `--keys ${source}: not a key listing (citywatch evidence keys, GET /api/v1/evidence/keys): ${describe(parsed.error)}`,
    );
  return Array.isArray(parsed.data) ? parsed.data : parsed.data.keys;
}

function readPackage(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(
      `${file}: cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${file}: not JSON (an evidence package is the JSON the API exports)`);
  }
}

/** The deployment's keyring (never created here: a missing file is an error). */
function openKeyring(flags: GlobalFlags): EvidenceKeyring {
  const config = loadCitywatchConfig(flags);
  return EvidenceKeyring.open(evidenceKeyFile(config.ingest.tasks, config.dataDir));
}

/** The verdict as people read it: one line, then each problem. */
function verdict(result: EvidenceVerification, keys: readonly EvidenceKey[]): string {
  const name = `package ${result.sequence} of task ${result.taskId === "" ? "?" : result.taskId}`;
  if (result.valid) {
    const key = keys.find((k) => k.keyId === result.keyId);
    return (
      `VALID: ${name}, sha256 ${result.actual}\n` +
      `  signed by key ${result.keyId ?? "?"} (valid from ${key?.validFrom ?? "?"}${key?.validTo == null ? "" : ` until ${key.validTo}`})\n` +
      `  (offline check: the stored copy was not compared; POST /api/v1/evidence/verify does)\n`
    );
  }
  return [
    `NOT VALID: ${name}`,
    ...result.problems.map(
      (p) =>
        `  - ${p.code}: ${p.message}${p.paths === undefined ? "" : ` [${p.paths.join(", ")}]`}`,
    ),
    "",
  ].join("\n");
}

export function evidenceCommand(program: Command): void {
  const evidence = program
    .command("evidence")
    .description(
      "evidence packages: verify one offline, list and rotate the deployment's signing keys (docs/tasks.md)",
    )
    .option("-c, --config <file>", "configuration file (YAML)")
    .option("--data-dir <dir>", "data directory holding the key file (evidence-keys.json)");
  const globals = (): GlobalFlags => evidence.opts<GlobalFlags>();

  evidence
    .command("verify")
    .description(
      "verify an evidence package (JSON as exported): hash, Ed25519 signature, key validity at sealing; exit 0 valid, 1 not valid, 2 usage error or unreadable input",
    )
    .argument("<file>", "the package, as GET /api/v1/tasks/{id}/evidence exports it")
    .option(
      "--keys <file-or-url>",
      "public keys: a file written by `citywatch evidence keys`, or the URL of GET /api/v1/evidence/keys; default the deployment's key file",
    )
    .option("--json", "print the verification answer as JSON")
    // Usage errors exit 2 (0 and 1 are the verdict).
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
    .action(async (file: string, flags: { keys?: string; json?: boolean }) => {
      try {
        const pkg = readPackage(file);
        const keys =
          flags.keys === undefined
            ? openKeyring(globals()).publicKeys()
            : await keysFrom(flags.keys);
        const result = verifyEvidencePackage(pkg, keys);
        process.stdout.write(
          flags.json === true ? `${JSON.stringify(result, null, 2)}\n` : verdict(result, keys),
        );
        process.exitCode = result.valid ? 0 : 1;
      } catch (error) {
        if (
          !(error instanceof UsageError) &&
          !(error instanceof EvidenceKeyError) &&
          !(error instanceof ConfigError)
        )
          throw error;
        process.stderr.write(`citywatch evidence verify: ${error.message}\n`);
        process.exitCode = 2;
      }
    });

  evidence
    .command("keys")
    .description(
      "print the deployment's public evidence keys as JSON (as GET /api/v1/evidence/keys serves them; a file for `evidence verify --keys`)",
    )
    .action(() => {
      try {
        const keys = openKeyring(globals()).publicKeys();
        process.stdout.write(`${JSON.stringify({ keys }, null, 2)}\n`);
      } catch (error) {
        if (!(error instanceof EvidenceKeyError)) throw error;
        process.stderr.write(`citywatch evidence keys: ${error.message}\n`);
        process.exitCode = 1;
      }
    });

  evidence
    .command("rotate-key")
    .description(
      "close the current signing key (valid until now; its private key erased) and add a new one; old public keys stay listed, so packages they signed still verify. A running service signs with the new key from its next package",
    )
    .action(() => {
      try {
        const keyring = openKeyring(globals());
        const { closed, added } = keyring.rotate();
        process.stdout.write(
          `Closed key ${closed.keyId} (valid ${closed.validFrom} until ${closed.validTo ?? "?"}); new current key ${added.keyId} from ${added.validFrom}, in ${keyring.file}.\n` +
            "Publish the new public key (citywatch evidence keys) where packages are verified offline.\n",
        );
      } catch (error) {
        if (!(error instanceof EvidenceKeyError)) throw error;
        process.stderr.write(`citywatch evidence rotate-key: ${error.message}\n`);
        process.exitCode = 1;
      }
    });
}
