import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./services.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A `citywatch` CLI process started the way the README does (through tsx), with its output kept. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Resolve when the output matches `pattern`; reject if the process exits first or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export function startCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  process.once("exit", () => child.kill("SIGKILL"));

  return {
    child,
    output: () => output,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(`timed out waiting for ${String(pattern)}; output:\n${output.slice(-4000)}`),
          );
        }, timeoutMs);
        const check = () => {
          const match = output.match(pattern);
          if (match !== null) {
            cleanup();
            resolve(match);
          }
        };
        const onExit = (code: number | null) => {
          cleanup();
          reject(
            new Error(
              `process exited (${code}) before ${String(pattern)}; output:\n${output.slice(-4000)}`,
            ),
          );
        };
        const cleanup = () => {
          clearTimeout(timer);
          child.stdout?.off("data", check);
          child.stderr?.off("data", check);
          child.off("exit", onExit);
        };
        child.stdout?.on("data", check);
        child.stderr?.on("data", check);
        child.once("exit", onExit);
        check();
      });
    },
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The listening ports of a `citywatch start` under test. */
export interface SystemPorts {
  readonly mqtt: number;
  readonly ws: number;
  readonly http: number;
}

/** Free loopback ports for `citywatch start` (never the defaults: machine services hold some). */
export async function systemPorts(): Promise<SystemPorts> {
  return { mqtt: await freePort(), ws: await freePort(), http: await freePort() };
}

/** `citywatch start` with its data in `dataDir`, on `ports`, with `extra` flags. */
export function startSystem(
  dataDir: string,
  ports: SystemPorts,
  extra: string[] = [],
  env: Record<string, string> = {},
): CliProcess {
  return startCli(
    [
      "start",
      "--data-dir",
      dataDir,
      "--mqtt-port",
      String(ports.mqtt),
      "--ws-port",
      String(ports.ws),
      "--http-port",
      String(ports.http),
      ...extra,
    ],
    env,
  );
}

/**
 * A new API token for the system whose data is in `dataDir`, issued by `citywatch tokens add` as
 * an operator would (the running system sees it at once). Names are unique per data directory.
 */
export function issueToken(dataDir: string, name: string, role = "viewer"): string {
  const result = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "cli/citywatch.ts",
      "tokens",
      "add",
      "--role",
      role,
      "--name",
      name,
      "--json",
      "--data-dir",
      dataDir,
    ],
    { cwd: ROOT, encoding: "utf8" },
  );
  if (result.status !== 0) throw new Error(`citywatch tokens add failed: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { token: string }).token;
}

/** The authorization header of `token`. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/**
 * A secret the first start wrote to `{dataDir}/first-start-secrets.txt` (`id what secret` a line):
 * a demo device's, a service account's, or the first admin token (`first-admin`). Empty when absent.
 */
export function firstStartSecret(dataDir: string, id: string): string {
  const file = join(dataDir, "first-start-secrets.txt");
  if (!existsSync(file)) return "";
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const [name, , secret] = line.trim().split(/\s+/);
    if (name === id && secret !== undefined) return secret;
  }
  return "";
}
