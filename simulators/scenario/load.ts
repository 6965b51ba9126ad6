/**
 * Reading scenario files. A scenario is named by a built-in name (`simulators/scenarios/*.yaml`)
 * or a path; every problem is reported by file and dotted path, all at once (ConfigError), as
 * configuration files are.
 */
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError, problemsOf, readConfigFile } from "../../contracts/index.js";
import { Scenario } from "./schema.js";

/** The directory of the built-in scenarios. */
export const BUILT_IN_DIR = fileURLToPath(new URL("../scenarios/", import.meta.url));

/** Names of the built-in scenarios, sorted. */
export function builtInScenarios(): string[] {
  return readdirSync(BUILT_IN_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -".yaml".length))
    .sort();
}

/** The file a scenario argument names: a built-in name, or a path to a YAML/JSON file. */
export function scenarioFile(nameOrFile: string): string {
  if (/^[a-z0-9-]+$/.test(nameOrFile)) {
    const builtIn = `${BUILT_IN_DIR}${nameOrFile}.yaml`;
    if (existsSync(builtIn)) return builtIn;
    if (!existsSync(nameOrFile)) {
      throw new ConfigError(nameOrFile, [
        {
          path: "(scenario)",
          message: `no built-in scenario ${nameOrFile} and no such file; built-in: ${builtInScenarios().join(", ")}`,
        },
      ]);
    }
  }
  return nameOrFile;
}

/** Parse an already-read scenario document; `source` names it in problems. */
export function parseScenario(source: string, value: unknown): Scenario {
  const parsed = Scenario.safeParse(value);
  if (!parsed.success) throw new ConfigError(source, problemsOf(parsed.error));
  return parsed.data;
}

/**
 * Load and validate a scenario by built-in name or path. `extraEvents` (e.g. faults given on
 * the command line) are appended to the file's events and validated with them.
 */
export function loadScenario(
  nameOrFile: string,
  options: { extraEvents?: readonly unknown[] } = {},
): Scenario {
  const file = scenarioFile(nameOrFile);
  const read = readConfigFile(file);
  if (read.problems.length > 0) throw new ConfigError(file, read.problems);
  const extra = options.extraEvents ?? [];
  if (extra.length === 0) return parseScenario(file, read.tree);
  const events: unknown = read.tree["events"] ?? [];
  return parseScenario(`${file} (with the command line's faults)`, {
    ...read.tree,
    events: [...(Array.isArray(events) ? (events as unknown[]) : [events]), ...extra],
  });
}
