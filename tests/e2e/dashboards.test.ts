import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DashboardJson,
  GENERATED_DIR,
  expandInfluxQL,
  parseDashboard,
  queriesOf,
} from "../../dashboards/index.js";
import { compileScenario, loadScenario } from "../../simulators/index.js";
import { type CliProcess, startCli } from "../support/cli-process.js";
import { freePort, provideInfluxDB } from "../support/services.js";
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

const boards: DashboardJson[] = readdirSync(GENERATED_DIR)
  .filter((f) => f.endsWith(".json") && f !== "citywatch-devices.json")
  .map((f) => parseDashboard(readFileSync(join(GENERATED_DIR, f), "utf8")));

interface InfluxAnswer {
  results: Array<{
    error?: string;
    series?: Array<{ name: string; columns: string[]; values: unknown[][] }>;
  }>;
}

describe.runIf(influx)("dashboards on a simulated city (InfluxDB 1.x, InfluxQL)", () => {
  const dir = mkdtempSync(join(tmpdir(), "cw-e2e-dash-"));
  const database = `dash_${Date.now()}`;
  let system: CliProcess | undefined;
  let sim: CliProcess | undefined;
  let httpPort = 0;
  let range = { fromMs: 0, toMs: 0 };

  async function query(q: string): Promise<InfluxAnswer> {
    const url = `${influx?.url}/query?db=${database}&epoch=ms&q=${encodeURIComponent(q)}`;
    return (await (await fetch(url)).json()) as InfluxAnswer;
  }

  beforeAll(async () => {
    const ports = { mqtt: await freePort(), ws: await freePort(), http: await freePort() };
    httpPort = ports.http;
    system = startCli([
      "start",
      "--data-dir",
      dir,
      "--mqtt-port",
      String(ports.mqtt),
      "--ws-port",
      String(ports.ws),
      "--http-port",
      String(ports.http),
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

  for (const board of boards) {
    it(`${board.uid}: every InfluxQL panel query returns values`, async () => {
      const district = board.templating.list.find((v) => v.name === "district");
      const districtQuery = expandInfluxQL(String(district?.query), {
        ...range,
        intervalMs: 1,
        variables: {},
      });
      const districts = (await query(districtQuery)).results[0]?.series?.[0]?.values ?? [];
      // SHOW TAG VALUES answers [key, value] rows.
      const firstDistrict = districts[0]?.[1];
      expect(typeof firstDistrict, `${districtQuery} lists no district`).toBe("string");
      const variables = {
        district: { values: [firstDistrict as string] },
        site: { all: ".*" },
        device: { all: ".*" },
      };
      for (const v of board.templating.list.filter((v) => v.name !== "district")) {
        const text = expandInfluxQL(String(v.query), { ...range, intervalMs: 1, variables });
        expect(
          (await query(text)).results[0]?.series?.[0]?.values.length ?? 0,
          text,
        ).toBeGreaterThan(0);
      }

      const influxql = queriesOf(board).filter((q) => q.language === "influxql");
      expect(influxql.length).toBeGreaterThan(0);
      for (const q of influxql) {
        const text = expandInfluxQL(q.text, { ...range, intervalMs: 300_000, variables });
        const answer = await query(text);
        const where = `${board.uid} / ${q.panel.title} / ${q.refId}: ${text}`;
        expect(answer.results[0]?.error, where).toBeUndefined();
        const values = (answer.results[0]?.series ?? []).flatMap((s) =>
          s.values.flatMap((row) => row.slice(1)).filter((v) => v !== null),
        );
        expect(values.length, `${where} returned no values`).toBeGreaterThan(0);
      }
    });
  }

  it("every PromQL expression names metrics the running system exposes on /metrics", async () => {
    const exposition = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const exposed = new Set(
      [...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1] ?? ""),
    );
    const named = boards.flatMap((b) =>
      queriesOf(b)
        .filter((q) => q.language === "promql")
        .flatMap((q) =>
          [...q.text.matchAll(/\b(citywatch_[a-z0-9_]+)/g)].map((m) => ({
            metric: m[1] ?? "",
            where: `${b.uid} / ${q.panel.title}`,
          })),
        ),
    );
    expect(named.length).toBeGreaterThan(0);
    const missing = named.filter((n) => !exposed.has(n.metric));
    expect(missing).toEqual([]);
  });
});
