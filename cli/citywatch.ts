#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import { ZodError } from "zod";
import { ConfigError, problemsOf, formatProblems } from "../contracts/index.js";
import { RulesError } from "../rules/app.js";
import { RegistryError } from "../registry/store.js";
import { isDiskFull } from "../ingest/gate.js";
import {
  BROKER_OPTIONS,
  CLUSTER_OPTIONS,
  COMMON_OPTIONS,
  INGEST_OPTIONS,
  INGEST_SOURCE_OPTIONS,
  type RunFlags,
  loadCitywatchConfig,
  withOptions,
} from "./runtime/config.js";
import { createLogger } from "./runtime/logger.js";
import { dashboardsCommand } from "./commands/dashboards.js";
import { devicesCommand } from "./commands/devices.js";
import { edgeCommand } from "./commands/edge.js";
import { evidenceCommand } from "./commands/evidence.js";
import { serve } from "./commands/serve.js";
import { serveCluster } from "./commands/serve-cluster.js";
import { DatabaseError } from "./runtime/database.js";
import { rulesCommand } from "./commands/rules.js";
import { simCommand } from "./commands/sim.js";
import { sitesCommand } from "./commands/sites.js";
import { tokensCommand } from "./commands/tokens.js";
import { usersCommand } from "./commands/users.js";
import { partiesCommand } from "./commands/parties.js";
import { assessmentCommand } from "./commands/assessment.js";
import { migrateCommand } from "./commands/migrate.js";
import { MigrateRefusedError } from "./runtime/migrate-postgres.js";
import { PostgresConnectError } from "../infra/postgres/pool.js";
import { MigrationRefusedError } from "../infra/postgres/migrate.js";

const program = new Command()
  .name("citywatch")
  .description("City sensor readings to enforcement cases, emergency tasks and maintenance tasks.")
  .version("0.1.0")
  .showHelpAfterError();

async function runServe(
  flags: RunFlags,
  options: { seedDemo: boolean; broker: boolean; ingest: boolean; demo?: boolean },
): Promise<void> {
  const config = loadCitywatchConfig(flags);
  const log = createLogger(config.log);
  if (config.cluster.databaseUrl !== undefined) {
    // One node of a cluster runs the broker and the rest together (docs/cluster.md).
    if (!options.broker || !options.ingest || options.demo === true)
      throw new ConfigError("configuration", [
        {
          path: "cluster.databaseUrl",
          message:
            "a cluster node is `citywatch start` (broker, ingest, rules, tasks and API in one process) without --demo; unset CITYWATCH_DATABASE_URL for this command",
        },
      ]);
    await serveCluster(config, log);
    return;
  }
  await serve(config, log, options);
}

// Each command takes the option sets of what it runs: the broker's listeners, the ingest's store,
// rules and API, and for the ingest alone the broker it subscribes to.
withOptions(
  program.command("start"),
  COMMON_OPTIONS,
  BROKER_OPTIONS,
  INGEST_OPTIONS,
  CLUSTER_OPTIONS,
)
  .description(
    "run everything in one process on embedded defaults: broker, ingest, rules, tasks, API (demo registry when empty); with --database-url, one node of a cluster on a shared PostgreSQL",
  )
  .option("--demo", "also play the demo city scenario in this process (docs/simulators.md)")
  .action((flags: RunFlags & { demo?: boolean }) =>
    runServe(flags, { seedDemo: true, broker: true, ingest: true, demo: flags.demo === true }),
  );

withOptions(program.command("broker"), COMMON_OPTIONS, BROKER_OPTIONS)
  .description(
    "run the MQTT broker alone (authentication from the registry in the data directory; /metrics and /healthz on the HTTP port)",
  )
  .action((flags: RunFlags) => runServe(flags, { seedDemo: false, broker: true, ingest: false }));

withOptions(program.command("ingest"), COMMON_OPTIONS, INGEST_OPTIONS, INGEST_SOURCE_OPTIONS)
  .description(
    "run the ingest, rules, tasks and API alone, subscribed to a broker elsewhere with the ingest service account (--broker-url and --broker-password-file, or CITYWATCH_INGEST_MQTT_URL and CITYWATCH_INGEST_MQTT_PASSWORD)",
  )
  .action((flags: RunFlags) => runServe(flags, { seedDemo: false, broker: false, ingest: true }));

dashboardsCommand(program);
devicesCommand(program);
sitesCommand(program);
rulesCommand(program);
simCommand(program);
tokensCommand(program);
usersCommand(program);
partiesCommand(program);
edgeCommand(program);
evidenceCommand(program);
assessmentCommand(program);
migrateCommand(program);

function report(error: unknown): void {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
  } else if (error instanceof ZodError) {
    process.stderr.write(`${formatProblems("invalid input", problemsOf(error))}\n`);
  } else if (
    error instanceof RegistryError ||
    error instanceof InvalidArgumentError ||
    error instanceof RulesError ||
    error instanceof MigrateRefusedError ||
    error instanceof MigrationRefusedError ||
    error instanceof PostgresConnectError ||
    error instanceof DatabaseError
  ) {
    process.stderr.write(`citywatch: ${error.message}\n`);
  } else if (
    error instanceof Error &&
    /(PORT_IN_USE|DISK_FULL)$/.test(String((error as Error & { code?: unknown }).code))
  ) {
    process.stderr.write(`citywatch: ${error.message}\n`);
  } else if (error instanceof Error && isDiskFull(error)) {
    // A file of the data directory could not be opened or grown (SQLITE_IOERR_SHMSIZE, …).
    const code = String((error as Error & { code?: unknown }).code);
    process.stderr.write(
      `citywatch: disk full: ${error.message} (${code}); free space in the data directory and start again\n`,
    );
  } else {
    throw error;
  }
  process.exitCode = 1;
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  report(error);
}
