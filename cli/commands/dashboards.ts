import { resolve } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import type { Device, Site } from "../../contracts/index.js";
import {
  type BuildInput,
  DashboardError,
  GENERATED_DIR,
  type QueryCheck,
  buildDashboards,
  loadGeneratedDashboards,
  staleDashboards,
  unexposedMetrics,
  verifyInfluxQL,
  writeDashboards,
} from "../../dashboards/index.js";
import { RulesError } from "../../rules/app.js";
import { formatRuleProblems, loadRules } from "../../rules/load.js";
import { RegistryStore } from "../../registry/store.js";
import { builtInScenarios, loadScenario } from "../../simulators/index.js";
import { type RunFlags, loadCitywatchConfig } from "../runtime/config.js";
import { registryPath } from "../runtime/registry-file.js";

interface BuildFlags {
  dataDir?: string;
  rulesDir?: string[];
  out?: string;
}

/**
 * The registry the dashboards are drawn for: a running system's (`--data-dir`), or by default the
 * simulated city of the built-in scenarios, which is what the committed JSON is built from.
 */
function registryOf(dataDir: string | undefined): Pick<BuildInput, "sites" | "devices"> {
  if (dataDir !== undefined) {
    const registry = new RegistryStore(registryPath(dataDir));
    try {
      return { sites: registry.listSites(), devices: registry.listDevices() };
    } finally {
      registry.close();
    }
  }
  const sites = new Map<string, Site>();
  const devices = new Map<string, Device>();
  for (const name of builtInScenarios()) {
    const { layout } = loadScenario(name);
    for (const site of layout.sites) sites.set(site.id, site);
    for (const device of layout.devices) devices.set(device.id, device);
  }
  return { sites: [...sites.values()], devices: [...devices.values()] };
}

/** What `build` and `check` draw from: the rule pack (and local rules) and a registry. */
export function dashboardInput(flags: BuildFlags = {}): BuildInput {
  const load = loadRules({ directories: flags.rulesDir ?? [] });
  if (!load.ok) throw new RulesError(formatRuleProblems(load.problems));
  return { rules: load.rules.map((r) => r.rule), ...registryOf(flags.dataDir) };
}

/** Build errors (a limit the pack lacks) are the user's to fix, not a crash. */
function reportingDashboardErrors(action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!(error instanceof DashboardError)) throw error;
    process.stderr.write(`citywatch dashboards: ${error.message}\n`);
    process.exitCode = 1;
  }
}

interface VerifyFlags extends Pick<
  RunFlags,
  "config" | "influxdbUrl" | "influxdbDatabase" | "influxdbToken"
> {
  metricsUrl?: string;
  from?: string;
  to?: string;
  dir?: string;
}

/** An ISO time or epoch milliseconds. */
function instant(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError(`not a time: ${text}`);
  return ms;
}

function line(c: QueryCheck): string {
  const head = `${c.problem === undefined ? "ok  " : "FAIL"} ${c.dashboard} / ${c.panel} / ${c.refId}`;
  return c.problem === undefined
    ? `${head}: ${c.values} values\n`
    : `${head}: ${c.problem}\n      ${c.query}\n`;
}

/** Every panel query against the configured InfluxDB (and /metrics); exit 1 on any problem. */
async function verify(flags: VerifyFlags): Promise<void> {
  const store = loadCitywatchConfig(flags).ingest.store;
  if (store.type !== "influxdb") {
    throw new InvalidArgumentError(
      "verify needs InfluxDB: --influxdb-url or CITYWATCH_INFLUXDB_URL (the dashboards read InfluxDB)",
    );
  }
  const toMs = flags.to === undefined ? Date.now() : instant(flags.to);
  const fromMs = flags.from === undefined ? toMs - 24 * 3_600_000 : instant(flags.from);
  // About what Grafana picks for a full-width panel: a few hundred points over the range.
  const intervalMs = Math.max(1_000, Math.round((toMs - fromMs) / 300));
  const boards = loadGeneratedDashboards(resolve(flags.dir ?? GENERATED_DIR));
  const checks = await verifyInfluxQL(
    boards,
    {
      url: store.url,
      database: store.database ?? store.bucket ?? "citywatch",
      ...(store.token !== undefined ? { token: store.token } : {}),
      ...(store.username !== undefined ? { username: store.username } : {}),
      ...(store.password !== undefined ? { password: store.password } : {}),
    },
    { fromMs, toMs, intervalMs },
  );
  if (flags.metricsUrl !== undefined) {
    const exposition = await (await fetch(flags.metricsUrl)).text();
    checks.push(...unexposedMetrics(boards, exposition));
  } else {
    process.stderr.write(
      "PromQL not checked: give --metrics-url http://<citywatch>:18080/metrics\n",
    );
  }
  for (const c of checks) process.stdout.write(line(c));
  const failed = checks.filter((c) => c.problem !== undefined).length;
  process.stdout.write(`${checks.length - failed} ok, ${failed} failed\n`);
  if (failed > 0) process.exitCode = 1;
}

/** `citywatch dashboards build | check | verify`: Grafana dashboards as code (docs/dashboards.md). */
export function dashboardsCommand(program: Command): void {
  const dashboards = program
    .command("dashboards")
    .description(
      "Grafana dashboards as code: build the JSON, check it is fresh, verify every query on InfluxDB",
    );

  dashboards
    .command("build")
    .description(
      "write the dashboards and the device gazetteer (default: dashboards/generated/, for the built-in simulated city)",
    )
    .option(
      "--data-dir <dir>",
      "draw river levels and device positions from this system's registry",
    )
    .option("--rules-dir <dir...>", "local rule directories, loaded after the default pack")
    .option("--out <dir>", "output directory")
    .action((flags: BuildFlags) =>
      reportingDashboardErrors(() => {
        const written = writeDashboards(
          buildDashboards(dashboardInput(flags)),
          resolve(flags.out ?? GENERATED_DIR),
        );
        for (const file of written) process.stdout.write(`${file}\n`);
      }),
    );

  dashboards
    .command("check")
    .description("exit 1 when dashboards/generated/ differs from a fresh build (run build, commit)")
    .action(() =>
      reportingDashboardErrors(() => {
        const problems = staleDashboards(buildDashboards(dashboardInput()));
        if (problems.length === 0) {
          process.stdout.write("dashboards/generated/ is up to date\n");
          return;
        }
        process.stderr.write(
          `citywatch dashboards check: ${problems.join("; ")}. Run: citywatch dashboards build\n`,
        );
        process.exitCode = 1;
      }),
    );

  dashboards
    .command("verify")
    .description(
      "run every panel's InfluxQL on InfluxDB as Grafana would; exit 1 on an error or an empty panel",
    )
    .option("-c, --config <file>", "configuration file (YAML); also CITYWATCH_CONFIG")
    .option("--influxdb-url <url>", "InfluxDB base URL; also CITYWATCH_INFLUXDB_URL")
    .option(
      "--influxdb-database <db>",
      "InfluxQL database (2.x: mapped by DBRP); default citywatch",
    )
    .option("--influxdb-token <token>", "2.x token; also CITYWATCH_INFLUXDB_TOKEN")
    .option(
      "--metrics-url <url>",
      "a running citywatch's /metrics, to check the PromQL metric names",
    )
    .option("--from <time>", "start of the range (ISO or epoch ms); default 24 h before --to")
    .option("--to <time>", "end of the range (ISO or epoch ms); default now")
    .option("--dir <dir>", "dashboards directory; default dashboards/generated/")
    .action((flags: VerifyFlags) => verify(flags));
}
