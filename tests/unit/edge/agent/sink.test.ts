import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { loadEdgeConfig } from "../../../../contracts/index.js";
import { buildAgent, type EdgeAgent } from "../../../../edge/index.js";

const T0 = Date.parse("2026-11-27T14:00:00Z");

describe("the agent's sink (what drivers hand in), offline", () => {
  let dir: string;
  let agent: EdgeAgent | undefined;

  afterEach(async () => {
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function build(): EdgeAgent {
    dir = mkdtempSync(join(tmpdir(), "cw-edge-sink-"));
    agent = buildAgent({
      log: pino({ level: "silent" }),
      config: loadEdgeConfig({
        overrides: {
          // Never started: nothing connects, the log takes the readings.
          mqtt: { url: "mqtt://127.0.0.1:9" },
          devices: [
            { deviceId: "fume-1", kind: "cooking_fume", secret: "s" },
            { deviceId: "noise-1", kind: "noise", secret: "s" },
          ],
          wal: { file: join(dir, "wal.db") },
          remoteConfig: { dir: join(dir, "device-config") },
        },
      }),
    });
    return agent;
  }

  it("logs interval values at once, switches 1/0 as booleans", () => {
    const a = build();
    a.sink({
      deviceId: "fume-1",
      kind: "cooking_fume",
      ts: T0,
      quality: "normal",
      values: { oilFume: 1.2, fanOn: 1, purifierOn: 0 },
      form: "interval",
    });
    const [message] = a.wal.pending("fume-1", { limit: 10 });
    expect(message?.readings).toEqual([
      {
        ts: "2026-11-27T14:00:00.000Z",
        quality: "normal",
        values: { oilFume: 1.2, fanOn: true, purifierOn: false },
      },
    ]);
  });

  it("aggregates samples and logs the interval when the next begins", () => {
    const a = build();
    const sample = (ts: number, LAeq: number) =>
      a.sink({
        deviceId: "noise-1",
        kind: "noise",
        ts,
        quality: "normal",
        values: { LAeq },
        form: "sample",
      });
    sample(T0 + 1_000, 60);
    sample(T0 + 2_000, 70);
    expect(a.wal.pending("noise-1", { limit: 10 })).toEqual([]);
    sample(T0 + 61_000, 50);
    const [message] = a.wal.pending("noise-1", { limit: 10 });
    expect(message?.readings[0]).toMatchObject({
      ts: "2026-11-27T14:01:00.000Z",
      values: { LAeq: 67.4 },
    });
  });

  it("refuses bad samples with a reason, counts them, and keeps taking good ones", () => {
    const a = build();
    const base = { ts: T0, quality: "normal" as const, form: "interval" as const };
    const refusals = [
      { ...base, deviceId: "noise-9", kind: "noise" as const, values: { LAeq: 50 } },
      { ...base, deviceId: "noise-1", kind: "dust" as const, values: { pm10: 5 } },
      { ...base, deviceId: "noise-1", kind: "noise" as const, values: { LAeq: 180 } },
      { ...base, deviceId: "noise-1", kind: "noise" as const, values: { pm10: 5 } },
      { ...base, deviceId: "noise-1", kind: "noise" as const, values: {} },
      { ...base, deviceId: "fume-1", kind: "cooking_fume" as const, values: { fanOn: 2 } },
      {
        ...base,
        deviceId: "noise-1",
        kind: "noise" as const,
        ts: Number.NaN,
        values: { LAeq: 50 },
      },
    ];
    const reasons = refusals.map((s) => {
      try {
        a.sink(s);
        return "taken";
      } catch (error) {
        return (error as Error).message;
      }
    });
    expect(reasons).toEqual([
      "device noise-9 is not served by this agent",
      "device noise-1 is noise, not dust",
      expect.stringMatching(/LAeq 180 is above the plausible range/),
      expect.stringMatching(/unknown quantity "pm10"/),
      expect.stringMatching(/at least one noise quantity/),
      "fanOn must be 1 or 0, got 2",
      "sample time is not a number",
    ]);
    a.sink({ ...base, deviceId: "noise-1", kind: "noise", values: { LAeq: 50 } });
    const noise = a.stats().devices.find((d) => d.deviceId === "noise-1");
    expect(noise).toMatchObject({ refused: 5, samples: 1, readings: 1 });
  });
});
