import type { Logger } from "pino";
import type { IngestConfig } from "../contracts/index.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import { type BackoffPolicy, backoffDelayMs } from "../infra/backoff.js";
import type { DeviceLookup } from "./decode.js";
import type { IngestMetrics } from "./metrics.js";
import { ColumnPool, newRound, type RoundContext, type RoundState, runRound } from "./round.js";
import type { IngestState, InboxMessage } from "./state.js";
import { StoreUnavailableError, type TimeSeriesStore } from "./store/types.js";
import { isDiskFull } from "./gate.js";

export interface PipelineDeps {
  readonly log: Logger;
  readonly config: IngestConfig;
  readonly state: IngestState;
  readonly store: TimeSeriesStore;
  readonly registry: DeviceLookup;
  readonly metrics: IngestMetrics;
  /** Publish the device's commit (retained). Fire and forget: the next commit supersedes it. */
  readonly publishCommit: (deviceId: string, committedSeq: number) => void;
  /**
   * Readings the store acknowledged, after their round was applied (the rules engine). The batch
   * is read during the call only: its columns serve a later round afterwards.
   */
  readonly onStored?: (readings: StoredBatch) => void;
  /** Is the broker connection up? Gaps only age while it is. */
  readonly brokerConnected: () => boolean;
  readonly now: () => number;
  /**
   * Whether the data directory has room for a round's state transaction; false: no round is
   * started (the messages wait in the inbox, commits are withheld) so a round is not rolled back
   * half-applied by a full disk. Absent: always room.
   */
  readonly diskRoom?: (() => boolean) | undefined;
}

/** The embedded ingest.db as a round sees it: the ledger answers from memory, a commit is one transaction. */
function embeddedRoundState(state: IngestState): RoundState {
  return {
    isHandled: (deviceId, seq) => state.ledger.isHandled(deviceId, seq),
    progress: (deviceId) => state.ledger.progress(deviceId),
    applyBatch: (outcome, nowMs) => state.applyBatch(outcome, nowMs),
  };
}

/** Messages taken from the inbox per round at most. */
export const ROUND_MESSAGES = 2_000;
/**
 * Rounds in progress at once while the store is up: the next round is decoded while the store
 * writes the previous ones (the store runs in another process, often on the other core). Each
 * round is still all-or-nothing; commits move over whatever is contiguous, in any order.
 */
const ROUNDS_IN_FLIGHT = 3;
/**
 * Waits between rounds while the store is down: one loop holds off one store, so there is no
 * crowd to spread; equal jitter keeps a floor of half the ceiling so the loop never spins.
 */
const STORE_OUTAGE_BACKOFF: BackoffPolicy = { baseMs: 100, capMs: 30_000, jitter: "equal" };
/** With nothing to write while the store is down, ask it whether it answers this often. */
const PROBE_EVERY_MS = 5_000;
/** With the disk full, look for space again this often. */
const DISK_WAIT_MS = 250;
/** A device that keeps re-sending committed messages gets its commit again at most this often. */
const REPUBLISH_EVERY_MS = 5_000;

/**
 * Drains the inbox in arrival order, in rounds (round.ts: decode, dedupe, write to the store, then
 * in one state transaction record what was handled, keep dead letters, delete the inbox rows and
 * move each device's commit; only then publish the commits and hand the readings to the rules). While the store is unavailable nothing is
 * deleted or committed: the inbox holds the messages and the failed round is retried with
 * backoff, one round at a time.
 */
export class Pipeline {
  private wake: (() => void) | undefined;
  /** What the loop sleeps for: new messages at all, or enough to fill a round. */
  private waitingFor: "messages" | "full-round" | "backoff" | undefined;
  private storeUp = true;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly republished = new Map<string, number>();
  /** Rounds taken from the inbox and not yet applied. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Rounds whose store write failed, oldest first: retried before anything new is taken. */
  private readonly failed: InboxMessage[][] = [];
  private lastStoreError: StoreUnavailableError | undefined;
  /** Since when the ingest's own files cannot be written (disk full); commits are withheld. */
  private diskFullSince: number | undefined;
  /** When the last round was launched (the eager round's bound, see loop). */
  private lastLaunchMs = Number.NEGATIVE_INFINITY;
  private fatal: { error: unknown } | undefined;
  /** What every round reads: the pipeline's dependencies, its in-flight keys and column pool. */
  private readonly roundContext: RoundContext;

  constructor(private readonly deps: PipelineDeps) {
    this.roundContext = {
      ...deps,
      state: embeddedRoundState(deps.state),
      inFlightKeys: new Set(),
      columns: deps.onStored === undefined ? undefined : new ColumnPool(ROUNDS_IN_FLIGHT),
      onStored: deps.onStored,
      publish: (moved) => this.publish(moved),
      republish: (deviceId) => this.republish(deviceId),
    };
  }

  get isStoreUp(): boolean {
    return this.storeUp;
  }

  /** Whether the last round could not be committed because the disk is full. */
  get isDiskFull(): boolean {
    return this.diskFullSince !== undefined;
  }

