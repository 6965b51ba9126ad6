import type Database from "better-sqlite3";
import type { DeviceStatus } from "../../contracts/model/device-messages.js";
import type { Reading } from "../../contracts/model/uplink.js";
import { openSqlite, Statements } from "../../infra/sqlite-file.js";
import { WalLimits, type WalLimitsInput } from "./limits.js";
import { MIGRATIONS } from "./schema.js";

/**
 * The edge agent's durable write-ahead log: one SQLite file per agent, holding the messages of
 * every device the agent serves (docs/protocol.md 4.2 and 6; delivery guarantee: docs/protocol.md 6.8).
 *
 * Every reading is appended here before anything is sent. Readings of a device collect in its open
 * message; the message is sealed (formed) when it holds `maxReadingsPerMessage` readings, when the
 * uplink asks for it through `pending()`, at an outage (`markReplay()`) and at a restart. A sealed
 * message never changes: a re-send carries the same seq and readings; only `replay` may turn true.
 * Seqs start at 1, increase by one per message and come from the `device` table, which keeps the
 * next seq even when every message has been trimmed or dropped, so a seq is never reused.
 *
 * Fsync policy: journal_mode=WAL with synchronous=FULL, and every append, commit and drop is one
 * transaction. SQLite fsyncs the WAL file at each commit in this mode, so an `append()` that
 * returned survives SIGKILL of the process and a power cut of the machine (on storage that honours
 * fsync). The cost is one fsync per append call: callers append a batch, not reading by reading,
 * when readings arrive faster than a few hundred per second.
 *
 * Full-log policy: see `WalLimits` (the oldest uncommitted messages are dropped, all devices
 * together, counted per device in `stats().dropped`, and reported through `onDrop`).
 *
 * Trimming happens only on the ingest's commit (`commit()`), never on a PUBACK (protocol 6.1).
 */

/** A formed message as the uplink sends it (it adds `v`, `kind` and `deviceId` for the envelope). */
export interface LoggedMessage {
  readonly deviceId: string;
  readonly seq: number;
  readonly readings: readonly Reading[];
  /** Formed before the last restart or waited through an outage: send with `replay: true` (4.3). */
  readonly replay: boolean;
  /** When its last reading was appended (the log's clock); the age bound counts from here. */
  readonly appendedAt: number;
  /** When it was last sent (`markSent`); absent if it never was. */
  readonly sentAt?: number;
  readonly sendCount: number;
}

export interface AppendResult {
  /** Seqs of the messages that took the readings, ascending. */
  readonly seqs: readonly number[];
}

export type CommitOutcome =
  /** Messages with seq <= committedSeq were deleted. */
  | "trimmed"
  /** Not above a commit already applied (an old or repeated copy): nothing to do. */
  | "stale"
  /** Above every seq the device has formed: its counter went backwards; nothing is trimmed (6.2). */
  | "ahead";

export interface CommitResult {
  readonly outcome: CommitOutcome;
  readonly trimmed: number;
}

/** One message deleted by the full-log policy. */
export interface DroppedMessage {
  readonly deviceId: string;
  readonly seq: number;
  readonly readings: number;
  readonly reason: "max_bytes" | "max_age";
}

/** The device status message's `log` field. */
export type LogStats = NonNullable<DeviceStatus["log"]>;

export interface LogSize {
  readonly messages: number;
  readonly readings: number;
  readonly bytes: number;
}

export interface WriteAheadLogDeps {
  /** Milliseconds since the epoch; injected so tests can age the log. */
  readonly now: () => number;
  /** Told about every dropped message after its transaction committed (log it, count it). */
  readonly onDrop?: (dropped: DroppedMessage) => void;
}

export interface WriteAheadLogOptions {
  /** Path of the SQLite file (created with its folder), or ":memory:" in tests. */
  readonly file: string;
  readonly limits?: WalLimitsInput;
}

interface MessageRow {
  id: number;
  device_id: string;
  seq: number;
  readings: string;
  reading_count: number;
  bytes: number;
  appended_ms: number;
  replay: number;
  sent_ms: number | null;
  send_count: number;
}

interface DeviceRow {
  next_seq: number;
  committed_seq: number;
  dropped: number;
}

