import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TaskListResponse } from "../../contracts/index.js";
import { compileScenario, loadScenario } from "../../simulators/index.js";
import { expectedEntries } from "../support/scenario-tasks.js";
import {
  bearer,
  type CliProcess,
  firstStartSecret,
  startSystem,
  systemPorts,
} from "../support/cli-process.js";

/** `citywatch start --demo`: the newcomer's first minute. */
const dir = mkdtempSync(join(tmpdir(), "cw-e2e-demo-"));
let proc: CliProcess | undefined;
let api = "";

afterAll(async () => {
  await proc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("citywatch start --demo", () => {
  it("plays the demo city in-process: readings of every demo device are on the API within a minute", async () => {
    const ports = await systemPorts();
    api = `http://127.0.0.1:${ports.http}`;
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
    // The admin token the first start wrote to its owner-only secrets file.
    const headers = bearer(firstStartSecret(dir, "first-admin"));
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

  it("files exactly the demo's documented tasks, and puts its devices back on standby at the end", async () => {
    if (proc === undefined) throw new Error("the demo did not start");
    const headers = bearer(firstStartSecret(dir, "first-admin"));
    // Every task of the system, not only the demo's: the idle demo city files none.
    const body = TaskListResponse.parse(
      await (await fetch(`${api}/api/v1/tasks?limit=1000`, { headers })).json(),
    );
    // An incident's case stands for every violation it holds.
    const filed = body.tasks.flatMap((t) => expectedEntries(t));
    const order = (tasks: ReadonlyArray<{ rule: string; subject: string }>) =>
      [...tasks].sort((a, b) => `${a.rule}/${a.subject}`.localeCompare(`${b.rule}/${b.subject}`));
    expect(order(filed)).toEqual(order(loadScenario("demo").expect.tasks));

    expect(proc.output()).toMatch(/"msg":"scenario demo ended: 8 devices back on standby/);
    const devices = (await (await fetch(`${api}/api/v1/devices`, { headers })).json()) as {
      devices: Array<{ id: string; standby: boolean }>;
    };
    expect(devices.devices.filter((d) => d.standby).map((d) => d.id)).toEqual(
      devices.devices.map((d) => d.id),
    );
  });
});
