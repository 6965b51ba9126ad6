import type { Logger } from "pino";
import type { TaskEvent } from "../../contracts/model/tasks.js";
import type { TaskKind } from "../../contracts/model/topics.js";
import { backoffDelayMs } from "../../infra/backoff.js";
import type { NotifyMetrics } from "./metrics.js";

/*
 * The durable outbox: a notification is a row written in the same transaction as the task
 * change it announces, and deleted only when its target accepted it. Delivery is in order per
 * target, one at a time (a receiver sees a task's changes in the order they happened); a failed
 * attempt is retried with exponential backoff and jitter. Bounded per target: see
 * `tasks.outbox.maxPending` in contracts/config/tasks.ts for what happens at the bound.
 */

export interface OutboxTarget {
  /** `mqtt` or a webhook's name. */
  readonly name: string;
  /** Only events of tasks of these kinds (absent: all). */
  readonly kinds?: readonly TaskKind[] | undefined;
  /** Only the events this accepts (absent: all of its kinds), e.g. one task's closing event. */
  readonly accepts?: ((event: TaskEvent) => boolean) | undefined;
  deliver(event: TaskEvent): Promise<void>;
}

export interface OutboxOptions {
  readonly maxPending: number;
  readonly maxAttempts: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

/** A notification waiting in the outbox for one target. */
export interface OutboxRow {
  readonly id: number;
  readonly eventId: number;
  readonly target: string;
  readonly attempts: number;
  readonly nextMs: number;
}

/**
 * Where the outbox keeps its rows: the task store (AsyncTaskStore), rows enqueued in the task
 * change's own transaction (its view is passed to `enqueue`).
 */
export interface OutboxStore {
  enqueue(eventId: number, target: string, nowMs: number): Promise<void>;
  outboxDepths(): Promise<Map<string, number>>;
  outboxHead(target: string): Promise<OutboxRow | undefined>;
  event(id: number): Promise<TaskEvent | undefined>;
  /** Remove a delivered notification; false when it was already gone. */
  delivered(outboxId: number): Promise<boolean>;
  retryLater(outboxId: number, attempts: number, nextMs: number, error: string): Promise<void>;
  /** Move a notification to the dead outbox; false when it was gone. */
  bury(outboxId: number, nowMs: number, why: string): Promise<boolean>;
}

export interface OutboxDeps {
  readonly store: OutboxStore;
  readonly targets: readonly OutboxTarget[];
  readonly options: OutboxOptions;
  readonly metrics: NotifyMetrics;
  readonly log: Logger;
  readonly now: () => number;
  readonly random?: () => number;
}

/**
 * Delay before attempt `attempts + 1`: min(max, base·2^(attempts−1)), with equal jitter
 * (infra/backoff.ts), uniform in [ceiling/2, ceiling). Equal jitter, not full: one outbox sends to
 * each receiver, one notification at a time, so there is no crowd to spread, and every wait must
 * be worth something. Under full jitter a refused connection could come back at ~0 ms, and a run
 * of small draws would spend `maxAttempts` in moments and bury the event while the receiver was
 * restarting; equal jitter guarantees at least half of each ceiling between attempts.
 */
export function backoffMs(
  attempts: number,
  base: number,
  max: number,
  random: () => number,
): number {
  return backoffDelayMs(attempts - 1, { baseMs: base, capMs: max, jitter: "equal" }, random);
}

export class Outbox {
  private readonly depth = new Map<string, number>();
  private readonly busy = new Set<string>();
  /** Targets kicked while busy: pumped again when the current round ends, so no wake-up is lost. */
  private readonly again = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Set<Promise<void>>();
  private running = false;
  private readonly random: () => number;

  constructor(private readonly deps: OutboxDeps) {
    this.random = deps.random ?? Math.random;
    deps.metrics.observeNotifications({ outbox: () => this.depth });
  }

  /** Targets a task's events go to. */
  private targetsFor(kind: TaskKind): OutboxTarget[] {
    return this.deps.targets.filter((t) => t.kinds === undefined || t.kinds.includes(kind));
  }

