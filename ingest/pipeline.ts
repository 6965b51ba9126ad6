import type { Logger } from "pino";
import type { IngestConfig } from "../contracts/index.js";
import { decodeUplink, type DeviceLookup } from "./decode.js";
import type { IngestMetrics } from "./metrics.js";
import { ReadingColumns } from "./reading-columns.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import type { DeadLetter, IngestState, InboxMessage } from "./state.js";
import {
  StoreUnavailableError,
  type Point,
  type TimeSeriesStore,
  type WriteBatch,
  type WriteOutcome,
} from "./store/types.js";

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
}

/** Messages taken from the inbox per round at most. */
const ROUND_MESSAGES = 2_000;
/**
 * Rounds in progress at once while the store is up: the next round is decoded while the store
 * writes the previous ones (the store runs in another process, often on the other core). Each
 * round is still all-or-nothing; commits move over whatever is contiguous, in any order.
 */
const ROUNDS_IN_FLIGHT = 3;
/** Columns larger than this (readings) are not kept for the next round (about 5 MB). */
const SPARE_COLUMNS_MAX_READINGS = 65_536;
/** With nothing to write while the store is down, ask it whether it answers this often. */
const PROBE_EVERY_MS = 5_000;
/** A dead letter's reason text at most, in characters (the raw payload is kept whole). */
const MAX_DETAIL = 2_000;
/** A device that keeps re-sending committed messages gets its commit again at most this often. */
const REPUBLISH_EVERY_MS = 5_000;

function clip(text: string): string {
  return text.length <= MAX_DETAIL
    ? text
    : `${text.slice(0, MAX_DETAIL)}… (${text.length - MAX_DETAIL} more characters)`;
}

const keyOf = (deviceId: string, seq: number) => `${deviceId}\u0000${seq}`;

/** A message of a round whose readings go to the store. */
interface Source {
  readonly message: InboxMessage;
  readonly deviceId: string;
  readonly seq: number;
  /** The index in the round of its first point. */
  readonly first: number;
}

/** Points collected for `store.write`, for a store without batches of its own. */
class CollectedBatch implements WriteBatch {
  #points: Point[] = [];

  constructor(private readonly store: TimeSeriesStore) {}

  get size(): number {
    return this.#points.length;
  }

  add(point: Point): void {
    this.#points.push(point);
  }

  write(): Promise<WriteOutcome> {
    const points = this.#points;
    this.#points = [];
    return this.store.write(points);
  }
}

/** The source of the round's point `at` (sources in point order). */
function sourceOf(sources: readonly Source[], at: number): Source | undefined {
  let lo = 0;
  let hi = sources.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if ((sources[mid] as Source).first <= at) lo = mid;
    else hi = mid - 1;
  }
  return sources[lo];
}

