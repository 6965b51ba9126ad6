import type { Logger } from "pino";
import { TOPIC_ROOT } from "../contracts/index.js";
import type { IngestMetrics } from "./metrics.js";
import type { IngestState } from "./state.js";

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

const DATA_PREFIX = `${TOPIC_ROOT}/devices/`;

/** `done(null)`: durable, acknowledge; `done(error)`: not taken, close the client unacknowledged. */
export type GateDone = (error: Error | null) => void;

interface Held {
  readonly topic: string;
  readonly payload: Buffer;
  readonly done: GateDone;
  readonly since: number;
}

export interface InboxGateDeps {
  readonly log: Logger;
  readonly state: IngestState;
  readonly metrics: IngestMetrics;
  readonly now: () => number;
  readonly inboxMaxMessages: number;
  /** Messages were added to the inbox. */
  readonly onMessages: () => void;
  /** A publisher held at a full inbox longer than this is refused; default 10 s. */
  readonly holdMaxMs?: number;
}

export class InboxGate {
  private group: Array<{ topic: string; payload: Buffer; receivedMs: number; done: GateDone }> = [];
  private flushScheduled = false;
  /** Publishers waiting for room in a full inbox, oldest first (bounded by the broker's clients). */
  private held: Held[] = [];
  private recheck: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: InboxGateDeps) {}

  /** The broker's publish gate (see broker/app.ts PublishGate). */
  readonly accept = (topic: string, payload: Buffer, done: GateDone): void => {
    if (!topic.startsWith(DATA_PREFIX) || !topic.endsWith("/data")) return done(null);
    if (this.closed) return done(new Error("ingest stopping"));
    if (this.held.length > 0 || this.full()) {
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

  private full(): boolean {
    return this.deps.state.inbox.depth() + this.group.length >= this.deps.inboxMaxMessages;
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
    try {
      this.deps.state.inbox.appendMany(group);
    } catch (error) {
      // Disk full or the like: nothing of the group is acknowledged, the devices re-send it.
      this.deps.log.error(
        { err: (error as Error).message, messages: group.length },
        "inbox write failed; refusing the messages",
      );
      for (const m of group) m.done(new Error("ingest inbox unavailable"));
      return;
    }
    this.deps.metrics.messagesReceived.inc(group.length);
    for (const m of group) m.done(null);
    this.deps.onMessages();
  }

  private hold(held: Held): void {
    if (this.held.length === 0) {
      this.deps.metrics.inboxFullWaits.inc();
      this.deps.log.warn(
        { inbox: this.deps.state.inbox.depth(), bound: this.deps.inboxMaxMessages },
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
    while (this.held.length > 0 && !this.full()) {
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
