import type { Logger } from "pino";
import { type IngestConfig, parseTopic } from "../contracts/index.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import { type BackoffPolicy, backoffDelayMs } from "../infra/backoff.js";
import { isDataRefusal } from "../infra/postgres/errors.js";
import type { FencedOutcome } from "../infra/postgres/fence.js";
import type { DeviceLookup } from "./decode.js";
import type { IngestMetrics } from "./metrics.js";
import { ROUND_MESSAGES } from "./pipeline.js";
import {
  ColumnPool,
  keyOf,
  newRound,
  type RoundContext,
  type RoundState,
  runRound,
} from "./round.js";
import type { DeadLetter } from "./dead-letters.js";
import type { BatchOutcome } from "./state.js";
import type {
  PartitionBatch,
  PartitionedInboxMessage,
  PostgresIngestState,
} from "./state-postgres.js";
import { StoreUnavailableError, type TimeSeriesStore } from "./store/types.js";

/*
 * The ingest of a node in a cluster (docs/cluster.md, Ingest state): the same rounds as the
 * embedded pipeline (round.ts: decode → dedupe → write → commit → rules), over the inbox and
 * commit ledger that the nodes share in PostgreSQL (PostgresIngestState), and only for the
 * partitions this node holds a lease on.
 *
 * Each round takes the oldest rows of the partitions owned, asks the database in one query which
 * of their (device, seq) were handled before (by this node or by the partition's last owner),
 * writes the new readings to the time-series store, then applies the round in ONE transaction in
 * which every partition's lease is checked (applyRound): a partition whose lease went meanwhile is
 * left out, its rows stay for the new owner, whose dedupe keeps them from being handled twice
 * (their readings, already written, are written again identically: the store's writes are
 * idempotent). Only then are the commits published and the readings handed to the rules.
 *
 * One round at a time: a round's commit is asynchronous here, and one round at a time keeps the
 * order commit → rules of each round without a lock. The database's round trips, not this
 * loop, bound a node's rate (npm run bench -- cluster).
 */

/** Waits after a failed round (the store or PostgreSQL out of reach). */
const OUTAGE_BACKOFF: BackoffPolicy = { baseMs: 100, capMs: 10_000, jitter: "equal" };
/** A device that keeps re-sending committed messages gets its commit again at most this often. */
const REPUBLISH_EVERY_MS = 5_000;
/** Stale gaps are looked for at most this often, while the inbox of the partitions is empty. */
const GAP_CHECK_EVERY_MS = 1_000;

export interface ClusterPipelineDeps {
  readonly log: Logger;
  readonly config: IngestConfig;
  readonly state: PostgresIngestState;
  readonly store: TimeSeriesStore;
  readonly registry: DeviceLookup;
  readonly metrics: IngestMetrics;
  /** The partitions this node holds now, with their lease tokens (LeaseKeeper.owned). */
  readonly owned: () => ReadonlyMap<number, number>;
  /** Publish the device's commit (retained), as the embedded pipeline does. */
  readonly publishCommit: (deviceId: string, committedSeq: number) => void;
  /** Readings the store acknowledged, after their round was applied (the rules). */
  readonly onStored?: ((readings: StoredBatch) => void) | undefined;
  readonly now: () => number;
}

/** The device a data topic names (undefined: a topic that names none). */
function deviceOfTopic(topic: string): string | undefined {
  const parsed = parseTopic(topic);
  return parsed.ok && parsed.topic.type === "device" ? parsed.topic.deviceId : undefined;
}

/**
 * A round's outcome cut into one batch per partition: each inbox row, handled seq and dead letter
 * goes to the partition its message was appended under (a device's messages all carry its site's
 * partition; a dead letter that names no device goes with the topic's message).
 */
