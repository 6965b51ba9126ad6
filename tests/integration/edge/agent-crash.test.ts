import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WriteAheadLog } from "../../../edge/wal/log.js";
import type { Ingest } from "../../../ingest/app.js";
import { startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startTestIngest } from "../../support/ingest.js";
import { ingestCounter, numberOf, storedReadings } from "./agent-harness.js";

const ROOT = new URL("../../../", import.meta.url).pathname;
const CHILD = new URL("./agent-crash-child.ts", import.meta.url).pathname;
const DEVICE = "noise-crash";

interface Run {
  readonly child: ChildProcess;
  readonly acked: number[];
  fed: boolean;
  output: () => string;
}

const children: ChildProcess[] = [];

function run(args: string[]): Run {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const state: Run = { child, acked: [], fed: false, output: () => stderr };
  let stderr = "";
  let buffered = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      if (line === "fed") state.fed = true;
      else if (line.startsWith("ack ")) state.acked.push(Number(line.slice(4)));
    }
  });
  return state;
}

function exited(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.signalCode ?? child.exitCode);
  }
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve(signal ?? code)));
}

describe("edge agent killed with SIGKILL mid-send", () => {
  let dir: string;
  let broker: TestBroker | undefined;
  let ingest: Ingest | undefined;

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    await ingest?.stop();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("restarts from its log: every acknowledged reading stored, none twice, none invented", async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-edge-crash-"));
    broker = await startTestBroker({}, { dataDir: join(dir, "broker") });
    const live = await startTestIngest(broker, {
      dataDir: join(dir, "ingest"),
      clientId: "ingest-crash",
    });
    ingest = live;
    const secret = broker.addDevice(DEVICE, "noise");
    const args = (first: number, count: number) => [
      broker?.url ?? "",
      DEVICE,
      secret,
      join(dir, "agent"),
      String(first),
      String(count),
    ];
    const stored = async () => (await storedReadings(live, DEVICE, "noise")).map(numberOf);

    // First run: killed while it appends and sends, once the ingest has stored some of it.
    const first = run(args(0, 1_000_000));
    await until(
      () => first.acked.length >= 400,
      `400 readings acknowledged (${first.output()})`,
      30_000,
    );
    let storedBefore = 0;
    await until(
      () => {
        void stored().then((s) => (storedBefore = s.length));
        return storedBefore > 0;
      },
      "some readings stored before the kill",
      15_000,
    );
    first.child.kill("SIGKILL");
    expect(await exited(first.child)).toBe("SIGKILL");
    const fedFirst = Math.max(...first.acked) + 1;
    // Mid-send: the log still held messages the ingest had not committed.
    const log = new WriteAheadLog({ file: join(dir, "agent", "wal.db") }, { now: Date.now });
    expect(log.stats(DEVICE).pending).toBeGreaterThan(0);
    log.close();

    // Second run on the same log: more readings, then it drains everything.
    const second = run(args(1_000_000, 300));
    await until(() => second.fed, `second run fed (${second.output()})`, 30_000);
    const acked = [...first.acked, ...second.acked];
    let numbers: number[] = [];
    await until(
      () => {
        void stored().then((s) => (numbers = s));
        const have = new Set(numbers);
        return acked.every((n) => have.has(n));
      },
      "every acknowledged reading stored",
      30_000,
    );
    second.child.kill("SIGTERM");
    expect(await exited(second.child)).toBe(0);

    numbers = await stored();
    // Nothing invented: readings of the first run up to what it may have appended unacknowledged
    // (the one append in progress at the kill), and the second run's readings.
    expect(numbers.every((n) => n <= fedFirst || (n >= 1_000_000 && n < 1_000_300))).toBe(true);
    // Nothing doubled: each stored reading came in exactly one stored message.
    expect(await ingestCounter(live, "citywatch_ingest_readings_stored_total")).toBe(
      numbers.length,
    );
    expect(new Set(numbers).size).toBe(numbers.length);
    expect(await ingestCounter(live, "citywatch_ingest_dead_letters_total")).toBe(0);
  }, 90_000);
});
