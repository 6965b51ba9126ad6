import type Database from "better-sqlite3";
import { z } from "zod";
import { openSqlite } from "../../infra/sqlite-file.js";
import type { EdgeDeadLetter } from "../drivers/types.js";

/**
 * The edge's dead-letter log: what the field drivers refused (an HJ 212 frame with a bad CRC, an
 * unknown MN, an implausible factor, a length field that lies…), one row each, in a SQLite file
 * beside the write-ahead log, so a refusal can be looked at later (`GET /dead-letters` on the
 * agent's HTTP port, docs/edge.md) instead of only in a log line.
 *
 * Bounded: at most `maxEntries` rows, the oldest pruned first, and at most `maxPerSource` rows per
 * source (an MN, or a peer address before an MN is known), that source's oldest pruned first, so
 * one monitor or port scanner flooding the port cannot push every other source's records out.
 * Every record, prune and failed write is counted (`stats()`, the agent's /metrics). Recording
 * never throws: a full disk costs the record (counted in `failures`), never the driver.
 */

/** The bounds of the log (contracts/config/edge.ts, `deadLetters`). */
export interface DeadLetterLimits {
  readonly maxEntries: number;
  readonly maxPerSource: number;
}

/** Longest payload kept per row; longer ones are cut and marked with `…`. */
export const MAX_PAYLOAD_CHARS = 2_048;
/** Most rows one `list` returns. */
export const MAX_LIST = 1_000;

export interface StoredDeadLetter extends EdgeDeadLetter {
  readonly id: number;
  /** When it was recorded, RFC 3339 UTC. */
  readonly at: string;
}

export interface DeadLetterQuery {
  /** Only rows with an id above this (paging: pass the last id seen). */
  readonly afterId?: number;
  readonly code?: string;
  readonly source?: string;
  /** At most this many, oldest first; capped at MAX_LIST. */
  readonly limit?: number;
}

export interface DeadLetterStats {
  /** Rows held now. */
  readonly entries: number;
  /** Recorded since start, by code. */
  readonly recordedByCode: Readonly<Record<string, number>>;
  /** Rows pruned by the bounds since start. */
  readonly pruned: number;
  /** Records lost because the file could not be written, since start. */
  readonly failures: number;
}

const MIGRATIONS = [
  `CREATE TABLE letter (
     id INTEGER PRIMARY KEY,
     at_ms INTEGER NOT NULL,
     driver TEXT NOT NULL,
     source TEXT NOT NULL,
     code TEXT NOT NULL,
     reason TEXT NOT NULL,
     remote TEXT,
     payload TEXT
   );
   CREATE INDEX letter_source ON letter (source, id);
   CREATE INDEX letter_code ON letter (code, id);`,
];

interface Row {
  id: number;
  at_ms: number;
  driver: string;
  source: string;
  code: string;
  reason: string;
  remote: string | null;
  payload: string | null;
}

