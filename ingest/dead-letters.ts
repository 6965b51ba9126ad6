import type Database from "better-sqlite3";
import type { DeadLetterReason } from "./decode.js";
import type { Statements } from "../infra/sqlite-file.js";

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

/** What the dead letters may hold (ingest.deadLetters), and each device's share of it. */
export interface DeadLetterLimits {
  /** Bytes of payload and detail all dead letters may hold. */
  readonly maxBytes: number;
  /** Dead letters received longer ago than this are deleted. */
  readonly maxAgeMs: number;
  /**
   * Bytes one source (the device its topic names, or, for a topic that names none, all such
   * messages together) may hold; default `maxBytes / 8`, at most `maxBytes`.
   */
  readonly perDeviceMaxBytes?: number | undefined;
}

/** `missing_seq` records one device may hold at most (each is ~100 bytes: no payload). */
export const MISSING_SEQ_PER_DEVICE = 10_000;

/** What was deleted to keep within the limits, by why. */
export interface Pruned {
  /** Older than maxAgeMs. */
  age: number;
  /** Past maxBytes: the oldest of the source holding the most. */
  bytes: number;
  /** Past a device's own share (perDeviceMaxBytes), or its missing_seq records past theirs. */
  device: number;
}

/** One source's share of the bytes (perDeviceMaxBytes, default an eighth of maxBytes). */
export function deviceShare(limits: DeadLetterLimits): number {
  return Math.min(limits.maxBytes, limits.perDeviceMaxBytes ?? Math.floor(limits.maxBytes / 8));
}

/** The bytes a dead letter holds: its payload and its detail. */
export function letterBytes(d: Pick<DeadLetter, "payload" | "detail">): number {
  return d.payload.length + Buffer.byteLength(d.detail);
}

/**
 * A letter larger than its source's share keeps the head of its payload, and its detail says so
 * (missing_seq records carry no payload and are never cut).
 */
export function fitToShare(d: DeadLetter, share: number): DeadLetter {
  if (d.reason === MISSING || letterBytes(d) <= share) return d;
  const note = (keep: number) =>
    ` (payload cut from ${d.payload.length} to its first ${keep} bytes: the device's dead-letter share is ${share} bytes)`;
  let detail = d.detail;
  while (detail.length > 0 && Buffer.byteLength(detail) > share / 4) detail = detail.slice(0, -1);
  const room = share - Buffer.byteLength(detail) - Buffer.byteLength(note(d.payload.length));
  const payload = d.payload.subarray(0, Math.max(0, room));
  return { ...d, payload, detail: detail + note(payload.length) };
}

/** About as many rows of an account as hold `excess` bytes: at least one, at most 1,000. */
export function excessRows(bytes: number, count: number, excess: number): number {
  const perRow = count > 0 ? bytes / count : 1;
  return Math.min(1_000, Math.max(1, Math.ceil(excess / Math.max(1, perRow))));
}

/** A source's account: the bytes and rows of its payload-carrying dead letters. */
interface Account {
  bytes: number;
  rows: number;
}

export const MISSING = "missing_seq";

/**
 * Dead letters (table `dead_letter` of `ingest.db`): rejected messages with their raw payload,
 * topic, reason and time. Rows come in through `IngestState.applyBatch` and `closeStaleGaps`, in
 * the transaction that commits past them.
 *
 * Bounded per source, so one device's flood cannot erase anyone else's record (issue #16 item
 * 3). A source is the device the topic names (the broker's ACL lets only that device, or a
 * simulator account, publish there); messages whose topic names no device share one source.
 * - Each source holds at most `perDeviceMaxBytes`; past it, that source's own oldest go, at once
 *   as the new one comes in (a single letter larger than the share keeps its head, the detail
 *   says so).
 * - All of them hold at most `maxBytes`, kept at every insert (not once a minute): past it, the
 *   oldest of the source holding the most go first, so a device with a few letters keeps them
 *   while a flooding one is pruned.
 * - `missing_seq` records (the record of readings that never arrived) are kept apart: no other
 *   device's letters, and no byte bound, ever delete them. Each device keeps its newest
 *   `MISSING_SEQ_PER_DEVICE`; they go by age like the rest.
 */
