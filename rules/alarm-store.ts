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

const MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS alarm (
     rule_id TEXT NOT NULL,
     subject TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_ms INTEGER NOT NULL,
     PRIMARY KEY (rule_id, subject)
   ) WITHOUT ROWID`,
];

export class AlarmStore {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;

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
    this.upsert.run(key.ruleId, key.subject, JSON.stringify(state), nowMs);
  }

  close(): void {
    this.db.close();
  }
}
