import type pg from "pg";
import { inTransaction } from "../infra/postgres/transaction.js";
import {
  type DeadLetter,
  type DeadLetterLimits,
  deviceShare,
  excessRows,
  fitToShare,
  letterBytes,
  MISSING,
  MISSING_SEQ_PER_DEVICE,
  type Pruned,
  type StoredDeadLetter,
} from "./dead-letters.js";

/*
 * Dead letters in PostgreSQL (table ingest_dead_letters), shared by the nodes of a cluster, with
 * the same bounds as the embedded store (ingest/dead-letters.ts): each source (the device its
 * topic names, or all topics naming none together) holds at most its share of the bytes, its
 * oldest going first as a new one comes in; all of them at most `maxBytes`, the oldest of the
 * source holding the most going first; missing_seq records apart, at most
 * MISSING_SEQ_PER_DEVICE per device and never deleted for bytes; everything past `maxAgeMs` by
 * prune().
 *
 * What the embedded store counts in memory, several nodes must count in the database: table
 * ingest_dead_letter_accounts holds each source's bytes and letters (migration 4), changed in the
 * same transaction as the letters, so the bounds are kept at every insert without summing the
 * table. A source's account row is locked by the transaction that changes it; two nodes adding
 * letters of the same source (a topic naming no device, or a device across a takeover) take
 * turns.
 */

/** Letters in the order given, each with its partition (null: none). */
export const INSERT_DEAD_LETTERS = `INSERT INTO ingest_dead_letters
    (partition, received_ms, topic, device_id, seq, reason, detail, payload)
  SELECT p, r, t, d, s, re, de, b
    FROM unnest($1::integer[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                $7::text[], $8::bytea[]) WITH ORDINALITY AS u(p, r, t, d, s, re, de, b, n)
  ORDER BY n`;

/** Add to the sources' accounts, in source order (two writers never lock them crosswise). */
const CREDIT = `INSERT INTO ingest_dead_letter_accounts AS a (source, missing, bytes, letters)
  SELECT s, m, sum(b), count(*) FROM unnest($1::text[], $2::boolean[], $3::bigint[]) AS u(s, m, b)
   GROUP BY s, m ORDER BY s COLLATE "C", m
  ON CONFLICT (source, missing) DO UPDATE
    SET bytes = a.bytes + excluded.bytes, letters = a.letters + excluded.letters
  RETURNING source, missing, bytes, letters`;

/** Delete a source's `$3` oldest letters (its missing_seq ones or the others), debit its account. */
const deleteOldest = (nullSource: boolean) => `WITH gone AS (
    DELETE FROM ingest_dead_letters WHERE id IN (
      SELECT id FROM ingest_dead_letters
       WHERE ${nullSource ? "device_id IS NULL AND $1::text = ''" : "device_id = $1"}
         AND (reason = '${MISSING}') = $2
       ORDER BY id LIMIT $3)
    RETURNING length(payload) + octet_length(detail) AS n),
  sums AS (SELECT count(*) AS letters, coalesce(sum(n), 0) AS bytes FROM gone)
  UPDATE ingest_dead_letter_accounts a
     SET bytes = a.bytes - sums.bytes, letters = a.letters - sums.letters
    FROM sums WHERE a.source = $1 AND a.missing = $2
  RETURNING a.bytes, a.letters, sums.letters AS deleted`;

/** Delete expired letters among the 1,000 oldest, debit their accounts; how many went. */
const EXPIRE = `WITH gone AS (
    DELETE FROM ingest_dead_letters
     WHERE id IN (SELECT id FROM ingest_dead_letters ORDER BY id LIMIT 1000) AND received_ms < $1
    RETURNING coalesce(device_id, '') AS source, reason = '${MISSING}' AS missing,
              length(payload) + octet_length(detail) AS n),
  sums AS (SELECT source, missing, count(*) AS letters, sum(n) AS bytes
             FROM gone GROUP BY source, missing),
  debited AS (UPDATE ingest_dead_letter_accounts a
                 SET bytes = a.bytes - sums.bytes, letters = a.letters - sums.letters
                FROM sums WHERE a.source = sums.source AND a.missing = sums.missing RETURNING 1)
  SELECT coalesce(sum(letters), 0) AS deleted FROM sums`;

/**
 * Count every source's account again from the letters (after letters were written without it:
 * `citywatch migrate`).
 */
export const RECOUNT_DEAD_LETTER_ACCOUNTS = `
  DELETE FROM ingest_dead_letter_accounts;
  INSERT INTO ingest_dead_letter_accounts (source, missing, bytes, letters)
  SELECT coalesce(device_id, ''), reason = '${MISSING}',
         sum(length(payload) + octet_length(detail)), count(*)
    FROM ingest_dead_letters GROUP BY 1, 2`;

