import type Database from "better-sqlite3";
import type { DeadLetterReason } from "./decode.js";
import { openSqlite, Statements } from "../infra/sqlite-file.js";

/**
 * The ingest's durable state in SQLite (`{dataDir}/ingest.db`):
 * - inbox: every message received, written before its MQTT PUBACK, deleted only once its readings
 *   are stored or it is dead-lettered. It is the bounded queue and the durable spill in one, so a
 *   message the broker considers delivered survives an ingest kill -9.
 * - progress: per device, the committed seq (everything <= it is stored or dead-lettered).
 * - processed: seqs handled above the committed one (a gap below them holds the commit back).
 * - dead_letter: rejected messages with the raw payload, topic, reason and time.
 *
 * WAL with synchronous=NORMAL: a transaction survives a process crash (SIGKILL); a power cut may
 * lose the last few transactions (see docs/protocol.md, Delivery guarantee).
 */
const MIGRATIONS = [
  `CREATE TABLE inbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     received_ms INTEGER NOT NULL,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL
   );
   CREATE TABLE progress (
     device_id TEXT PRIMARY KEY,
     committed_seq INTEGER NOT NULL,
     last_seq INTEGER NOT NULL,
     last_seen_ms INTEGER NOT NULL,
     committed_ms INTEGER NOT NULL
   );
   CREATE TABLE processed (
     device_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     at_ms INTEGER NOT NULL,
     PRIMARY KEY (device_id, seq)
   ) WITHOUT ROWID;
   CREATE TABLE dead_letter (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     received_ms INTEGER NOT NULL,
     topic TEXT NOT NULL,
     device_id TEXT,
     seq INTEGER,
     reason TEXT NOT NULL,
     detail TEXT NOT NULL,
     payload BLOB NOT NULL
   );
   CREATE INDEX dead_letter_device ON dead_letter(device_id, id);`,
];

export interface InboxMessage {
  readonly id: number;
  readonly receivedMs: number;
  readonly topic: string;
  readonly payload: Buffer;
}

export interface DeadLetter {
  readonly receivedMs: number;
  readonly topic: string;
  readonly deviceId?: string | undefined;
  readonly seq?: number | undefined;
  readonly reason: DeadLetterReason;
  readonly detail: string;
  readonly payload: Buffer;
}

export interface StoredDeadLetter extends DeadLetter {
  readonly id: number;
}

export interface DeviceProgress {
  readonly deviceId: string;
  readonly committedSeq: number;
  readonly lastSeq: number;
  readonly lastSeenMs: number;
  readonly committedMs: number;
}

/** What one processed batch changes, applied in one transaction. */
export interface BatchOutcome {
  readonly inboxIds: readonly number[];
  /** Messages handled (stored or dead-lettered), by device: their seqs and receipt times. */
  readonly handled: ReadonlyArray<{ deviceId: string; seq: number; receivedMs: number }>;
  readonly deadLetters: readonly DeadLetter[];
}

/** Messages the in-memory copy of the inbox holds at most, in payload bytes. */
const MIRROR_MAX_BYTES = 64 * 1024 * 1024;

/** Whether `seqs` are exactly committed+1, committed+2, … in some order. */
function follows(seqs: readonly number[], committed: number): boolean {
  let max = committed;
  for (const seq of seqs) if (seq > max) max = seq;
  if (max !== committed + seqs.length) return false;
  const seen = new Set<number>();
  for (const seq of seqs) {
    if (seq <= committed || seen.has(seq)) return false;
    seen.add(seq);
  }
  return true;
}

export class IngestState {
  private readonly db: Database.Database;
  private readonly insertInbox: Database.Statement;
  private readonly statements: Statements;
  /** Messages in the inbox, kept in memory: a count(*) per received message would walk the table. */
  private depth: number;
  /**
   * The inbox rows not yet taken by the pipeline, in order, while they fit in memory: the pipeline
   * reads them from here instead of reading back what was just written. When they do not fit (a
   * long store outage) the copy is dropped and the pipeline reads the table until it catches up.
   */
  private mirror: InboxMessage[] = [];
  private mirrorBytes = 0;
  /** Appends go to `mirror` (true once the pipeline has read the table to its end). */
  private mirroring = false;
  /** Highest inbox id handed to the pipeline. */
  private lastTakenId = 0;
  /** Rows appended and not yet taken. */
  private untakenCount: number;
  /** Committed seq per device, as in `progress` (read once per device, then kept current). */
  private readonly committedSeqs = new Map<string, number>();
  /** Devices with handled seqs above a gap (rows in `processed`): only they need a lookup. */
  private readonly gapped = new Set<string>();
  /** Bytes of payload and detail held in dead_letter (kept current; see pruneDeadLetters). */
  private deadLetterBytesHeld = 0;

