import { afterAll, beforeAll, expect, it } from "vitest";
import { until } from "../../support/broker.js";
import { type AllInOne, dataTopic, noiseUplink, startAllInOne } from "../flapping/all-in-one.js";

/*
 * Issue #16 item 10, the crash itself: `SqliteError: database or disk is full` thrown by the
 * inbox's batch apply (IngestState.applyBatch) was taken for a programmer error and ended the
 * process. Here the state's disk fills under the apply for two seconds (its transaction throws
 * SQLITE_FULL, as SQLite does, before it changes anything): the ingest stays up, says the disk is
 * full, withholds commits, and commits everything once the apply succeeds again.
 */

let system: AllInOne;

beforeAll(async () => {
  system = await startAllInOne("cw-apply-full-");
});
afterAll(() => system.stop());

it("withholds commits while the batch apply finds the disk full, stays up and commits afterwards", async () => {
  const { t, ingest } = system;
  const secret = t.addDevice("noise-apply", "noise");
  const device = await t.connect({ username: "noise-apply", password: secret });
  const apply = ingest.state.applyBatch.bind(ingest.state);
  let refused = 0;
  let full = true;
  ingest.state.applyBatch = (outcome, nowMs) => {
    if (full) {
      refused++;
      throw Object.assign(new Error("database or disk is full"), { code: "SQLITE_FULL" });
    }
    return apply(outcome, nowMs);
  };
  const first = Date.now() - 5 * 60_000;
  for (let seq = 1; seq <= 100; seq++)
    await device.publishAsync(
      dataTopic("noise-apply"),
      noiseUplink("noise-apply", seq, first + seq * 1_000),
      { qos: 1 },
    );
  await until(() => refused > 0 && ingest.diskFull(), "the ingest says the disk is full");
  await new Promise((r) => setTimeout(r, 2_000));
  const committedWhileFull = ingest.state.ledger.progress("noise-apply")?.committedSeq ?? 0;
  full = false;
  await until(
    () => ingest.state.ledger.progress("noise-apply")?.committedSeq === 100,
    "all committed once the disk takes writes",
    20_000,
  );
  await until(() => !ingest.diskFull(), "disk full no more");
  const stored = await ingest.store.readings({
    deviceId: "noise-apply",
    kind: "noise",
    fromMs: first,
    toMs: first + 200_000,
    limit: 1_000,
  });
  const unique = new Set(stored.map((r) => r.seq)).size;
  console.log(
    `[fault] disk full at batch apply: sent=100, applies refused=${refused}, committed while full=${committedWhileFull}, committed=100, stored=${unique}, duplicates=${stored.length - unique}, lost=${100 - unique}`,
  );
  await device.endAsync(true);
  expect(committedWhileFull).toBe(0);
  expect(unique).toBe(100);
  expect(stored.length).toBe(100);
  expect(ingest.state.inbox.depth()).toBe(0);
});
