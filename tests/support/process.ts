import { spawn, type ChildProcess } from "node:child_process";
import { constants, rmSync } from "node:fs";
import { access, mkdtemp, rm, stat } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const LOG_TAIL_CHARS = 8 * 1024;
const STOP_GRACE_MS = 5_000;

// Children and temp dirs still owned by this test process. If the process ends without the
// suites calling stop() (crash, process.exit, a signal), these are cleaned up synchronously.
const liveChildren = new Set<ChildProcess>();
const liveTempDirs = new Set<string>();
let exitHooksInstalled = false;

function killAllSync(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  liveChildren.clear();
  for (const dir of liveTempDirs) rmSync(dir, { recursive: true, force: true });
  liveTempDirs.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", killAllSync);
  // 'exit' is not emitted when a signal ends the process. Listening for a signal disables its
  // default action, so when no one else listens, the signal is re-raised to die as before.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      killAllSync();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** A temporary directory removed by the caller, or at process exit at the latest. */
export async function makeTempDir(prefix: string): Promise<string> {
  installExitHooks();
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  liveTempDirs.add(dir);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  liveTempDirs.delete(dir);
}

// Daemons such as mosquitto live in sbin directories that are not on a regular user's PATH.
const FALLBACK_DIRS = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

export async function findExecutable(name: string): Promise<string | undefined> {
  const pathDirs = (process.env["PATH"] ?? "").split(path.delimiter).filter((d) => d !== "");
  for (const dir of [...pathDirs, ...FALLBACK_DIRS]) {
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export interface StartProcessOptions {
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** A child process whose recent output is kept so that failures can show it. */
export class ManagedProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<string>;
  #exitDescription: string | undefined;
  #log = "";

  constructor(
    readonly name: string,
    options: StartProcessOptions,
  ) {
    installExitHooks();
    this.#child = spawn(options.command, options.args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    liveChildren.add(this.#child);
    this.#exited = new Promise((resolve) => {
      const done = (description: string): void => {
        liveChildren.delete(this.#child);
        this.#exitDescription ??= description;
        resolve(this.#exitDescription);
      };
      // 'close' rather than 'exit': it waits for stdout/stderr to drain, so the log tail that
      // explains an early exit is complete.
      this.#child.once("close", (code, signal) =>
        done(signal === null ? `exited with code ${String(code)}` : `was killed by ${signal}`),
      );
      this.#child.once("error", (err) => done(`could not be run: ${err.message}`));
    });
    for (const stream of [this.#child.stdout, this.#child.stderr]) {
      if (stream === null) continue;
      stream.setEncoding("utf8");
      stream.on("data", (text: string) => {
        this.#log = (this.#log + text).slice(-LOG_TAIL_CHARS);
      });
      // A suite that forgets stop() must not keep the test worker alive; the exit hook kills it.
      (stream as Socket).unref();
    }
    this.#child.unref();
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return this.#exitDescription === undefined;
  }

  /** How the process ended, or undefined while it runs. */
  get exitDescription(): string | undefined {
    return this.#exitDescription;
  }

  get exited(): Promise<string> {
    return this.#exited;
  }

  /** The last ~8 KB of combined stdout and stderr. */
  logTail(): string {
    return this.#log;
  }

  /** SIGKILL at once, as a crash or power cut would end it. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.#child.kill("SIGKILL");
    await this.#exited;
  }

  /** SIGTERM, then SIGKILL if the process is still there after the grace period. */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.running) return;
    this.#child.kill("SIGTERM");
    if ((await within(this.#exited, graceMs)) === undefined) {
      this.#child.kill("SIGKILL");
      await this.#exited;
    }
  }
}

/** Resolves with the promise's value, or undefined once `ms` have passed (without a lingering timer). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface ReadinessCheck {
  /** Output that proves this process (not some other one) bound the port; checked before probing. */
  logMarker: RegExp;
  /** Speaks the protocol; true once the service answers properly. */
  probe(): Promise<boolean>;
}

export class NotReadyError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
  ) {
    super(`${message}; last output:\n${logTail === "" ? "(none)" : logTail}`);
    this.name = "NotReadyError";
  }
}

export async function waitUntilReady(
  proc: ManagedProcess,
  check: ReadinessCheck,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = "no output proving the listener is bound yet";
  // Sticky, because later output can push the marker out of the bounded log tail.
  let bound = false;
  for (;;) {
    if (!proc.running) {
      throw new NotReadyError(
        `${proc.name} ${proc.exitDescription ?? "stopped"} before becoming ready`,
        proc.logTail(),
      );
    }
    bound ||= check.logMarker.test(proc.logTail());
    if (bound) {
      try {
        if (await check.probe()) return;
        lastProblem = "the service answered, but not as expected";
      } catch (err) {
        lastProblem = err instanceof Error ? err.message : String(err);
      }
    }
    if (Date.now() >= deadline) {
      throw new NotReadyError(
        `${proc.name} did not become ready within ${timeoutMs} ms (${lastProblem})`,
        proc.logTail(),
      );
    }
    await within(proc.exited, 25);
  }
}
