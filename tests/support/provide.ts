import type { StartedTestContainer } from "testcontainers";
import { dockerEngineAnswers, loadTestcontainers, type Testcontainers } from "./docker.js";
import {
  findExecutable,
  makeTempDir,
  ManagedProcess,
  NotReadyError,
  removeTempDir,
  waitUntilReady,
  type ReadinessCheck,
} from "./process.js";

/** "running-server": one already running on the machine at its standard address (postgres.ts). */
export type ServiceSource = "env" | "running-server" | "testcontainers" | "local-binary";

export interface ServiceHandle {
  url: string;
  source: ServiceSource;
  /** Idempotent; a no-op for services given through the environment. */
  stop(): Promise<void>;
  /**
   * For local binaries only: kill the process with SIGKILL (an outage) and start it again on the
   * same port and data directory (recovery), for tests of what survives a crashed service.
   */
  outage?: { kill(): Promise<void>; restart(): Promise<void> };
}

export type Provided = { ok: true; service: ServiceHandle } | { ok: false; reason: string };

/** What a service needs to run from a local binary inside a fresh temporary directory. */
export interface LocalLaunch {
  args: string[];
  url: string;
  /** Defaults to this process's environment. */
  env?: NodeJS.ProcessEnv;
  readiness: ReadinessCheck;
}

/** Everything that differs between services; the order of the sources is shared by all. */
export interface ServiceSpec {
  /** Human name used in messages, e.g. "InfluxDB". */
  name: string;
  /** Variable holding the URL of an already running instance. */
  envVar: string;
  /** Accepted URL schemes for envVar, with the trailing colon as URL.protocol reports them. */
  urlProtocols: readonly string[];
  /** Tail of the "unavailable" reason, e.g. "install influxd (apt-get install -y influxdb)". */
  installHint: string;
  startContainer(testcontainers: Testcontainers): Promise<ServiceHandle>;
  /** Executable name, looked up on PATH and in the usual bin/sbin directories. */
  executable: string;
  /** Chooses ports and writes configuration into `dir`, which is removed on stop. */
  prepareLocal(dir: string): Promise<LocalLaunch>;
}

const START_TIMEOUT_MS = 30_000;
// A port reported free can be taken by a parallel test file before the service binds it.
const PORT_ATTEMPTS = 3;

/**
 * Environment URL, then testcontainers (when a Docker engine answers), then a local binary.
 * Resolves `{ ok: false }` only when no source exists; a source that exists but fails to start
 * rejects, because that is a broken setup to fix rather than a reason to skip.
 */
export async function provide(spec: ServiceSpec): Promise<Provided> {
  const fromEnv = process.env[spec.envVar];
  if (fromEnv !== undefined && fromEnv !== "") {
    return { ok: true, service: envHandle(spec, fromEnv) };
  }

  const failures: string[] = [];
  if (await dockerEngineAnswers()) {
    try {
      return { ok: true, service: await spec.startContainer(await loadTestcontainers()) };
    } catch (err) {
      failures.push(`testcontainers: ${messageOf(err)}`);
    }
  }

  const executable = await findExecutable(spec.executable);
  if (executable !== undefined) {
    if (failures.length > 0) {
      process.stderr.write(
        `[services] ${spec.name}: ${failures.join("; ")}; using ${executable}\n`,
      );
    }
    try {
      return { ok: true, service: await startLocal(spec, executable) };
    } catch (err) {
      failures.push(`local ${spec.executable}: ${messageOf(err)}`);
    }
  }

  if (failures.length > 0) {
    throw new Error(`${spec.name} could not be started:\n${failures.join("\n")}`);
  }
  return {
    ok: false,
    reason: `${spec.name} unavailable: set ${spec.envVar}, start a Docker engine, or ${spec.installHint}`,
  };
}

function envHandle(spec: ServiceSpec, value: string): ServiceHandle {
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    throw new Error(`${spec.envVar}=${value} is not a URL`);
  }
  if (!spec.urlProtocols.includes(protocol)) {
    throw new Error(
      `${spec.envVar}=${value}: expected a ${spec.urlProtocols.map((p) => `${p}//`).join(" or ")} URL`,
    );
  }
  return { url: value, source: "env", stop: () => Promise.resolve() };
}

/** Handle for a started container; the caller builds the URL from its mapped port. */
export function containerHandle(container: StartedTestContainer, url: string): ServiceHandle {
  return {
    url,
    source: "testcontainers",
    stop: once(async () => {
      await container.stop();
    }),
  };
}

async function startLocal(spec: ServiceSpec, executable: string): Promise<ServiceHandle> {
  for (let attempt = 1; ; attempt++) {
    const dir = await makeTempDir(`citywatch-${spec.executable}-`);
    let proc: ManagedProcess | undefined;
    try {
      const launch = await spec.prepareLocal(dir);
      proc = new ManagedProcess(executable, {
        command: executable,
        args: launch.args,
        env: launch.env ?? process.env,
        cwd: dir,
      });
      await waitUntilReady(proc, launch.readiness, START_TIMEOUT_MS);
      let current = proc;
      const spawnAgain = () =>
        new ManagedProcess(executable, {
          command: executable,
          args: launch.args,
          env: launch.env ?? process.env,
          cwd: dir,
        });
      return {
        url: launch.url,
        source: "local-binary",
        stop: once(async () => {
          await current.stop();
          await removeTempDir(dir);
        }),
        outage: {
          kill: () => current.kill(),
          restart: async () => {
            if (current.running) return;
            current = spawnAgain();
            await waitUntilReady(current, launch.readiness, START_TIMEOUT_MS);
          },
        },
      };
    } catch (err) {
      await proc?.stop();
      await removeTempDir(dir);
      const portTaken = err instanceof NotReadyError && /address already in use/i.test(err.logTail);
      if (!portTaken || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
