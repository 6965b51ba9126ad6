import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { z } from "zod";
import { DEFAULT_PARTITIONS } from "../../cluster/partition.js";
import { openPostgres, PostgresConnectError, redactUrl } from "../../infra/postgres/pool.js";
import { loadCitywatchConfig } from "../runtime/config.js";
import {
  type MigrateReport,
  MigrateRefusedError,
  migrateToPostgres,
} from "../runtime/migrate-postgres.js";

/*
 * `citywatch migrate --to postgres://…`: copy a stopped node's state into PostgreSQL
 * (cli/runtime/migrate-postgres.ts; docs/deploy.md, From one node to PostgreSQL).
 */

interface Flags {
  config?: string;
  dataDir?: string;
  to: string;
  schema?: string;
  partitions: number;
}

const Partitions = z.coerce.number().int().min(1).max(1_000_000);

function partitionsOption(value: string): number {
  const parsed = Partitions.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError("a whole number from 1 to 1,000,000");
  return parsed.data;
}

function render(report: MigrateReport, target: string): string {
  const lines = [
    `copied ${report.dataDir} into ${target} (schema version ${report.schemaVersion}):`,
    `  ${"FROM".padEnd(22)} ${"TO".padEnd(20)} ${"ROWS".padStart(9)} ${"COPIED".padStart(9)}  PAYLOAD BYTES`,
    ...report.tables.map(
      (t) =>
        `  ${`${t.file} ${t.table}`.padEnd(22)} ${t.target.padEnd(20)} ${String(t.rows).padStart(9)} ${String(t.copied).padStart(9)}` +
        (t.bytes === undefined ? "" : `  ${t.copiedBytes ?? 0} of ${t.bytes}`),
    ),
  ];
  if (report.notMoved.length > 0) {
    lines.push(
      "not copied (no PostgreSQL store for them yet; they stay in the data directory):",
      ...report.notMoved.map((f) => `  ${f.file}: ${f.holds}`),
    );
  }
  return `${lines.join("\n")}\n`;
}

export function migrateCommand(program: Command): void {
  program
    .command("migrate")
    .description(
      "copy a stopped node's alarm states, ingest state (inbox, commit ledger, dead letters) tasks (audit trail, evidence, events, webhook outbox) registry (sites, devices, service accounts, parties) and users (sessions, API tokens) from its data directory into PostgreSQL, verified by counts",
    )
    .requiredOption(
      "--to <url>",
      "the PostgreSQL database, postgres://user[:password]@host[:port]/database",
    )
    .option(
      "--schema <name>",
      "the schema to copy into (it must exist; default: the server's search_path)",
    )
    .option(
      "--partitions <n>",
      "the deployment's partition count, the same on every node",
      partitionsOption,
      DEFAULT_PARTITIONS,
    )
    .option("-c, --config <file>", "configuration file (YAML)")
    .option("--data-dir <dir>", "the data directory to copy from")
    .action(async (flags: Flags) => {
      const config = loadCitywatchConfig(flags);
      const pool = await openPostgres({
        url: flags.to,
        ...(flags.schema === undefined ? {} : { schema: flags.schema }),
        applicationName: "citywatch migrate",
        max: 2,
      }).catch((error: unknown) => {
        // A URL or schema name that is not one: say which flag, as for any bad argument.
        if (error instanceof PostgresConnectError || !(error instanceof Error)) throw error;
        throw new MigrateRefusedError(`--to / --schema: ${error.message}`);
      });
      try {
        const report = await migrateToPostgres({
          dataDir: config.dataDir,
          pool,
          partitions: flags.partitions,
          onProgress: ({ table, done, total }) => {
            if (done === total || done % 100_000 === 0)
              process.stderr.write(`${table}: ${done} of ${total} rows\n`);
          },
        });
        process.stdout.write(render(report, redactUrl(flags.to)));
      } finally {
        await pool.end();
      }
    });
}
