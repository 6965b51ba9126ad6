import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
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
    expect(pruned).toEqual({ age: 1_500, bytes: 0 });
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
    const pruned = state.deadLetters.prune(now, { maxBytes: 250_500, maxAgeMs: DAY });
    expect(pruned).toEqual({ age: 0, bytes: 50 });
    expect(state.deadLetters.count()).toBe(250);
    expect(state.deadLetters.bytes()).toBe(250_000);
    expect(state.deadLetters.list({ limit: 300 }).at(-1)?.receivedMs).toBe(now - 250);
    // Within bounds: nothing more goes.
    expect(state.deadLetters.prune(now, { maxBytes: 250_500, maxAgeMs: DAY })).toEqual({
      age: 0,
      bytes: 0,
    });
    state.close();
  });
});
