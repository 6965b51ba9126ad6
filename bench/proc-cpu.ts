/**
 * CPU time of another process on this machine, from /proc (Linux; undefined elsewhere or for a
 * process in a container): the benches' children that are not Node workers (influxd) or that
 * they do not start themselves (citywatch nodes started as processes).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, ..., utime at 11, stime at 12]. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** The influxd this process started (tests/support spawns it as our child). */
export function findInfluxd(): number | undefined {
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      let comm: string;
      try {
        comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      } catch {
        continue;
      }
      if (comm !== "influxd") continue;
      if (Number(statFields(entry)?.[1]) === process.pid) return Number(entry);
    }
  } catch {
    // no /proc
  }
  return undefined;
}

export function processCpuMicros(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const fields = statFields(pid);
  if (fields === undefined) return undefined;
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks / ticksPerSecond()) * 1e6;
}