  constructor(readonly file: string) {
    // Inbox rows are a few KB of payload each and live for a fraction of a second: 16 KiB pages
    // hold a 50-reading message without an overflow page, and a 40 MB WAL is copied back into
    // the file a tenth as often, by which time most of what it holds is deleted already.
    this.db = openSqlite(file, {
      synchronous: "NORMAL",
      exclusive: true,
      pageSize: 16_384,
      walAutocheckpoint: 2_500,
      migrations: MIGRATIONS,
    });
    this.statements = new Statements(this.db);
    this.deadLetterBytesHeld = (
      this.stmt(
        "SELECT coalesce(sum(length(payload) + octet_length(detail)), 0) AS n FROM dead_letter",
      ).get() as { n: number }
    ).n;
    this.insertInbox = this.stmt(
      "INSERT INTO inbox (received_ms, topic, payload) VALUES (?, ?, ?)",
    );
    this.depth = (this.stmt("SELECT count(*) AS n FROM inbox").get() as { n: number }).n;
    this.untakenCount = this.depth;
    for (const row of this.stmt("SELECT DISTINCT device_id FROM processed").all() as Array<{
      device_id: string;
    }>)
      this.gapped.add(row.device_id);
  }

  /** A prepared statement, prepared once per SQL text. */
  private stmt(sql: string): Database.Statement {
    return this.statements.get(sql);
  }

  close(): void {
    this.db.close();
  }

  /** Append a received message; durable when this returns. */
  appendInbox(topic: string, payload: Buffer, receivedMs: number): void {
    const id = Number(this.insertInbox.run(receivedMs, topic, payload).lastInsertRowid);
    this.appended({ id, receivedMs, topic, payload });
  }

  /** Append several messages in one transaction (group commit); durable when this returns. */
  appendInboxMany(
    messages: ReadonlyArray<{ topic: string; payload: Buffer; receivedMs: number }>,
  ): void {
    const rows: InboxMessage[] = [];
    this.db.transaction(() => {
      for (const m of messages) {
        const id = Number(this.insertInbox.run(m.receivedMs, m.topic, m.payload).lastInsertRowid);
        rows.push({ id, receivedMs: m.receivedMs, topic: m.topic, payload: m.payload });
      }
    })();
    for (const row of rows) this.appended(row);
  }

  private appended(message: InboxMessage): void {
    this.depth++;
    this.untakenCount++;
    if (!this.mirroring) return;
    if (this.mirrorBytes + message.payload.length > MIRROR_MAX_BYTES) {
      // Too much waiting: stop copying; the pipeline reads the table from lastTakenId on.
      this.mirroring = false;
      this.mirror = [];
      this.mirrorBytes = 0;
      return;
    }
    this.mirror.push(message);
    this.mirrorBytes += message.payload.length;
  }

  /** Messages in the inbox (taken by the pipeline or not), the queue's depth. */
  inboxDepth(): number {
    return this.depth;
  }

  /** Messages received and not yet taken by the pipeline. */
  untaken(): number {
    return this.untakenCount;
  }

  /** Receipt time of the oldest message not yet taken, if any. */
  oldestUntakenMs(): number | undefined {
    if (this.untakenCount === 0) return undefined;
    if (this.mirroring) return this.mirror[0]?.receivedMs;
    const row = this.stmt("SELECT received_ms FROM inbox WHERE id > ? ORDER BY id LIMIT 1").get(
      this.lastTakenId,
    ) as { received_ms: number } | undefined;
    return row?.received_ms;
  }

  /**
   * Hand the next messages, in arrival order, to the pipeline. They stay in the inbox until
   * `applyBatch` deletes them; a round that fails keeps its messages and retries them itself (and
   * after a crash they are read again from the table).
   */
  takeInbox(limit: number): InboxMessage[] {
    let taken: InboxMessage[];
    if (this.mirroring) {
      taken = this.mirror.splice(0, limit);
      for (const m of taken) this.mirrorBytes -= m.payload.length;
    } else {
      taken = this.readInbox(this.lastTakenId, limit);
      // Read to the end of the table: from now on appends are copied to memory.
      if (taken.length < limit) this.mirroring = true;
    }
    const last = taken.at(-1);
    if (last !== undefined) this.lastTakenId = last.id;
    this.untakenCount -= taken.length;
    return taken;
  }

