import { writeFile } from "node:fs/promises";
import path from "node:path";
import { canConnect, freePort } from "./ports.js";
import { findExecutable, makeTempDir, ManagedProcess, removeTempDir, within } from "./process.js";
import type { Provided } from "./provide.js";

/*
 * HAProxy in TCP mode in front of a test's own listeners (issue #21: devices that know only the
 * balancer's address). Unlike the other services it has no URL to share: a test starts one with
 * its backends, so only the local binary serves (Debian's `haproxy`, installed by .ci/run); the
 * suite is skipped without it, or fails with CITYWATCH_REQUIRE_SERVICES=1 (suite.ts).
 */

/** The haproxy binary (as the service's url), or why not. */
export async function provideHaproxy(): Promise<Provided> {
  const executable = await findExecutable("haproxy");
  if (executable === undefined) {
    return {
      ok: false,
      reason: "HAProxy unavailable: no haproxy binary (apt-get install -y haproxy)",
    };
  }
  return {
    ok: true,
    service: { url: executable, source: "local-binary", stop: () => Promise.resolve() },
  };
}

export interface Balancer {
  /** The frontend's port on 127.0.0.1. */
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * A TCP balancer on a free loopback port in front of `backends` (ports on 127.0.0.1), health
 * checked every 100 ms (a backend is out at its first failed check, back at its first good one).
 * `balance first` (default): every connection goes to the first backend up, so a test knows
 * where; `roundrobin`: connections take the backends up in turn, as a deployment spreads them.
 */
export async function startBalancer(
  executable: string,
  backends: readonly number[],
  balance: "first" | "roundrobin" = "first",
): Promise<Balancer> {
  const dir = await makeTempDir("cw-haproxy-");
  const port = await freePort();
  const config = path.join(dir, "haproxy.cfg");
  await writeFile(
    config,
    `# Written by tests/support/haproxy.ts for one test.
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  retries 2
  option redispatch
frontend devices
  bind 127.0.0.1:${port}
  default_backend nodes
backend nodes
  balance ${balance}
${backends.map((p, i) => `  server node-${i} 127.0.0.1:${p} check inter 100ms fall 1 rise 1`).join("\n")}
`,
  );
  const proc = new ManagedProcess("haproxy", { command: executable, args: ["-db", "-f", config] });
  const stop = async () => {
    await proc.stop();
    await removeTempDir(dir);
  };
  const deadline = Date.now() + 10_000;
  while (!(await canConnect("127.0.0.1", port, 200))) {
    if (!proc.running || Date.now() > deadline) {
      const why = proc.exitDescription ?? "did not listen within 10 s";
      const log = proc.logTail();
      await stop();
      throw new Error(`haproxy ${why}; last output:\n${log}`);
    }
    await within(proc.exited, 25);
  }
  return { port, stop };
}
