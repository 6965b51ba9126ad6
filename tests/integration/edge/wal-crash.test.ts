import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type LoggedMessage, WriteAheadLog } from "../../../edge/wal/log.js";

const ROOT = new URL("../../../", import.meta.url).pathname;
const CHILD = new URL("./wal-crash-child.ts", import.meta.url).pathname;
const T0 = Date.parse("2026-11-27T14:00:00Z");
const DEVICES = ["noise-0001", "noise-0002"];

interface Acked {
  readonly byDevice: Map<string, number[]>;
  count: number;
}

const children: ChildProcess[] = [];

/** Runs the child until it reported `minAcks` returned appends, then SIGKILLs it. */
async function runAndKill(file: string, firstId: number, minAcks: number): Promise<Acked> {
  const acked: Acked = { byDevice: new Map(), count: 0 };
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, file, String(firstId)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let buffered = "";
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("exit", (_code, signal) => resolve(signal)),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child too slow: ${stderr}`)), 45_000);
    child.on("exit", () => {
      clearTimeout(timer);
      reject(new Error(`child exited early: ${stderr}`));
    });
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const [, deviceId, ids] = line.split(" ");
        if (deviceId === undefined || ids === undefined) continue;
        const list = acked.byDevice.get(deviceId) ?? [];
        list.push(...ids.split(",").map(Number));
        acked.byDevice.set(deviceId, list);
        acked.count++;
      }
      if (acked.count >= minAcks && !child.killed) {
        clearTimeout(timer);
        child.kill("SIGKILL");
        resolve();
      }
    });
  });
  expect(await exited).toBe("SIGKILL");
  return acked;
}

/** Every message the log holds for the device (the reopen forms the open message). */
function logged(file: string, deviceId: string): LoggedMessage[] {
  const log = new WriteAheadLog({ file }, { now: () => Date.now() });
  try {
    return log.pending(deviceId, { limit: 1_000_000 });
  } finally {
    log.close();
  }
}

function idsOf(messages: readonly LoggedMessage[]): number[] {
  return messages.flatMap((m) => m.readings.map((r) => (Date.parse(r.ts) - T0) / 1000));
}

function checkLog(messages: readonly LoggedMessage[], acked: readonly number[]): void {
  const ids = idsOf(messages);
  expect(new Set(ids).size).toBe(ids.length); // no duplicates
  const present = new Set(ids);
  expect(acked.filter((id) => !present.has(id))).toEqual([]); // nothing acknowledged is lost
  // Beyond what was acknowledged, at most the one append that returned as the child was killed.
  const ackedSet = new Set(acked);
  expect(ids.filter((id) => !ackedSet.has(id)).length).toBeLessThanOrEqual(3);
  expect(messages.map((m) => m.seq)).toEqual(messages.map((_, i) => i + 1)); // contiguous from 1
  for (const m of messages) expect(m.readings.length).toBeLessThanOrEqual(5);
}

describe("edge write-ahead log across SIGKILL", () => {
  let dir: string | undefined;

  afterEach(() => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("keeps every acknowledged reading, once, with contiguous seqs never reused", async () => {
    dir = mkdtempSync(join(tmpdir(), "citywatch-wal-crash-"));
    const file = join(dir, "wal.db");

    const first = await runAndKill(file, 1, 300);
    const afterFirst = new Map(DEVICES.map((d) => [d, logged(file, d)]));
    for (const d of DEVICES) {
      checkLog(afterFirst.get(d) ?? [], first.byDevice.get(d) ?? []);
      // Everything formed before the restart is flagged for replay.
      expect((afterFirst.get(d) ?? []).every((m) => m.replay)).toBe(true);
    }

    const second = await runAndKill(file, 1_000_000, 300);
    for (const d of DEVICES) {
      const messages = logged(file, d);
      const before = afterFirst.get(d) ?? [];
      // What the first reopen found (a superset of the first run's acks) plus the second run's acks.
      checkLog(messages, [...idsOf(before), ...(second.byDevice.get(d) ?? [])]);
      // Messages of the first run kept their seq and readings: no seq was given to new readings.
      expect(messages.slice(0, before.length).map((m) => [m.seq, m.readings])).toEqual(
        before.map((m) => [m.seq, m.readings]),
      );
      // The second run's readings all went into new seqs.
      expect(idsOf(messages.slice(before.length)).every((id) => id >= 1_000_000)).toBe(true);
      expect(messages.length).toBeGreaterThan(before.length);
    }
  });
});
