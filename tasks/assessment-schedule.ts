import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { PRIVATE_DIR, writeOwnerOnly } from "../infra/owner-only.js";
import type { AssessmentGrouping } from "../contracts/model/assessment.js";
import {
  assessFrom,
  type AssessmentSettings,
  type AssessmentSource,
  localDate,
  reportsCsv,
} from "./assessment.js";

/*
 * The monthly assessment run: on the first tick on or after local midnight of the 1st of a month
 * (the working calendar's time zone), the previous month's report, per district, street and team,
 * is written to `{dataDir}/assessments/YYYY-MM.json` and `YYYY-MM.csv`, owner-only (0600, in a
 * 0700 directory). Exactly once: a month whose two files exist is not written again, by this
 * process or after a restart; each file is written under a temporary name and renamed, so a crash
 * never leaves a half file that would count as written. A month that is missing (the process was
 * down on the 1st) is written at the next tick. The report is announced in the log; the outbox
 * carries task events only (see docs/tasks.md, Assessment).
 */

const GROUPINGS: readonly AssessmentGrouping[] = ["district", "street", "team"];

export interface AssessmentScheduleDeps {
  readonly store: AssessmentSource;
  readonly settings: AssessmentSettings;
  readonly dataDir: string;
  readonly log: Logger;
  readonly now: () => number;
  /** How often to look (the task service's tick, `tasks.tickMs`). */
  readonly intervalMs: number;
}

/** What a tick did: wrote the month's files, found them written, or failed. */
export type ScheduleOutcome =
  | { readonly status: "written"; readonly month: string; readonly files: readonly string[] }
  | { readonly status: "exists"; readonly month: string };

/** The month before the local month of `date` (YYYY-MM-DD): its first day, and the next month's. */
export function previousMonth(date: string): { month: string; from: string; to: string } {
  const [y, m] = date.split("-").map(Number) as [number, number];
  const py = m === 1 ? y - 1 : y;
  const pm = m === 1 ? 12 : m - 1;
  const pad = (n: number) => String(n).padStart(2, "0");
  return {
    month: `${py}-${pad(pm)}`,
    from: `${py}-${pad(pm)}-01`,
    to: `${y}-${pad(m)}-01`,
  };
}

export class AssessmentSchedule {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: AssessmentScheduleDeps) {}

  /** The directory the reports are written to. */
  get directory(): string {
    return join(this.deps.dataDir, "assessments");
  }

  start(): void {
    this.timer = setInterval(() => {
      try {
        this.tick();
      } catch (error) {
        this.deps.log.error(
          { err: (error as Error).message },
          "monthly assessment report not written; the next tick retries",
        );
      }
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Write the previous month's report unless it was written. */
  tick(): ScheduleOutcome {
    const now = this.deps.now();
    const timeZone = this.deps.settings.calendar.file.timeZone;
    const { month, from, to } = previousMonth(localDate(now, timeZone));
    const json = join(this.directory, `${month}.json`);
    const csv = join(this.directory, `${month}.csv`);
    if (existsSync(json) && existsSync(csv)) return { status: "exists", month };
    const reports = GROUPINGS.map((by) =>
      assessFrom(this.deps.store, { from, to, by }, this.deps.settings, now),
    );
    mkdirSync(this.directory, { recursive: true, mode: PRIVATE_DIR });
    const write = (file: string, text: string) => {
      const partial = `${file}.partial`;
      writeOwnerOnly(partial, text);
      renameSync(partial, file);
    };
    write(csv, reportsCsv(reports));
    write(
      json,
      `${JSON.stringify({ format: "citywatch-assessment-month/1", month, reports }, null, 2)}\n`,
    );
    this.deps.log.info(
      {
        month,
        files: [json, csv],
        received: reports[0]?.totals.received ?? 0,
        overdue: reports[0]?.totals.overdue ?? 0,
      },
      "monthly assessment report written",
    );
    return { status: "written", month, files: [json, csv] };
  }
}
