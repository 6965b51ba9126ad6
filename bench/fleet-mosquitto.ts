/**
 * Mosquitto as the fleet bench's baseline: the local `mosquitto` binary started on a free
 * loopback port with a configuration of its own in a temporary directory (never the system's
 * broker or its port), with the same devices and secrets as citywatch's registry: a password
 * file hashed by `mosquitto_passwd -U` (PBKDF2-SHA512) and an ACL that gives each device its own
 * topics, as citywatch's does (docs/protocol.md §3.1). Its memory is read from /proc.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { canConnect, freePort } from "../tests/support/ports.js";
import type { FleetDevice } from "./fleet-protocol.js";

const run = promisify(execFile);
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;

export interface FleetMosquitto {
  readonly port: number;
  readonly pid: number;
  readonly version: string;
  /** Resident set size now, bytes (VmRSS). */
  rss(): Promise<number>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** The devices' own topics, as broker/acl.ts grants them (%u: the username, the device id). */
const ACL = `# Written by bench/fleet-mosquitto.ts for one bench run.
pattern write citywatch/v1/devices/%u/data
pattern write citywatch/v1/devices/%u/status
pattern write citywatch/v1/devices/%u/config-ack
pattern read citywatch/v1/devices/%u/commit
pattern read citywatch/v1/devices/%u/config
`;

function config(dir: string, port: number): string {
  return `# Written by bench/fleet-mosquitto.ts for one bench run.
listener ${port} 127.0.0.1
allow_anonymous false
password_file ${join(dir, "passwd")}
acl_file ${join(dir, "acl")}
persistence false
log_dest stderr
log_type error
log_type warning
connection_messages false
${
  // Started as root, Mosquitto drops to the user "mosquitto", who cannot read these owner-only files.
  process.getuid?.() === 0 ? "user root\n" : ""
}`;
}

/** Start Mosquitto for `devices`, or say why it cannot be. */
export async function startMosquitto(
  devices: readonly FleetDevice[],
): Promise<FleetMosquitto | { unavailable: string }> {
  let version: string;
  try {
    const { stdout } = await run("mosquitto", ["-h"]).catch(
      (error: { stdout?: string; code?: unknown }) => {
        // `mosquitto -h` exits with 3 after printing its usage.
        if (typeof error.stdout === "string" && error.stdout !== "")
          return { stdout: error.stdout };
        throw error;
      },
    );
    version = stdout.split("\n")[0]?.trim() ?? "mosquitto";
  } catch (error) {
    return { unavailable: `no mosquitto binary (${(error as Error).message})` };
  }
  const dir = await mkdtemp(join(tmpdir(), "citywatch-bench-fleet-mosquitto-"));
  // Removed by stop(), or when this process exits first (Mosquitto is killed then, above).
  const removeOnExit = () => rmSync(dir, { recursive: true, force: true });
  process.once("exit", removeOnExit);
  let child: ChildProcess | undefined;
  const cleanUp = async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const outcome = await Promise.race([exited, sleep(STOP_GRACE_MS, "timeout")]);
      if (outcome === "timeout") {
        child.kill("SIGKILL");
        await exited;
      }
    }
    if (child !== undefined) live.delete(child);
    await rm(dir, { recursive: true, force: true });
    process.off("exit", removeOnExit);
  };
  try {
    const passwd = join(dir, "passwd");
    await writeFile(passwd, devices.map((d) => `${d.id}:${d.password}\n`).join(""), {
      mode: 0o600,
    });
    try {
      await run("mosquitto_passwd", ["-U", passwd]);
    } catch (error) {
      await cleanUp();
      return { unavailable: `mosquitto_passwd -U failed (${(error as Error).message})` };
    }
    await writeFile(join(dir, "acl"), ACL, { mode: 0o600 });
    const port = await freePort();
    const configFile = join(dir, "mosquitto.conf");
    await writeFile(configFile, config(dir, port), { mode: 0o600 });
    const proc = spawn("mosquitto", ["-c", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    live.add(proc);
    let stderr = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-2_000);
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await canConnect("127.0.0.1", port, 500))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        await cleanUp();
        return { unavailable: `mosquitto did not start: ${stderr.trim() || "no output"}` };
      }
      await sleep(50);
    }
    const pid = proc.pid;
    if (pid === undefined) throw new Error("mosquitto has no pid");
    return {
      port,
      pid,
      version,
      async rss() {
        const status = await readFile(`/proc/${pid}/status`, "utf8");
        const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
        if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
        return Number(kib) * 1024;
      },
      stop: cleanUp,
    };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}
