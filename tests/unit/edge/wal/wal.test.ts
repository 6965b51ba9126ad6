import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Reading } from "../../../../contracts/model/uplink.js";
import { type DroppedMessage, WriteAheadLog } from "../../../../edge/wal/log.js";
import type { WalLimitsInput } from "../../../../edge/wal/limits.js";
import { MIGRATIONS } from "../../../../edge/wal/schema.js";

const T0 = Date.parse("2026-11-27T22:00:00+08:00");

function reading(n: number, tsMs = T0 + n * 1000): Reading {
  return { ts: new Date(tsMs).toISOString(), quality: "normal", values: { LAeq: 40 + (n % 50) } };
}

function readings(from: number, count: number): Reading[] {
  return Array.from({ length: count }, (_, i) => reading(from + i));
}

describe("edge write-ahead log", () => {
  let dir: string;
  let file: string;
  let now: number;
  let drops: DroppedMessage[];
  const open: WriteAheadLog[] = [];

  function openLog(limits: WalLimitsInput = { maxReadingsPerMessage: 3 }): WriteAheadLog {
    const log = new WriteAheadLog(
      { file, limits },
      { now: () => now, onDrop: (d) => drops.push(d) },
    );
    open.push(log);
    return log;
  }

  function reopen(log: WriteAheadLog, limits?: WalLimitsInput): WriteAheadLog {
    log.close();
    open.splice(open.indexOf(log), 1);
    return openLog(limits);
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "citywatch-wal-"));
    file = join(dir, "edge", "wal.db");
    now = T0;
    drops = [];
  });

  afterEach(() => {
    for (const log of open.splice(0)) log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("groups readings into messages of at most N readings with seqs from 1", () => {
    const log = openLog();
    expect(log.append("noise-0001", readings(0, 7)).seqs).toEqual([1, 2, 3]);
    const messages = log.pending("noise-0001", { limit: 10 });
    expect(messages.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(messages.map((m) => m.readings.length)).toEqual([3, 3, 1]);
    expect(messages.flatMap((m) => m.readings)).toEqual(readings(0, 7));
    expect(messages.every((m) => !m.replay)).toBe(true);
  });

  it("keeps a separate seq per device", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 4));
    log.append("noise-0002", readings(0, 1));
    expect(log.pending("noise-0001", { limit: 10 }).map((m) => m.seq)).toEqual([1, 2]);
    expect(log.pending("noise-0002", { limit: 10 }).map((m) => m.seq)).toEqual([1]);
    expect(log.devices()).toEqual(["noise-0001", "noise-0002"]);
  });

  it("fills the open message across appends until it is formed", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 1));
    log.append("noise-0001", readings(1, 1));
    expect(log.append("noise-0001", readings(2, 2)).seqs).toEqual([1, 2]);
    const [first, second] = log.pending("noise-0001", { limit: 10 });
    expect(first?.readings).toEqual(readings(0, 3));
    expect(second?.readings).toEqual(readings(3, 1));
  });

  it("persists the seq across reopen and never reuses it", () => {
    let log = openLog();
    log.append("noise-0001", readings(0, 5)); // seqs 1, 2 (open)
    log = reopen(log);
    // The open message was formed before the restart: sealed, and replayed.
    const before = log.pending("noise-0001", { limit: 10 });
    expect(before.map((m) => [m.seq, m.readings.length, m.replay])).toEqual([
      [1, 3, true],
      [2, 2, true],
    ]);
    expect(log.append("noise-0001", readings(5, 1)).seqs).toEqual([3]);
    expect(log.pending("noise-0001", { afterSeq: 2, limit: 10 })[0]?.replay).toBe(false);
  });

  it("never reuses a seq after the log was trimmed to empty, even across reopen", () => {
    let log = openLog();
    log.append("noise-0001", readings(0, 6)); // seqs 1, 2
    expect(log.commit("noise-0001", 2)).toEqual({ outcome: "trimmed", trimmed: 2 });
    expect(log.stats("noise-0001")).toEqual({ pending: 0, dropped: 0 });
    log = reopen(log);
    expect(log.nextSeq("noise-0001")).toBe(3);
    expect(log.append("noise-0001", readings(6, 1)).seqs).toEqual([3]);
  });

  it("commit trims only seq <= committedSeq", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 12)); // seqs 1..4
    log.append("noise-0002", readings(0, 3));
    expect(log.commit("noise-0001", 2)).toEqual({ outcome: "trimmed", trimmed: 2 });
    expect(log.pending("noise-0001", { limit: 10 }).map((m) => m.seq)).toEqual([3, 4]);
    expect(log.pending("noise-0002", { limit: 10 }).map((m) => m.seq)).toEqual([1]);
  });

  it("ignores stale commits and refuses a commit above every formed seq", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 4)); // seq 1 formed, seq 2 open
    expect(log.commit("noise-0001", 0)).toEqual({ outcome: "stale", trimmed: 0 });
    expect(log.commit("noise-0001", 2)).toEqual({ outcome: "ahead", trimmed: 0 });
    expect(log.commit("noise-0009", 5)).toEqual({ outcome: "ahead", trimmed: 0 });
    expect(log.commit("noise-0001", 1)).toEqual({ outcome: "trimmed", trimmed: 1 });
    expect(log.commit("noise-0001", 1)).toEqual({ outcome: "stale", trimmed: 0 });
    expect(log.stats("noise-0001").pending).toBe(1);
  });

  it("returns pending messages after a seq, within a limit, in seq order", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 15)); // seqs 1..5
    expect(log.pending("noise-0001", { limit: 2 }).map((m) => m.seq)).toEqual([1, 2]);
    expect(log.pending("noise-0001", { afterSeq: 2, limit: 2 }).map((m) => m.seq)).toEqual([3, 4]);
    expect(log.pending("noise-0001", { afterSeq: 5, limit: 2 })).toEqual([]);
  });

  it("does not form the open message when it would not be returned", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 4)); // seq 1 formed, seq 2 open with 1 reading
    expect(log.pending("noise-0001", { limit: 1 }).map((m) => m.seq)).toEqual([1]);
    log.append("noise-0001", readings(4, 1)); // still goes into seq 2
    expect(log.pending("noise-0001", { afterSeq: 1, limit: 1 })[0]?.readings).toEqual(
      readings(3, 2),
    );
  });

  it("keeps a formed message immutable: a re-send has the same seq and readings", () => {
    let log = openLog();
    log.append("noise-0001", readings(0, 2));
    const [first] = log.pending("noise-0001", { limit: 10 }); // forms seq 1 with 2 readings
    expect(log.markSent("noise-0001", 1, T0 + 5)).toBe(true);
    log.append("noise-0001", readings(2, 2)); // goes into seq 2, not into the sent seq 1
    const [again, next] = log.pending("noise-0001", { limit: 10 });
    expect(again?.seq).toBe(1);
    expect(again?.readings).toEqual(first?.readings);
    expect(again?.sentAt).toBe(T0 + 5);
    expect(again?.sendCount).toBe(1);
    expect(next?.seq).toBe(2);
    expect(next?.readings).toEqual(readings(2, 2));
    log = reopen(log);
    const [afterRestart] = log.pending("noise-0001", { limit: 1 });
    expect(afterRestart?.readings).toEqual(first?.readings);
    expect(afterRestart?.replay).toBe(true);
  });

  it("markReplay flags everything logged and forms the open message", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 4));
    expect(log.markReplay("noise-0001")).toBe(2);
    log.append("noise-0001", readings(4, 1));
    expect(
      log.pending("noise-0001", { limit: 10 }).map((m) => [m.seq, m.readings.length, m.replay]),
    ).toEqual([
      [1, 3, true],
      [2, 1, true],
      [3, 1, false],
    ]);
  });

  it("when full, drops the oldest messages, counts and reports them", () => {
    const limits = { maxReadingsPerMessage: 100, maxBytes: 64 * 1024 };
    const log = openLog(limits);
    const perMessage = Buffer.byteLength(
      readings(0, 100)
        .map((r) => JSON.stringify(r))
        .join(","),
    );
    const fits = Math.floor((64 * 1024) / perMessage);
    let n = 0;
    for (let m = 0; m < fits; m++) {
      now += 1000;
      log.append(m % 2 === 0 ? "noise-0001" : "noise-0002", readings(n, 100));
      n += 100;
    }
    expect(drops).toEqual([]);
    expect(log.stats("noise-0001").dropped).toBe(0);
    now += 1000;
    log.append("noise-0002", readings(n, 300));
    // The oldest messages go first, whichever device they belong to.
    expect(drops.map((d) => [d.deviceId, d.seq, d.reason])).toEqual([
      ["noise-0001", 1, "max_bytes"],
      ["noise-0002", 1, "max_bytes"],
      ["noise-0001", 2, "max_bytes"],
    ]);
    expect(log.size().bytes).toBeLessThanOrEqual(64 * 1024);
    expect(log.stats("noise-0001")).toMatchObject({ dropped: 2 });
    expect(log.stats("noise-0002")).toMatchObject({ dropped: 1 });
    expect(log.pending("noise-0001", { limit: 1 })[0]?.seq).toBe(3);
    // Dropped seqs are never reused; the ingest's gap timeout records them as missing_seq.
    expect(log.nextSeq("noise-0001")).toBe(Math.ceil(fits / 2) + 1);
  });

  it("drops messages older than maxAgeMs, counted and reported in stats", () => {
    const log = openLog({ maxReadingsPerMessage: 3, maxAgeMs: 3_600_000 });
    log.append("noise-0001", readings(0, 3)); // seq 1 at T0
    now = T0 + 1_800_000;
    log.append("noise-0001", readings(3, 3)); // seq 2 at T0 + 30 min
    expect(log.stats("noise-0001")).toEqual({
      pending: 2,
      dropped: 0,
      oldestPendingTs: reading(0).ts,
    });
    now = T0 + 3_600_001;
    expect(log.stats("noise-0001")).toEqual({
      pending: 1,
      dropped: 1,
      oldestPendingTs: reading(3).ts,
    });
    expect(drops).toEqual([{ deviceId: "noise-0001", seq: 1, readings: 3, reason: "max_age" }]);
    expect(log.pending("noise-0001", { limit: 10 }).map((m) => m.seq)).toEqual([2]);
  });

  it("counts age from a message's last append, so a reading just appended is never aged out", () => {
    const log = openLog({ maxReadingsPerMessage: 3, maxAgeMs: 3_600_000 });
    log.append("noise-0001", readings(0, 1)); // open seq 1 at T0
    now = T0 + 3_000_000;
    log.append("noise-0001", readings(1, 1)); // still seq 1, last appended at T0 + 50 min
    now = T0 + 3_600_001;
    expect(log.stats("noise-0001")).toMatchObject({ pending: 1, dropped: 0 });
    now = T0 + 3_000_000 + 3_600_001;
    expect(log.stats("noise-0001")).toMatchObject({ pending: 0, dropped: 1 });
    expect(drops).toEqual([{ deviceId: "noise-0001", seq: 1, readings: 2, reason: "max_age" }]);
    expect(log.append("noise-0001", readings(2, 1)).seqs).toEqual([2]);
  });

  it("returns nothing for a window limit below 1", () => {
    const log = openLog();
    log.append("noise-0001", readings(0, 3));
    expect(log.pending("noise-0001", { limit: 0 })).toEqual([]);
    expect(log.pending("noise-0001", { limit: -1 })).toEqual([]);
  });

  it("reports the oldest pending reading's timestamp, not the append time", () => {
    const log = openLog();
    log.append("noise-0001", [reading(10), reading(2), reading(5)]);
    expect(log.stats("noise-0001").oldestPendingTs).toBe(reading(2).ts);
    expect(log.stats("noise-0003")).toEqual({ pending: 0, dropped: 0 });
  });

  it("opens a file written by the earlier hand-rolled opener, synced at every commit", () => {
    // What the log did before it used infra/sqlite-file.ts: WAL, synchronous=FULL, schema steps
    // counted in user_version. A file it left behind, holding a message, opens unchanged.
    mkdirSync(join(dir, "edge"), { recursive: true });
    const old = new Database(file);
    old.pragma("journal_mode = WAL");
    old.pragma("synchronous = FULL");
    for (const [v, step] of MIGRATIONS.entries()) {
      old.exec(step);
      old.pragma(`user_version = ${v + 1}`);
    }
    old.exec("INSERT INTO device (device_id, next_seq) VALUES ('noise-0001', 2)");
    old
      .prepare(
        `INSERT INTO message
           (device_id, seq, readings, reading_count, bytes, appended_ms, oldest_ts, oldest_ts_ms)
         VALUES ('noise-0001', 1, ?, 1, 10, ?, ?, ?)`,
      )
      .run(JSON.stringify(reading(0)), T0, reading(0).ts, T0);
    old.close();

    const log = openLog();
    expect(log.pending("noise-0001", { limit: 10 }).map((m) => [m.seq, m.replay])).toEqual([
      [1, true],
    ]);
    expect(log.append("noise-0001", readings(1, 1)).seqs).toEqual([2]);
    log.close();
    open.splice(open.indexOf(log), 1);
    const check = new Database(file, { readonly: true });
    expect(check.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    expect(check.pragma("journal_mode", { simple: true })).toBe("wal");
    check.close();
  });

  it("syncs every commit (synchronous=FULL) in WAL mode", () => {
    const log = openLog();
    // The connection's own settings: read through the log's database handle.
    const db = (log as unknown as { db: Database.Database }).db;
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("refuses limits beyond the protocol's", () => {
    expect(() => openLog({ maxReadingsPerMessage: 501 })).toThrow();
    expect(() => openLog({ maxBytes: 1000 })).toThrow();
  });
});