  /** The store did not answer at start: report it down until a write succeeds. */
  markStoreDown(): void {
    this.storeUp = false;
  }

  /** Tell the pipeline the inbox has new messages. */
  notify(): void {
    // While a round fills, only a full round is worth waking for: the loop knows when the oldest
    // message's wait runs out. Waking per message would cost more than the message.
    if (this.waitingFor === "messages") this.wake?.();
    else if (this.waitingFor === "full-round" && this.deps.state.inbox.untaken() >= ROUND_MESSAGES)
      this.wake?.();
  }

  start(): void {
    // Time the ingest was down must not count against a device's gaps.
    this.deps.state.ledger.resetGapTimers(this.deps.now());
    this.running ??= this.loop().catch((error: unknown) => {
      // A programmer error: crash, and let the supervisor restart us; the inbox keeps the messages.
      this.deps.log.fatal({ err: error }, "ingest pipeline failed");
      process.exitCode = 1;
      throw error;
    });
  }

  /** Finish the rounds in progress and stop; unprocessed messages stay in the inbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.running;
  }

  /** Publish every device's current commit again (after the broker lost its retained messages). */
  republishAll(): void {
    for (const p of this.deps.state.ledger.all())
      this.deps.publishCommit(p.deviceId, p.committedSeq);
  }

  /** The broker connection came back: restart gap timers. */
  brokerReconnected(): void {
    this.deps.state.ledger.resetGapTimers(this.deps.now());
  }

