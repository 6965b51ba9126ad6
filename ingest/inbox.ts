import type Database from "better-sqlite3";
import type { Statements } from "../infra/sqlite-file.js";

export interface InboxMessage {
  readonly id: number;
  readonly receivedMs: number;
  readonly topic: string;
  readonly payload: Buffer;
}

/** Messages the in-memory copy of the inbox holds at most, in payload bytes. */
const MIRROR_MAX_BYTES = 64 * 1024 * 1024;

/**
 * The inbox (table `inbox` of `ingest.db`): every message received, written before its MQTT
 * PUBACK, deleted only once its readings are stored or it is dead-lettered. It is the bounded
 * queue and the durable spill in one, so a message the broker considers delivered survives an
 * ingest kill -9. Rows leave it in `IngestState.applyBatch`, in the same transaction that commits
 * them.
 */
export class Inbox {
  readonly #db: Database.Database;
  readonly #statements: Statements;
  readonly #insert: Database.Statement;
  /** Messages in the inbox, kept in memory: a count(*) per received message would walk the table. */
  #depth: number;
  /**
   * The rows not yet taken by the pipeline, in order, while they fit in memory: the pipeline
   * reads them from here instead of reading back what was just written. When they do not fit (a
   * long store outage) the copy is dropped and the pipeline reads the table until it catches up.
   */
  #mirror: InboxMessage[] = [];
  #mirrorBytes = 0;
  /** Appends go to `#mirror` (true once the pipeline has read the table to its end). */
  #mirroring = false;
  /** Highest inbox id handed to the pipeline. */
  #lastTakenId = 0;
  /** Rows appended and not yet taken. */
  #untaken: number;

  constructor(db: Database.Database, statements: Statements) {
    this.#db = db;
    this.#statements = statements;
    this.#insert = statements.get(
      "INSERT INTO inbox (received_ms, topic, payload) VALUES (?, ?, ?)",
    );
    this.#depth = (statements.get("SELECT count(*) AS n FROM inbox").get() as { n: number }).n;
    this.#untaken = this.#depth;
  }

  /** Append a received message; durable when this returns. */
  append(topic: string, payload: Buffer, receivedMs: number): void {
    const id = Number(this.#insert.run(receivedMs, topic, payload).lastInsertRowid);
    this.#appended({ id, receivedMs, topic, payload });
  }

  /** Append several messages in one transaction (group commit); durable when this returns. */
  appendMany(
    messages: ReadonlyArray<{ topic: string; payload: Buffer; receivedMs: number }>,
  ): void {
    const rows: InboxMessage[] = [];
    this.#db.transaction(() => {
      for (const m of messages) {
        const id = Number(this.#insert.run(m.receivedMs, m.topic, m.payload).lastInsertRowid);
        rows.push({ id, receivedMs: m.receivedMs, topic: m.topic, payload: m.payload });
      }
    })();
    for (const row of rows) this.#appended(row);
  }

  #appended(message: InboxMessage): void {
    this.#depth++;
    this.#untaken++;
    if (!this.#mirroring) return;
    if (this.#mirrorBytes + message.payload.length > MIRROR_MAX_BYTES) {
      // Too much waiting: stop copying; the pipeline reads the table from #lastTakenId on.
      this.#mirroring = false;
      this.#mirror = [];
      this.#mirrorBytes = 0;
      return;
    }
    this.#mirror.push(message);
    this.#mirrorBytes += message.payload.length;
  }

  /**
   * Count the rows again: after a transaction that removed rows was rolled back (a disk that
   * filled up under the batch), the in-memory depth counted removals that did not happen.
   */
  recount(): void {
    this.#depth = (
      this.#statements.get("SELECT count(*) AS n FROM inbox").get() as { n: number }
    ).n;
  }

  /** Messages in the inbox (taken by the pipeline or not), the queue's depth. */
  depth(): number {
    return this.#depth;
  }

  /** Messages received and not yet taken by the pipeline. */
  untaken(): number {
    return this.#untaken;
  }

  /** Receipt time of the oldest message not yet taken, if any. */
  oldestUntakenMs(): number | undefined {
    if (this.#untaken === 0) return undefined;
    if (this.#mirroring) return this.#mirror[0]?.receivedMs;
    const row = this.#statements
      .get("SELECT received_ms FROM inbox WHERE id > ? ORDER BY id LIMIT 1")
      .get(this.#lastTakenId) as { received_ms: number } | undefined;
    return row?.received_ms;
  }

  /**
   * Hand the next messages, in arrival order, to the pipeline. They stay in the inbox until
   * `IngestState.applyBatch` deletes them; a round that fails keeps its messages and retries them
   * itself (and after a crash they are read again from the table).
   */
  take(limit: number): InboxMessage[] {
    let taken: InboxMessage[];
    if (this.#mirroring) {
      taken = this.#mirror.splice(0, limit);
      for (const m of taken) this.#mirrorBytes -= m.payload.length;
    } else {
      taken = this.#read(this.#lastTakenId, limit);
      // Read to the end of the table: from now on appends are copied to memory.
      if (taken.length < limit) this.#mirroring = true;
    }
    const last = taken.at(-1);
    if (last !== undefined) this.#lastTakenId = last.id;
    this.#untaken -= taken.length;
    return taken;
  }

  /** The oldest messages in arrival order (what a restarted ingest processes first). */
  peek(limit: number): InboxMessage[] {
    return this.#read(0, limit);
  }

  /** Delete handled rows; called inside the batch's transaction. */
  remove(ids: readonly number[]): void {
    const remove = this.#statements.get("DELETE FROM inbox WHERE id = ?");
    for (const id of ids) this.#depth -= remove.run(id).changes;
  }

  #read(afterId: number, limit: number): InboxMessage[] {
    const rows = this.#statements
      .get("SELECT id, received_ms, topic, payload FROM inbox WHERE id > ? ORDER BY id LIMIT ?")
      .all(afterId, limit) as Array<{
      id: number;
      received_ms: number;
      topic: string;
      payload: Buffer;
    }>;
    return rows.map((r) => ({
      id: r.id,
      receivedMs: r.received_ms,
      topic: r.topic,
      payload: r.payload,
    }));
  }
}
