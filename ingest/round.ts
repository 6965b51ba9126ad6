import type { Logger } from "pino";
import type { IngestConfig } from "../contracts/index.js";
import type { StoredBatch } from "../contracts/model/stored-readings.js";
import { type Decoded, decodeUplink, type DeviceLookup } from "./decode.js";
import type { IngestMetrics } from "./metrics.js";
import { ReadingColumns } from "./reading-columns.js";
import type { BatchOutcome, DeadLetter, InboxMessage } from "./state.js";
import type { Point, TimeSeriesStore, WriteBatch, WriteOutcome } from "./store/types.js";

/*
 * One round of the pipeline: the messages taken from the inbox together, passed through named
 * stages that each read and fill one typed object (as aedes' publish path runs a list of steps):
 *
 *   decode → dedupe → collect (per message)  →  write  →  map rejections  →  commit  →  rules
 *     → answer re-sends → record lag
 *
 * Each stage is a function of (round, context). The round is all-or-nothing: a store outage
 * (StoreUnavailableError) out of `write` leaves every message in the inbox, nothing committed.
 */

/**
 * What a round needs of the ingest's durable state: the embedded ingest.db (IngestState, which
 * answers from memory and applies a round in one synchronous transaction) or PostgreSQL shared by
 * the nodes of a cluster (cluster-pipeline.ts, which asks the database and applies a round
 * asynchronously).
 */
export interface RoundState {
  /**
   * Learn what `isHandled` will be asked about these (device, seq), all at once (a shared store
   * answers in one query); absent: the state knows without asking.
   */
  prefetch?(
    keys: ReadonlyArray<{ readonly deviceId: string; readonly seq: number }>,
  ): Promise<void>;
  /** Whether (device, seq) was handled before: stored, or dead-lettered. */
  isHandled(deviceId: string, seq: number): boolean;
  /** A device's newest seq and committed seq, where the state keeps them (the commit lag). */
  progress(
    deviceId: string,
  ): { readonly lastSeq: number; readonly committedSeq: number } | undefined;
  /**
   * Apply the round: dead letters in, handled seqs recorded, inbox rows out. The commits moved,
   * or an AppliedRound when part of the round was not applied.
   */
  applyBatch(
    outcome: BatchOutcome,
    nowMs: number,
  ):
    | ReadonlyMap<string, number>
    | AppliedRound
    | Promise<ReadonlyMap<string, number> | AppliedRound>;
}

/** A round applied in part (a cluster node: a partition whose lease went during the round). */
export interface AppliedRound {
  readonly moved: ReadonlyMap<string, number>;
  /**
   * Inbox ids of the messages not applied: their rows stay for the partition's new owner, which
   * hands their readings to its own rules; this round's rules do not get them.
   */
  readonly withheld: ReadonlySet<number>;
}

/** What a round needs from the pipeline that runs it. */
export interface RoundContext {
  readonly log: Logger;
  readonly config: IngestConfig;
  readonly state: RoundState;
  readonly store: TimeSeriesStore;
  readonly registry: DeviceLookup;
  readonly metrics: IngestMetrics;
  readonly now: () => number;
  /** (device, seq) of messages in rounds in flight: a copy arriving meanwhile is a duplicate. */
  readonly inFlightKeys: Set<string>;
  /** The columns the rules read, pooled across rounds; absent when no rules run. */
  readonly columns: ColumnPool | undefined;
  /** The one entry point into the rules: the readings the store acknowledged. */
  readonly onStored: ((readings: StoredBatch) => void) | undefined;
  /** Publish the commits that moved. */
  readonly publish: (moved: ReadonlyMap<string, number>) => void;
  /** Publish a device's commit again, at most every so often (it re-sends what is committed). */
  readonly republish: (deviceId: string) => void;
}

/** A message of a round whose readings go to the store. */
interface Source {
  readonly message: InboxMessage;
  readonly deviceId: string;
  readonly seq: number;
  /** The index in the round of its first point. */
  readonly first: number;
}

interface Handled {
  readonly deviceId: string;
  readonly seq: number;
  readonly receivedMs: number;
}

