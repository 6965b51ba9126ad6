import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import {
  type AlarmEvent,
  AlarmCommandRunner,
  LocalAlarms,
} from "../../../../edge/agent/local-alarms.js";
import { until } from "../../../support/broker.js";

const T0 = Date.parse("2026-11-27T14:00:00Z");

function tunnel(
  thresholds = [
    { quantity: "ch4", above: 20 },
    { quantity: "o2", below: 19.5 },
  ],
) {
  const events: AlarmEvent[] = [];
  const alarms = new LocalAlarms("tunnel-1", thresholds, 0.05, (e) => events.push(e));
  const feed = (values: Record<string, number>, ts = T0) => alarms.evaluate(ts, values);
  const summary = () => events.map((e) => `${e.event} ${e.quantity} ${e.value}`);
  return { alarms, feed, summary };
}

describe("local alarms", () => {
  it("raises once on a crossing and stays quiet while the value stays over", () => {
    const { feed, summary, alarms } = tunnel();
    feed({ ch4: 19 });
    feed({ ch4: 20 }); // at the threshold: not above
    feed({ ch4: 21 });
    feed({ ch4: 35 });
    feed({ ch4: 35 });
    expect(summary()).toEqual(["raise ch4 21"]);
    expect(alarms.raised().map((a) => a.quantity)).toEqual(["ch4"]);
  });

  it("clears only past the hysteresis band (5 % of the threshold)", () => {
    const { feed, summary } = tunnel();
    feed({ ch4: 25 });
    feed({ ch4: 19.5 }); // inside the band 19..20
    feed({ ch4: 20.5 }); // over again: no second raise
    feed({ ch4: 19 }); // 20 - 1: cleared
    feed({ ch4: 21 });
    expect(summary()).toEqual(["raise ch4 25", "clear ch4 19", "raise ch4 21"]);
  });

  it("handles `below` thresholds the same way", () => {
    const { feed, summary } = tunnel();
    feed({ o2: 20.9 });
    feed({ o2: 19.0 });
    feed({ o2: 19.9 }); // below 19.5 + 0.975
    feed({ o2: 20.5 });
    expect(summary()).toEqual(["raise o2 19", "clear o2 20.5"]);
  });

  it("ignores quantities a sample does not carry", () => {
    const { feed, summary } = tunnel();
    feed({ humidity: 99 });
    feed({});
    expect(summary()).toEqual([]);
  });

  it("new thresholds clear alarms whose limit changed or went away", () => {
    const { alarms, feed, summary } = tunnel();
    feed({ ch4: 30, o2: 18 });
    alarms.setThresholds([{ quantity: "o2", below: 19.5 }], T0 + 1);
    expect(summary()).toEqual(["raise ch4 30", "raise o2 18", "clear ch4 30"]);
    alarms.setThresholds(
      [
        { quantity: "o2", below: 17 },
        { quantity: "ch4", above: 40 },
      ],
      T0 + 2,
    );
    feed({ ch4: 30, o2: 18 });
    expect(summary().slice(3)).toEqual(["clear o2 18"]);
  });
});

describe("alarm command", () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("runs the command with the event as arguments, bounded, oldest queued event dropped", async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-alarm-"));
    const out = join(dir, "events.txt");
    const script = join(dir, "siren.sh");
    writeFileSync(script, `#!/bin/sh\nsleep 0.2\necho "$@" >> ${out}\n`);
    chmodSync(script, 0o755);
    const runner = new AlarmCommandRunner(
      { path: script, args: ["--site", "S1"], timeoutMs: 5_000 },
      { maxConcurrent: 1, maxQueued: 2 },
      pino({ level: "silent" }),
    );
    const event = (value: number): AlarmEvent => ({
      event: "raise",
      deviceId: "tunnel-1",
      quantity: "ch4",
      side: "above",
      value,
      threshold: 20,
      ts: T0,
    });
    for (const v of [21, 22, 23, 24]) runner.push(event(v)); // 21 runs, 22 is dropped for 24
    expect(runner.stats()).toMatchObject({ running: 1, queued: 2, dropped: 1 });
    await until(
      () => runner.stats().running === 0 && runner.stats().queued === 0,
      "commands",
      10_000,
    );
    const lines = readFileSync(out, "utf8").trim().split("\n");
    expect(lines).toEqual(
      [21, 23, 24].map((v) => `--site S1 raise tunnel-1 ch4 ${v} 20 2026-11-27T14:00:00.000Z`),
    );
    expect(runner.stats()).toMatchObject({ started: 3, failed: 0, dropped: 1 });
  });

  it("counts a command that cannot start or fails, and keeps going", async () => {
    const runner = new AlarmCommandRunner(
      { path: "/nonexistent/siren", args: [], timeoutMs: 1_000 },
      { maxConcurrent: 2, maxQueued: 10 },
      pino({ level: "silent" }),
    );
    runner.push({
      event: "clear",
      deviceId: "d",
      quantity: "ch4",
      side: "above",
      value: 1,
      threshold: 20,
      ts: T0,
    });
    await until(() => runner.stats().failed === 1, "failure counted");
    expect(runner.stats().running).toBe(0);
  });
});
