import { resolve } from "node:path";
import type { Command } from "commander";
import type { Device, Site } from "../../contracts/index.js";
import {
  type BuildInput,
  DashboardError,
  GENERATED_DIR,
  buildDashboards,
  staleDashboards,
  writeDashboards,
} from "../../dashboards/index.js";
import { RulesError } from "../../ingest/app.js";
import { formatRuleProblems, loadRules } from "../../ingest/rules/load.js";
import { RegistryStore } from "../../registry/store.js";
import { builtInScenarios, loadScenario } from "../../simulators/index.js";
import { registryPath } from "../registry-file.js";

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

/** `citywatch dashboards build | check`: Grafana dashboards as code (docs/dashboards.md). */
export function dashboardsCommand(program: Command): void {
  const dashboards = program
    .command("dashboards")
    .description("Grafana dashboards as code: build the JSON, check the committed JSON is fresh");

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
}
