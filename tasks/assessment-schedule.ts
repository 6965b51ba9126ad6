import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { backoffDelayMs } from "../infra/backoff.js";
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
 * down on the 1st) is written at the next tick.
 *
 * Announced, once per receiver: every webhook that takes all events (no `kinds` filter) is sent
 * `assessment.published` with the month's reports, signed as task events are, with
 * `Idempotency-Key: citywatch-assessment-YYYY-MM`. Durable like the outbox, on the month's own
 * files: the receivers that answered 2xx are listed in `YYYY-MM.announced.json` (written under a
 * temporary name and renamed), so a restart sends only to those that have not; a refused or
 * failed attempt is retried with exponential backoff (equal jitter, as the outbox) until the
 * receiver accepts or the next month's report takes its place (then logged as not announced).
 */

/** Someone the month's report is announced to (a webhook taking every event). */
export interface AssessmentReceiver {
  readonly name: string;
  /** Resolves when the receiver accepted (2xx); rejects otherwise. */
  deliver(announcement: { readonly month: string; readonly body: string }): Promise<void>;
}

/** The idempotency key of a month's announcement: the same on every attempt and restart. */
export const announcementKey = (month: string): string => `citywatch-assessment-${month}`;

const GROUPINGS: readonly AssessmentGrouping[] = ["district", "street", "team"];

export interface AssessmentScheduleDeps {
  readonly store: AssessmentSource;
  readonly settings: AssessmentSettings;
  readonly dataDir: string;
  readonly log: Logger;
  readonly now: () => number;
  /** How often to look (the task service's tick, `tasks.tickMs`). */
  readonly intervalMs: number;
  /** Who hears of each month's report; absent: nobody (the log only). */
  readonly receivers?: readonly AssessmentReceiver[] | undefined;
  /** Retry delays of a failed announcement (the outbox's backoff settings). */
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number } | undefined;
  readonly random?: () => number;
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
  /** Per receiver of the month being announced: attempts so far, next attempt, one in flight. */
  private readonly attempts = new Map<
    string,
    { month: string; count: number; nextMs: number; busy: boolean }
  >();
  private readonly sending = new Set<Promise<void>>();
  /** The tick running now, if any (a slow store does not overlap ticks). */
  private ticking: Promise<void> | undefined;

  constructor(private readonly deps: AssessmentScheduleDeps) {}

  /** The directory the reports are written to. */
  get directory(): string {
    return join(this.deps.dataDir, "assessments");
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.ticking !== undefined) return;
      this.ticking = this.tick()
        .then(
          () => undefined,
          (error: unknown) => {
            this.deps.log.error(
              { err: (error as Error).message },
              "monthly assessment report not written; the next tick retries",
            );
          },
        )
        .finally(() => {
          this.ticking = undefined;
        });
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  /** Stop ticking; resolves when announcements in flight have settled. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
    this.timer = undefined;
    await Promise.allSettled([...this.sending]);
  }

  /** Write the previous month's report unless it was written. */
  async tick(): Promise<ScheduleOutcome> {
    const now = this.deps.now();
    const timeZone = this.deps.settings.calendar.file.timeZone;
    const { month, from, to } = previousMonth(localDate(now, timeZone));
    const json = join(this.directory, `${month}.json`);
    const csv = join(this.directory, `${month}.csv`);
    if (existsSync(json) && existsSync(csv)) {
      this.announce(month, json, now);
      return { status: "exists", month };
    }
    const reports = await Promise.all(
      GROUPINGS.map((by) => assessFrom(this.deps.store, { from, to, by }, this.deps.settings, now)),
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
    this.announce(month, json, now);
    return { status: "written", month, files: [json, csv] };
  }

  /** The receivers that accepted a month's announcement (its `.announced.json`). */
  announcedTo(month: string): string[] {
    const file = join(this.directory, `${month}.announced.json`);
    if (!existsSync(file)) return [];
    try {
      const parsed = JSON.parse(readFileSync(file, "utf8")) as { receivers?: unknown };
      return Array.isArray(parsed.receivers)
        ? parsed.receivers.filter((r): r is string => typeof r === "string")
        : [];
    } catch {
      return [];
    }
  }

  /** Send the month's report to each receiver that has not accepted it and is due. */
  private announce(month: string, json: string, now: number): void {
    const receivers = this.deps.receivers ?? [];
    if (receivers.length === 0) return;
    const accepted = new Set(this.announcedTo(month));
    for (const receiver of receivers) {
      if (accepted.has(receiver.name)) continue;
      let state = this.attempts.get(receiver.name);
      if (state !== undefined && state.month !== month && !state.busy) {
        this.deps.log.warn(
          { month: state.month, receiver: receiver.name, attempts: state.count },
          "monthly assessment report not announced: the next month's report takes its place",
        );
        state = undefined;
      }
      state ??= { month, count: 0, nextMs: now, busy: false };
      this.attempts.set(receiver.name, state);
      if (state.busy || now < state.nextMs) continue;
      const attempt = state;
      attempt.busy = true;
      const body = `{"type":"assessment.published",${readFileSync(json, "utf8").trim().slice(1)}`;
      const sent: Promise<void> = receiver
        .deliver({ month, body })
        .then(
          () => {
            this.accepted(month, receiver.name);
            this.attempts.delete(receiver.name);
            this.deps.log.info({ month, receiver: receiver.name }, "monthly assessment announced");
          },
          (error: unknown) => {
            attempt.count += 1;
            const { baseMs, maxMs } = this.deps.backoff ?? { baseMs: 1_000, maxMs: 300_000 };
            attempt.nextMs =
              this.deps.now() +
              backoffDelayMs(
                attempt.count - 1,
                { baseMs, capMs: maxMs, jitter: "equal" },
                this.deps.random,
              );
            this.deps.log.warn(
              {
                month,
                receiver: receiver.name,
                attempts: attempt.count,
                err: (error as Error).message,
              },
              "monthly assessment announcement refused; retried later",
            );
          },
        )
        .finally(() => {
          attempt.busy = false;
          this.sending.delete(sent);
        });
      this.sending.add(sent);
    }
  }

  private accepted(month: string, receiver: string): void {
    const receivers = [...new Set([...this.announcedTo(month), receiver])];
    const file = join(this.directory, `${month}.announced.json`);
    writeOwnerOnly(`${file}.partial`, `${JSON.stringify({ month, receivers }, null, 2)}\n`);
    renameSync(`${file}.partial`, file);
  }
}