/** The log's operations, the shape of MQTT.js's store (`put` / `createStream` / `del`) per device. */
export interface ReadingLog {
  append(deviceId: string, readings: readonly Reading[]): AppendResult;
  pending(deviceId: string, query: { afterSeq?: number; limit: number }): LoggedMessage[];
  markSent(deviceId: string, seq: number, at: number): boolean;
  markReplay(deviceId: string): number;
  commit(deviceId: string, committedSeq: number): CommitResult;
  stats(deviceId: string): LogStats;
}

export class WriteAheadLog implements ReadingLog {
  readonly limits: WalLimits;
  private readonly db: Database.Database;
  private bytes = 0;
  private droppedQueue: DroppedMessage[] = [];
  private readonly statements: Statements;

  constructor(
    options: WriteAheadLogOptions,
    private readonly deps: WriteAheadLogDeps,
  ) {
    this.limits = WalLimits.parse(options.limits ?? {});
    // FULL: an append that returned survives a power cut (see "Fsync policy" above).
    this.db = openSqlite(options.file, { synchronous: "FULL", migrations: MIGRATIONS });
    this.statements = new Statements(this.db);
    // Everything already in the file was formed before this restart: seal it and mark it replay.
    this.db.exec("UPDATE message SET sealed = 1, replay = 1 WHERE sealed = 0 OR replay = 0");
    this.recountBytes();
  }

  close(): void {
    this.db.close();
  }

  /**
   * Writes the readings durably (the transaction is fsynced before this returns) into the device's
   * open message, sealing it and opening the next seq whenever it is full.
   */
  append(deviceId: string, readings: readonly Reading[]): AppendResult {
    if (readings.length === 0) return { seqs: [] };
    const now = this.deps.now();
    return { seqs: this.write(() => this.appendRows(deviceId, readings, now)) };
  }

  /**
   * Appends readings that came late, after the interval they belong to was formed and sent (an
   * HJ 212 monitor whose clock is behind, a resent real-time frame): they go durably in messages
   * of their own, sealed and marked replay (protocol 4.3), so the ingest stores them as evidence
   * without raising live alarms. The device's open message is sealed first, so no live reading
   * travels marked replay.
   */
  appendReplay(deviceId: string, readings: readonly Reading[]): AppendResult {
    if (readings.length === 0) return { seqs: [] };
    const now = this.deps.now();
    const seqs = this.write(() => {
      this.sql("UPDATE message SET sealed = 1 WHERE device_id = ? AND sealed = 0").run(deviceId);
      const out = this.appendRows(deviceId, readings, now);
      for (const seq of out) {
        this.sql("UPDATE message SET sealed = 1, replay = 1 WHERE device_id = ? AND seq = ?").run(
          deviceId,
          seq,
        );
      }
      return out;
    });
    return { seqs };
  }

