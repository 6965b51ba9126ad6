import type { Logger } from "pino";
import type { IngestConfig } from "../contracts/index.js";
import { decodeUplink, type DeviceLookup } from "./decode.js";
import type { IngestMetrics } from "./metrics.js";
import type { DeadLetter, IngestState, InboxMessage } from "./state.js";
import { StoreUnavailableError, type Point, type TimeSeriesStore } from "./store/types.js";

export interface PipelineDeps {
  readonly log: Logger;
  readonly config: IngestConfig;
  readonly state: IngestState;
  readonly store: TimeSeriesStore;
  readonly registry: DeviceLookup;
  readonly metrics: IngestMetrics;
  /** Publish the device's commit (retained); resolves when the broker has it. */
  readonly publishCommit: (deviceId: string, committedSeq: number) => Promise<void>;
  readonly now: () => number;
}

/** Messages taken from the inbox per round at most. */
const ROUND_MESSAGES = 2_000;

/**
 * Drains the inbox in arrival order: decode, dedupe, write to the store, then in one state
 * transaction record what was handled, keep dead letters, delete the inbox rows and move each
 * device's commit; only then publish the commits. While the store is unavailable nothing is
 * deleted or committed: the inbox holds the messages and the round is retried with backoff.
 */
export class Pipeline {
  private wake: (() => void) | undefined;
  private storeUp = true;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(private readonly deps: PipelineDeps) {}

  get isStoreUp(): boolean {
    return this.storeUp;
  }

  /** Tell the pipeline the inbox has new messages. */
  notify(): void {
    this.wake?.();
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Finish the round in progress and stop; unprocessed messages stay in the inbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.notify();
    await this.running;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    const { config, state, log } = this.deps;
    let backoffMs = 100;
    let lastGapCheck = 0;
    while (!this.stopped) {
      const now = this.deps.now();
      if (now - lastGapCheck > 1_000) {
        lastGapCheck = now;
        await this.publish(state.closeStaleGaps(now, config.gapTimeoutMs));
      }
      const messages = state.peekInbox(ROUND_MESSAGES);
      if (messages.length === 0) {
        await this.sleep(config.batch.maxDelayMs);
        continue;
      }
      // Let a batch fill unless it is already large or its oldest message has waited long enough.
      const oldest = messages[0]?.receivedMs ?? now;
      if (messages.length < ROUND_MESSAGES && now - oldest < config.batch.maxDelayMs) {
        await this.sleep(config.batch.maxDelayMs - (now - oldest));
        continue;
      }
      try {
        await this.round(messages);
        backoffMs = 100;
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        this.storeUp = false;
        this.deps.metrics.storeErrors.inc();
        const wait = Math.max(error.retryAfterMs ?? 0, backoffMs * (0.5 + Math.random() / 2));
        log.warn(
          { err: error.message, waitMs: Math.round(wait), inbox: state.inboxDepth() },
          "store unavailable; holding messages and commits",
        );
        await this.sleep(wait);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  }

  private async round(messages: readonly InboxMessage[]): Promise<void> {
    const { state, store, registry, metrics, config } = this.deps;
    const now = this.deps.now();
    const deadLetters: DeadLetter[] = [];
    const handled: Array<{ deviceId: string; seq: number; receivedMs: number }> = [];
    const points: Point[] = [];
    /** For each point, the message it came from (to dead-letter store rejections). */
    const origin: InboxMessage[] = [];
    const seenInRound = new Set<string>();

    for (const message of messages) {
      const decoded = decodeUplink(message.topic, message.payload, registry, now, config);
      if (!decoded.ok) {
        metrics.deadLettered.inc({ reason: decoded.reason });
        deadLetters.push({
          receivedMs: message.receivedMs,
          topic: message.topic,
          deviceId: decoded.deviceId,
          seq: decoded.seq,
          reason: decoded.reason,
          detail: decoded.detail,
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
      const key = `${decoded.deviceId}\u0000${decoded.seq}`;
      if (seenInRound.has(key) || state.isHandled(decoded.deviceId, decoded.seq)) {
        metrics.duplicates.inc();
        handled.push({
          deviceId: decoded.deviceId,
          seq: decoded.seq,
          receivedMs: message.receivedMs,
        });
        continue;
      }
      seenInRound.add(key);
      metrics.readingsReceived.inc(decoded.points.length);
      for (const p of decoded.points) {
        points.push(p);
        origin.push(message);
      }
      handled.push({
        deviceId: decoded.deviceId,
        seq: decoded.seq,
        receivedMs: message.receivedMs,
      });
    }

    for (let from = 0; from < points.length; from += config.batch.maxPoints) {
      const chunk = points.slice(from, from + config.batch.maxPoints);
      const started = process.hrtime.bigint();
      const outcome = await store.write(chunk);
      metrics.storeLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.storeUp = true;
      metrics.readingsStored.inc(chunk.length - outcome.rejected.length);
      for (const { index, reason } of outcome.rejected) {
        const point = chunk[index];
        const message = origin[from + index];
        if (point === undefined || message === undefined) continue;
        metrics.deadLettered.inc({ reason: "store_rejected" });
        deadLetters.push({
          receivedMs: message.receivedMs,
          topic: message.topic,
          deviceId: point.tags.device,
          seq: point.seq,
          reason: "store_rejected",
          detail: `reading at ${new Date(point.timeMs).toISOString()} refused by the store: ${reason}`,
          payload: message.payload,
        });
      }
    }

    const moved = state.applyBatch(
      { inboxIds: messages.map((m) => m.id), handled, deadLetters },
      this.deps.now(),
    );
    await this.publish(moved);
  }

  private async publish(moved: ReadonlyMap<string, number>): Promise<void> {
    const { state, metrics, log } = this.deps;
    for (const [deviceId, committedSeq] of moved) {
      try {
        await this.deps.publishCommit(deviceId, committedSeq);
        metrics.commitsPublished.inc();
      } catch (error) {
        // The commit is retained state recomputed from the store; the next one carries it.
        log.warn({ err: (error as Error).message, deviceId }, "commit publish failed");
      }
      const progress = state.progress(deviceId);
      if (progress !== undefined)
        metrics.commitLag.set({ device: deviceId }, progress.lastSeq - progress.committedSeq);
    }
  }
}
