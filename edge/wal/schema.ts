/**
 * Migrations of the write-ahead log's SQLite file, applied in order and tracked in `user_version`.
 *
 * - device: per device, the seq the next message gets (never decreases, so a seq is never reused
 *   after a trim, a drop or a restart), the highest commit applied and the running count of
 *   messages dropped by the full-log policy.
 * - message: one row per message. `sealed = 0` marks the device's open message, which still takes
 *   readings; once sealed a row's seq and readings never change (protocol 4.2: a re-send carries the
 *   same seq and readings); only `replay`, `sent_ms` and `send_count` do.
 *   `readings` holds the readings' JSON objects joined by commas, without the brackets, so an
 *   append is a string concatenation.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE device (
     device_id TEXT PRIMARY KEY,
     next_seq INTEGER NOT NULL,
     committed_seq INTEGER NOT NULL DEFAULT 0,
     dropped INTEGER NOT NULL DEFAULT 0
   ) WITHOUT ROWID;
   CREATE TABLE message (
     id INTEGER PRIMARY KEY,
     device_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     readings TEXT NOT NULL,
     reading_count INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     appended_ms INTEGER NOT NULL,
     oldest_ts TEXT NOT NULL,
     oldest_ts_ms INTEGER NOT NULL,
     sealed INTEGER NOT NULL DEFAULT 0,
     replay INTEGER NOT NULL DEFAULT 0,
     sent_ms INTEGER,
     send_count INTEGER NOT NULL DEFAULT 0,
     UNIQUE (device_id, seq)
   );
   CREATE INDEX message_age ON message (appended_ms, id);`,
];