  private appendRows(deviceId: string, readings: readonly Reading[], now: number): number[] {
    this.sql("INSERT OR IGNORE INTO device (device_id, next_seq) VALUES (?, 1)").run(deviceId);
    const out: number[] = [];
    const max = this.limits.maxReadingsPerMessage;
    let i = 0;
    while (i < readings.length) {
      let open = this.sql(
        "SELECT id, seq, reading_count FROM message WHERE device_id = ? AND sealed = 0",
      ).get(deviceId) as { id: number; seq: number; reading_count: number } | undefined;
      const chunk = readings.slice(i, i + max - (open?.reading_count ?? 0));
      i += chunk.length;
      const json = chunk.map((r) => JSON.stringify(r)).join(",");
      const bytes = Buffer.byteLength(json);
      const oldest = oldestOf(chunk);
      if (open === undefined) {
        const device = this.device(deviceId);
        const seq = device?.next_seq ?? 1;
        this.sql("UPDATE device SET next_seq = next_seq + 1 WHERE device_id = ?").run(deviceId);
        const id = this.sql(
          `INSERT INTO message
                 (device_id, seq, readings, reading_count, bytes, appended_ms, oldest_ts, oldest_ts_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(deviceId, seq, json, chunk.length, bytes, now, oldest.ts, oldest.ms).lastInsertRowid;
        open = { id: Number(id), seq, reading_count: chunk.length };
      } else {
        this.sql(
          `UPDATE message SET
                 readings = readings || ',' || ?,
                 appended_ms = ?,
                 reading_count = reading_count + ?,
                 bytes = bytes + 1 + ?,
                 oldest_ts = CASE WHEN ? < oldest_ts_ms THEN ? ELSE oldest_ts END,
                 oldest_ts_ms = min(oldest_ts_ms, ?)
               WHERE id = ?`,
        ).run(json, now, chunk.length, bytes, oldest.ms, oldest.ts, oldest.ms, open.id);
        this.bytes += 1;
        open = { ...open, reading_count: open.reading_count + chunk.length };
      }
      this.bytes += bytes;
      if (open.reading_count >= max) {
        this.sql("UPDATE message SET sealed = 1 WHERE id = ?").run(open.id);
      }
      if (out[out.length - 1] !== open.seq) out.push(open.seq);
    }
    this.enforceLimits(now);
    return out;
  }

  /**
   * Uncommitted messages of the device with seq > `afterSeq` (default: all), in seq order, at most
   * `limit`. The open message is sealed (formed) when it is among those returned.
   */
  pending(deviceId: string, query: { afterSeq?: number; limit: number }): LoggedMessage[] {
    const afterSeq = query.afterSeq ?? 0;
    // SQLite reads a negative LIMIT as "no limit": the in-flight window must stay bounded.
    if (!(query.limit >= 1)) return [];
    const rows = this.write(() => {
      this.enforceLimits(this.deps.now());
      const sealedAfter = this.sql(
        "SELECT count(*) AS n FROM message WHERE device_id = ? AND seq > ? AND sealed = 1",
      ).get(deviceId, afterSeq) as { n: number };
      if (sealedAfter.n < query.limit) {
        this.sql(
          "UPDATE message SET sealed = 1 WHERE device_id = ? AND seq > ? AND sealed = 0",
        ).run(deviceId, afterSeq);
      }
      return this.sql(
        `SELECT * FROM message WHERE device_id = ? AND seq > ? AND sealed = 1
           ORDER BY seq LIMIT ?`,
      ).all(deviceId, afterSeq, query.limit) as MessageRow[];
    });
    return rows.map(toLoggedMessage);
  }

  /** Records a send of a formed message, for the re-send timeout. False if it is no longer logged. */
  markSent(deviceId: string, seq: number, at: number): boolean {
    const info = this.sql(
      `UPDATE message SET sent_ms = ?, send_count = send_count + 1
         WHERE device_id = ? AND seq = ? AND sealed = 1`,
    ).run(at, deviceId, seq);
    return info.changes > 0;
  }

  /**
   * The device's link went down (or it could not connect): everything it has logged waited through
   * an outage. Seals the open message and flags all of them replay (4.3). Returns how many.
   */
  markReplay(deviceId: string): number {
    return this.sql("UPDATE message SET sealed = 1, replay = 1 WHERE device_id = ?").run(deviceId)
      .changes;
  }

  /**
   * Applies the ingest's commit: every message with seq <= committedSeq is stored (or
   * dead-lettered) and is deleted. A commit not above the last applied one is ignored; a commit
   * above every seq the device has formed is refused (6.2).
   */
  commit(deviceId: string, committedSeq: number): CommitResult {
    return this.write(() => {
      const device = this.device(deviceId);
      if (committedSeq <= (device?.committed_seq ?? 0)) return { outcome: "stale", trimmed: 0 };
      const open = this.sql(
        "SELECT count(*) AS n FROM message WHERE device_id = ? AND sealed = 0",
      ).get(deviceId) as { n: number };
      const highestFormed = (device?.next_seq ?? 1) - 1 - open.n;
      if (device === undefined || committedSeq > highestFormed) {
        return { outcome: "ahead", trimmed: 0 };
      }
      const freed = this.sql(
        `SELECT count(*) AS n, total(bytes) AS bytes FROM message
           WHERE device_id = ? AND seq <= ?`,
      ).get(deviceId, committedSeq) as { n: number; bytes: number };
      this.sql("DELETE FROM message WHERE device_id = ? AND seq <= ?").run(deviceId, committedSeq);
      this.sql("UPDATE device SET committed_seq = ? WHERE device_id = ?").run(
        committedSeq,
        deviceId,
      );
      this.bytes -= freed.bytes;
      return { outcome: "trimmed", trimmed: freed.n };
    });
  }

  /**
   * The `log` field of the device's status message (protocol 5): `pending` counts the device's
   * messages not yet committed, the open one included; `dropped` is the running total of messages
   * deleted by the full-log policy. Applies the age bound first.
   */
  stats(deviceId: string): LogStats {
    this.write(() => this.enforceLimits(this.deps.now()));
    const counts = this.sql("SELECT count(*) AS n FROM message WHERE device_id = ?").get(
      deviceId,
    ) as { n: number };
    const oldest = this.sql(
      "SELECT oldest_ts FROM message WHERE device_id = ? ORDER BY oldest_ts_ms, seq LIMIT 1",
    ).get(deviceId) as { oldest_ts: string } | undefined;
    const dropped = this.device(deviceId)?.dropped ?? 0;
    return oldest === undefined
      ? { pending: counts.n, dropped }
      : { pending: counts.n, dropped, oldestPendingTs: oldest.oldest_ts };
  }

  /** Devices with a seq counter in this log. */
  devices(): string[] {
    const rows = this.sql("SELECT device_id FROM device ORDER BY device_id").all() as Array<{
      device_id: string;
    }>;
    return rows.map((r) => r.device_id);
  }

  /** The next seq the device's next message will get (1 for a device never seen). */
  nextSeq(deviceId: string): number {
    return this.device(deviceId)?.next_seq ?? 1;
  }

  /** What the log holds, all devices together (for metrics and the benchmark). */
  size(): LogSize {
    const row = this.sql("SELECT count(*) AS n, total(reading_count) AS r FROM message").get() as {
      n: number;
      r: number;
    };
    return { messages: row.n, readings: row.r, bytes: this.bytes };
  }

  /** Statements are prepared once and reused (better-sqlite3 does not cache them itself). */
  private sql(source: string): Database.Statement {
    return this.statements.get(source);
  }

  private device(deviceId: string): DeviceRow | undefined {
    return this.sql("SELECT next_seq, committed_seq, dropped FROM device WHERE device_id = ?").get(
      deviceId,
    ) as DeviceRow | undefined;
  }

  /**
   * Runs `fn` in one transaction; keeps the in-memory byte total right if it rolls back, and tells
   * `onDrop` about dropped messages only once they are durably gone.
   */
  private write<T>(fn: () => T): T {
    let result: T;
    try {
      result = this.db.transaction(fn).immediate();
    } catch (err) {
      this.droppedQueue = [];
      this.recountBytes();
      throw err;
    }
    const dropped = this.droppedQueue;
    this.droppedQueue = [];
    for (const d of dropped) this.deps.onDrop?.(d);
    return result;
  }

  /** The full-log policy (see `WalLimits`): age bound first, then bytes, oldest append first. */
  private enforceLimits(now: number): void {
    const expired = this.sql(
      "SELECT * FROM message WHERE appended_ms < ? ORDER BY appended_ms, id",
    ).all(now - this.limits.maxAgeMs) as MessageRow[];
    for (const row of expired) this.drop(row, "max_age");
    while (this.bytes > this.limits.maxBytes) {
      const oldest = this.sql(
        "SELECT * FROM message ORDER BY appended_ms, id LIMIT 2",
      ).all() as MessageRow[];
      // The last message left always stays: maxBytes is at least one full message.
      if (oldest.length < 2 || oldest[0] === undefined) break;
      this.drop(oldest[0], "max_bytes");
    }
  }

  private drop(row: MessageRow, reason: DroppedMessage["reason"]): void {
    this.sql("DELETE FROM message WHERE id = ?").run(row.id);
    this.sql("UPDATE device SET dropped = dropped + 1 WHERE device_id = ?").run(row.device_id);
    this.bytes -= row.bytes;
    this.droppedQueue.push({
      deviceId: row.device_id,
      seq: row.seq,
      readings: row.reading_count,
      reason,
    });
  }

  private recountBytes(): void {
    const row = this.sql("SELECT total(bytes) AS b FROM message").get() as { b: number };
    this.bytes = row.b;
  }
}

function oldestOf(readings: readonly Reading[]): { ts: string; ms: number } {
  let ts = "";
  let ms = Number.POSITIVE_INFINITY;
  for (const r of readings) {
    const parsed = Date.parse(r.ts);
    // Timestamps are validated upstream; an unparsable one sorts last rather than breaking the log.
    const t = Number.isFinite(parsed) ? parsed : Number.MAX_SAFE_INTEGER;
    if (t < ms || ts === "") {
      ts = r.ts;
      ms = t;
    }
  }
  return { ts, ms };
}

function toLoggedMessage(row: MessageRow): LoggedMessage {
  const base = {
    deviceId: row.device_id,
    seq: row.seq,
    readings: JSON.parse(`[${row.readings}]`) as Reading[],
    replay: row.replay === 1,
    appendedAt: row.appended_ms,
    sendCount: row.send_count,
  };
  return row.sent_ms === null ? base : { ...base, sentAt: row.sent_ms };
}