export class DeadLetters {
  readonly #db: Database.Database;
  readonly #statements: Statements;
  /** Payload-carrying letters per source ("" = no device). */
  readonly #accounts = new Map<string, Account>();
  /** missing_seq records per device. */
  readonly #missing = new Map<string, Account>();
  /** Bytes of payload and detail held, all letters (kept current). */
  #bytes = 0;
  #limits: DeadLetterLimits | undefined;
  /** Deleted at insert since the last prune() (reported by it). */
  #pending: Pruned = { age: 0, bytes: 0, device: 0 };

  constructor(db: Database.Database, statements: Statements, limits?: DeadLetterLimits) {
    this.#db = db;
    this.#statements = statements;
    this.#limits = limits;
    const rows = statements
      .get(
        `SELECT coalesce(device_id, '') AS source, reason = '${MISSING}' AS missing, count(*) AS rows,
                sum(length(payload) + octet_length(detail)) AS bytes
           FROM dead_letter GROUP BY source, missing`,
      )
      .all() as Array<{ source: string; missing: number; rows: number; bytes: number }>;
    for (const row of rows) {
      (row.missing === 1 ? this.#missing : this.#accounts).set(row.source, {
        bytes: row.bytes,
        rows: row.rows,
      });
      this.#bytes += row.bytes;
    }
  }

  /** Set the bounds kept at every insert (prune() sets them too). */
  setLimits(limits: DeadLetterLimits): void {
    this.#limits = limits;
  }

  /** Keep a rejected message; called inside the transaction that commits past it. */
  add(d: DeadLetter): void {
    const missing = d.reason === MISSING;
    const limits = this.#limits;
    const { payload, detail } = limits === undefined ? d : fitToShare(d, deviceShare(limits));
    this.#statements
      .get(
        "INSERT INTO dead_letter (received_ms, topic, device_id, seq, reason, detail, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
      )
      .run(d.receivedMs, d.topic, d.deviceId ?? null, d.seq ?? null, d.reason, detail, payload);
    const size = payload.length + Buffer.byteLength(detail);
    const source = d.deviceId ?? "";
    const accounts = missing ? this.#missing : this.#accounts;
    const account = accounts.get(source) ?? { bytes: 0, rows: 0 };
    account.bytes += size;
    account.rows += 1;
    accounts.set(source, account);
    this.#bytes += size;
    if (missing) {
      if (account.rows > MISSING_SEQ_PER_DEVICE)
        this.#pending.device += this.#deleteOldest(
          source,
          true,
          account.rows - MISSING_SEQ_PER_DEVICE,
        );
      return;
    }
    if (limits === undefined) return;
    const share = deviceShare(limits);
    while (account.bytes > share && account.rows > 1) {
      const n = this.#deleteOldest(
        source,
        false,
        excessRows(account.bytes, account.rows, account.bytes - share),
      );
      if (n === 0) break;
      this.#pending.device += n;
    }
    this.#pending.bytes += this.#keepTotal(limits.maxBytes);
  }

  /** Delete up to `n` of a source's oldest letters (its missing_seq ones, or the others). */
  #deleteOldest(source: string, missing: boolean, n: number): number {
    const rows = this.#statements
      .get(
        `DELETE FROM dead_letter WHERE id IN (
           SELECT id FROM dead_letter WHERE device_id IS ? AND (reason = '${MISSING}') = ?
            ORDER BY id LIMIT ?)
         RETURNING length(payload) + octet_length(detail) AS n`,
      )
      .all(source === "" ? null : source, missing ? 1 : 0, n) as Array<{ n: number }>;
    const accounts = missing ? this.#missing : this.#accounts;
    const account = accounts.get(source);
    for (const row of rows) {
      this.#bytes -= row.n;
      if (account !== undefined) {
        account.bytes -= row.n;
        account.rows -= 1;
      }
    }
    if (account !== undefined && account.rows <= 0) accounts.delete(source);
    return rows.length;
  }

  /** Hold all letters within `maxBytes`: the oldest of the source holding the most go first. */
  #keepTotal(maxBytes: number): number {
    let deleted = 0;
    while (this.#bytes > maxBytes) {
      let largest: [string, Account] | undefined;
      for (const entry of this.#accounts)
        if (largest === undefined || entry[1].bytes > largest[1].bytes) largest = entry;
      if (largest === undefined) break; // only missing_seq records left: never pruned for bytes
      const n = this.#deleteOldest(
        largest[0],
        false,
        excessRows(largest[1].bytes, largest[1].rows, this.#bytes - maxBytes),
      );
      if (n === 0) break;
      deleted += n;
    }
    return deleted;
  }

  /** Dead letters, newest first, optionally of one device or reason and before an id (paging). */
  list(options: {
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
    const rows = this.#statements.get(sql).all(...args, options.limit) as Array<{
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

  count(): number {
    return (this.#statements.get("SELECT count(*) AS n FROM dead_letter").get() as { n: number }).n;
  }

  /** Bytes of payload and detail the dead letters hold (missing_seq records included). */
  bytes(): number {
    return this.#bytes;
  }

  /**
   * Keep the dead letters within their bounds: those received before `nowMs - maxAgeMs` (in
   * steps of 1,000 rows, each its own transaction, so a large prune does not hold the file for
   * long), then the byte bounds as `add` keeps them. Sets the limits kept at every insert from
   * then on. Returns how many went for each reason, including those deleted at insert since the
   * last call.
   */
  prune(nowMs: number, limits: DeadLetterLimits): Pruned {
    this.#limits = limits;
    const pruned = this.#pending;
    this.#pending = { age: 0, bytes: 0, device: 0 };
    // Rows are in receipt order by id (near enough): expired ones are among the oldest.
    const expired = this.#statements.get(
      `DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id LIMIT 1000)
         AND received_ms < ?
       RETURNING coalesce(device_id, '') AS source, reason = '${MISSING}' AS missing,
                 length(payload) + octet_length(detail) AS n`,
    );
    const cutoff = nowMs - limits.maxAgeMs;
    for (;;) {
      const rows = this.#db.transaction(
        () => expired.all(cutoff) as Array<{ source: string; missing: number; n: number }>,
      )();
      for (const row of rows) {
        this.#bytes -= row.n;
        const accounts = row.missing === 1 ? this.#missing : this.#accounts;
        const account = accounts.get(row.source);
        if (account === undefined) continue;
        account.bytes -= row.n;
        account.rows -= 1;
        if (account.rows <= 0) accounts.delete(row.source);
      }
      if (rows.length === 0) break;
      pruned.age += rows.length;
    }
    this.#db.transaction(() => {
      pruned.bytes += this.#keepTotal(limits.maxBytes);
      const share = deviceShare(limits);
      for (const [source, account] of [...this.#accounts]) {
        while (account.bytes > share && account.rows > 1) {
          const excess = excessRows(account.bytes, account.rows, account.bytes - share);
          const n = this.#deleteOldest(source, false, excess);
          if (n === 0) break;
          pruned.device += n;
        }
      }
    })();
    if (this.#bytes < 0) this.#bytes = 0;
    return pruned;
  }

  /** Bytes held by one source's payload-carrying letters, and its missing_seq records' count. */
  held(deviceId: string | undefined): { bytes: number; rows: number; missingSeq: number } {
    const account = this.#accounts.get(deviceId ?? "");
    return {
      bytes: account?.bytes ?? 0,
      rows: account?.rows ?? 0,
      missingSeq: this.#missing.get(deviceId ?? "")?.rows ?? 0,
    };
  }
}