export function splitByPartition(
  messages: readonly PartitionedInboxMessage[],
  tokens: ReadonlyMap<number, number>,
  outcome: BatchOutcome,
): PartitionBatch[] {
  const byDevice = new Map<string, number>();
  const byTopic = new Map<string, number>();
  const byId = new Map<number, number>();
  for (const m of messages) {
    byId.set(m.id, m.partition);
    byTopic.set(m.topic, m.partition);
    const device = deviceOfTopic(m.topic);
    if (device !== undefined) byDevice.set(device, m.partition);
  }
  const parts = new Map<
    number,
    {
      inboxIds: number[];
      handled: BatchOutcome["handled"][number][];
      deadLetters: BatchOutcome["deadLetters"][number][];
    }
  >();
  const part = (partition: number) => {
    let p = parts.get(partition);
    if (p === undefined) {
      p = { inboxIds: [], handled: [], deadLetters: [] };
      parts.set(partition, p);
    }
    return p;
  };
  for (const id of outcome.inboxIds) {
    const partition = byId.get(id);
    if (partition !== undefined) part(partition).inboxIds.push(id);
  }
  for (const h of outcome.handled) {
    const partition = byDevice.get(h.deviceId);
    if (partition !== undefined) part(partition).handled.push(h);
  }
  for (const d of outcome.deadLetters) {
    const partition =
      (d.deviceId === undefined ? undefined : byDevice.get(d.deviceId)) ?? byTopic.get(d.topic);
    if (partition !== undefined) part(partition).deadLetters.push(d);
  }
  const batches: PartitionBatch[] = [];
  for (const [partition, outcomeOf] of parts) {
    const token = tokens.get(partition);
    // A partition not held when the round was taken has no rows in it (take asks only for those).
    if (token !== undefined) batches.push({ partition, token, outcome: outcomeOf });
  }
  return batches.sort((a, b) => a.partition - b.partition);
}

export class ClusterPipeline {
  #stopped = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #failures = 0;
  /** Messages per round: ROUND_MESSAGES, fewer while a message PostgreSQL refuses is looked for. */
  #limit = ROUND_MESSAGES;
  #lastGapCheck = Number.NEGATIVE_INFINITY;
  /** Partitions whose gap timers were restarted since this node took them: the lease's token. */
  readonly #timed = new Map<number, number>();
  readonly #inFlightKeys = new Set<string>();
  readonly #republished = new Map<string, number>();
  /** The rules' columns, used again round after round (one round at a time: one set). */
  readonly #columns: ColumnPool | undefined;
  /** Rounds applied, and partitions refused at a commit (their lease went during the round). */
  readonly counts = { rounds: 0, messages: 0, refusedPartitions: 0 };

  constructor(private readonly deps: ClusterPipelineDeps) {
    this.#columns = deps.onStored === undefined ? undefined : new ColumnPool(1);
  }

  /** Whether the last round failed on an unavailable store or database (retrying with backoff). */
  get failing(): boolean {
    return this.#failures > 0;
  }

  /** Rows appended (by this node or another): look at once instead of at the next poll. */
  notify(): void {
    this.#wake?.();
  }

