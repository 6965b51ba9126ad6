import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IngestState } from "../../../ingest/state.js";

const dir = mkdtempSync(join(tmpdir(), "cw-commit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Hand `seqs` of device d1 to the state as one batch; the commits that moved. */
function handle(state: IngestState, seqs: number[], now = 1_000) {
  for (const seq of seqs) state.ledger.isHandled("d1", seq); // the pipeline asks first, as it does
  return state.applyBatch(
    {
      inboxIds: [],
      handled: seqs.map((seq) => ({ deviceId: "d1", seq, receivedMs: now })),
      deadLetters: [],
    },
    now,
  );
}

describe("commit watermark", () => {
  it("moves over seqs in a row, waits at a gap, closes it, and keeps it across a restart", () => {
    const file = join(dir, "ingest.db");
    let state = new IngestState(file);
    expect(handle(state, [1, 2, 3])).toEqual(new Map([["d1", 3]]));
    // The next ones in a row, out of order within the batch.
    expect(handle(state, [5, 4])).toEqual(new Map([["d1", 5]]));
    // 6 missing: 7 and 8 wait above the gap.
    expect(handle(state, [7, 8])).toEqual(new Map());
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 5, lastSeq: 8 });
    expect(state.ledger.isHandled("d1", 7)).toBe(true);
    expect(state.ledger.isHandled("d1", 6)).toBe(false);
    // 6 arrives: the commit moves over 6, 7 and 8.
    expect(handle(state, [6])).toEqual(new Map([["d1", 8]]));
    // Then the usual case again, and a re-sent seq is no reason to move.
    expect(handle(state, [9, 10])).toEqual(new Map([["d1", 10]]));
    expect(handle(state, [10])).toEqual(new Map());
    expect(state.ledger.progress("d1")).toMatchObject({
      committedSeq: 10,
      lastSeq: 10,
      committedMs: 1_000,
    });
    state.close();
    state = new IngestState(file);
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 10, lastSeq: 10 });
    expect(state.ledger.isHandled("d1", 10)).toBe(true);
    expect(handle(state, [11], 2_000)).toEqual(new Map([["d1", 11]]));
    expect(state.ledger.progress("d1")).toMatchObject({
      committedSeq: 11,
      committedMs: 2_000,
      lastSeenMs: 2_000,
    });
    state.close();
  });

  it("starts a device never heard from at seq 1: a first seq above it waits", () => {
    const state = new IngestState(join(dir, "fresh.db"));
    expect(handle(state, [3, 4])).toEqual(new Map());
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 0, lastSeq: 4 });
    expect(handle(state, [1, 2])).toEqual(new Map([["d1", 4]]));
    state.close();
  });

  it("forgets what a rolled-back batch moved: the retried seqs are not duplicates", () => {
    const state = new IngestState(join(dir, "rollback.db"));
    expect(handle(state, [1, 2])).toEqual(new Map([["d1", 2]]));
    // The batch's transaction fails after the ledger moved (a full disk at the inbox's delete).
    const remove = state.inbox.remove.bind(state.inbox);
    state.inbox.remove = () => {
      throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    };
    expect(() => handle(state, [3, 4])).toThrow(/disk is full/);
    state.inbox.remove = remove;
    expect(state.ledger.progress("d1")).toMatchObject({ committedSeq: 2 });
    // The round is retried: 3 and 4 are new, and the commit moves over them.
    expect(state.ledger.isHandled("d1", 3)).toBe(false);
    expect(handle(state, [3, 4])).toEqual(new Map([["d1", 4]]));
    state.close();
  });
});
