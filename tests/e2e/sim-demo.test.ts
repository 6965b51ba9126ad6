import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compileScenario, loadScenario } from "../../simulators/index.js";
import { bearer, type CliProcess, startSystem, systemPorts } from "../support/cli-process.js";

/** `citywatch start --demo`: the newcomer's first minute. */
const dir = mkdtempSync(join(tmpdir(), "cw-e2e-demo-"));
let proc: CliProcess | undefined;

afterAll(async () => {
  await proc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("citywatch start --demo", () => {
  it("plays the demo city in-process: readings of every demo device are on the API within a minute", async () => {
    const ports = await systemPorts();
    const startedAt = Date.now();
    proc = startSystem(dir, ports, ["--demo"]);
    await proc.waitFor(/demo city running/, 30_000);
    const played = await proc.waitFor(
      /"committed":(\d+),"pending":(\d+),"msg":"demo scenario played/,
      60_000,
    );
    expect(Date.now() - startedAt).toBeLessThan(60_000);
    expect(Number(played[1])).toBeGreaterThan(200);
    expect(played[2]).toBe("0");
    const timeline = compileScenario(loadScenario("demo"), { nowMs: Date.now() });
    const from = new Date(timeline.startMs).toISOString();
    // The admin token the first start printed.
    const headers = bearer(
      /Authorization: Bearer ([A-Za-z0-9_-]+)'/.exec(proc.output())?.[1] ?? "",
    );
    for (const device of timeline.layout.devices) {
      const response = await fetch(
        `http://127.0.0.1:${ports.http}/api/v1/devices/${device.id}/readings?from=${from}&limit=10000`,
        { headers },
      );
      expect(response.status).toBe(200);
      const body = (await response.json()) as { readings: unknown[] };
      expect({ device: device.id, some: body.readings.length > 0 }).toEqual({
        device: device.id,
        some: true,
      });
    }
  }, 120_000);
});
