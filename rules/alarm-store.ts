import type Database from "better-sqlite3";
import type { AlarmState } from "./engine/alarm.js";
import { openSqlite } from "../infra/sqlite-file.js";

/**
 * The alarm state of every (subject, rule), persisted in SQLite (`{dataDir}/alarms.db`), so an
 * alarm survives a restart in the middle of a `for` or clearHold duration and an open alarm is
 * not raised twice. A row is written when the state machine moves (phase, level, repeats,
 * acknowledgement, escalations), not on every evaluation.
 *
 * WAL with synchronous=NORMAL, like the ingest's state: a crash loses at most the last moves,
 * which the next evaluations make again (the task service attaches a repeated raise to the open
 * task of the same subject and rule).
 */
export interface AlarmKey {
  readonly ruleId: string;
  /** `device:<id>`, `site:<id>` or `segment:<id>`. */
  readonly subject: string;
}

export interface StoredAlarm extends AlarmKey {
  readonly state: AlarmState;
  readonly updatedMs: number;
}

/**
 * Where the rules driver keeps alarm states: a SQLite file (AlarmStore, the embedded default) or
 * PostgreSQL (PostgresAlarmStore, shared by the nodes of a cluster). The states are read once,
 * before the driver starts; a move is handed over without waiting (a store that cannot write it
 * now keeps it, latest per (rule, subject), and writes it later).
 */
export interface AlarmStates {
  /** Every state held, as read when the store was opened (or written since, for SQLite). */
  all(): StoredAlarm[];
  /** Keep a move; one the store cannot write now (a full disk, a database out of reach) is kept for later. */
  save(key: AlarmKey, state: AlarmState, nowMs: number): void;
  /** Moves kept and not yet written. */
  unsavedCount(): number;
  /**
   * Moves not written: not kept because the kept ones had reached their bound (UNSAVED_MAX
   * subjects); and for PostgreSQL, judged under a lease that is gone or refused for their data.
   */
  droppedCount(): number;
}

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alarm (
     rule_id TEXT NOT NULL,
     subject TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_ms INTEGER NOT NULL,
     PRIMARY KEY (rule_id, subject)
   ) WITHOUT ROWID`,
];

/**
 * A write that failed for lack of space (SQLITE_FULL, or an I/O error from a file that cannot
 * grow, as a full tmpfs gives): the same test as the ingest's (ingest/gate.ts isDiskFull).
 */
const DISK_FULL = /^(SQLITE_FULL|SQLITE_IOERR_(WRITE|FSYNC|SHMSIZE|SHMMAP|TRUNCATE|DIR_FSYNC))$/;

/**
 * Moves held in memory at most while they cannot be written (one per (rule, subject): latest
 * wins); a move of another subject past it is dropped and counted. The next evaluations make a
 * dropped move again once the store takes writes (an open alarm is raised again, and attached to
 * its open task).
 */
export const UNSAVED_MAX = 100_000;

export class AlarmStore implements AlarmStates {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  /**
   * Moves a full disk refused, latest per (rule, subject), written with the next save that
   * succeeds: a full disk must not crash the rules' tick (it did: uncaught from save on the
   * timer), and the state machine's moves are kept for when space is back.
   */
  private readonly unsaved = new Map<string, { key: AlarmKey; state: string; nowMs: number }>();
  private dropped = 0;

  constructor(file: string) {
    this.db = openSqlite(file, { synchronous: "NORMAL", migrations: MIGRATIONS });
    this.upsert = this.db.prepare(
      `INSERT INTO alarm (rule_id, subject, state, updated_ms) VALUES (?, ?, ?, ?)
       ON CONFLICT (rule_id, subject) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms`,
    );
  }

  all(): StoredAlarm[] {
    const rows = this.db.prepare("SELECT * FROM alarm").all() as Array<{
      rule_id: string;
      subject: string;
      state: string;
      updated_ms: number;
    }>;
    return rows.map((r) => ({
      ruleId: r.rule_id,
      subject: r.subject,
      state: JSON.parse(r.state) as AlarmState,
      updatedMs: r.updated_ms,
    }));
  }

  save(key: AlarmKey, state: AlarmState, nowMs: number): void {
    const text = JSON.stringify(state);
    try {
      if (this.unsaved.size > 0) this.flushUnsaved();
      this.upsert.run(key.ruleId, key.subject, text, nowMs);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code !== "string" || !DISK_FULL.test(code)) throw error;
      const id = `${key.ruleId}\u0000${key.subject}`;
      this.unsaved.delete(id);
      if (this.unsaved.size < UNSAVED_MAX) this.unsaved.set(id, { key, state: text, nowMs });
      else this.dropped += 1;
    }
  }

  /** Moves not on disk because the disk was full (written with the next save that succeeds). */
  unsavedCount(): number {
    return this.unsaved.size;
  }

  droppedCount(): number {
    return this.dropped;
  }

  private flushUnsaved(): void {
    this.db.transaction(() => {
      for (const { key, state, nowMs } of this.unsaved.values())
        this.upsert.run(key.ruleId, key.subject, state, nowMs);
    })();
    this.unsaved.clear();
  }

  close(): void {
    this.db.close();
  }
}
