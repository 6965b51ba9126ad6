import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { until } from "../../support/broker.js";
import { type CliProcess, startSystem, systemPorts } from "../../support/cli-process.js";
import {
  CommitFleet,
  every,
  killRandom,
  oneTo,
  registerDevices,
  sqliteStoredSeqs,
  tally,
  writeKillConfig,
} from "../../support/kill-fleet.js";

/**
 * Issue #16, the fault suite: `kill -9` of the all-in-one process (`citywatch start`, embedded
 * SQLite store) twice, at seeded random points, under a steady QoS 1 stream from commit-aware
 * devices (docs/protocol.md 6.3, 6.4: each keeps every message until a commit covers it and
 * re-sends everything above the last commit after a reconnect). The process is started again on
 * the same data directory and ports each time. Every reading the devices sent must be in the
 * store exactly once (6.8: an ingest crash including kill -9 loses nothing).
 */

const DEVICES = 5;
const PERIOD_MS = 25; // 40 messages/s per device, 200/s in all
const KILLS = 2;

const dir = mkdtempSync(join(tmpdir(), "cw-fault-kill-aio-"));
const processes: CliProcess[] = [];
let fleet: CommitFleet | undefined;
let producer: { stop(): void } | undefined;

afterAll(async () => {
  producer?.stop();
  await fleet?.stop();
  for (const p of processes) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("kill -9 of citywatch start twice mid-stream: every reading stored exactly once", async () => {
  const ids = Array.from({ length: DEVICES }, (_, i) => `noise-kill-${i}`);
  const { secrets } = registerDevices(dir, ids);
  const config = writeKillConfig(dir);
  const ports = await systemPorts();
  const random = killRandom();
  const start = async () => {
    const proc = startSystem(dir, ports, ["--config", config, "--log-level", "warn"]);
    processes.push(proc);
    await proc.waitFor(/citywatch broker is up/, 60_000);
    return proc;
  };

  let current = await start();
  fleet = new CommitFleet(`mqtt://127.0.0.1:${ports.mqtt}`, secrets);
  await fleet.connect();
  const devices = fleet;
  producer = every(PERIOD_MS, () => devices.produce());

  const killsAtMs: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    const committedBefore = devices.counters.committedMessages;
    // Mid-stream: commits are moving, then a seeded random moment.
    await until(
      () => devices.counters.committedMessages >= committedBefore + 100,
      "commits moving before the kill",
      30_000,
    );
    const delay = random.between(500, 4_000);
    killsAtMs.push(delay);
    await new Promise((r) => setTimeout(r, delay));
    const exited = new Promise((r) => current.child.once("exit", r));
    current.child.kill("SIGKILL");
    await exited;
    current = await start();
  }
  // Some more stream after the last restart, then the devices drain their logs.
  const committedAfter = devices.counters.committedMessages;
  await until(
    () => devices.counters.committedMessages >= committedAfter + 200,
    "commits moving after the last restart",
    30_000,
  );
  producer.stop();
  producer = undefined;
  await devices.allCommitted(45_000);
  await devices.stop();
  fleet = undefined;
  const code = await current.stop(10_000);

  const sent = devices.sentSeqs();
  const result = tally(oneTo(sent), sqliteStoredSeqs(join(dir, "timeseries.db")));
  const sentTotal = [...sent.values()].reduce((a, b) => a + b, 0);
  console.log(
    `[fault] kill all-in-one: sent=${sentTotal}, committed=${devices.counters.committedMessages}, stored=${result.stored}, duplicates=${result.duplicates}, lost=${result.lost}, kills=${KILLS} (seed=${random.seed}, after_ms=${killsAtMs.join("/")}, resent=${devices.counters.resent}, reconnects=${devices.counters.reconnects})`,
  );
  expect(result.lostExamples).toEqual([]);
  expect(result.duplicates).toBe(0);
  expect(result.stored).toBe(sentTotal);
  expect(devices.counters.committedMessages).toBe(sentTotal);
  expect(devices.counters.reconnects).toBeGreaterThanOrEqual(DEVICES * KILLS);
  expect(code).toBe(0);
}, 120_000);
