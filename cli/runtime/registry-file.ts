import { join, resolve } from "node:path";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import {
  ConfigError,
  localDate,
  problemsOf,
  RegistryFile,
  resolveRelativeDates,
} from "../../contracts/index.js";
import { RegistryStore } from "../../registry/store.js";
import { asyncRegistryStore, type AsyncRegistryStore } from "../../registry/store-port.js";
import { PostgresRegistryStore } from "../../registry/store-postgres.js";
import { loadCitywatchConfig } from "./config.js";
import { type DatabaseFlags, DatabaseError, databaseOf, openSharedDatabase } from "./database.js";
import { PartiesFile } from "../../contracts/model/registry.js";

/** The registry database inside the data directory. */
export function registryPath(dataDir: string): string {
  return join(resolve(dataDir), "registry.db");
}

/**
 * Read and validate a registry YAML/JSON file; every problem is listed on failure. Relative dates
 * (`{{today + 1y}}`, contracts/model/registry-dates.ts) are resolved to the calendar day of
 * `nowMs` on this machine: the day the file is imported or seeded.
 */
export function readRegistryFile(file: string, nowMs: number = Date.now()): RegistryFile {
  let value: unknown;
  try {
    value = parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(file, [
      { path: "(file)", message: (error as Error).message.split("\n")[0] ?? "unreadable" },
    ]);
  }
  const resolved = resolveRelativeDates(value ?? {}, localDate(nowMs));
  if (resolved.problems.length > 0) throw new ConfigError(file, resolved.problems);
  const parsed = RegistryFile.safeParse(resolved.value);
  if (!parsed.success) throw new ConfigError(file, problemsOf(parsed.error));
  return parsed.data;
}

/** The demo city's registry, seeded into an empty registry by `citywatch start`. */
export const DEMO_REGISTRY_FILE = new URL(
  "../../simulators/demo-city/registry.yaml",
  import.meta.url,
).pathname;

/**
 * Seed the demo city into an empty registry (no device, no service account), its relative dates
 * resolved to the day of `nowMs`; undefined when the registry was not empty. Its devices are on
 * standby (cli/runtime/standby.ts) until they first connect.
 */
export function seedDemoCity(
  registry: RegistryStore,
  nowMs: number,
): ReturnType<RegistryStore["importFile"]> | undefined {
  const demo = readRegistryFile(DEMO_REGISTRY_FILE, nowMs);
  if (registry.countDevices() > 0 || registry.listServiceAccounts().length > 0) return undefined;
  return registry.importFile(demo);
}

/**
 * Run `action` on the registry the command's flags name, then close it: the cluster's shared
 * PostgreSQL with `--database-url` / CITYWATCH_DATABASE_URL (and `--database-schema` /
 * CITYWATCH_DATABASE_SCHEMA), migrated first as `openSharedDatabase` does; otherwise
 * `registry.db` in the configured data directory (`--config`, `--data-dir`). A database that
 * cannot be used rejects with a DatabaseError, before `action` runs.
 */
export async function withSharedRegistry<T>(
  flags: DatabaseFlags & { config?: string; dataDir?: string },
  action: (registry: AsyncRegistryStore) => Promise<T>,
): Promise<T> {
  const database = databaseOf(flags);
  if (database === undefined) {
    const config = loadCitywatchConfig(flags);
    const registry = asyncRegistryStore(new RegistryStore(registryPath(config.dataDir)));
    try {
      return await action(registry);
    } finally {
      await registry.close();
    }
  }
  const pool = await openSharedDatabase(database);
  const registry = new PostgresRegistryStore(pool);
  try {
    return await action(registry);
  } finally {
    await registry.close();
    await pool.end();
  }
}

/**
 * A command's action whose DatabaseError (the shared database cannot be used) is printed as
 * `citywatch <command>: <message>` and exits 1, as `citywatch users` and `tokens` say it; any
 * other error goes on to cli/citywatch.ts.
 */
export function refusingDatabaseErrors<A extends unknown[]>(
  command: string,
  action: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (!(error instanceof DatabaseError)) throw error;
      process.stderr.write(`citywatch ${command}: ${error.message}\n`);
      process.exitCode = 1;
    }
  };
}

/**
 * Read the `parties:` list of a registry YAML/JSON file (its other lists are left to
 * `citywatch devices import`); every problem is listed on failure.
 */
export function readPartiesFile(file: string): PartiesFile {
  let value: unknown;
  try {
    value = parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new ConfigError(file, [
      { path: "(file)", message: (error as Error).message.split("\n")[0] ?? "unreadable" },
    ]);
  }
  const parsed = PartiesFile.safeParse(value ?? {});
  if (!parsed.success) throw new ConfigError(file, problemsOf(parsed.error));
  return parsed.data;
}

/**
 * The registry of the task system's data directory (`{dataDir}/registry.db`): the party routes
 * of the API (tasks/http/parties.ts) open it with this.
 */
export function openPartyRegistry(dataDir: string): RegistryStore {
  return new RegistryStore(join(resolve(dataDir), "registry.db"));
}
