import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ExpectedTask,
  type FleetSummary,
  type Timeline,
  builtInScenarios,
  compileScenario,
  loadScenario,
} from "../../simulators/index.js";
import { TaskDetailResponse, TaskListResponse } from "../../contracts/index.js";
import { expectedEntries } from "../support/scenario-tasks.js";
import {
  bearer,
  type CliProcess,
  issueToken,
  startCli,
  startSystem,
  systemPorts,
} from "../support/cli-process.js";

/*
 * Every built-in scenario played accelerated by `citywatch sim --provision` (a separate process,
 * as a user runs it) against `citywatch start` (the all-in-one system on embedded defaults). All
 * scenarios play at once: their device ids do not overlap. Each must end with every message
 * committed, every planned reading served by the readings API, and exactly the tasks its
 * `expect:` block documents raised (GET /api/v1/tasks) — no others.
 */

const dir = mkdtempSync(join(tmpdir(), "cw-e2e-sim-"));
const scenarios = builtInScenarios();
let system: CliProcess;
let api: string;
const runs = new Map<
  string,
  { sim: CliProcess; exit: Promise<number | null>; timeline: Timeline }
>();

function waitExit(proc: CliProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (proc.child.exitCode !== null) resolve(proc.child.exitCode);
    else proc.child.once("exit", (code) => resolve(code));
  });
}

beforeAll(async () => {
  const ports = await systemPorts();
  system = startSystem(dir, ports);
  await system.waitFor(/Metrics {4}http/, 60_000);
  api = `http://127.0.0.1:${ports.http}`;
  for (const name of scenarios) {
    // The run resolves its start the same way a second later: same day, same readings.
    const timeline = compileScenario(loadScenario(name), { nowMs: Date.now() });
    const sim = startCli([
      "sim",
      "--scenario",
      name,
      "--provision",
      "--data-dir",
      dir,
      "--mqtt-url",
      `mqtt://127.0.0.1:${ports.mqtt}`,
      "--json",
    ]);
    runs.set(name, { sim, exit: waitExit(sim), timeline });
  }
}, 120_000);

afterAll(async () => {
  await Promise.all([...runs.values()].map((r) => r.sim.stop()));
  await system?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The summary `--json` printed; stderr (the devices put back on standby) may follow it. */
function summaryOf(output: string): FleetSummary {
  const start = output.lastIndexOf('{\n  "devices"');
  return JSON.parse(output.slice(start, output.indexOf("\n}", start) + 2)) as FleetSummary;
}

async function storedCount(deviceId: string, t: Timeline): Promise<number> {
  const q = `from=${new Date(t.startMs).toISOString()}&to=${new Date(t.endMs + 1000).toISOString()}&limit=10000`;
  const response = await fetch(`${api}/api/v1/devices/${deviceId}/readings?${q}`, {
    headers: bearer(token()),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { readings: unknown[] }).readings.length;
}

/** One viewer token for all scenarios (a token name is unique). */
let issued: string | undefined;
function token(): string {
  issued ??= issueToken(dir, "e2e-sim");
  return issued;
}

/** The tasks the running system raised for a scenario's sites and devices, in the scenario's terms. */
async function tasksOf(t: Timeline, bearer: string): Promise<ExpectedTask[]> {
  const response = await fetch(`${api}/api/v1/tasks?limit=1000`, {
    headers: { authorization: `Bearer ${bearer}` },
  });
  expect(response.status).toBe(200);
  const subjects = new Set<string>([
    ...t.layout.sites.map((s) => s.id),
    ...t.layout.devices.map((d) => d.id),
  ]);
  const body = TaskListResponse.parse(await response.json());
  return body.tasks
    .filter((task) => subjects.has(task.subject.id))
    .flatMap((task) => expectedEntries(task));
}

const sorted = (tasks: readonly ExpectedTask[]) =>
  [...tasks].sort((a, b) => `${a.rule}/${a.subject}`.localeCompare(`${b.rule}/${b.subject}`));

describe.each(scenarios)("citywatch sim --scenario %s against citywatch start", (name) => {
  it("plays accelerated, gets every message committed, and every planned reading is stored", async () => {
    const run = runs.get(name);
    if (run === undefined) throw new Error(`scenario ${name} was not started`);
    expect(await run.exit, run.sim.output().slice(-2000)).toBe(0);
    const summary = summaryOf(run.sim.output());
    const planned = run.timeline.devices.map((d) => ({
      id: d.device.id,
      readings: [...d.messages()].reduce((n, m) => n + m.uplink.readings.length, 0),
    }));
    const total = planned.reduce((n, d) => n + d.readings, 0);
    expect(summary).toMatchObject({
      scenario: name,
      complete: true,
      pending: 0,
      unknownAccepted: 0,
    });
    expect(summary.committedReadings).toBe(total);
    expect(run.sim.output()).toContain(
      `Scenario ${name} ended: ${planned.length} device(s) back on standby`,
    );
    for (const device of planned) {
      expect({ device: device.id, stored: await storedCount(device.id, run.timeline) }).toEqual({
        device: device.id,
        stored: device.readings,
      });
    }
  }, 300_000);

  it("raises exactly the tasks the scenario documents, and no others", async () => {
    const run = runs.get(name);
    if (run === undefined) throw new Error(`scenario ${name} was not started`);
    await run.exit;
    expect(sorted(await tasksOf(run.timeline, token()))).toEqual(sorted(run.timeline.expect.tasks));
  }, 300_000);
});

describe("issue #18 against citywatch start: one incident, one case", () => {
  it("night-construction gives one case holding its three violations, with a warning and no referral", async () => {
    const run = runs.get("night-construction");
    if (run === undefined) throw new Error("scenario night-construction was not started");
    await run.exit;
    const response = await fetch(`${api}/api/v1/tasks?kind=enforcement&site=nc-site`, {
      headers: bearer(token()),
    });
    const cases = TaskListResponse.parse(await response.json()).tasks;
    expect(cases).toHaveLength(1);
    const [incident] = cases;
    expect(incident?.violations?.map((v) => v.ruleId).sort()).toEqual([
      "noise.construction.laeq",
      "noise.construction.night-lamax",
      "noise.construction.night-works",
    ]);
    expect(incident?.graduated?.stage).toBe("warning");
    const detail = TaskDetailResponse.parse(
      await (
        await fetch(`${api}/api/v1/tasks/${incident?.id ?? ""}`, { headers: bearer(token()) })
      ).json(),
    );
    const actions = detail.audit.map((e) => e.action);
    expect(actions.filter((a) => a === "warning_issued")).toHaveLength(1);
    expect(actions).not.toContain("referred_for_penalty");
  }, 300_000);
});