interface Account {
  readonly source: string;
  readonly missing: boolean;
  bytes: number;
  letters: number;
}

const none = (): Pruned => ({ age: 0, bytes: 0, device: 0 });

/**
 * Text as PostgreSQL keeps it: a text value cannot hold U+0000, which a device's payload can put
 * in a letter's detail (it would fail the whole round's transaction, again at every retry). The
 * payload itself is bytea and kept as it came.
 */
const pgText = (text: string): string =>
  text.includes("\u0000") ? text.replaceAll("\u0000", "\\u0000") : text;

/** The letter with its text as PostgreSQL can keep it (and as it is counted). */
const storableLetter = (d: DeadLetter): DeadLetter => ({
  ...d,
  topic: pgText(d.topic),
  detail: pgText(d.detail),
  ...(d.deviceId === undefined ? {} : { deviceId: pgText(d.deviceId) }),
});

export class PostgresDeadLetters {
  readonly #pool: pg.Pool;
  #limits: DeadLetterLimits | undefined;
  /** Deleted at insert by this node since its last prune() (reported by it). */
  #pending: Pruned = none();

  constructor(pool: pg.Pool, limits?: DeadLetterLimits) {
    this.#pool = pool;
    this.#limits = limits;
  }

  /** Set the bounds kept at every insert (prune() sets them too). */
  setLimits(limits: DeadLetterLimits): void {
    this.#limits = limits;
  }