  /** The oldest messages in arrival order (what a restarted ingest processes first). */
  peekInbox(limit: number): InboxMessage[] {
    return this.readInbox(0, limit);
  }

  private readInbox(afterId: number, limit: number): InboxMessage[] {
    const rows = this.stmt(
      "SELECT id, received_ms, topic, payload FROM inbox WHERE id > ? ORDER BY id LIMIT ?",
    ).all(afterId, limit) as Array<{
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

  progress(deviceId: string): DeviceProgress | undefined {
    const row = this.stmt("SELECT * FROM progress WHERE device_id = ?").get(deviceId) as
      | {
          device_id: string;
          committed_seq: number;
          last_seq: number;
          last_seen_ms: number;
          committed_ms: number;
        }
      | undefined;
    return row === undefined
      ? undefined
      : {
          deviceId: row.device_id,
          committedSeq: row.committed_seq,
          lastSeq: row.last_seq,
          lastSeenMs: row.last_seen_ms,
          committedMs: row.committed_ms,
        };
  }

  allProgress(): DeviceProgress[] {
    const rows = this.stmt("SELECT * FROM progress ORDER BY device_id").all() as Array<{
      device_id: string;
      committed_seq: number;
      last_seq: number;
      last_seen_ms: number;
      committed_ms: number;
    }>;
    return rows.map((row) => ({
      deviceId: row.device_id,
      committedSeq: row.committed_seq,
      lastSeq: row.last_seq,
      lastSeenMs: row.last_seen_ms,
      committedMs: row.committed_ms,
    }));
  }

  /** Has (device, seq) been handled already? Called for every message: answered from memory
   * unless the device has seqs waiting above a gap. */
  isHandled(deviceId: string, seq: number): boolean {
    let committed = this.committedSeqs.get(deviceId);
    if (committed === undefined) {
      committed = this.progress(deviceId)?.committedSeq ?? 0;
      this.committedSeqs.set(deviceId, committed);
    }
    if (seq <= committed) return true;
    if (!this.gapped.has(deviceId)) return false;
    return (
      this.stmt("SELECT 1 FROM processed WHERE device_id = ? AND seq = ?").get(deviceId, seq) !==
      undefined
    );
  }

  /**
   * Apply a processed batch atomically: dead letters in, handled seqs recorded, inbox rows out,
   * commit watermarks advanced over contiguous seqs. Returns the devices whose commit moved.
   */
  applyBatch(outcome: BatchOutcome, nowMs: number): Map<string, number> {
    const moved = new Map<string, number>();
    this.db.transaction(() => {
      const insertDead = this.stmt(
        "INSERT INTO dead_letter (received_ms, topic, device_id, seq, reason, detail, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
      );
      for (const d of outcome.deadLetters) {
        insertDead.run(
          d.receivedMs,
          d.topic,
          d.deviceId ?? null,
          d.seq ?? null,
          d.reason,
          d.detail,
          d.payload,
        );
        this.deadLetterBytesHeld += d.payload.length + Buffer.byteLength(d.detail);
      }
      const insertProcessed = this.stmt(
        "INSERT OR IGNORE INTO processed (device_id, seq, at_ms) VALUES (?, ?, ?)",
      );
      // One progress row update per device, not per message.
      const byDevice = new Map<string, { lastSeq: number; lastSeenMs: number; seqs: number[] }>();
      for (const h of outcome.handled) {
        const entry = byDevice.get(h.deviceId);
        if (entry === undefined) {
          byDevice.set(h.deviceId, { lastSeq: h.seq, lastSeenMs: h.receivedMs, seqs: [h.seq] });
        } else {
          entry.lastSeq = Math.max(entry.lastSeq, h.seq);
          entry.lastSeenMs = Math.max(entry.lastSeenMs, h.receivedMs);
          entry.seqs.push(h.seq);
        }
      }
      const touched = new Set<string>();
      const commitInOne = this.stmt(
        `UPDATE progress SET last_seq = max(last_seq, ?), last_seen_ms = max(last_seen_ms, ?),
           committed_seq = ?, committed_ms = ? WHERE device_id = ?`,
      );
      for (const [deviceId, entry] of byDevice) {
        // The usual case: the device's next seqs, in a row, nothing waiting above a gap. The
        // commit moves over them in one statement, with no detour through `processed`.
        const cached = this.committedSeqs.get(deviceId);
        if (cached !== undefined && !this.gapped.has(deviceId) && follows(entry.seqs, cached)) {
          const to = cached + entry.seqs.length;
          if (commitInOne.run(entry.lastSeq, entry.lastSeenMs, to, nowMs, deviceId).changes === 1) {
            this.committedSeqs.set(deviceId, to);
            moved.set(deviceId, to);
            continue;
          }
        }
        const progress = this.progress(deviceId);
        if (progress === undefined) {
          // A device never heard from has committed nothing: seqs start at 1, and any below the
          // first one seen form a gap the device re-sends into (or the gap timeout records).
          this.stmt(
            "INSERT INTO progress (device_id, committed_seq, last_seq, last_seen_ms, committed_ms) VALUES (?, 0, ?, ?, ?)",
          ).run(deviceId, entry.lastSeq, entry.lastSeenMs, nowMs);
        } else {
          this.stmt(
            "UPDATE progress SET last_seq = max(last_seq, ?), last_seen_ms = max(last_seen_ms, ?) WHERE device_id = ?",
          ).run(entry.lastSeq, entry.lastSeenMs, deviceId);
        }
        const committed = progress?.committedSeq ?? 0;
        for (const seq of entry.seqs)
          if (seq > committed) insertProcessed.run(deviceId, seq, nowMs);
        touched.add(deviceId);
      }
      for (const deviceId of touched) {
        const committed = this.advance(deviceId, nowMs);
        if (committed !== undefined) moved.set(deviceId, committed);
      }
      const deleteInbox = this.stmt("DELETE FROM inbox WHERE id = ?");
      for (const id of outcome.inboxIds) this.depth -= deleteInbox.run(id).changes;
    })();
    return moved;
  }

  /** Move the device's committed seq over contiguous handled seqs; the new value if it moved. */
  private advance(deviceId: string, nowMs: number): number | undefined {
    const progress = this.progress(deviceId);
    if (progress === undefined) return undefined;
    let committed = progress.committedSeq;
    const next = this.stmt(
      "SELECT seq FROM processed WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT 1000",
    );
    let waiting = false;
    for (;;) {
      const chunk = next.all(deviceId, committed) as Array<{ seq: number }>;
      let contiguous = 0;
      for (const { seq } of chunk) {
        if (seq !== committed + 1) break;
        committed = seq;
        contiguous++;
      }
      waiting = chunk.length > contiguous;
      if (contiguous < 1000) break;
    }
    if (waiting) this.gapped.add(deviceId);
    else this.gapped.delete(deviceId);
    this.committedSeqs.set(deviceId, committed);
    this.stmt("DELETE FROM processed WHERE device_id = ? AND seq <= ?").run(deviceId, committed);
    if (committed === progress.committedSeq) return undefined;
    this.stmt("UPDATE progress SET committed_seq = ?, committed_ms = ? WHERE device_id = ?").run(
      committed,
      nowMs,
      deviceId,
    );
    return committed;
  }

  /**
   * Restart every gap's timer. Called when the ingest starts, when the store comes back and when
   * the broker connection returns: a device cannot fill a gap while any of them is down, so that
   * time must not count against it.
   */
  resetGapTimers(nowMs: number): void {
    this.stmt("UPDATE processed SET at_ms = ?").run(nowMs);
  }

  /**
   * Close gaps that have waited longer than `timeoutMs`: the missing seqs are recorded as one dead
   * letter per gap (reason missing_seq) and the commit moves on. Returns the devices whose commit moved.
   */
  closeStaleGaps(nowMs: number, timeoutMs: number): { moved: Map<string, number>; gaps: number } {
    const moved = new Map<string, number>();
    let gaps = 0;
    const stale = this.stmt(
      `SELECT p.device_id AS device_id, min(p.seq) AS first_seq, g.committed_seq AS committed_seq
           FROM processed p JOIN progress g ON g.device_id = p.device_id
          GROUP BY p.device_id HAVING min(p.at_ms) < ?`,
    ).all(nowMs - timeoutMs) as Array<{
      device_id: string;
      first_seq: number;
      committed_seq: number;
    }>;
    for (const row of stale) {
      this.db.transaction(() => {
        const from = row.committed_seq + 1;
        const to = row.first_seq - 1;
        if (to < from) return; // no gap below the first handled seq: advance() will move on
        const detail = `seq ${from}..${to} never arrived within ${timeoutMs} ms; commit moved past them`;
        this.stmt(
          "INSERT INTO dead_letter (received_ms, topic, device_id, seq, reason, detail, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ).run(nowMs, "", row.device_id, from, "missing_seq", detail, Buffer.alloc(0));
        this.deadLetterBytesHeld += Buffer.byteLength(detail);
        this.stmt("UPDATE progress SET committed_seq = ? WHERE device_id = ?").run(
          to,
          row.device_id,
        );
        const committed = this.advance(row.device_id, nowMs);
        moved.set(row.device_id, committed ?? to);
        gaps++;
      })();
    }
    return { moved, gaps };
  }

  /** Dead letters, newest first, optionally of one device and before an id (for paging). */
  deadLetters(options: {
    limit: number;
    beforeId?: number | undefined;
    deviceId?: string | undefined;
    reason?: string | undefined;
  }): StoredDeadLetter[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (options.beforeId !== undefined) {
      where.push("id < ?");
      args.push(options.beforeId);
    }
    if (options.deviceId !== undefined) {
      where.push("device_id = ?");
      args.push(options.deviceId);
    }
    if (options.reason !== undefined) {
      where.push("reason = ?");
      args.push(options.reason);
    }
    const sql = `SELECT * FROM dead_letter ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    const rows = this.stmt(sql).all(...args, options.limit) as Array<{
      id: number;
      received_ms: number;
      topic: string;
      device_id: string | null;
      seq: number | null;
      reason: DeadLetterReason;
      detail: string;
      payload: Buffer;
    }>;
    return rows.map((r) => ({
      id: r.id,
      receivedMs: r.received_ms,
      topic: r.topic,
      deviceId: r.device_id ?? undefined,
      seq: r.seq ?? undefined,
      reason: r.reason,
      detail: r.detail,
      payload: r.payload,
    }));
  }

  deadLetterCount(): number {
    return (this.stmt("SELECT count(*) AS n FROM dead_letter").get() as { n: number }).n;
  }

  /** Bytes of payload and detail the dead letters hold. */
  deadLetterBytes(): number {
    return this.deadLetterBytesHeld;
  }

  /**
   * Keep the dead letters within their bounds, oldest first: those received before
   * `nowMs - maxAgeMs`, then the oldest while they hold more than `maxBytes`. Deletes in steps of
   * 1,000 rows, each its own transaction, so a large prune does not hold the file for long.
   * Returns how many went for each reason.
   */
  pruneDeadLetters(
    nowMs: number,
    limits: { readonly maxBytes: number; readonly maxAgeMs: number },
  ): { age: number; bytes: number } {
    const pruned = { age: 0, bytes: 0 };
    // Rows are in receipt order by id (near enough): expired ones are among the oldest.
    const expired = this.stmt(
      `DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id LIMIT 1000)
         AND received_ms < ? RETURNING length(payload) + octet_length(detail) AS n`,
    );
    const oldest = this.stmt(
      `DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id LIMIT ?)
         RETURNING length(payload) + octet_length(detail) AS n`,
    );
    const run = (statement: Database.Statement, ...args: unknown[]) => {
      const rows = this.db.transaction(() => statement.all(...args) as Array<{ n: number }>)();
      for (const row of rows) this.deadLetterBytesHeld -= row.n;
      return rows.length;
    };
    for (
      let n = run(expired, nowMs - limits.maxAgeMs);
      n > 0;
      n = run(expired, nowMs - limits.maxAgeMs)
    )
      pruned.age += n;
    while (this.deadLetterBytesHeld > limits.maxBytes) {
      // About as many of the oldest rows as hold the excess: at least one, at most 1,000 a step.
      const rows = this.deadLetterCount();
      if (rows === 0) break;
      const perRow = this.deadLetterBytesHeld / rows;
      const want = Math.ceil((this.deadLetterBytesHeld - limits.maxBytes) / Math.max(1, perRow));
      const n = run(oldest, Math.min(1_000, Math.max(1, want)));
      if (n === 0) break;
      pruned.bytes += n;
    }
    if (this.deadLetterBytesHeld < 0) this.deadLetterBytesHeld = 0;
    return pruned;
  }
}
