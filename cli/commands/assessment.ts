import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { AssessmentFormat, AssessmentPeriod } from "../../contracts/model/assessment.js";
import { writeOwnerOnly } from "../../infra/owner-only.js";
import { assessFrom, reportsCsv } from "../../tasks/assessment.js";
import { calendarOf } from "../../tasks/calendar/working-time.js";
import { TaskStore } from "../../tasks/store.js";
import { loadCitywatchConfig } from "../runtime/config.js";

/*
 * `citywatch assessment --from 2026-11-01 --to 2026-12-01 --by district|street|team
 *  [--format json|csv] [--out file]`: the assessment report of the teams (docs/tasks.md,
 * Assessment) from the data directory's tasks.db. The dates are local dates in the working
 * calendar's time zone (`tasks.calendar`, Asia/Shanghai by default): the period is
 * [from 00:00, to 00:00). The SLA limits and office hours are the configuration's. Without
 * --out the report goes to stdout; with it, to an owner-only file (0600). Exit 1 on bad input
 * or a data directory without a task store.
 */

interface Flags {
  config?: string;
  dataDir?: string;
  from: string;
  to: string;
  by: string;
  format: string;
  out?: string;
}

function fail(message: string): void {
  process.stderr.write(`citywatch assessment: ${message}\n`);
  process.exitCode = 1;
}

export function assessmentCommand(program: Command): void {
  program
    .command("assessment")
    .description(
      "the assessment report of the teams for a period of local dates (tasks filed in [from, to)): received, dispatched and handled on time, closed, overdue, reopened, false-positive rate, handling time, repeat offenders",
    )
    .option("-c, --config <file>", "configuration file (YAML)")
    .option("--data-dir <dir>", "data directory holding tasks.db")
    .requiredOption("--from <date>", "first local day of the period, YYYY-MM-DD (included)")
    .requiredOption("--to <date>", "local day after the period, YYYY-MM-DD (excluded)")
    .requiredOption("--by <grouping>", "district | street | team")
    .option("--format <format>", "json | csv", "json")
    .option("--out <file>", "write the report to this file (owner-only) instead of stdout")
    .action(async (flags: Flags) => {
      const period = AssessmentPeriod.safeParse({ from: flags.from, to: flags.to, by: flags.by });
      if (!period.success) {
        fail(
          period.error.issues
            .map((i) => `--${i.path.join(".") || "from"}: ${i.message}`)
            .join("; "),
        );
        return;
      }
      const format = AssessmentFormat.safeParse(flags.format);
      if (!format.success) {
        fail(`--format: ${format.error.issues[0]?.message ?? "invalid"}`);
        return;
      }
      const config = loadCitywatchConfig(flags);
      const file = join(config.dataDir, "tasks.db");
      if (!existsSync(file)) {
        fail(`no task store at ${file} (is --data-dir the data directory of citywatch start?)`);
        return;
      }
      const tasks = config.ingest.tasks;
      const store = new TaskStore(file);
      let text: string;
      try {
        const report = await assessFrom(
          store,
          period.data,
          { sla: tasks.sla, calendar: calendarOf(tasks.calendar) },
          Date.now(),
        );
        text =
          format.data === "csv" ? reportsCsv([report]) : `${JSON.stringify(report, null, 2)}\n`;
      } finally {
        store.close();
      }
      if (flags.out === undefined) {
        process.stdout.write(text);
        return;
      }
      try {
        writeOwnerOnly(flags.out, text);
      } catch (error) {
        fail(
          `--out ${flags.out}: cannot be written: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
        return;
      }
      process.stderr.write(`assessment report (${period.data.by}) written to ${flags.out}\n`);
    });
}
