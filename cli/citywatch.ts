#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import { ZodError } from "zod";
import { ConfigError, problemsOf, formatProblems } from "../contracts/index.js";
import { RulesError } from "../rules/app.js";
import { RegistryError } from "../registry/store.js";
import { type RunFlags, loadCitywatchConfig } from "./runtime/config.js";
import { createLogger } from "./runtime/logger.js";
import { dashboardsCommand } from "./commands/dashboards.js";
import { devicesCommand } from "./commands/devices.js";
import { edgeCommand } from "./commands/edge.js";
import { serve } from "./commands/serve.js";
import { simCommand } from "./commands/sim.js";
import { tokensCommand } from "./commands/tokens.js";

const program = new Command()
  .name("citywatch")
  .description("City sensor readings to enforcement cases, emergency tasks and maintenance tasks.")
  .version("0.1.0")
  .showHelpAfterError();

function runOptions(command: Command): Command {
  return command
    .option("-c, --config <file>", "configuration file (YAML); also CITYWATCH_CONFIG")
    .option("--data-dir <dir>", "data directory (registry, state); default ./data")
    .option("--host <address>", "address the MQTT listeners bind to; default 127.0.0.1")
    .option("--mqtt-port <port>", "MQTT/TCP port; default 18830")
    .option("--mqtts-port <port>", "MQTT/TLS port when --tls-cert/--tls-key are set; default 18831")
    .option("--ws-port <port>", "MQTT over WebSocket port; default 18832")
    .option("--http-port <port>", "HTTP port for /metrics and /healthz; default 18080")
    .option("--tls-cert <file>", "TLS certificate (PEM)")
    .option("--tls-key <file>", "TLS private key (PEM)")
    .option(
      "--redis-url <url>",
      "Redis for broker persistence and clustering, e.g. redis://127.0.0.1:6379",
    )
    .option("--log-level <level>", "fatal | error | warn | info | debug | trace | silent")
    .option("--pretty", "human-readable logs")
    .option("--store <type>", "sqlite (embedded, default) | influxdb")
    .option(
      "--influxdb-url <url>",
      "InfluxDB base URL, e.g. http://127.0.0.1:8086 (selects the InfluxDB store)",
    )
    .option(
      "--influxdb-api <v1|v2>",
      "v1: /write with database (InfluxDB 1.x); v2: /api/v2/write with org, bucket and token",
    )
    .option("--influxdb-database <db>", "v1 database; default citywatch")
    .option("--influxdb-token <token>", "v2 API token")
    .option("--influxdb-org <org>", "v2 organisation")
    .option("--influxdb-bucket <bucket>", "v2 bucket")
    .option(
      "--rules-dir <dir...>",
      "directories of local rule files, loaded after the default pack (docs/rules.md)",
    );
}

async function runServe(
  flags: RunFlags,
  options: { seedDemo: boolean; broker: boolean; ingest: boolean; demo?: boolean },
): Promise<void> {
  const config = loadCitywatchConfig(flags);
  const log = createLogger(config.log);
  await serve(config, log, options);
}

runOptions(program.command("start"))
  .description(
    "run everything in one process on embedded defaults: broker, ingest, API (demo registry when empty)",
  )
  .option("--demo", "also play the demo city scenario in this process (docs/simulators.md)")
  .action((flags: RunFlags & { demo?: boolean }) =>
    runServe(flags, { seedDemo: true, broker: true, ingest: true, demo: flags.demo === true }),
  );

runOptions(program.command("broker"))
  .description("run the MQTT broker alone (authentication from the registry in the data directory)")
  .action((flags: RunFlags) => runServe(flags, { seedDemo: false, broker: true, ingest: false }));

runOptions(program.command("ingest"))
  .description(
    "run the ingest and API alone, subscribed to ingest.mqtt.url (CITYWATCH_INGEST_MQTT_URL) with its service account",
  )
  .action((flags: RunFlags) => runServe(flags, { seedDemo: false, broker: false, ingest: true }));

dashboardsCommand(program);
devicesCommand(program);
simCommand(program);
tokensCommand(program);
edgeCommand(program);

function report(error: unknown): void {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
  } else if (error instanceof ZodError) {
    process.stderr.write(`${formatProblems("invalid input", problemsOf(error))}\n`);
  } else if (
    error instanceof RegistryError ||
    error instanceof InvalidArgumentError ||
    error instanceof RulesError
  ) {
    process.stderr.write(`citywatch: ${error.message}\n`);
  } else if (
    error instanceof Error &&
    /PORT_IN_USE$/.test(String((error as Error & { code?: unknown }).code))
  ) {
    process.stderr.write(`citywatch: ${error.message}\n`);
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