  private sleep(ms: number, waitingFor: NonNullable<Pipeline["waitingFor"]>): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waitingFor = undefined;
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waitingFor = waitingFor;
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    const { config, state } = this.deps;
    let outageRetry = 0;
    let lastGapCheck = this.deps.now();
    let lastProbe = 0;
    while (!this.stopped) {
      if (this.fatal !== undefined) throw this.fatal.error;
      if (!this.storeUp) {
        // One round at a time until the store answers again, oldest failed round first.
        if (this.inFlight.size > 0) {
          await Promise.race(this.inFlight);
          continue;
        }
        const messages = this.failed.shift() ?? state.inbox.take(ROUND_MESSAGES);
        if (messages.length === 0) {
          // Nothing to write: ask the store whether it answers now and then (so health says so),
          // and wait for messages.
          const now = this.deps.now();
          if (now - lastProbe >= PROBE_EVERY_MS) {
            lastProbe = now;
            await this.deps.store.open().then(
              () => {
                this.storeUp = true;
              },
              () => undefined,
            );
            if (this.storeUp) continue;
          }
          await this.sleep(config.batch.maxDelayMs, "messages");
          continue;
        }
        const wait = Math.max(
          this.lastStoreError?.retryAfterMs ?? 0,
          backoffDelayMs(outageRetry, STORE_OUTAGE_BACKOFF),
        );
        this.deps.log.warn(
          {
            err: this.lastStoreError?.message,
            waitMs: Math.round(wait),
            inbox: state.inbox.depth(),
          },
          "store unavailable; holding messages and commits",
        );
        await this.sleep(wait, "backoff");
        // Stopping: the messages taken stay in the inbox and are read again at the next start.
        if (this.stopped) break;
        await this.launch(messages);
        if (this.storeUp) {
          outageRetry = 0;
          state.ledger.resetGapTimers(this.deps.now());
          this.deps.log.info({ inbox: state.inbox.depth() }, "store available again; committing");
        } else {
          outageRetry++;
        }
        continue;
      }
      if (this.inFlight.size >= ROUNDS_IN_FLIGHT) {
        await Promise.race(this.inFlight);
        continue;
      }
      const retry = this.failed.shift();
      if (retry !== undefined) {
        void this.launch(retry);
        continue;
      }
      const now = this.deps.now();
      const available = state.inbox.untaken();
      if (available === 0) {
        // Gaps are closed only when nothing that could fill them is waiting: the inbox is empty,
        // the store is up and the broker connected (their outages reset the timers).
        if (this.inFlight.size === 0 && now - lastGapCheck > 1_000 && this.deps.brokerConnected()) {
          lastGapCheck = now;
          let closed: ReturnType<IngestState["closeStaleGaps"]>;
          try {
            closed = state.closeStaleGaps(now, config.gapTimeoutMs);
          } catch (error) {
            // Each gap is its own transaction: those closed are published, the rest wait for space.
            if (!isDiskFull(error)) throw error;
            this.deps.log.error(
              { err: (error as Error).message },
              "disk full: stale gaps not closed; tried again when space is back",
            );
            await this.sleep(config.batch.maxDelayMs, "messages");
            continue;
          }
          // One dead letter per closed gap (the missing seqs are never stored).
          if (closed.gaps > 0)
            this.deps.metrics.deadLettered.inc({ reason: "missing_seq" }, closed.gaps);
          this.publish(closed.moved);
        }
        await this.sleep(config.batch.maxDelayMs, "messages");
        continue;
      }
      // Let a round fill unless it is already large or its oldest message has waited long enough
      // — except on an idle pipeline: with no round in flight and none launched for maxDelayMs,
      // the messages there are taken at once, so a quiet city's violating reading is judged
      // within the round's own time (about 10 ms), not after the batch delay (measured by
      // `npm run bench -- alerts`, idle phase). Rounds still start at most once per maxDelayMs
      // unless full, as before, so the state file's write-ahead log grows no faster.
      const oldest = state.inbox.oldestUntakenMs() ?? now;
      const sinceLaunch = now - this.lastLaunchMs;
      const idle = this.inFlight.size === 0;
      if (
        available < ROUND_MESSAGES &&
        now - oldest < config.batch.maxDelayMs &&
        !(idle && sinceLaunch >= config.batch.maxDelayMs)
      ) {
        const fill = config.batch.maxDelayMs - (now - oldest);
        await this.sleep(
          idle ? Math.min(fill, config.batch.maxDelayMs - sinceLaunch) : fill,
          "full-round",
        );
        continue;
      }
      if (this.deps.diskRoom?.() === false) {
        if (this.diskFullSince === undefined) {
          this.diskFullSince = now;
          this.deps.log.error(
            { inbox: state.inbox.depth() },
            "disk full: commits withheld until space is freed in the data directory",
          );
        }
        await this.sleep(DISK_WAIT_MS, "backoff");
        continue;
      }
      if (
        this.diskFullSince !== undefined &&
        this.inFlight.size === 0 &&
        this.failed.length === 0
      ) {
        this.deps.log.warn(
          { fullForMs: now - this.diskFullSince, inbox: state.inbox.depth() },
          "disk space is back: committing again",
        );
        this.diskFullSince = undefined;
      }
      void this.launch(state.inbox.take(ROUND_MESSAGES));
    }
    await Promise.allSettled(this.inFlight);
    if (this.fatal !== undefined) throw this.fatal.error;
  }

  /** Run one round; a store outage files it for retry instead of failing. */
  private launch(messages: readonly InboxMessage[]): Promise<void> {
    this.lastLaunchMs = this.deps.now();
    const round = newRound(messages, this.roundContext);
    const running = runRound(round, this.roundContext)
      .then((wrote) => {
        // Only a write the store took says it is up (a round of dead letters says nothing).
        if (wrote) this.storeUp = true;
        if (this.diskFullSince !== undefined) {
          this.deps.log.warn(
            {
              fullForMs: this.deps.now() - this.diskFullSince,
              inbox: this.deps.state.inbox.depth(),
            },
            "disk space is back: committing again",
          );
          this.diskFullSince = undefined;
          this.storeUp = true;
        }
      })
      .catch((error: unknown) => {
        if (isDiskFull(error)) {
          // The round's state transaction (dead letters, handled seqs, inbox rows, commits) was
          // rolled back: nothing is committed, the messages stay in the inbox and the round is
          // retried like one the store refused, with backoff, until space is back. Readings the
          // store already took are written again then (the store's writes are idempotent).
          this.deps.state.inbox.recount();
          if (this.diskFullSince === undefined) {
            this.diskFullSince = this.deps.now();
            this.deps.log.error(
              { err: (error as Error).message, inbox: this.deps.state.inbox.depth() },
              "disk full: commits withheld until space is freed in the data directory",
            );
          }
          this.storeUp = false;
          this.lastStoreError = new StoreUnavailableError(`disk full: ${(error as Error).message}`);
          this.failed.push([...messages]);
          this.failed.sort((a, b) => (a[0]?.id ?? 0) - (b[0]?.id ?? 0));
          return;
        }
        if (!(error instanceof StoreUnavailableError)) {
          // A programmer error: the loop rethrows it (see start()).
          this.fatal ??= { error };
          this.wake?.();
          return;
        }
        this.storeUp = false;
        this.lastStoreError = error;
        // The embedded store on the same full disk says so in its error.
        if (/SQLITE_(FULL|IOERR)/.test(error.message)) this.diskFullSince ??= this.deps.now();
        this.deps.metrics.storeErrors.inc();
        this.failed.push([...messages]);
        // Keep the failed round in arrival order ahead of newer failures.
        this.failed.sort((a, b) => (a[0]?.id ?? 0) - (b[0]?.id ?? 0));
      })
      .finally(() => {
        for (const key of round.keys) this.roundContext.inFlightKeys.delete(key);
        this.inFlight.delete(running);
      });
    this.inFlight.add(running);
    return running;
  }

  private republish(deviceId: string): void {
    const now = this.deps.now();
    if (now - (this.republished.get(deviceId) ?? 0) < REPUBLISH_EVERY_MS) return;
    const progress = this.deps.state.ledger.progress(deviceId);
    if (progress === undefined) return;
    this.republished.set(deviceId, now);
    if (this.republished.size > 100_000) this.republished.clear();
    this.deps.publishCommit(deviceId, progress.committedSeq);
  }

  private publish(moved: ReadonlyMap<string, number>): void {
    for (const [deviceId, committedSeq] of moved) {
      this.deps.publishCommit(deviceId, committedSeq);
      this.deps.metrics.commitsPublished.inc();
    }
  }
}