  /**
   * Keep rejected messages of `partition` (null: none), in the caller's transaction (the one that
   * commits past them), and keep the bounds.
   */
  async add(
    client: pg.PoolClient,
    partition: number | null,
    letters: readonly DeadLetter[],
  ): Promise<void> {
    if (letters.length === 0) return;
    const limits = this.#limits;
    const storable = letters.map(storableLetter);
    const kept =
      limits === undefined ? storable : storable.map((d) => fitToShare(d, deviceShare(limits)));
    await client.query(INSERT_DEAD_LETTERS, [
      kept.map(() => partition),
      kept.map((d) => d.receivedMs),
      kept.map((d) => d.topic),
      kept.map((d) => d.deviceId ?? null),
      kept.map((d) => d.seq ?? null),
      kept.map((d) => d.reason),
      kept.map((d) => d.detail),
      kept.map((d) => d.payload),
    ]);
    const { rows } = await client.query<{
      source: string;
      missing: boolean;
      bytes: string;
      letters: string;
    }>(CREDIT, [
      kept.map((d) => d.deviceId ?? ""),
      kept.map((d) => d.reason === MISSING),
      kept.map(letterBytes),
    ]);
    for (const row of rows) {
      const account: Account = {
        source: row.source,
        missing: row.missing,
        bytes: Number(row.bytes),
        letters: Number(row.letters),
      };
      if (account.missing) {
        if (account.letters > MISSING_SEQ_PER_DEVICE) {
          this.#pending.device += await this.#deleteOldest(
            client,
            account,
            account.letters - MISSING_SEQ_PER_DEVICE,
          );
        }
      } else if (limits !== undefined) {
        this.#pending.device += await this.#keepShare(client, account, deviceShare(limits));
      }
    }
    if (limits !== undefined) this.#pending.bytes += await this.#keepTotal(client, limits.maxBytes);
  }

  /** Delete up to `n` of an account's oldest letters; the account is debited. How many went. */
  async #deleteOldest(client: pg.PoolClient, account: Account, n: number): Promise<number> {
    const { rows } = await client.query<{ bytes: string; letters: string; deleted: string }>(
      deleteOldest(account.source === ""),
      [account.source, account.missing, n],
    );
    const row = rows[0];
    if (row === undefined) return 0;
    account.bytes = Number(row.bytes);
    account.letters = Number(row.letters);
    return Number(row.deleted);
  }

  /** Hold one source within its share (its newest letter stays, however large). */
  async #keepShare(client: pg.PoolClient, account: Account, share: number): Promise<number> {
    let deleted = 0;
    while (account.bytes > share && account.letters > 1) {
      const n = await this.#deleteOldest(
        client,
        account,
        Math.min(
          account.letters - 1,
          excessRows(account.bytes, account.letters, account.bytes - share),
        ),
      );
      if (n === 0) break;
      deleted += n;
    }
    return deleted;
  }

  /** Hold all letters within `maxBytes`: the oldest of the source holding the most go first. */
  async #keepTotal(client: pg.PoolClient, maxBytes: number): Promise<number> {
    let deleted = 0;
    let total = await this.#total(client);
    while (total > maxBytes) {
      const { rows } = await client.query<{ source: string; bytes: string; letters: string }>(
        `SELECT source, bytes, letters FROM ingest_dead_letter_accounts
          WHERE NOT missing AND letters > 0 ORDER BY bytes DESC, source LIMIT 1`,
      );
      const row = rows[0];
      if (row === undefined) break; // only missing_seq records left: never pruned for bytes
      const account: Account = {
        source: row.source,
        missing: false,
        bytes: Number(row.bytes),
        letters: Number(row.letters),
      };
      const before = account.bytes;
      const n = await this.#deleteOldest(
        client,
        account,
        excessRows(account.bytes, account.letters, total - maxBytes),
      );
      if (n === 0) break;
      deleted += n;
      total -= before - account.bytes;
    }
    return deleted;
  }

  async #total(db: pg.PoolClient | pg.Pool): Promise<number> {
    const { rows } = await db.query<{ bytes: string }>(
      "SELECT coalesce(sum(bytes), 0) AS bytes FROM ingest_dead_letter_accounts",
    );
    return Number(rows[0]?.bytes ?? 0);
  }

  /**
   * Keep the dead letters within their bounds: those received before `nowMs - maxAgeMs` (in steps
   * of 1,000 rows, each its own transaction), then the byte bounds as `add` keeps them, in one
   * transaction. Any node may run it. Sets the limits kept at every insert from then on. Returns
   * how many went for each reason, including those this node deleted at insert since its last
   * call.
   */
  async prune(nowMs: number, limits: DeadLetterLimits): Promise<Pruned> {
    this.#limits = limits;
    const pruned = this.#pending;
    this.#pending = none();
    for (;;) {
      const { rows } = await this.#pool.query<{ deleted: string }>(EXPIRE, [
        nowMs - limits.maxAgeMs,
      ]);
      const n = Number(rows[0]?.deleted ?? 0);
      if (n === 0) break;
      pruned.age += n;
    }
    await inTransaction(this.#pool, async (client) => {
      pruned.bytes += await this.#keepTotal(client, limits.maxBytes);
      const share = deviceShare(limits);
      const { rows } = await client.query<{ source: string; bytes: string; letters: string }>(
        `SELECT source, bytes, letters FROM ingest_dead_letter_accounts
        WHERE NOT missing AND bytes > $1 AND letters > 1 ORDER BY source COLLATE "C"`,
        [share],
      );
      for (const row of rows) {
        pruned.device += await this.#keepShare(
          client,
          {
            source: row.source,
            missing: false,
            bytes: Number(row.bytes),
            letters: Number(row.letters),
          },
          share,
        );
      }
      await client.query("DELETE FROM ingest_dead_letter_accounts WHERE letters <= 0");
    });
    return pruned;
  }

  /** Dead letters, newest first, optionally of one device or reason and before an id (paging). */
  async list(options: {
    limit: number;
    beforeId?: number | undefined;
    deviceId?: string | undefined;
    reason?: string | undefined;
  }): Promise<StoredDeadLetter[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      received_ms: string;
      topic: string;
      device_id: string | null;
      seq: string | null;
      reason: StoredDeadLetter["reason"];
      detail: string;
      payload: Buffer;
    }>(
      `SELECT * FROM ingest_dead_letters
        WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR device_id = $2)
          AND ($3::text IS NULL OR reason = $3)
        ORDER BY id DESC LIMIT $4`,
      [options.beforeId ?? null, options.deviceId ?? null, options.reason ?? null, options.limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      receivedMs: Number(r.received_ms),
      topic: r.topic,
      deviceId: r.device_id ?? undefined,
      seq: r.seq === null ? undefined : Number(r.seq),
      reason: r.reason,
      detail: r.detail,
      payload: r.payload,
    }));
  }

  async count(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM ingest_dead_letters",
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** Bytes of payload and detail the dead letters hold (missing_seq records included). */
  bytes(): Promise<number> {
    return this.#total(this.#pool);
  }

  /** Bytes held by one source's payload-carrying letters, and its missing_seq records' count. */
  async held(
    deviceId: string | undefined,
  ): Promise<{ bytes: number; rows: number; missingSeq: number }> {
    const { rows } = await this.#pool.query<{ missing: boolean; bytes: string; letters: string }>(
      "SELECT missing, bytes, letters FROM ingest_dead_letter_accounts WHERE source = $1",
      [deviceId ?? ""],
    );
    const of = (missing: boolean) => rows.find((r) => r.missing === missing);
    return {
      bytes: Number(of(false)?.bytes ?? 0),
      rows: Number(of(false)?.letters ?? 0),
      missingSeq: Number(of(true)?.letters ?? 0),
    };
  }
}
