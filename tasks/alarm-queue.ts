import type { Logger } from "pino";
import { backoffDelayMs } from "../infra/backoff.js";

/*
 * The rules driver hands each alarm decision over synchronously (TaskSink.handleAlarm), from the
 * middle of an evaluation; the task store answers asynchronously (PostgreSQL, or tasks.db taking
 * turns). This queue sits between them:
 *
 * - **Order.** Decisions are applied one at a time, in the order they were handed over, so a
 *   raise is filed before the repeat or clear that follows it.
 * - **Bound.** At most `maxPending` decisions wait. When full, a new decision is refused: logged
 *   with its rule and subject and counted (`citywatch_tasks_alarm_queue_dropped_total`,
 *   reason `full`). The decisions already waiting are older and go first; an open alarm that
 *   keeps holding is raised again by its next repeat.
 * - **Retries.** A decision the store refused (a database out of reach) is tried again, the
 *   head of the queue waiting with equal-jitter backoff, at most `maxAttempts` times; then it
 *   is logged and counted (reason `failed`) and the next one goes. Later decisions wait behind
 *   it meanwhile, so the order holds across an outage.
 * - **Stop.** `stop()` refuses new decisions and applies those waiting, once each, without
 *   retry waits (the process is ending: a failure is logged and counted at once).
 * - **Handled.** `handled()` resolves once every decision handed over before the call has been
 *   applied or given up, whatever came after it: the rules save an alarm's state only then, so
 *   that a process killed with decisions waiting here has not saved the states that made them
 *   (rules/driver.ts, store).
 *
 * The depth is a gauge (`citywatch_tasks_alarm_queue_depth`).
 */

export interface AlarmQueueOptions {
  /** Decisions that may wait at once; a new one beyond is refused. */
  readonly maxPending: number;
  /** Attempts per decision before it is given up. */
  readonly maxAttempts: number;
  /** Backoff between attempts: the first ceiling and the cap. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
}

export const ALARM_QUEUE_DEFAULTS: AlarmQueueOptions = {
  maxPending: 10_000,
  maxAttempts: 6,
  retryBaseMs: 500,
  retryMaxMs: 8_000,
};

export interface AlarmQueueDeps<T> {
  readonly apply: (item: T) => Promise<void>;
  /** How the log names an item (rule, subject, decision). */
  readonly describe: (item: T) => Record<string, unknown>;
  readonly log: Logger;
  readonly dropped: (reason: "full" | "failed") => void;
  readonly options?: Partial<AlarmQueueOptions> | undefined;
  readonly random?: () => number;
}

export class AlarmQueue<T> {
  private readonly items: T[] = [];
  private head = 0;
  /** The drain under way, if any (set before it starts: an apply may push synchronously). */
  private draining = false;
  private running: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private readonly options: AlarmQueueOptions;
  /** Decisions handed over (accepted) and done with (applied or given up) since start. */
  private accepted = 0;
  private done = 0;
  /** handled() callers, by the count of decisions done they wait for (ascending). */
  private readonly waiters: Array<{ readonly until: number; readonly resolve: () => void }> = [];

  constructor(private readonly deps: AlarmQueueDeps<T>) {
    this.options = { ...ALARM_QUEUE_DEFAULTS, ...deps.options };
  }

  /** Decisions waiting (the one being applied included). */
  depth(): number {
    return this.items.length - this.head;
  }

  /** Hand a decision over; false when it was refused (the queue full, or stopping). */
  push(item: T): boolean {
    if (this.stopping || this.depth() >= this.options.maxPending) {
      this.deps.dropped("full");
      this.deps.log.error(
        { ...this.deps.describe(item), bound: this.options.maxPending, stopping: this.stopping },
        this.stopping
          ? "alarm decision refused: the task service is stopping"
          : "alarm decision refused: the task service's queue is full (the task store is slow or out of reach)",
      );
      return false;
    }
    this.items.push(item);
    this.accepted++;
    // The drain ends in the same tick as it finds nothing left: no item slips in between.
    if (!this.draining) {
      this.draining = true;
      this.running = this.drain();
    }
    return true;
  }

  /**
   * Resolves once every decision handed over before this call has been applied or given up
   * (later ones are not waited for; settled() waits for the queue to be empty).
   */
  handled(): Promise<void> {
    if (this.done >= this.accepted) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ until: this.accepted, resolve }));
  }

  /** Resolves once every decision handed over so far has been applied or given up. */
  async settled(): Promise<void> {
    while (this.draining) await this.running;
  }

  /** Refuse new decisions and apply those waiting, without retry waits. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.settled();
  }

  private async drain(): Promise<void> {
    while (this.head < this.items.length) {
      const item = this.items[this.head] as T;
      await this.applyWithRetries(item);
      this.head++;
      this.done++;
      while (this.waiters.length > 0 && (this.waiters[0]?.until ?? Infinity) <= this.done)
        this.waiters.shift()?.resolve();
      if (this.head >= 1024 && this.head * 2 >= this.items.length) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
    }
    this.items.length = 0;
    this.head = 0;
    this.draining = false;
  }

  private async applyWithRetries(item: T): Promise<void> {
    const { maxAttempts, retryBaseMs, retryMaxMs } = this.options;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.apply(item);
        return;
      } catch (error) {
        const last = attempt >= maxAttempts || this.stopping;
        this.deps.log.error(
          { ...this.deps.describe(item), err: (error as Error).message, attempt, maxAttempts },
          last
            ? "task store refused an alarm decision; given up"
            : "task store refused an alarm decision; trying again",
        );
        if (last) {
          this.deps.dropped("failed");
          return;
        }
        const delay = backoffDelayMs(
          attempt - 1,
          { baseMs: retryBaseMs, capMs: retryMaxMs, jitter: "equal" },
          this.deps.random,
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }
}
