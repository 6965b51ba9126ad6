import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  loadGeneratedDashboards,
  queriesOf,
  unexposedMetrics,
  variableValues,
  verifyInfluxQL,
} from "../../dashboards/index.js";
import { compileScenario, loadScenario } from "../../simulators/index.js";
import { type CliProcess, startCli, startSystem, systemPorts } from "../support/cli-process.js";
import { provideInfluxDB } from "../support/services.js";
import { requireService } from "../support/suite.js";

/*
 * Every panel of every committed dashboard against a real system: `citywatch start` storing into
 * a real influxd, filled by `citywatch sim --scenario demo --provision` (every kind, faults and
 * all). Each InfluxQL query is expanded as Grafana would ($timeFilter over the scenario's hours,
 * $__interval, the district variable set to a real value from its own query, site and device to
 * All) and must run without error and return values. Each PromQL expression must name metrics
 * the running system's /metrics exposes (there is no Prometheus here to run it).
 */

const SPEED = 2160; // the demo's 6 simulated hours in 10 s
const influx = await requireService("dashboards against InfluxDB", provideInfluxDB);

const boards = loadGeneratedDashboards();

describe.runIf(influx)("dashboards on a simulated city (InfluxDB 1.x, InfluxQL)", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-e2e-dash-"));
  const database = `dash_${Date.now()}`;
  let system: CliProcess | undefined;
  let sim: CliProcess | undefined;
  let httpPort = 0;
  let range = { fromMs: 0, toMs: 0 };

  beforeAll(async () => {
    const ports = await systemPorts();
    httpPort = ports.http;
    system = startSystem(dir, ports, [
      "--influxdb-url",
      influx?.url ?? "",
      "--influxdb-database",
      database,
    ]);
    await system.waitFor(/Metrics {4}http/, 60_000);
    const timeline = compileScenario(loadScenario("demo"), { nowMs: Date.now(), speed: SPEED });
    range = { fromMs: timeline.startMs - 60_000, toMs: timeline.endMs + 60_000 };
    sim = startCli([
      "sim",
      "--scenario",
      "demo",
      "--provision",
      "--speed",
      String(SPEED),
      "--data-dir",
      dir,
      "--mqtt-url",
      `mqtt://127.0.0.1:${ports.mqtt}`,
      "--json",
    ]);
    // The run has played when its progress line reaches the scenario's last simulated minute.
    const end = `sim ${new Date(timeline.endMs).toISOString().slice(0, 16)}Z`;
    await sim.waitFor(new RegExp(end.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), 150_000);
    await sim.stop();
  }, 180_000);

  afterAll(async () => {
    await sim?.stop();
    await system?.stop();
    await influx?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const target = () => ({ url: influx?.url ?? "", database });
  const window = () => ({ ...range, intervalMs: 300_000 });

  for (const board of boards) {
    it(`${board.uid}: every InfluxQL panel query returns values`, async () => {
      const checks = await verifyInfluxQL([board], target(), window());
      const queries = queriesOf(board).filter((q) => q.language === "influxql");
      expect(queries.length).toBeGreaterThan(0);
      // One check per query, and none for the variables (each lists values).
      expect(checks.map((c) => `${c.panel} ${c.refId}`)).toEqual(
        queries.map((q) => `${q.panel.title} ${q.refId}`),
      );
      expect(checks.filter((c) => c.problem !== undefined)).toEqual([]);
    });
  }

  it("every site and every device the variables list fills at least one panel of its dashboard", async () => {
    for (const board of boards) {
      const listed = await variableValues(board, target(), window());
      for (const name of ["site", "device"]) {
        const values = listed[name] ?? [];
        expect(values.length, `${board.uid} ${name}`).toBeGreaterThan(0);
        for (const value of values) {
          const checks = await verifyInfluxQL([board], target(), window(), {
            [name]: { values: [value] },
          });
          const filled = checks.filter((c) => c.problem === undefined && c.refId !== "-");
          expect(filled.length, `${board.uid} with ${name} = ${value}`).toBeGreaterThan(0);
          expect(checks.filter((c) => c.problem?.startsWith("InfluxDB"))).toEqual([]);
        }
      }
    }
  });

  it("fails every panel on a range the city has no data in", async () => {
    const yearBefore = {
      fromMs: range.fromMs - 365 * 86_400_000,
      toMs: range.toMs - 365 * 86_400_000,
    };
    const checks = await verifyInfluxQL(boards, target(), { ...yearBefore, intervalMs: 300_000 });
    const panels = checks.filter((c) => !c.panel.startsWith("variable "));
    expect(panels.length).toBeGreaterThan(0);
    expect(panels.every((c) => c.problem === "no values")).toBe(true);
  });

  it("every PromQL expression names metrics the running system exposes on /metrics", async () => {
    const exposition = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const promql = boards.flatMap((b) => queriesOf(b).filter((q) => q.language === "promql"));
    expect(promql.length).toBeGreaterThan(0);
    expect(unexposedMetrics(boards, exposition)).toEqual([]);
    expect(unexposedMetrics(boards, "# TYPE citywatch_other gauge\n").length).toBeGreaterThan(0);
  });

  it("citywatch dashboards verify says the same, and exits 0", async () => {
    const verify = startCli([
      "dashboards",
      "verify",
      "--influxdb-url",
      influx?.url ?? "",
      "--influxdb-database",
      database,
      "--from",
      String(range.fromMs),
      "--to",
      String(range.toMs),
      "--metrics-url",
      `http://127.0.0.1:${httpPort}/metrics`,
    ]);
    const [summary] = await verify.waitFor(/\d+ ok, \d+ failed\n/, 60_000);
    const code = await new Promise<number | null>((resolve) => {
      if (verify.child.exitCode !== null) resolve(verify.child.exitCode);
      else verify.child.once("exit", resolve);
    });
    expect(code, verify.output().slice(-3000)).toBe(0);
    expect(summary).toMatch(/^[1-9]\d* ok, 0 failed/);
  });
});
