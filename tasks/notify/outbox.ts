import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { z } from "zod";
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
 *
 * Several nodes on one PostgreSQL store (issue #21) run an Outbox each over the same rows. A
 * target is pumped only by the node that holds its delivery lease (the store's claimOutbox: one
 * statement, expiry by the database's clock), so its rows still go out in order, one at a time:
 *
 * - The pump claims the target before each round and before each delivery; the holder's claim
 *   renews the lease under the same token. A node that does not hold it delivers nothing and
 *   tries again a third of the TTL later: a dead node's targets are taken over at most a TTL and
 *   a third after its last claim (8 s with the default 6 s).
 * - A delivery starts only with at least half the TTL left, and while it is in flight the lease
 *   is renewed every third of the TTL. Claiming before each delivery alone would not do: a
 *   webhook may take its whole timeout (tasks.outbox.timeoutMs, 10 s by default), longer than
 *   the TTL, and another node would then send the same row meanwhile. So with live nodes that
 *   reach the database no row is in flight on two nodes at once.
 * - Outcomes (delivered, retryLater, bury) are written fenced by the lease's token: a node that
 *   lost its lease without knowing (paused past the TTL, cut off from the database) changes
 *   nothing, stops pumping the target, logs and counts the loss.
 * - The holder keeps polling its targets every third of the TTL (which also renews the lease):
 *   a row enqueued by another node wakes only that node, whose claim fails while this one holds.
 * - stop() releases the leases, so another node takes over at its next try, not after the TTL.
 *
 * Delivery is therefore at least once per notification, as with one node: a node that dies, or
 * loses its lease, after the receiver accepted a notification and before its row was deleted
 * leaves the row to the next holder, which sends it again with the same event id and
 * Idempotency-Key (receivers drop repeats by it: tasks/notify/webhook.ts). That is one
 * redelivery per target and takeover, never a loss.
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
 * The delivery lease a write is fenced by: it changes a row of `target` only while the lease is
 * held under `token` and has not expired, and changes nothing otherwise.
 */
export interface OutboxFence {
  readonly target: string;
  readonly token: number;
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
  /**
   * Take the delivery lease of `target` for `holder` for `ttlMs` if it is free or expired (under
   * a new token), or renew it if `holder` holds it (under the same token): the token held now,
   * or undefined while another holder has it.
   */
  claimOutbox(target: string, holder: string, ttlMs: number): Promise<number | undefined>;
  /** End the lease so that another holder may claim it at once; false when it was not held so. */
  releaseOutbox(target: string, holder: string, token: number): Promise<boolean>;
  /** Remove a delivered notification; false when it was already gone or the fence refused. */
  delivered(outboxId: number, fence?: OutboxFence): Promise<boolean>;
  /** Record a failed attempt and when to try again; false when it was gone or the fence refused. */
  retryLater(
    outboxId: number,
    attempts: number,
    nextMs: number,
    error: string,
    fence?: OutboxFence,
  ): Promise<boolean>;
  /** Move a notification to the dead outbox; false when it was gone or the fence refused. */
  bury(outboxId: number, nowMs: number, why: string, fence?: OutboxFence): Promise<boolean>;
}

export interface OutboxDeps {
  readonly store: OutboxStore;
  readonly targets: readonly OutboxTarget[];
  readonly options: OutboxOptions;
  readonly metrics: NotifyMetrics;
  readonly log: Logger;
  readonly now: () => number;
  readonly random?: () => number;
  /** Names this node in the delivery leases; unique among live nodes (default: host:pid:random). */
  readonly holder?: string;
  /** How long a delivery lease lasts without renewal; the same on every node (default 6 s). */
  readonly leaseTtlMs?: number;
}

/**
 * How long a delivery lease lasts without renewal by default, as the partitions' leases
 * (cluster/leases.ts): a dead node's targets are taken over within 8 s.
 */
export const DEFAULT_LEASE_TTL_MS = 6_000;

const leaseOptions = z.object({
  holder: z.string().min(1).max(200),
  leaseTtlMs: z.number().int().min(100).max(3_600_000),
});

/** A delivery lease this node holds. */
interface Lease {
  readonly token: number;
  /**
   * performance.now() until which the lease is valid: measured from when the claim that set it
   * was sent, so never later than the database's expiry.
   */
  validUntil: number;
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
  /** Target → the delivery lease this node holds on it. */
  private readonly leases = new Map<string, Lease>();
  /** This node's name in the leases. */
  readonly holder: string;
  private readonly ttlMs: number;
  /** A third of the TTL: how often leases are renewed, and claimed again by a node without one. */
  private readonly renewMs: number;
  /** performance.now() of the last read of the pending counts of targets other nodes deliver. */
  private depthsReadAt = -Infinity;

  constructor(private readonly deps: OutboxDeps) {
    this.random = deps.random ?? Math.random;
    const checked = leaseOptions.safeParse({
      holder: deps.holder ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`,
      leaseTtlMs: deps.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    });
    if (!checked.success) throw new Error(`outbox: ${z.prettifyError(checked.error)}`);
    this.holder = checked.data.holder;
    this.ttlMs = checked.data.leaseTtlMs;
    this.renewMs = Math.floor(this.ttlMs / 3);
    deps.metrics.observeNotifications({
      outbox: () => this.depth,
      outboxLeases: () => this.leasesHeld().size,
    });
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

  /**
   * Stop delivering; waits for attempts in flight (their outcome is recorded), then releases the
   * leases so that other nodes take the targets over at once. Never rejects: a lease that cannot
   * be released expires after the TTL.
   */
  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.inFlight]);
    const held = [...this.leases];
    this.leases.clear();
    await Promise.all(
      held.map(async ([target, lease]) => {
        try {
          await this.deps.store.releaseOutbox(target, this.holder, lease.token);
        } catch (error) {
          this.deps.log.warn(
            { target, holder: this.holder, err: (error as Error).message },
            "outbox lease not released: another node takes the target when it expires",
          );
        }
      }),
    );
  }

  /** Pending notifications of a target. */
  pending(target: string): number {
    return this.depth.get(target) ?? 0;
  }

  /** Target → fencing token, for the targets this node delivers now (it holds their lease). */
  leasesHeld(): ReadonlyMap<string, number> {
    const now = performance.now();
    const held = new Map<string, number>();
    for (const [target, lease] of this.leases) {
      if (lease.validUntil > now) held.set(target, lease.token);
    }
    return held;
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
        // Not the delivery backoff (up to minutes): a database back after a blip is used again
        // within ten lease rounds, and a takeover is not held up by it.
        this.schedule(target, Math.min(this.deps.options.backoffMaxMs, (10 * this.ttlMs) / 3));
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
      const lease = await this.claim(target.name);
      if (lease === undefined) {
        // Another node delivers this target: try again later, in case it dies or lets go.
        await this.readDepths();
        return this.schedule(target, this.renewMs);
      }
      const head = await store.outboxHead(target.name);
      if (head === undefined) {
        // Nothing pending: also corrects the count after a transaction that enqueued and rolled back.
        this.depth.set(target.name, 0);
        // Polled while held: a row another node enqueues wakes only that node.
        return this.schedule(target, this.renewMs);
      }
      const now = this.deps.now();
      if (head.nextMs > now) {
        // Woken at least every third of the TTL, so that the wait keeps the lease.
        return this.schedule(target, Math.min(head.nextMs - now, this.renewMs));
      }
      const event = await store.event(head.eventId);
      if (lease.validUntil - performance.now() < this.ttlMs / 2) {
        // The claim and the reads took half the TTL (a slow database): the lease may not last
        // until the renewals of the delivery get through. Claim again first. Each such turn took
        // half a TTL of waiting on the database, so this does not spin.
        log.warn(
          { target: target.name, holder: this.holder, ttlMs: this.ttlMs },
          "outbox lease too short to start a delivery: claiming again",
        );
        continue;
      }
      const fence: OutboxFence = { target: target.name, token: lease.token };
      let recorded: boolean;
      let retryInMs: number | undefined;
      try {
        if (event === undefined) throw new Error(`event ${head.eventId} is missing`);
        await this.keepingLease(target.name, lease, () => target.deliver(event));
        recorded = await store.delivered(head.id, fence);
        if (recorded) this.decrement(target.name);
        metrics.deliveries.inc({ target: target.name });
      } catch (error) {
        const message = (error as Error).message;
        const attempts = head.attempts + 1;
        metrics.deliveryFailures.inc({ target: target.name });
        if (attempts >= options.maxAttempts) {
          recorded = await store.bury(head.id, this.deps.now(), `max_attempts: ${message}`, fence);
          if (recorded) {
            this.decrement(target.name);
            metrics.deadNotifications.inc({ target: target.name, reason: "max_attempts" });
            log.error(
              { target: target.name, eventId: head.eventId, attempts, err: message },
              "notification given up",
            );
          }
        } else {
          const delay = backoffMs(
            attempts,
            options.backoffBaseMs,
            options.backoffMaxMs,
            this.random,
          );
          recorded = await store.retryLater(
            head.id,
            attempts,
            this.deps.now() + delay,
            message,
            fence,
          );
          log.warn(
            {
              target: target.name,
              eventId: head.eventId,
              attempts,
              retryInMs: delay,
              err: message,
            },
            "notification failed; will retry",
          );
          retryInMs = delay;
        }
      }
      // Nothing changed: the row was gone (at the bound, enqueue buried it while it was in
      // flight, and counted it), or the lease is lost and the next holder takes the row as it is.
      if (!recorded && (await this.lost(target.name, lease))) {
        return this.schedule(target, this.renewMs);
      }
      if (retryInMs !== undefined) return this.schedule(target, Math.min(retryInMs, this.renewMs));
    }
  }

  /**
   * Claim (or renew) the delivery lease of `target`: the lease this node holds now, or undefined
   * while another node holds it. A lease held before under another token, or no longer, is lost.
   */
  private async claim(target: string): Promise<Lease | undefined> {
    const held = this.leases.get(target);
    const sentAt = performance.now();
    const token = await this.deps.store.claimOutbox(target, this.holder, this.ttlMs);
    if (held !== undefined && token === held.token) {
      held.validUntil = sentAt + this.ttlMs;
      return held;
    }
    if (held !== undefined) {
      this.lose(target, held, token === undefined ? "taken over" : "expired");
    }
    if (token === undefined) return undefined;
    const lease: Lease = { token, validUntil: sentAt + this.ttlMs };
    this.leases.set(target, lease);
    this.deps.log.info(
      { target, holder: this.holder, token },
      "outbox lease taken: this node delivers the target",
    );
    return lease;
  }

  /**
   * After a fenced write that changed nothing: whether the lease is lost. Claiming again tells:
   * the holder's claim keeps the token only while its lease has not expired, and only this pump
   * renews it (a delivery's renewals have ended), so the same token means the lease was valid at
   * the write, and the row was gone.
   */
  private async lost(target: string, lease: Lease): Promise<boolean> {
    return (await this.claim(target)) !== lease;
  }

  private lose(target: string, lease: Lease, why: "taken over" | "expired"): void {
    if (this.leases.get(target) !== lease) return;
    this.leases.delete(target);
    this.deps.metrics.outboxLeaseLost.inc({ target });
    this.deps.log.warn(
      { target, holder: this.holder, token: lease.token, why },
      "outbox lease lost: this node stops delivering the target (a notification it had in flight is sent again by the next holder)",
    );
  }

  /**
   * Run a delivery while renewing its lease every third of the TTL: a receiver may take longer
   * than the TTL to answer. A renewal that fails or finds the lease gone changes nothing here:
   * the outcome's fenced write is refused, and that reports the loss.
   */
  private async keepingLease(target: string, lease: Lease, deliver: () => Promise<void>) {
    let renewal: Promise<void> | undefined;
    const timer = setInterval(() => {
      renewal ??= this.renew(target, lease).finally(() => {
        renewal = undefined;
      });
    }, this.renewMs);
    timer.unref();
    try {
      await deliver();
    } finally {
      clearInterval(timer);
      // Before the outcome is written: lost() relies on no renewal running then.
      await renewal;
    }
  }

  private async renew(target: string, lease: Lease): Promise<void> {
    const sentAt = performance.now();
    try {
      const token = await this.deps.store.claimOutbox(target, this.holder, this.ttlMs);
      if (token === lease.token) lease.validUntil = sentAt + this.ttlMs;
    } catch (error) {
      this.deps.log.warn(
        { target, holder: this.holder, err: (error as Error).message },
        "outbox lease not renewed during a delivery",
      );
    }
  }

  /**
   * The pending counts of the targets this node does not deliver, read from the store at most
   * every third of the TTL. This node enqueues their rows and never drains them: counted only
   * upwards, its count would reach maxPending and bury rows the holder is delivering.
   */
  private async readDepths(): Promise<void> {
    const now = performance.now();
    if (now - this.depthsReadAt < this.renewMs) return;
    this.depthsReadAt = now;
    const depths = await this.deps.store.outboxDepths();
    for (const target of this.deps.targets) {
      if (!this.leases.has(target.name)) this.depth.set(target.name, depths.get(target.name) ?? 0);
    }
  }

  private decrement(target: string): void {
    this.depth.set(target, Math.max(0, (this.depth.get(target) ?? 1) - 1));
  }
}