  /**
   * Queue an event for every target that wants it: `tx` is the task change's transaction. At
   * the bound the target's oldest pending notification is moved to the dead outbox.
   */
  async enqueue(
    event: TaskEvent,
    tx: Pick<OutboxStore, "outboxHead" | "bury" | "enqueue">,
  ): Promise<void> {
    const now = this.deps.now();
    for (const target of this.targetsFor(event.task.kind)) {
      if (target.accepts !== undefined && !target.accepts(event)) continue;
      const depth = this.depth.get(target.name) ?? 0;
      if (depth >= this.deps.options.maxPending) {
        const oldest = await tx.outboxHead(target.name);
        if (oldest !== undefined) {
          await tx.bury(oldest.id, now, "outbox_full");
          this.deps.metrics.deadNotifications.inc({ target: target.name, reason: "outbox_full" });
          this.deps.log.warn(
            { target: target.name, eventId: oldest.eventId, bound: this.deps.options.maxPending },
            "outbox full: oldest notification moved to the dead outbox",
          );
        }
      } else {
        this.depth.set(target.name, depth + 1);
      }
      await tx.enqueue(event.id, target.name, now);
    }
  }

  /**
   * Start delivering (and deliver what a previous run left): the pending counts are read from
   * the store first. Resolves when they are.
   */
  async start(): Promise<void> {
    this.running = true;
    try {
      for (const [target, n] of await this.deps.store.outboxDepths()) this.depth.set(target, n);
    } catch (error) {
      // The pumps read the store anyway and correct the counts once a target is empty.
      this.deps.log.error({ err: (error as Error).message }, "outbox depths not read");
    }
    this.kick();
  }

  /** Deliver what is due now; call after a committed change. */
  kick(): void {
    if (!this.running) return;
    for (const target of this.deps.targets) this.pump(target);
  }

  /** Stop delivering; waits for attempts in flight (their outcome is recorded). */
  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Pending notifications of a target. */
  pending(target: string): number {
    return this.depth.get(target) ?? 0;
  }

  private pump(target: OutboxTarget): void {
    if (!this.running) return;
    if (this.busy.has(target.name)) {
      this.again.add(target.name);
      return;
    }
    this.busy.add(target.name);
    const run = this.drain(target)
      .catch((error: unknown) => {
        // Only a store failure gets here (delivery errors are handled per attempt).
        this.deps.log.error(
          { err: (error as Error).message, target: target.name },
          "outbox pump failed",
        );
        this.schedule(target, this.deps.options.backoffMaxMs);
      })
      .finally(() => {
        this.busy.delete(target.name);
        this.inFlight.delete(run);
        if (this.again.delete(target.name)) this.pump(target);
      });
    this.inFlight.add(run);
  }

  private schedule(target: OutboxTarget, delayMs: number): void {
    if (!this.running) return;
    clearTimeout(this.timers.get(target.name));
    const timer = setTimeout(
      () => {
        this.timers.delete(target.name);
        this.pump(target);
      },
      Math.max(0, delayMs),
    );
    timer.unref();
    this.timers.set(target.name, timer);
  }

  private async drain(target: OutboxTarget): Promise<void> {
    const { store, options, metrics, log } = this.deps;
    while (this.running) {
      const head = await store.outboxHead(target.name);
      if (head === undefined) {
        // Nothing pending: also corrects the count after a transaction that enqueued and rolled back.
        this.depth.set(target.name, 0);
        return;
      }
      const now = this.deps.now();
      if (head.nextMs > now) return this.schedule(target, head.nextMs - now);
      const event = await store.event(head.eventId);
      try {
        if (event === undefined) throw new Error(`event ${head.eventId} is missing`);
        await target.deliver(event);
        // At the bound, enqueue may have buried this row while it was in flight: counted there.
        if (await store.delivered(head.id)) this.decrement(target.name);
        metrics.deliveries.inc({ target: target.name });
      } catch (error) {
        const message = (error as Error).message;
        const attempts = head.attempts + 1;
        metrics.deliveryFailures.inc({ target: target.name });
        if (attempts >= options.maxAttempts) {
          if (await store.bury(head.id, this.deps.now(), `max_attempts: ${message}`)) {
            this.decrement(target.name);
          }
          metrics.deadNotifications.inc({ target: target.name, reason: "max_attempts" });
          log.error(
            { target: target.name, eventId: head.eventId, attempts, err: message },
            "notification given up",
          );
          continue;
        }
        const delay = backoffMs(attempts, options.backoffBaseMs, options.backoffMaxMs, this.random);
        await store.retryLater(head.id, attempts, this.deps.now() + delay, message);
        log.warn(
          { target: target.name, eventId: head.eventId, attempts, retryInMs: delay, err: message },
          "notification failed; will retry",
        );
        return this.schedule(target, delay);
      }
    }
  }

  private decrement(target: string): void {
    this.depth.set(target, Math.max(0, (this.depth.get(target) ?? 1) - 1));
  }
}