/** The round as it passes through the stages. */
export interface Round {
  readonly messages: readonly InboxMessage[];
  /** The (device, seq) keys this round holds in flight; released by the pipeline when it ends. */
  readonly keys: string[];
  readonly deadLetters: DeadLetter[];
  /** Messages handled (stored or dead-lettered): their commit can move on. */
  readonly handled: Handled[];
  /** The messages whose readings go to the store, in order, and where their points start. */
  readonly sources: Source[];
  /** Devices that re-sent a message already handled. */
  readonly resent: Set<string>;
  /**
   * The round's store writes, each of up to batch.maxPoints points. A point goes into its batch
   * as soon as its message is decoded (InfluxDB: as a line in the write body) and is not kept:
   * points held until the write outlive V8's young generation and are copied, then promoted
   * (with them held, the scavenger's pauses were three times as long: --trace-gc-nvp on a child
   * of npm run bench -- ingest). The rules get the readings from columns, for the same reason.
   */
  readonly batches: Array<WriteBatch | undefined>;
  /** The batch being filled; made at its first point (an InfluxDB batch takes a body). */
  filling: WriteBatch | undefined;
  /** The readings for the rules (from the pool), in round order. */
  readonly columns: ReadingColumns | undefined;
  /** Points of the round. */
  total: number;
  /** Indexes (in the round) of the points the store refused. */
  readonly refused: Set<number>;
  /** Indexes of points whose message was not applied (AppliedRound.withheld): not for the rules. */
  readonly withheld: Set<number>;
  /** Store rejections, grouped by the message they came from: one dead letter per message. */
  readonly rejectedBySource: Map<Source, { indexes: number[]; reasons: Set<string> }>;
  /** Devices whose commit moved, and to where. */
  moved: ReadonlyMap<string, number>;
}

/** A dead letter's reason text at most, in characters (the raw payload is kept whole). */
const MAX_DETAIL = 2_000;
/** Columns larger than this (readings) are not kept for the next round (about 5 MB). */
const SPARE_COLUMNS_MAX_READINGS = 65_536;

function clip(text: string): string {
  return text.length <= MAX_DETAIL
    ? text
    : `${text.slice(0, MAX_DETAIL)}… (${text.length - MAX_DETAIL} more characters)`;
}

/** A message's (device, seq) as one string key. */
export const keyOf = (deviceId: string, seq: number) => `${deviceId}\u0000${seq}`;

/**
 * The rules' columns of finished rounds, used again: typed arrays live outside the JS heap, and
 * V8 counts fresh ones towards a full collection. As many as rounds run at once; a round's
 * columns grown past SPARE_COLUMNS_MAX_READINGS are let go.
 */
export class ColumnPool {
  private readonly spare: ReadingColumns[] = [];

  constructor(private readonly size: number) {}

  take(): ReadingColumns {
    return this.spare.pop() ?? new ReadingColumns();
  }

