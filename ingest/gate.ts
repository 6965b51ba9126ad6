import { statfsSync } from "node:fs";
import type { Logger } from "pino";
import { TOPIC_ROOT } from "../contracts/index.js";
import type { IngestMetrics } from "./metrics.js";

/*
 * The all-in-one process's way in: the broker hands every authorized publish to this gate before
 * it acknowledges it, and the gate writes device data to the durable inbox first. This is a
 * stronger guarantee than a subscription can give (aedes sends a QoS 1 PUBACK before it routes the
 * message, so a crash in between loses a message the device believes delivered), and it is
 * cheaper: no MQTT hop inside the process, and one SQLite transaction for every message that
 * arrived in the same turn of the event loop (group commit).
 */

/** Messages written in one transaction at most; more are written in the next. */
const GROUP_MAX = 1_000;
/** A publisher held this long at a full inbox is disconnected, unacknowledged. */
const FULL_HOLD_MAX_MS = 10_000;
/** How often held publishers look at the inbox again. */
const FULL_RECHECK_MS = 100;
/** Free space asked of the file system at most this often (one statfs). */
const FREE_CHECK_MS = 250;
/** Without a way to ask for free space, a write that found the disk full is tried again after this. */
const DISK_RETRY_MS = 1_000;
/** "disk full" is logged at most this often (a disk that fills and frees by turns). */
const DISK_LOG_EVERY_MS = 10_000;

/**
 * A write that failed because the disk (or the file system holding the data directory) is full:
 * SQLite's SQLITE_FULL ("database or disk is full"), an I/O error from a file that cannot grow
 * (SQLITE_IOERR_WRITE, _FSYNC, _SHMSIZE, …, which a full tmpfs gives) or ENOSPC.
 */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== "string") return false;
  return /^(SQLITE_FULL|SQLITE_IOERR_(WRITE|FSYNC|SHMSIZE|SHMMAP|TRUNCATE|DIR_FSYNC)|ENOSPC|EDQUOT)$/.test(
    code,
  );
}

/** Free bytes for an unprivileged writer on the file system holding `dir`, or undefined. */
export function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

const DATA_PREFIX = `${TOPIC_ROOT}/devices/`;

/**
 * Where the gate writes: the embedded inbox (ingest/inbox.ts, synchronous), or the inbox the nodes
 * of a cluster share in PostgreSQL (ingest/cluster-inbox.ts, asynchronous).
 */
export interface GateInbox {
  /** Messages in the inbox now (the bound adds those the gate is still writing). */
  depth(): number;
  /** Durable when this returns, or when the promise it returns resolves. */
  appendMany(
    group: ReadonlyArray<{ topic: string; payload: Buffer; receivedMs: number }>,
  ): void | Promise<void>;
}

/** `done(null)`: durable, acknowledge; `done(error)`: not taken, close the client unacknowledged. */
export type GateDone = (error: Error | null) => void;

interface Grouped {
  readonly topic: string;
  readonly payload: Buffer;
  readonly receivedMs: number;
  readonly done: GateDone;
}

interface Held {
  readonly topic: string;
  readonly payload: Buffer;
  readonly done: GateDone;
  readonly since: number;
}

export interface InboxGateDeps {
  readonly log: Logger;
  readonly inbox: GateInbox;
  readonly metrics: IngestMetrics;
  readonly now: () => number;
  readonly inboxMaxMessages: number;
  /** Messages were added to the inbox. */
  readonly onMessages: () => void;
  /** A publisher held at a full inbox longer than this is refused; default 10 s. */
  readonly holdMaxMs?: number;
  /**
   * The data directory's free space (bytes; `freeBytes(dataDir)`): below `reserveBytes` no message
   * is taken — publishers are held, unacknowledged, as at a full inbox — so the pipeline keeps the
   * room to commit what the inbox holds. Absent: only a failed write says the disk is full.
   */
  readonly free?: (() => number | undefined) | undefined;
  readonly reserveBytes?: number;
}

export class InboxGate {
  private group: Grouped[] = [];
  private flushScheduled = false;
  /** Publishers waiting for room in a full inbox, oldest first (bounded by the broker's clients). */
  private held: Held[] = [];
  private recheck: NodeJS.Timeout | undefined;
  private closed = false;
  /** Since when the disk is full (a write failed, or free space under the reserve). */
  private diskFullSince: number | undefined;
  private freeCheckedAt = Number.NEGATIVE_INFINITY;
  private diskLoggedAt = Number.NEGATIVE_INFINITY;
  /** Messages of groups whose asynchronous write has not finished: counted against the bound. */
  private writing = 0;

  constructor(private readonly deps: InboxGateDeps) {}

  /** The broker's publish gate (see broker/app.ts PublishGate). */
  readonly accept = (topic: string, payload: Buffer, done: GateDone): void => {
    if (!topic.startsWith(DATA_PREFIX) || !topic.endsWith("/data")) return done(null);
    if (this.closed) return done(new Error("ingest stopping"));
    if (this.held.length > 0 || this.full() || this.diskFull()) {
      this.hold({ topic, payload, done, since: this.deps.now() });
      return;
    }
    this.enqueue(topic, payload, done);
  };