function cut(text: string | undefined, max: number): string | null {
  if (text === undefined) return null;
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export class EdgeDeadLetterLog {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly countSource: Database.Statement;
  private readonly pruneSource: Database.Statement;
  private readonly pruneOldest: Database.Statement;
  private entries: number;
  private pruned = 0;
  private failures = 0;
  private readonly recordedByCode = new Map<string, number>();

  constructor(
    file: string,
    private readonly limits: DeadLetterLimits,
    private readonly now: () => number = Date.now,
  ) {
    // NORMAL: a record survives a crash of the agent; a power cut may lose the last few.
    this.db = openSqlite(file, { synchronous: "NORMAL", migrations: MIGRATIONS });
    this.insert = this.db.prepare(
      `INSERT INTO letter (at_ms, driver, source, code, reason, remote, payload)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.countSource = this.db.prepare("SELECT count(*) AS n FROM letter WHERE source = ?");
    this.pruneSource = this.db.prepare(
      `DELETE FROM letter WHERE id IN
         (SELECT id FROM letter WHERE source = ? ORDER BY id LIMIT ?)`,
    );
    this.pruneOldest = this.db.prepare(
      "DELETE FROM letter WHERE id IN (SELECT id FROM letter ORDER BY id LIMIT ?)",
    );
    this.entries = (this.db.prepare("SELECT count(*) AS n FROM letter").get() as { n: number }).n;
  }

  /** Records one refusal, pruning to the bounds in the same transaction. Never throws. */
  readonly record = (letter: EdgeDeadLetter): void => {
    const code = letter.code.slice(0, 64);
    this.recordedByCode.set(code, (this.recordedByCode.get(code) ?? 0) + 1);
    try {
      // Counters move only when the transaction committed (a failed one changed nothing).
      const pruned = this.db.transaction((): number => {
        const source = letter.source.slice(0, 128);
        this.insert.run(
          this.now(),
          letter.driver.slice(0, 128),
          source,
          code,
          letter.reason.slice(0, 1_000),
          cut(letter.remote, 64),
          cut(letter.payload, MAX_PAYLOAD_CHARS),
        );
        let removed = 0;
        const ofSource = (this.countSource.get(source) as { n: number }).n;
        if (ofSource > this.limits.maxPerSource) {
          removed += this.pruneSource.run(source, ofSource - this.limits.maxPerSource).changes;
        }
        const over = this.entries + 1 - removed - this.limits.maxEntries;
        if (over > 0) removed += this.pruneOldest.run(over).changes;
        return removed;
      })();
      this.entries += 1 - pruned;
      this.pruned += pruned;
    } catch {
      this.failures++;
    }
  };

  /** Rows oldest first, filtered; at most MAX_LIST. */
  list(query: DeadLetterQuery = {}): StoredDeadLetter[] {
    const where = ["id > ?"];
    const args: Array<string | number> = [query.afterId ?? 0];
    if (query.code !== undefined) {
      where.push("code = ?");
      args.push(query.code);
    }
    if (query.source !== undefined) {
      where.push("source = ?");
      args.push(query.source);
    }
    const limit = Math.max(1, Math.min(MAX_LIST, query.limit ?? 100));
    const rows = this.db
      .prepare(`SELECT * FROM letter WHERE ${where.join(" AND ")} ORDER BY id LIMIT ?`)
      .all(...args, limit) as Row[];
    return rows.map((row) => ({
      id: row.id,
      at: new Date(row.at_ms).toISOString(),
      driver: row.driver,
      source: row.source,
      code: row.code,
      reason: row.reason,
      ...(row.remote !== null ? { remote: row.remote } : {}),
      ...(row.payload !== null ? { payload: row.payload } : {}),
    }));
  }

  stats(): DeadLetterStats {
    return {
      entries: this.entries,
      recordedByCode: Object.fromEntries(this.recordedByCode),
      pruned: this.pruned,
      failures: this.failures,
    };
  }

  close(): void {
    this.db.close();
  }
}

/** The query string of `GET /dead-letters`, checked (zod at the boundary). */
export const DeadLetterQueryParams = z.strictObject({
  after: z.coerce.number().int().min(0).optional(),
  code: z.string().min(1).max(64).optional(),
  source: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_LIST).optional(),
});

/**
 * `GET /dead-letters?after=&code=&source=&limit=`: the rows as JSON (`{ deadLetters, next }`,
 * `next` the `after` of the following page), or 400 naming each bad parameter.
 */
export function deadLettersRoute(
  log: EdgeDeadLetterLog,
): (query: URLSearchParams) => { status: number; body: unknown } {
  return (query) => {
    const parsed = DeadLetterQueryParams.safeParse(Object.fromEntries(query));
    if (!parsed.success) {
      return {
        status: 400,
        body: {
          error: "bad_request",
          problems: parsed.error.issues.map((i) => `${i.path.join(".") || "query"}: ${i.message}`),
        },
      };
    }
    const q = parsed.data;
    const rows = log.list({
      ...(q.after !== undefined ? { afterId: q.after } : {}),
      ...(q.code !== undefined ? { code: q.code } : {}),
      ...(q.source !== undefined ? { source: q.source } : {}),
      ...(q.limit !== undefined ? { limit: q.limit } : {}),
    });
    return {
      status: 200,
      body: { deadLetters: rows, next: rows.at(-1)?.id ?? q.after ?? 0, ...log.stats() },
    };
  };
}
