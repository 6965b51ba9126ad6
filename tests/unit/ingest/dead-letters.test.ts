import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MISSING_SEQ_PER_DEVICE } from "../../../ingest/dead-letters.js";
import { type DeadLetter, IngestState } from "../../../ingest/state.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function stateFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "cw-dead-"));
  dirs.push(dir);
  return join(dir, "ingest.db");
}

const DAY = 86_400_000;
const letter = (receivedMs: number, bytes: number, detail = "not JSON"): DeadLetter => ({
  receivedMs,
  topic: "citywatch/v1/devices/d1/data",
  deviceId: "d1",
  reason: "not_json",
  detail,
  payload: Buffer.alloc(bytes, 0x78),
});

function add(state: IngestState, letters: DeadLetter[], nowMs: number): void {
  state.applyBatch({ inboxIds: [], handled: [], deadLetters: letters }, nowMs);
}

describe("dead letter bounds", () => {
  it("prunes the expired ones, oldest first, and keeps the byte count across a restart", () => {
    const file = stateFile();
    const now = Date.parse("2026-11-27T00:00:00Z");
    let state = new IngestState(file);
    // 2,500 letters a day apart, so expiry cuts across several 1,000-row steps.
    add(
      state,
      Array.from({ length: 2_500 }, (_, i) => letter(now - (2_500 - i) * DAY, 10, "锦江")),
      now,
    );
    expect(state.deadLetters.bytes()).toBe(2_500 * (10 + Buffer.byteLength("锦江")));
    state.close();
    state = new IngestState(file);
    expect(state.deadLetters.bytes()).toBe(2_500 * 16);
    const pruned = state.deadLetters.prune(now, { maxBytes: 1e12, maxAgeMs: 1_000 * DAY });
    expect(pruned).toEqual({ age: 1_500, bytes: 0, device: 0 });
    expect(state.deadLetters.count()).toBe(1_000);
    expect(state.deadLetters.bytes()).toBe(1_000 * 16);
    // The newest remain: the oldest kept is exactly 1,000 days old.
    const oldest = state.deadLetters.list({ limit: 1_000 }).at(-1);
    expect(oldest?.receivedMs).toBe(now - 1_000 * DAY);
    state.close();
  });

  it("deletes the oldest past the byte bound, no more than it must", () => {
    const state = new IngestState(stateFile());
    const now = Date.now();
    add(
      state,
      Array.from({ length: 300 }, (_, i) => letter(now - 300 + i, 1_000, "")),
      now,
    );
    expect(state.deadLetters.bytes()).toBe(300_000);
    const limits = { maxBytes: 250_500, maxAgeMs: DAY, perDeviceMaxBytes: 250_500 };
    const pruned = state.deadLetters.prune(now, limits);
    expect(pruned).toEqual({ age: 0, bytes: 50, device: 0 });
    expect(state.deadLetters.count()).toBe(250);
    expect(state.deadLetters.bytes()).toBe(250_000);
    expect(state.deadLetters.list({ limit: 300 }).at(-1)?.receivedMs).toBe(now - 250);
    // Within bounds: nothing more goes.
    expect(state.deadLetters.prune(now, limits)).toEqual({ age: 0, bytes: 0, device: 0 });
    state.close();
  });
});

/*
 * Issue #16 item 3: three devices sending 256 KiB garbage pruned 86,645 dead letters of other
 * devices, every missing_seq record among them, and the byte gauge stayed above its bound (the
 * bound was kept once a minute).
 */