/**
 * Drains the inbox in arrival order: decode, dedupe, write to the store, then in one state
 * transaction record what was handled, keep dead letters, delete the inbox rows and move each
 * device's commit; only then publish the commits. While the store is unavailable nothing is
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
  /** (device, seq) of messages in rounds in flight: a copy arriving meanwhile is a duplicate. */
  private readonly inFlightKeys = new Set<string>();
  private lastStoreError: StoreUnavailableError | undefined;
  /**
   * Columns of finished rounds, used again: typed arrays live outside the JS heap, and V8 counts
   * fresh ones towards a full collection. As many as rounds run at once.
   */
  private readonly spareColumns: ReadingColumns[] = [];
  private fatal: { error: unknown } | undefined;

  constructor(private readonly deps: PipelineDeps) {}

  get isStoreUp(): boolean {
    return this.storeUp;
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
    else if (this.waitingFor === "full-round" && this.deps.state.untaken() >= ROUND_MESSAGES)
      this.wake?.();
  }

  start(): void {
    // Time the ingest was down must not count against a device's gaps.
    this.deps.state.resetGapTimers(this.deps.now());
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
    for (const p of this.deps.state.allProgress())
      this.deps.publishCommit(p.deviceId, p.committedSeq);
  }

  /** The broker connection came back: restart gap timers. */
  brokerReconnected(): void {
    this.deps.state.resetGapTimers(this.deps.now());
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
    let backoffMs = 100;
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
        const messages = this.failed.shift() ?? state.takeInbox(ROUND_MESSAGES);
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
          backoffMs * (0.5 + Math.random() / 2),
        );
        this.deps.log.warn(
          {
            err: this.lastStoreError?.message,
            waitMs: Math.round(wait),
            inbox: state.inboxDepth(),
          },
          "store unavailable; holding messages and commits",
        );
        await this.sleep(wait, "backoff");
        // Stopping: the messages taken stay in the inbox and are read again at the next start.
        if (this.stopped) break;
        await this.launch(messages);
        if (this.storeUp) {
          backoffMs = 100;
          state.resetGapTimers(this.deps.now());
          this.deps.log.info({ inbox: state.inboxDepth() }, "store available again; committing");
        } else {
          backoffMs = Math.min(backoffMs * 2, 30_000);
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
      const available = state.untaken();
      if (available === 0) {
        // Gaps are closed only when nothing that could fill them is waiting: the inbox is empty,
        // the store is up and the broker connected (their outages reset the timers).
        if (this.inFlight.size === 0 && now - lastGapCheck > 1_000 && this.deps.brokerConnected()) {
          lastGapCheck = now;
          const closed = state.closeStaleGaps(now, config.gapTimeoutMs);
          // One dead letter per closed gap (the missing seqs are never stored).
          if (closed.gaps > 0)
            this.deps.metrics.deadLettered.inc({ reason: "missing_seq" }, closed.gaps);
          this.publish(closed.moved);
        }
        await this.sleep(config.batch.maxDelayMs, "messages");
        continue;
      }
      // Let a round fill unless it is already large or its oldest message has waited long enough.
      const oldest = state.oldestUntakenMs() ?? now;
      if (available < ROUND_MESSAGES && now - oldest < config.batch.maxDelayMs) {
        await this.sleep(config.batch.maxDelayMs - (now - oldest), "full-round");
        continue;
      }
      void this.launch(state.takeInbox(ROUND_MESSAGES));
    }
    await Promise.allSettled(this.inFlight);
    if (this.fatal !== undefined) throw this.fatal.error;
  }

  /** Run one round; a store outage files it for retry instead of failing. */
  private launch(messages: readonly InboxMessage[]): Promise<void> {
    const keys: string[] = [];
    const running = this.round(messages, keys)
      .then((wrote) => {
        // Only a write the store took says it is up (a round of dead letters says nothing).
        if (wrote) this.storeUp = true;
      })
      .catch((error: unknown) => {
        if (!(error instanceof StoreUnavailableError)) {
          // A programmer error: the loop rethrows it (see start()).
          this.fatal ??= { error };
          this.wake?.();
          return;
        }
        this.storeUp = false;
        this.lastStoreError = error;
        this.deps.metrics.storeErrors.inc();
        this.failed.push([...messages]);
        // Keep the failed round in arrival order ahead of newer failures.
        this.failed.sort((a, b) => (a[0]?.id ?? 0) - (b[0]?.id ?? 0));
      })
      .finally(() => {
        for (const key of keys) this.inFlightKeys.delete(key);
        this.inFlight.delete(running);
      });
    this.inFlight.add(running);
    return running;
  }

  /** One round: decode, store, apply. `keys` collects the (device, seq) it holds in flight. */
  private async round(messages: readonly InboxMessage[], keys: string[]): Promise<boolean> {
    const { state, store, registry, metrics, config } = this.deps;
    const deadLetters: DeadLetter[] = [];
    const handled: Array<{ deviceId: string; seq: number; receivedMs: number }> = [];
    /** The messages whose readings go to the store, in order, and where their points start. */
    const sources: Source[] = [];
    const resent = new Set<string>();
    /**
     * The round's store writes, each of up to batch.maxPoints points. A point goes into its batch
     * as soon as its message is decoded (InfluxDB: as a line in the write body) and is not kept:
     * points held until the write outlive V8's young generation and are copied, then promoted
     * (with them held, the scavenger's pauses were three times as long: --trace-gc-nvp on a
     * child of npm run bench -- ingest). The rules get the readings from columns
     * (ReadingColumns), for the same reason.
     */
    const newBatch = () => store.batch?.() ?? new CollectedBatch(store);
    const batches: Array<WriteBatch | undefined> = [];
    /** The batch being filled; made at its first point (an InfluxDB batch takes a body). */
    let batch: WriteBatch | undefined;
    const forRules =
      this.deps.onStored !== undefined
        ? (this.spareColumns.pop() ?? new ReadingColumns())
        : undefined;
    let total = 0;

    for (const message of messages) {
      // Freshness is judged at receipt, so messages that waited out a store outage stay valid.
      const decoded = decodeUplink(
        message.topic,
        message.payload,
        registry,
        message.receivedMs,
        config,
      );
      if (!decoded.ok) {
        metrics.deadLettered.inc({ reason: decoded.reason });
        deadLetters.push({
          receivedMs: message.receivedMs,
          topic: message.topic,
          deviceId: decoded.deviceId,
          seq: decoded.seq,
          reason: decoded.reason,
          detail: clip(decoded.detail),
          payload: message.payload,
        });
        // A readable seq of a registered device counts as handled, so its commit can move on.
        if (
          decoded.deviceId !== undefined &&
          decoded.seq !== undefined &&
          registry.device(decoded.deviceId) !== undefined
        ) {
          handled.push({
            deviceId: decoded.deviceId,
            seq: decoded.seq,
            receivedMs: message.receivedMs,
          });
        }
        continue;
      }
      const key = keyOf(decoded.deviceId, decoded.seq);
      if (this.inFlightKeys.has(key)) {
        // Another round in flight holds this message; if that round fails, it retries its copy.
        metrics.duplicates.inc();
        continue;
      }
      if (state.isHandled(decoded.deviceId, decoded.seq)) {
        metrics.duplicates.inc();
        handled.push({
          deviceId: decoded.deviceId,
          seq: decoded.seq,
          receivedMs: message.receivedMs,
        });
        resent.add(decoded.deviceId);
        continue;
      }
      this.inFlightKeys.add(key);
      keys.push(key);
      metrics.readingsReceived.inc(decoded.points.length);
      sources.push({ message, deviceId: decoded.deviceId, seq: decoded.seq, first: total });
      total += decoded.points.length;
      for (const point of decoded.points) {
        batch ??= newBatch();
        batch.add(point);
        if (batch.size >= config.batch.maxPoints) {
          batches.push(batch);
          batch = undefined;
        }
      }
      forRules?.add(decoded.deviceId, decoded.replay, decoded.points);
      handled.push({
        deviceId: decoded.deviceId,
        seq: decoded.seq,
        receivedMs: message.receivedMs,
      });
    }
    if (batch !== undefined) batches.push(batch);

    /** Indexes (in the round) of the points the store refused. */
    const refused = new Set<number>();
    /** Store rejections, grouped by the message they came from: one dead letter per message. */
    const rejectedBySource = new Map<Source, { indexes: number[]; reasons: Set<string> }>();
    let from = 0;
    for (let b = 0; b < batches.length; b++) {
      const write = batches[b];
      if (write === undefined) continue;
      // Spent once written: the round does not keep its body while the next one is written.
      batches[b] = undefined;
      const size = write.size;
      const started = process.hrtime.bigint();
      const outcome = await write.write();
      metrics.storeLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
      metrics.readingsStored.inc(size - outcome.rejected.length);
      for (const { index, reason } of outcome.rejected) {
        const at = from + index;
        refused.add(at);
        const source = sourceOf(sources, at);
        if (source === undefined) continue;
        const entry = rejectedBySource.get(source) ?? { indexes: [], reasons: new Set<string>() };
        entry.indexes.push(at - source.first);
        entry.reasons.add(reason);
        rejectedBySource.set(source, entry);
      }
      from += size;
    }
    for (const [{ message, deviceId, seq }, entry] of rejectedBySource) {
      metrics.deadLettered.inc({ reason: "store_rejected" }, entry.indexes.length);
      deadLetters.push({
        receivedMs: message.receivedMs,
        topic: message.topic,
        deviceId,
        seq,
        reason: "store_rejected",
        detail: clip(
          `readings ${entry.indexes.join(", ")} refused by the store (the others are stored): ${[...entry.reasons].join("; ")}`,
        ),
        payload: message.payload,
      });
    }

    const moved = state.applyBatch(
      { inboxIds: messages.map((m) => m.id), handled, deadLetters },
      this.deps.now(),
    );
    this.publish(moved);
    if (this.deps.onStored !== undefined && forRules !== undefined && total > refused.size) {
      try {
        this.deps.onStored(forRules.markRefused(refused));
      } catch (error) {
        // The readings are stored and committed whatever the rules make of them.
        this.deps.log.error({ err: error }, "rules evaluation failed");
      }
    }
    if (
      forRules !== undefined &&
      this.spareColumns.length < ROUNDS_IN_FLIGHT &&
      forRules.capacity <= SPARE_COLUMNS_MAX_READINGS
    ) {
      forRules.clear();
      this.spareColumns.push(forRules);
    }
    // A device re-sending what is already committed did not see its commit: send it again.
    const now = this.deps.now();
    for (const deviceId of resent) {
      if (moved.has(deviceId) || now - (this.republished.get(deviceId) ?? 0) < REPUBLISH_EVERY_MS)
        continue;
      const progress = state.progress(deviceId);
      if (progress === undefined) continue;
      this.republished.set(deviceId, now);
      if (this.republished.size > 100_000) this.republished.clear();
      this.deps.publishCommit(deviceId, progress.committedSeq);
    }
    for (const deviceId of new Set(handled.map((h) => h.deviceId))) {
      const progress = state.progress(deviceId);
      if (progress !== undefined)
        metrics.commitLag.set({ device: deviceId }, progress.lastSeq - progress.committedSeq);
    }
    return total > 0;
  }

  private publish(moved: ReadonlyMap<string, number>): void {
    for (const [deviceId, committedSeq] of moved) {
      this.deps.publishCommit(deviceId, committedSeq);
      this.deps.metrics.commitsPublished.inc();
    }
  }
}