  start(): void {
    this.#running ??= this.#loop().catch((error: unknown) => {
      // A programmer error: crash, and let the supervisor restart the node; the rows stay in
      // PostgreSQL for the partitions' next owner.
      this.deps.log.fatal({ err: error }, "cluster ingest pipeline failed");
      process.exitCode = 1;
      throw error;
    });
  }

  /** Finish the round in progress and stop; the rows not handled stay in PostgreSQL. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#running;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  async #loop(): Promise<void> {
    const { config } = this.deps;
    while (!this.#stopped) {
      const owned = new Map(this.deps.owned());
      // Partitions no longer held: their rows are the new owner's; forget what was taken of them.
      const lost = [...this.#timed.keys()].filter((p) => !owned.has(p));
      if (lost.length > 0) {
        this.deps.state.forget(lost);
        for (const p of lost) this.#timed.delete(p);
      }
      if (owned.size === 0) {
        await this.#sleep(config.batch.maxDelayMs);
        continue;
      }
      let messages: readonly PartitionedInboxMessage[] = [];
      try {
        await this.#startGapTimers(owned);
        messages = await this.deps.state.take([...owned.keys()], this.#limit);
        if (messages.length === 0) {
          this.#limit = ROUND_MESSAGES;
          await this.#closeStaleGaps(owned);
          this.#failures = 0;
          await this.#sleep(config.batch.maxDelayMs);
          continue;
        }
        await this.#round(messages, owned);
        this.#failures = 0;
      } catch (error) {
        if (messages.length > 0 && isDataRefusal(error)) {
          await this.#refusedForData(messages, owned, error as Error & { code: string });
          continue;
        }
        if (!(error instanceof StoreUnavailableError) && !isDatabaseError(error)) throw error;
        if (error instanceof StoreUnavailableError) this.deps.metrics.storeErrors.inc();
        const waitMs = backoffDelayMs(this.#failures++, OUTAGE_BACKOFF);
        this.deps.log.warn(
          { err: (error as Error).message, waitMs: Math.round(waitMs) },
          "cluster ingest round failed; the rows stay in PostgreSQL and are taken again",
        );
        await this.#sleep(waitMs);
      }
    }
  }

  /**
   * PostgreSQL refused a round for its data (SQLSTATE class 22 or 23): taken again as it is, the
   * round would be refused again, forever, and hold every later message of its partitions. The
   * message it cannot take is looked for by halving the rounds (the rows are taken oldest first,
   * so the next rounds take the refused round's messages again, fewer at a time); once a round of
   * one message is refused, that message is set aside as a `state_rejected` dead letter and the
   * rounds are whole again. A refusal that needs several messages together to happen passes once
   * they are taken apart; the rounds are whole again when the inbox is empty.
   */
  async #refusedForData(
    messages: readonly PartitionedInboxMessage[],
    owned: ReadonlyMap<number, number>,
    error: Error & { code: string },
  ): Promise<void> {
    const { log, state, metrics } = this.deps;
    if (messages.length > 1) {
      this.#limit = Math.ceil(messages.length / 2);
      log.warn(
        { sqlstate: error.code, err: error.message, messages: messages.length, next: this.#limit },
        "PostgreSQL refused a round for its data; taking fewer messages to find the one it refuses",
      );
      return;
    }
    const message = messages[0] as PartitionedInboxMessage;
    const token = owned.get(message.partition);
    if (token === undefined) return; // taken under a lease the loop saw: cannot happen
    const letter: DeadLetter = {
      receivedMs: message.receivedMs,
      topic: message.topic,
      deviceId: deviceOfTopic(message.topic),
      seq: seqOf(message.payload),
      reason: "state_rejected",
      detail: `PostgreSQL refused to record this message (SQLSTATE ${error.code}: ${error.message.slice(0, 300)}); set aside so the partition's later messages go on. Its readings may be in the time-series store; the device's commit moves past it when its gap is closed`,
      payload: message.payload,
    };
    try {
      let outcome: FencedOutcome<void>;
      try {
        outcome = await state.setAside(message, token, letter);
      } catch (again) {
        if (!isDataRefusal(again)) throw again;
        // The topic or the device id is what PostgreSQL refuses: kept without them.
        outcome = await state.setAside(message, token, {
          ...letter,
          topic: "",
          deviceId: undefined,
          seq: undefined,
        });
      }
      if (!outcome.ok) return; // the lease went: the new owner finds the message again
      metrics.deadLettered.inc({ reason: "state_rejected" });
      this.#limit = ROUND_MESSAGES;
      log.error(
        { sqlstate: error.code, err: error.message, topic: message.topic, inboxId: message.id },
        "PostgreSQL refused a message for its data: kept as a state_rejected dead letter",
      );
    } catch (failure) {
      if (!isDatabaseError(failure)) throw failure;
      const waitMs = backoffDelayMs(this.#failures++, OUTAGE_BACKOFF);
      log.warn(
        { err: (failure as Error).message, waitMs: Math.round(waitMs) },
        "could not set aside the message PostgreSQL refused; trying again",
      );
      await this.#sleep(waitMs);
    }
  }

  /**
   * A partition just taken (a new lease, even of a partition held before: another node may have
   * held it in between): its gaps' timers start now, since a device cannot fill them sooner.
   */
  async #startGapTimers(owned: ReadonlyMap<number, number>): Promise<void> {
    const fresh = [...owned].filter(([p, token]) => this.#timed.get(p) !== token);
    if (fresh.length === 0) return;
    await this.deps.state.resetGapTimers(
      fresh.map(([p]) => p),
      this.deps.now(),
    );
    for (const [p, token] of fresh) this.#timed.set(p, token);
  }

  async #closeStaleGaps(owned: ReadonlyMap<number, number>): Promise<void> {
    const now = this.deps.now();
    if (now - this.#lastGapCheck < GAP_CHECK_EVERY_MS) return;
    this.#lastGapCheck = now;
    const stale = await this.deps.state.stalePartitions(
      [...owned.keys()],
      now,
      this.deps.config.gapTimeoutMs,
    );
    for (const partition of stale) {
      const token = owned.get(partition);
      if (token === undefined) continue;
      const closed = await this.deps.state.closeStaleGaps(
        partition,
        token,
        now,
        this.deps.config.gapTimeoutMs,
      );
      if (!closed.ok) continue; // the lease went: the new owner closes them
      if (closed.value.gaps > 0)
        this.deps.metrics.deadLettered.inc({ reason: "missing_seq" }, closed.value.gaps);
      this.#publish(closed.value.moved);
    }
  }

  async #round(
    messages: readonly PartitionedInboxMessage[],
    owned: ReadonlyMap<number, number>,
  ): Promise<void> {
    const { state } = this.deps;
    let handled = new Set<string>();
    const roundState: RoundState = {
      prefetch: async (keys) => {
        const answers = await state.handled(keys);
        handled = new Set(
          keys.filter((_, i) => answers[i] === true).map((k) => keyOf(k.deviceId, k.seq)),
        );
      },
      isHandled: (deviceId, seq) => handled.has(keyOf(deviceId, seq)),
      // The commit lag is the embedded ledger's gauge; a node does not keep every device's.
      progress: () => undefined,
      applyBatch: async (outcome, nowMs) => {
        const result = await state.applyRound(splitByPartition(messages, owned, outcome), nowMs);
        if (result.refused.length === 0) return result.moved;
        this.counts.refusedPartitions += result.refused.length;
        this.deps.log.warn(
          { partitions: result.refused },
          "lease gone during the round: nothing committed for these partitions, their new owner handles the rows",
        );
        // Their readings are the new owner's to judge (it takes the rows again): not this
        // node's rules, which may not have heard of the loss yet.
        const refused = new Set(result.refused);
        const withheld = new Set(messages.filter((m) => refused.has(m.partition)).map((m) => m.id));
        return { moved: result.moved, withheld };
      },
    };
    const ctx: RoundContext = {
      log: this.deps.log,
      config: this.deps.config,
      state: roundState,
      store: this.deps.store,
      registry: this.deps.registry,
      metrics: this.deps.metrics,
      now: this.deps.now,
      inFlightKeys: this.#inFlightKeys,
      columns: this.#columns,
      onStored: this.deps.onStored,
      publish: (moved) => this.#publish(moved),
      republish: (deviceId) => this.#republish(deviceId),
    };
    const round = newRound(messages, ctx);
    try {
      await runRound(round, ctx);
      this.counts.rounds += 1;
      this.counts.messages += messages.length;
    } catch (error) {
      // Nothing was committed: the rows are taken again by the next round.
      state.release(messages.map((m) => m.id));
      throw error;
    } finally {
      for (const key of round.keys) this.#inFlightKeys.delete(key);
    }
  }

  /** A device re-sending what is committed did not see its commit: send it again, now and then. */
  #republish(deviceId: string): void {
    const now = this.deps.now();
    if (now - (this.#republished.get(deviceId) ?? Number.NEGATIVE_INFINITY) < REPUBLISH_EVERY_MS)
      return;
    this.#republished.set(deviceId, now);
    if (this.#republished.size > 100_000) this.#republished.clear();
    this.deps.state.progress(deviceId).then(
      (progress) => {
        if (progress !== undefined) this.deps.publishCommit(deviceId, progress.committedSeq);
      },
      (error: unknown) =>
        this.deps.log.warn(
          { err: (error as Error).message, device: deviceId },
          "commit not re-sent",
        ),
    );
  }

  #publish(moved: ReadonlyMap<string, number>): void {
    for (const [deviceId, committedSeq] of moved) {
      this.deps.publishCommit(deviceId, committedSeq);
      this.deps.metrics.commitsPublished.inc();
    }
  }
}

/** The seq a payload's envelope gives, when it is readable. */
function seqOf(payload: Buffer): number | undefined {
  try {
    const seq = (JSON.parse(payload.toString("utf8")) as { seq?: unknown }).seq;
    return Number.isSafeInteger(seq) ? (seq as number) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An error of PostgreSQL or of reaching it: the server's own (pg's DatabaseError: a SQLSTATE
 * code and a severity), a socket's (ECONNREFUSED, ETIMEDOUT, …), or pg's own words for a connection that
 * ended, a pool that was closed, or a connection that could not be had in time. Anything else is
 * a programmer error, which ends the loop.
 */
function isDatabaseError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return (
    (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && "severity" in error) ||
    (typeof code === "string" && /^E[A-Z]+$/.test(code)) ||
    /^(Connection terminated|Cannot use a pool after calling end|timeout exceeded when trying to connect)/.test(
      error.message,
    )
  );
}