describe("dead letter budgets per device", () => {
  const garbage = (device: string, receivedMs: number, bytes: number): DeadLetter => ({
    receivedMs,
    topic: `citywatch/v1/devices/${device}/data`,
    deviceId: device,
    reason: "not_json",
    detail: "payload is not JSON",
    payload: Buffer.alloc(bytes, 0x7a),
  });
  const gap = (device: string, receivedMs: number, seq: number): DeadLetter => ({
    receivedMs,
    topic: "",
    deviceId: device,
    seq,
    reason: "missing_seq",
    detail: `seq ${seq}..${seq} never arrived within 600000 ms; commit moved past them`,
    payload: Buffer.alloc(0),
  });
  /** What the file holds, counted by SQLite: the in-memory count must agree. */
  const heldOnDisk = (state: IngestState) =>
    state.deadLetters
      .list({ limit: 1_000_000 })
      .reduce((n, d) => n + d.payload.length + Buffer.byteLength(d.detail), 0);

  it("a flood of three devices leaves the others' letters and every missing_seq record, within the bound at every insert", () => {
    const state = new IngestState(stateFile());
    const now = Date.now();
    const limits = { maxBytes: 2_000_000, maxAgeMs: DAY, perDeviceMaxBytes: 400_000 };
    state.deadLetters.prune(now, limits);
    // Before the flood: ten quiet devices with a few letters each, and gaps recorded.
    const quiet = Array.from({ length: 10 }, (_, i) => `quiet-${i}`);
    add(
      state,
      quiet.flatMap((d, i) => [
        garbage(d, now - 1_000 + i, 300),
        garbage(d, now - 900 + i, 300),
        gap(d, now - 800 + i, 7),
      ]),
      now,
    );
    const before = quiet.map((d) => state.deadLetters.list({ limit: 100, deviceId: d }).length);
    let maxSeen = 0;
    for (let round = 0; round < 60; round++) {
      add(
        state,
        ["flood-a", "flood-b", "flood-c"].map((d) => garbage(d, now + round, 256 * 1024)),
        now + round,
      );
      maxSeen = Math.max(maxSeen, state.deadLetters.bytes());
    }
    expect(maxSeen).toBeLessThanOrEqual(limits.maxBytes);
    expect(heldOnDisk(state)).toBe(state.deadLetters.bytes());
    expect(quiet.map((d) => state.deadLetters.list({ limit: 100, deviceId: d }).length)).toEqual(
      before,
    );
    expect(state.deadLetters.list({ limit: 100, reason: "missing_seq" })).toHaveLength(10);
    // Each flooding device keeps its newest, within its share; its oldest went first.
    for (const d of ["flood-a", "flood-b", "flood-c"]) {
      const held = state.deadLetters.held(d);
      expect(held.bytes).toBeLessThanOrEqual(limits.perDeviceMaxBytes);
      expect(held.rows).toBeGreaterThan(0);
      expect(state.deadLetters.list({ limit: 1, deviceId: d })[0]?.receivedMs).toBe(now + 59);
    }
    expect(state.deadLetters.prune(now + 60, limits).device).toBeGreaterThan(100);
    state.close();
  });

  it("past the total bound, the oldest of the device holding the most go, not the oldest of all", () => {
    const state = new IngestState(stateFile());
    const now = Date.now();
    // Shares as large as the bound: only the total bound acts.
    const limits = { maxBytes: 100_000, maxAgeMs: DAY, perDeviceMaxBytes: 100_000 };
    state.deadLetters.prune(now, limits);
    add(state, [garbage("early", now - 10_000, 5_000)], now);
    add(
      state,
      Array.from({ length: 40 }, (_, i) => garbage("greedy", now + i, 5_000)),
      now + 40,
    );
    expect(state.deadLetters.bytes()).toBeLessThanOrEqual(limits.maxBytes);
    expect(state.deadLetters.list({ limit: 10, deviceId: "early" })).toHaveLength(1);
    const greedy = state.deadLetters.list({ limit: 100, deviceId: "greedy" });
    expect(greedy[0]?.receivedMs).toBe(now + 39);
    expect(greedy.at(-1)?.receivedMs).toBeGreaterThan(now);
    state.close();
  });

  it("keeps a letter larger than the device's share as its head, saying so, and counts it across a restart", () => {
    const file = stateFile();
    let state = new IngestState(file);
    const now = Date.now();
    const limits = { maxBytes: 1_000_000, maxAgeMs: DAY, perDeviceMaxBytes: 10_000 };
    state.deadLetters.prune(now, limits);
    add(state, [garbage("big", now, 256 * 1024)], now);
    const [kept] = state.deadLetters.list({ limit: 1, deviceId: "big" });
    expect(kept?.detail).toMatch(/payload cut from 262144 to its first \d+ bytes/);
    expect(kept?.payload.length).toBeGreaterThan(9_000);
    expect(state.deadLetters.held("big").bytes).toBeLessThanOrEqual(10_000);
    const bytes = state.deadLetters.bytes();
    state.close();
    state = new IngestState(file);
    expect(state.deadLetters.bytes()).toBe(bytes);
    expect(state.deadLetters.held("big")).toEqual({ bytes, rows: 1, missingSeq: 0 });
    state.close();
  });

  it("bounds a device's missing_seq records by their own count, its oldest first, never another's", () => {
    const state = new IngestState(stateFile());
    const now = Date.now();
    state.deadLetters.prune(now, { maxBytes: 1e9, maxAgeMs: DAY });
    add(state, [gap("other", now, 3)], now);
    const many = Array.from({ length: MISSING_SEQ_PER_DEVICE + 5 }, (_, i) =>
      gap("gappy", now + i, 2 * i + 1),
    );
    add(state, many, now);
    expect(state.deadLetters.held("gappy").missingSeq).toBe(MISSING_SEQ_PER_DEVICE);
    expect(state.deadLetters.list({ limit: 1, deviceId: "other" })).toHaveLength(1);
    const oldest = state.deadLetters
      .list({ limit: MISSING_SEQ_PER_DEVICE, deviceId: "gappy" })
      .at(-1);
    expect(oldest?.seq).toBe(11);
    state.close();
  });
});
