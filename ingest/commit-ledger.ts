import type { Statements } from "../infra/sqlite-file.js";

export interface DeviceProgress {
  readonly deviceId: string;
  readonly committedSeq: number;
  readonly lastSeq: number;
  readonly lastSeenMs: number;
  readonly committedMs: number;
  /** The device's registration this progress belongs to (1 for rows written before generations). */
  readonly generation: number;
}

/** A message handled (stored or dead-lettered): its device, seq and receipt time. */
export interface HandledSeq {
  readonly deviceId: string;
  readonly seq: number;
  readonly receivedMs: number;
}

/** A device whose handled seqs wait above a gap: the first of them and the committed seq. */
export interface WaitingGap {
  readonly deviceId: string;
  readonly firstSeq: number;
  readonly committedSeq: number;
}

interface ProgressRow {
  device_id: string;
  committed_seq: number;
  last_seq: number;
  last_seen_ms: number;
  committed_ms: number;
  generation: number;
}

function toProgress(row: ProgressRow): DeviceProgress {
  return {
    deviceId: row.device_id,
    committedSeq: row.committed_seq,
    lastSeq: row.last_seq,
    lastSeenMs: row.last_seen_ms,
    committedMs: row.committed_ms,
    generation: row.generation,
  };
}

/** Whether `seqs` are exactly committed+1, committed+2, … in some order. */
export function follows(seqs: readonly number[], committed: number): boolean {
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

/**
 * The committed seq after `committed` moves over the contiguous run at the start of `ascending`
 * (distinct seqs above `committed`, in ascending order): 5 over [6, 7, 9] is 7.
 */
export function contiguousEnd(committed: number, ascending: readonly number[]): number {
  let end = committed;
  for (const seq of ascending) {
    if (seq !== end + 1) break;
    end = seq;
  }
  return end;
}

/** A device's handled seqs in one batch: the highest seq, the latest arrival, every seq. */
export interface HandledByDevice {
  lastSeq: number;
  lastSeenMs: number;
  seqs: number[];
}

/** A batch's handled seqs grouped by device, so each device's progress is written once. */
export function handledByDevice(handled: readonly HandledSeq[]): Map<string, HandledByDevice> {
  const byDevice = new Map<string, HandledByDevice>();
  for (const h of handled) {
    const entry = byDevice.get(h.deviceId);
    if (entry === undefined) {
      byDevice.set(h.deviceId, { lastSeq: h.seq, lastSeenMs: h.receivedMs, seqs: [h.seq] });
    } else {
      entry.lastSeq = Math.max(entry.lastSeq, h.seq);
      entry.lastSeenMs = Math.max(entry.lastSeenMs, h.receivedMs);
      entry.seqs.push(h.seq);
    }
  }
  return byDevice;
}

/**
 * The commit ledger (tables `progress` and `processed` of `ingest.db`): per device, the committed
 * seq (everything <= it is stored or dead-lettered), and the seqs handled above it while a gap
 * below them holds the commit back. It also answers the dedupe question, "handled already?".
 * Writes happen inside `IngestState`'s transactions.
 */
export class CommitLedger {
  readonly #statements: Statements;
  /** Committed seq per device, as in `progress` (read once per device, then kept current). */
  readonly #committed = new Map<string, number>();
  /** Devices with handled seqs above a gap (rows in `processed`): only they need a lookup. */
  readonly #gapped = new Set<string>();
  /** Generation per device, as in `progress` (read once per device, then kept current). */
  readonly #generations = new Map<string, number>();
  /** Devices started clean whose commit was not published since (record() publishes it). */
  readonly #restarted = new Set<string>();
  /** The registry's current generation of a device (undefined: not registered, or not known). */
  #generationOf: (deviceId: string) => number | undefined = () => undefined;

  constructor(statements: Statements) {
    this.#statements = statements;
    // The ledger's own column, added here so that it comes with the ledger: a file written
    // before generations gets it once (its rows are generation 1); adding it is idempotent.
    const columns = statements
      .get("SELECT name FROM pragma_table_info('progress')")
      .all() as Array<{
      name: string;
    }>;
    if (!columns.some((c) => c.name === "generation"))
      statements.get("ALTER TABLE progress ADD COLUMN generation INTEGER NOT NULL DEFAULT 1").run();
    this.#readGapped();
  }

  /** The devices with handled seqs above a gap, from the file. */
  #readGapped(): void {
    this.#gapped.clear();
    for (const row of this.#statements
      .get("SELECT DISTINCT device_id FROM processed")
      .all() as Array<{ device_id: string }>)
      this.#gapped.add(row.device_id);
  }

  /** Forget what is kept in memory (a transaction rolled back): it is read again from the file. */
  forget(): void {
    this.#committed.clear();
    this.#generations.clear();
    this.#readGapped();
  }

  /**
   * Where the ledger reads a device's current generation (the registry's, issue #16 item 5). A
   * device whose registry generation is above the one its progress belongs to was registered
   * again: its progress and the seqs waiting above a gap are the old device's, so the ledger
   * starts it clean (commit 0) before it answers for the new one. Without a resolver every device
   * is generation 1.
   */
  useGenerations(generationOf: (deviceId: string) => number | undefined): void {
    this.#generationOf = generationOf;
  }

  /** Start a device clean when the registry holds a newer registration than its progress. */
  #sync(deviceId: string, nowMs: number): boolean {
    const current = this.#generationOf(deviceId);
    if (current === undefined) return false;
    let stored = this.#generations.get(deviceId);
    if (stored === undefined) {
      stored = this.progress(deviceId)?.generation ?? current;
      this.#generations.set(deviceId, stored);
    }
    if (current <= stored) return false;
    // In this order, so a crash between the two leaves the old generation in `progress` and the
    // next message resets again (each step can be repeated).
    this.#statements.get("DELETE FROM processed WHERE device_id = ?").run(deviceId);
    this.#statements
      .get(
        `UPDATE progress SET generation = ?, committed_seq = 0, last_seq = 0, committed_ms = ?
          WHERE device_id = ?`,
      )
      .run(current, nowMs, deviceId);
    this.#generations.set(deviceId, current);
    this.#committed.set(deviceId, 0);
    this.#gapped.delete(deviceId);
    this.#restarted.add(deviceId);
    return true;
  }

  progress(deviceId: string): DeviceProgress | undefined {
    const row = this.#statements.get("SELECT * FROM progress WHERE device_id = ?").get(deviceId) as
      ProgressRow | undefined;
    return row === undefined ? undefined : toProgress(row);
  }

  all(): DeviceProgress[] {
    const rows = this.#statements
      .get("SELECT * FROM progress ORDER BY device_id")
      .all() as ProgressRow[];
    return rows.map(toProgress);
  }

  /** Has (device, seq) been handled already? Called for every message: answered from memory
   * unless the device has seqs waiting above a gap. */
  isHandled(deviceId: string, seq: number, nowMs = Date.now()): boolean {
    this.#sync(deviceId, nowMs);
    let committed = this.#committed.get(deviceId);
    if (committed === undefined) {
      committed = this.progress(deviceId)?.committedSeq ?? 0;
      this.#committed.set(deviceId, committed);
    }
    if (seq <= committed) return true;
    if (!this.#gapped.has(deviceId)) return false;
    return (
      this.#statements
        .get("SELECT 1 FROM processed WHERE device_id = ? AND seq = ?")
        .get(deviceId, seq) !== undefined
    );
  }

  /**
   * Record handled seqs and move each device's commit over the contiguous ones. Runs inside the
   * caller's transaction. Returns the devices whose commit moved, with the new committed seq.
   */
  record(handled: readonly HandledSeq[], nowMs: number): Map<string, number> {
    const moved = new Map<string, number>();
    const insertProcessed = this.#statements.get(
      "INSERT OR IGNORE INTO processed (device_id, seq, at_ms) VALUES (?, ?, ?)",
    );
    // One progress row update per device, not per message.
    const byDevice = handledByDevice(handled);
    const touched = new Set<string>();
    const commitInOne = this.#statements.get(
      `UPDATE progress SET last_seq = max(last_seq, ?), last_seen_ms = max(last_seen_ms, ?),
         committed_seq = ?, committed_ms = ? WHERE device_id = ?`,
    );
    // Devices registered again: their commit is published even when it stays at 0 (a gap below
    // the first seq), so the old registration's retained commit is replaced at once.
    for (const [deviceId, entry] of byDevice) {
      this.#sync(deviceId, nowMs);
      // The usual case: the device's next seqs, in a row, nothing waiting above a gap. The
      // commit moves over them in one statement, with no detour through `processed`.
      const cached = this.#committed.get(deviceId);
      if (cached !== undefined && !this.#gapped.has(deviceId) && follows(entry.seqs, cached)) {
        const to = cached + entry.seqs.length;
        if (commitInOne.run(entry.lastSeq, entry.lastSeenMs, to, nowMs, deviceId).changes === 1) {
          this.#committed.set(deviceId, to);
          moved.set(deviceId, to);
          continue;
        }
      }
      const progress = this.progress(deviceId);
      if (progress === undefined) {
        // A device never heard from has committed nothing: seqs start at 1, and any below the
        // first one seen form a gap the device re-sends into (or the gap timeout records).
        this.#statements
          .get(
            "INSERT INTO progress (device_id, committed_seq, last_seq, last_seen_ms, committed_ms, generation) VALUES (?, 0, ?, ?, ?, ?)",
          )
          .run(deviceId, entry.lastSeq, entry.lastSeenMs, nowMs, this.#generationOf(deviceId) ?? 1);
      } else {
        this.#statements
          .get(
            "UPDATE progress SET last_seq = max(last_seq, ?), last_seen_ms = max(last_seen_ms, ?) WHERE device_id = ?",
          )
          .run(entry.lastSeq, entry.lastSeenMs, deviceId);
      }
      const committed = progress?.committedSeq ?? 0;
      for (const seq of entry.seqs) if (seq > committed) insertProcessed.run(deviceId, seq, nowMs);
      touched.add(deviceId);
    }
    for (const deviceId of touched) {
      const committed = this.#advance(deviceId, nowMs);
      if (committed !== undefined) moved.set(deviceId, committed);
    }
    for (const deviceId of this.#restarted)
      if (byDevice.has(deviceId) && !moved.has(deviceId))
        moved.set(deviceId, this.#committed.get(deviceId) ?? 0);
    for (const deviceId of byDevice.keys()) this.#restarted.delete(deviceId);
    return moved;
  }

  /** Move the device's committed seq over contiguous handled seqs; the new value if it moved. */
  #advance(deviceId: string, nowMs: number): number | undefined {
    const progress = this.progress(deviceId);
    if (progress === undefined) return undefined;
    let committed = progress.committedSeq;
    const next = this.#statements.get(
      "SELECT seq FROM processed WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT 1000",
    );
    let waiting = false;
    for (;;) {
      const chunk = (next.all(deviceId, committed) as Array<{ seq: number }>).map((r) => r.seq);
      const before = committed;
      committed = contiguousEnd(committed, chunk);
      const contiguous = committed - before;
      waiting = chunk.length > contiguous;
      if (contiguous < 1000) break;
    }
    if (waiting) this.#gapped.add(deviceId);
    else this.#gapped.delete(deviceId);
    this.#committed.set(deviceId, committed);
    this.#statements
      .get("DELETE FROM processed WHERE device_id = ? AND seq <= ?")
      .run(deviceId, committed);
    if (committed === progress.committedSeq) return undefined;
    this.#statements
      .get("UPDATE progress SET committed_seq = ?, committed_ms = ? WHERE device_id = ?")
      .run(committed, nowMs, deviceId);
    return committed;
  }

  /**
   * Restart every gap's timer. Called when the ingest starts, when the store comes back and when
   * the broker connection returns: a device cannot fill a gap while any of them is down, so that
   * time must not count against it.
   */
  resetGapTimers(nowMs: number): void {
    this.#statements.get("UPDATE processed SET at_ms = ?").run(nowMs);
  }

  /** Devices whose oldest seq waiting above a gap was handled before `beforeMs`. */
  staleGaps(beforeMs: number): WaitingGap[] {
    const rows = this.#statements
      .get(
        `SELECT p.device_id AS device_id, min(p.seq) AS first_seq, g.committed_seq AS committed_seq
           FROM processed p JOIN progress g ON g.device_id = p.device_id
          GROUP BY p.device_id HAVING min(p.at_ms) < ?`,
      )
      .all(beforeMs) as Array<{ device_id: string; first_seq: number; committed_seq: number }>;
    return rows.map((r) => ({
      deviceId: r.device_id,
      firstSeq: r.first_seq,
      committedSeq: r.committed_seq,
    }));
  }

  /**
   * Give up on the seqs below `gap.firstSeq`: the commit moves to `firstSeq - 1` and on over what
   * waits above it. Runs inside the caller's transaction. Returns the new committed seq.
   */
  skipGap(gap: WaitingGap, nowMs: number): number {
    const to = gap.firstSeq - 1;
    this.#statements
      .get("UPDATE progress SET committed_seq = ? WHERE device_id = ?")
      .run(to, gap.deviceId);
    return this.#advance(gap.deviceId, nowMs) ?? to;
  }
}
