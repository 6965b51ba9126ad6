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

/**
 * Dead letters (table `dead_letter` of `ingest.db`): rejected messages with their raw payload,
 * topic, reason and time, bounded by age and bytes (`prune`). Rows come in through
 * `IngestState.applyBatch` and `closeStaleGaps`, in the transaction that commits past them.
 */
export class DeadLetters {
  readonly #db: Database.Database;
  readonly #statements: Statements;
  /** Bytes of payload and detail held (kept current; see prune). */
  #bytes: number;

  constructor(db: Database.Database, statements: Statements) {
    this.#db = db;
    this.#statements = statements;
    this.#bytes = (
      statements
        .get(
          "SELECT coalesce(sum(length(payload) + octet_length(detail)), 0) AS n FROM dead_letter",
        )
        .get() as { n: number }
    ).n;
  }

  /** Keep a rejected message; called inside the transaction that commits past it. */
  add(d: DeadLetter): void {
    this.#statements
      .get(
        "INSERT INTO dead_letter (received_ms, topic, device_id, seq, reason, detail, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
      )
      .run(d.receivedMs, d.topic, d.deviceId ?? null, d.seq ?? null, d.reason, d.detail, d.payload);
    this.#bytes += d.payload.length + Buffer.byteLength(d.detail);
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

  /** Bytes of payload and detail the dead letters hold. */
  bytes(): number {
    return this.#bytes;
  }

  /**
   * Keep the dead letters within their bounds, oldest first: those received before
   * `nowMs - maxAgeMs`, then the oldest while they hold more than `maxBytes`. Deletes in steps of
   * 1,000 rows, each its own transaction, so a large prune does not hold the file for long.
   * Returns how many went for each reason.
   */
  prune(
    nowMs: number,
    limits: { readonly maxBytes: number; readonly maxAgeMs: number },
  ): { age: number; bytes: number } {
    const pruned = { age: 0, bytes: 0 };
    // Rows are in receipt order by id (near enough): expired ones are among the oldest.
    const expired = this.#statements.get(
      `DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id LIMIT 1000)
         AND received_ms < ? RETURNING length(payload) + octet_length(detail) AS n`,
    );
    const oldest = this.#statements.get(
      `DELETE FROM dead_letter WHERE id IN (SELECT id FROM dead_letter ORDER BY id LIMIT ?)
         RETURNING length(payload) + octet_length(detail) AS n`,
    );
    const run = (statement: Database.Statement, ...args: unknown[]) => {
      const rows = this.#db.transaction(() => statement.all(...args) as Array<{ n: number }>)();
      for (const row of rows) this.#bytes -= row.n;
      return rows.length;
    };
    const cutoff = nowMs - limits.maxAgeMs;
    for (let n = run(expired, cutoff); n > 0; n = run(expired, cutoff)) pruned.age += n;
    while (this.#bytes > limits.maxBytes) {
      // About as many of the oldest rows as hold the excess: at least one, at most 1,000 a step.
      const rows = this.count();
      if (rows === 0) break;
      const perRow = this.#bytes / rows;
      const want = Math.ceil((this.#bytes - limits.maxBytes) / Math.max(1, perRow));
      const n = run(oldest, Math.min(1_000, Math.max(1, want)));
      if (n === 0) break;
      pruned.bytes += n;
    }
    if (this.#bytes < 0) this.#bytes = 0;
    return pruned;
  }
}
