import type Database from "better-sqlite3";
import { openSqlite, Statements } from "../infra/sqlite-file.js";
import { CommitLedger, type HandledSeq } from "./commit-ledger.js";
import { type DeadLetter, DeadLetters } from "./dead-letters.js";
import { Inbox } from "./inbox.js";

export type { InboxMessage } from "./inbox.js";
export type { DeadLetter, StoredDeadLetter } from "./dead-letters.js";
export type { DeviceProgress } from "./commit-ledger.js";

/**
 * The ingest's durable state, one SQLite file (`{dataDir}/ingest.db`) shared by three parts:
 * - `inbox` (ingest/inbox.ts): every message received, kept until handled;
 * - `ledger` (ingest/commit-ledger.ts): per device, the committed seq and the seqs handled above
 *   a gap;
 * - `deadLetters` (ingest/dead-letters.ts): rejected messages with their reason.
 * A processed batch changes all three in one transaction (`applyBatch`), so a crash leaves either
 * the whole batch committed or none of it.
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

/** What one processed batch changes, applied in one transaction. */
export interface BatchOutcome {
  readonly inboxIds: readonly number[];
  /** Messages handled (stored or dead-lettered), by device: their seqs and receipt times. */
  readonly handled: readonly HandledSeq[];
  readonly deadLetters: readonly DeadLetter[];
}

export class IngestState {
  readonly #db: Database.Database;
  readonly inbox: Inbox;
  readonly ledger: CommitLedger;
  readonly deadLetters: DeadLetters;

  constructor(readonly file: string) {
    // Inbox rows are a few KB of payload each and live for a fraction of a second: 16 KiB pages
    // hold a 50-reading message without an overflow page, and a 40 MB WAL is copied back into
    // the file a tenth as often, by which time most of what it holds is deleted already.
    this.#db = openSqlite(file, {
      synchronous: "NORMAL",
      exclusive: true,
      pageSize: 16_384,
      walAutocheckpoint: 2_500,
      migrations: MIGRATIONS,
    });
    const statements = new Statements(this.#db);
    this.inbox = new Inbox(this.#db, statements);
    this.ledger = new CommitLedger(statements);
    this.deadLetters = new DeadLetters(this.#db, statements);
  }

  close(): void {
    this.#db.close();
  }

  /**
   * Copy the WAL back into the file and truncate it to zero bytes. The WAL grows to 40 MB between
   * checkpoints and keeps its size after one, so on a nearly full disk it is room held for
   * nothing. Returns false when the checkpoint could not finish (the disk refused the copy); the
   * WAL then stays as it was, whole, and is tried again later.
   */
  reclaimWal(): boolean {
    try {
      const [row] = this.#db.pragma("wal_checkpoint(TRUNCATE)") as Array<{ busy: number }>;
      return row?.busy === 0;
    } catch {
      return false;
    }
  }

  /**
   * Apply a processed batch atomically: dead letters in, handled seqs recorded, inbox rows out,
   * commit watermarks advanced over contiguous seqs. Returns the devices whose commit moved.
   */
  applyBatch(outcome: BatchOutcome, nowMs: number): Map<string, number> {
    return this.#rolledBackForgets(() =>
      this.#db.transaction(() => {
        for (const d of outcome.deadLetters) this.deadLetters.add(d);
        const moved = this.ledger.record(outcome.handled, nowMs);
        this.inbox.remove(outcome.inboxIds);
        return moved;
      })(),
    );
  }

  /**
   * A transaction that failed (a full disk) rolled the ledger's rows back, but not what the
   * ledger keeps in memory: forget it, so the retried messages are not taken for duplicates.
   */
  #rolledBackForgets<T>(run: () => T): T {
    try {
      return run();
    } catch (error) {
      this.ledger.forget();
      throw error;
    }
  }

  /**
   * Close gaps that have waited longer than `timeoutMs`: the missing seqs are recorded as one dead
   * letter per gap (reason missing_seq) and the commit moves on. Returns the devices whose commit
   * moved.
   */
  closeStaleGaps(nowMs: number, timeoutMs: number): { moved: Map<string, number>; gaps: number } {
    const moved = new Map<string, number>();
    let gaps = 0;
    for (const gap of this.ledger.staleGaps(nowMs - timeoutMs)) {
      const from = gap.committedSeq + 1;
      const to = gap.firstSeq - 1;
      if (to < from) continue; // no gap below the first handled seq: the ledger moves on by itself
      this.#rolledBackForgets(() =>
        this.#db.transaction(() => {
          const detail = `seq ${from}..${to} never arrived within ${timeoutMs} ms; commit moved past them`;
          this.deadLetters.add({
            receivedMs: nowMs,
            topic: "",
            deviceId: gap.deviceId,
            seq: from,
            reason: "missing_seq",
            detail,
            payload: Buffer.alloc(0),
          });
          moved.set(gap.deviceId, this.ledger.skipGap(gap, nowMs));
          gaps++;
        })(),
      );
    }
    return { moved, gaps };
  }
}