  /** Write what is grouped and refuse what is held (the clients re-send after reconnecting). */
  close(): void {
    this.flush();
    this.closed = true;
    if (this.recheck !== undefined) clearTimeout(this.recheck);
    for (const h of this.held.splice(0)) h.done(new Error("ingest stopping"));
  }

  /**
   * Whether the disk is full: a write failed for lack of space (until free space is back above the
   * reserve), or free space is under the reserve. Asks the file system at most every 250 ms.
   */
  diskFull(): boolean {
    const now = this.deps.now();
    if (now - this.freeCheckedAt < FREE_CHECK_MS) return this.diskFullSince !== undefined;
    this.freeCheckedAt = now;
    const free = this.deps.free?.();
    if (free === undefined) {
      // Nothing to ask: a failed write holds everything for a while, then the write is tried again.
      if (this.diskFullSince !== undefined && now - this.diskFullSince >= DISK_RETRY_MS)
        this.diskFullSince = undefined;
      return this.diskFullSince !== undefined;
    }
    const reserve = this.deps.reserveBytes ?? 0;
    if (free < reserve) this.markDiskFull(`${free} bytes free, under the reserve of ${reserve}`);
    else if (this.diskFullSince !== undefined) {
      this.deps.log.warn(
        { free, fullForMs: now - this.diskFullSince },
        "disk space is back: taking device data again",
      );
      this.diskFullSince = undefined;
    }
    return this.diskFullSince !== undefined;
  }

  private markDiskFull(why: string): void {
    if (this.diskFullSince !== undefined) return;
    const now = this.deps.now();
    this.diskFullSince = now;
    if (now - this.diskLoggedAt < DISK_LOG_EVERY_MS) return;
    this.diskLoggedAt = now;
    this.deps.log.error(
      { why },
      "disk full: device data is held unacknowledged (no PUBACK) until space is freed in the data directory",
    );
  }

  private full(): boolean {
    return this.deps.inbox.depth() + this.writing + this.group.length >= this.deps.inboxMaxMessages;
  }

  private enqueue(topic: string, payload: Buffer, done: GateDone): void {
    this.group.push({ topic, payload, receivedMs: this.deps.now(), done });
    if (this.group.length >= GROUP_MAX) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const group = this.group;
    if (group.length === 0) return;
    this.group = [];
    let written: void | Promise<void>;
    try {
      written = this.deps.inbox.appendMany(group);
    } catch (error) {
      this.failed(group, error);
      return;
    }
    if (!(written instanceof Promise)) {
      this.accepted(group);
      return;
    }
    this.writing += group.length;
    written.then(
      () => {
        this.writing -= group.length;
        this.accepted(group);
      },
      (error: unknown) => {
        this.writing -= group.length;
        this.failed(group, error);
      },
    );
  }

  /** The group is durable: acknowledge it. */
  private accepted(group: readonly Grouped[]): void {
    this.deps.metrics.messagesReceived.inc(group.length);
    for (const m of group) m.done(null);
    this.deps.onMessages();
  }

  /** The group's write failed: nothing of it is acknowledged. */
  private failed(group: readonly Grouped[], error: unknown): void {
    if (isDiskFull(error)) {
      // Held like publishers at a full inbox, written when space is back, or refused
      // unacknowledged after the hold (the devices re-send).
      this.markDiskFull((error as Error).message);
      this.freeCheckedAt = this.deps.now();
      const since = this.deps.now();
      this.held.unshift(...group.map((m) => ({ ...m, since })));
      this.recheck ??= setTimeout(() => this.release(), FULL_RECHECK_MS);
      return;
    }
    // Another failure: nothing of the group is acknowledged, the devices re-send it.
    this.deps.log.error(
      { err: (error as Error).message, messages: group.length },
      "inbox write failed; refusing the messages",
    );
    for (const m of group) m.done(new Error("ingest inbox unavailable"));
  }

  private hold(held: Held): void {
    if (this.held.length === 0) {
      this.deps.metrics.inboxFullWaits.inc();
      this.deps.log.warn(
        { inbox: this.deps.inbox.depth(), bound: this.deps.inboxMaxMessages },
        "inbox full; holding publishers until it drains",
      );
    }
    this.held.push(held);
    this.recheck ??= setTimeout(() => this.release(), FULL_RECHECK_MS);
  }

  /** Let held publishers in as room appears, in order; disconnect those held too long. */
  private release(): void {
    this.recheck = undefined;
    const now = this.deps.now();
    while (this.held.length > 0 && !this.full() && !this.diskFull()) {
      const next = this.held.shift();
      if (next !== undefined) this.enqueue(next.topic, next.payload, next.done);
    }
    const holdMaxMs = this.deps.holdMaxMs ?? FULL_HOLD_MAX_MS;
    const expired = this.held.filter((h) => now - h.since >= holdMaxMs);
    if (expired.length > 0) {
      this.held = this.held.filter((h) => now - h.since < holdMaxMs);
      for (const h of expired) h.done(new Error("ingest inbox full"));
    }
    if (this.held.length > 0) this.recheck = setTimeout(() => this.release(), FULL_RECHECK_MS);
  }
}