  give(columns: ReadingColumns): void {
    if (this.spare.length >= this.size || columns.capacity > SPARE_COLUMNS_MAX_READINGS) return;
    columns.clear();
    this.spare.push(columns);
  }
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

export function newRound(messages: readonly InboxMessage[], ctx: RoundContext): Round {
  return {
    messages,
    keys: [],
    deadLetters: [],
    handled: [],
    sources: [],
    resent: new Set(),
    batches: [],
    filling: undefined,
    columns: ctx.onStored !== undefined ? ctx.columns?.take() : undefined,
    total: 0,
    refused: new Set(),
    withheld: new Set(),
    rejectedBySource: new Map(),
    moved: new Map(),
  };
}

// ---------------------------------------------------------------------------------------------
// Per message: decode → dedupe → collect

type Valid = Extract<Decoded, { ok: true }>;

/** Decode and validate; a message that fails is dead-lettered here. */
function decode(round: Round, message: InboxMessage, ctx: RoundContext): Valid | undefined {
  // Freshness is judged at receipt, so messages that waited out a store outage stay valid.
  const decoded = decodeUplink(
    message.topic,
    message.payload,
    ctx.registry,
    message.receivedMs,
    ctx.config,
  );
  if (decoded.ok) return decoded;
  ctx.metrics.deadLettered.inc({ reason: decoded.reason });
  round.deadLetters.push({
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
    ctx.registry.device(decoded.deviceId) !== undefined
  ) {
    round.handled.push({
      deviceId: decoded.deviceId,
      seq: decoded.seq,
      receivedMs: message.receivedMs,
    });
  }
  return undefined;
}

/** Whether the message is new: not held by a round in flight, not handled before. */
function dedupe(round: Round, message: InboxMessage, decoded: Valid, ctx: RoundContext): boolean {
  const key = keyOf(decoded.deviceId, decoded.seq);
  if (ctx.inFlightKeys.has(key)) {
    // Another round in flight holds this message; if that round fails, it retries its copy.
    ctx.metrics.duplicates.inc();
    return false;
  }
  if (ctx.state.isHandled(decoded.deviceId, decoded.seq)) {
    ctx.metrics.duplicates.inc();
    round.handled.push({
      deviceId: decoded.deviceId,
      seq: decoded.seq,
      receivedMs: message.receivedMs,
    });
    round.resent.add(decoded.deviceId);
    return false;
  }
  ctx.inFlightKeys.add(key);
  round.keys.push(key);
  return true;
}

/** The message's points into the round's store writes, its readings into the rules' columns. */
function collect(round: Round, message: InboxMessage, decoded: Valid, ctx: RoundContext): void {
  const { store, config, metrics } = ctx;
  metrics.readingsReceived.inc(decoded.points.length);
  round.sources.push({
    message,
    deviceId: decoded.deviceId,
    seq: decoded.seq,
    first: round.total,
  });
  round.total += decoded.points.length;
  let batch = round.filling;
  for (const point of decoded.points) {
    batch ??= store.batch?.() ?? new CollectedBatch(store);
    batch.add(point);
    if (batch.size >= config.batch.maxPoints) {
      round.batches.push(batch);
      batch = undefined;
    }
  }
  round.filling = batch;
  round.columns?.add(
    decoded.deviceId,
    decoded.replay,
    decoded.points,
    decoded.seq,
    message.receivedMs,
  );
  round.handled.push({
    deviceId: decoded.deviceId,
    seq: decoded.seq,
    receivedMs: message.receivedMs,
  });
}

/** Every message through decode, dedupe and collect, one message at a time. */
function take(round: Round, ctx: RoundContext): void | Promise<void> {
  if (ctx.state.prefetch === undefined) {
    for (const message of round.messages) {
      const decoded = decode(round, message, ctx);
      if (decoded === undefined || !dedupe(round, message, decoded, ctx)) continue;
      collect(round, message, decoded, ctx);
    }
    finishTake(round);
    return;
  }
  // A shared state is asked about every decoded message at once, then each is deduped.
  const valid: Array<{ message: InboxMessage; decoded: Valid }> = [];
  for (const message of round.messages) {
    const decoded = decode(round, message, ctx);
    if (decoded !== undefined) valid.push({ message, decoded });
  }
  return ctx.state.prefetch(valid.map((v) => v.decoded)).then(() => {
    for (const { message, decoded } of valid) {
      if (dedupe(round, message, decoded, ctx)) collect(round, message, decoded, ctx);
    }
    finishTake(round);
  });
}

function finishTake(round: Round): void {
  if (round.filling !== undefined) round.batches.push(round.filling);
  round.filling = undefined;
}

// ---------------------------------------------------------------------------------------------
// The round: write → map rejections → commit → rules → re-sends → lag

/** The store writes, in order; the points each refused, by their index in the round. */
async function write(round: Round, ctx: RoundContext): Promise<void> {
  const { metrics } = ctx;
  let from = 0;
  for (let b = 0; b < round.batches.length; b++) {
    const batch = round.batches[b];
    if (batch === undefined) continue;
    // Spent once written: the round does not keep its body while the next one is written.
    round.batches[b] = undefined;
    const size = batch.size;
    const started = process.hrtime.bigint();
    const outcome = await batch.write();
    metrics.storeLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    metrics.readingsStored.inc(size - outcome.rejected.length);
    for (const { index, reason } of outcome.rejected) {
      const at = from + index;
      round.refused.add(at);
      const source = sourceOf(round.sources, at);
      if (source === undefined) continue;
      const entry = round.rejectedBySource.get(source) ?? {
        indexes: [],
        reasons: new Set<string>(),
      };
      entry.indexes.push(at - source.first);
      entry.reasons.add(reason);
      round.rejectedBySource.set(source, entry);
    }
    from += size;
  }
}

/** One dead letter per message some of whose readings the store refused. */
function mapRejections(round: Round, ctx: RoundContext): void {
  for (const [{ message, deviceId, seq }, entry] of round.rejectedBySource) {
    ctx.metrics.deadLettered.inc({ reason: "store_rejected" }, entry.indexes.length);
    round.deadLetters.push({
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
}

/** In one state transaction: dead letters in, handled seqs recorded, inbox rows out; publish. */
function commit(round: Round, ctx: RoundContext): void | Promise<void> {
  const moved = ctx.state.applyBatch(
    {
      inboxIds: round.messages.map((m) => m.id),
      handled: round.handled,
      deadLetters: round.deadLetters,
    },
    ctx.now(),
  );
  const published = (applied: ReadonlyMap<string, number> | AppliedRound) => {
    const partial = "withheld" in applied ? applied : undefined;
    if (partial !== undefined) withhold(round, partial.withheld);
    round.moved = partial?.moved ?? (applied as ReadonlyMap<string, number>);
    ctx.publish(round.moved);
  };
  if (moved instanceof Promise) return moved.then(published);
  published(moved);
}

/** The points of the messages not applied: the rules do not get them. */
function withhold(round: Round, ids: ReadonlySet<number>): void {
  if (ids.size === 0) return;
  round.sources.forEach((source, i) => {
    if (!ids.has(source.message.id)) return;
    const end = round.sources[i + 1]?.first ?? round.total;
    for (let at = source.first; at < end; at++) round.withheld.add(at);
  });
}

/** The stored readings to the rules; the columns back to the pool. */
function handToRules(round: Round, ctx: RoundContext): void {
  const columns = round.columns;
  if (columns === undefined) return;
  const skipped =
    round.withheld.size === 0 ? round.refused : new Set([...round.refused, ...round.withheld]);
  if (ctx.onStored !== undefined && round.total > skipped.size) {
    try {
      ctx.onStored(columns.markRefused(skipped));
    } catch (error) {
      // The readings are stored and committed whatever the rules make of them.
      ctx.log.error({ err: error }, "rules evaluation failed");
    }
  }
  ctx.columns?.give(columns);
}

/** A device re-sending what is already committed did not see its commit: send it again. */
function answerResends(round: Round, ctx: RoundContext): void {
  for (const deviceId of round.resent) if (!round.moved.has(deviceId)) ctx.republish(deviceId);
}

function recordLag(round: Round, ctx: RoundContext): void {
  for (const deviceId of new Set(round.handled.map((h) => h.deviceId))) {
    const progress = ctx.state.progress(deviceId);
    if (progress !== undefined)
      ctx.metrics.commitLag.set({ device: deviceId }, progress.lastSeq - progress.committedSeq);
  }
}

type Stage = (round: Round, ctx: RoundContext) => void | Promise<void>;

/** The stages of a round, in order. */
export const STAGES: readonly Stage[] = [
  take,
  write,
  mapRejections,
  commit,
  handToRules,
  answerResends,
  recordLag,
];

/**
 * Run a round through every stage; true when it wrote points (the store answered). Only a stage
 * that returns a promise is awaited: with the embedded state (whose commit is synchronous) the
 * stages after the write run in one go, so another round
 * in flight cannot commit or reach the rules between this round's commit and its rules.
 */
export async function runRound(round: Round, ctx: RoundContext): Promise<boolean> {
  for (const stage of STAGES) {
    const pending = stage(round, ctx);
    if (pending !== undefined) await pending;
  }
  return round.total > 0;
}
