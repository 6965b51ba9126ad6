import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { InboxGate } from "../../../ingest/gate.js";
import { ingestMetrics } from "../../../ingest/metrics.js";
import { IngestState } from "../../../ingest/state.js";

const DATA = "citywatch/v1/devices/noise-1/data";
const tick = () => new Promise((r) => setTimeout(r, 150));

/** The publish gate over a real (in-memory) inbox, on a clock the test moves. */
function setUp(inboxMaxMessages: number) {
  const state = new IngestState(":memory:");
  const metrics = ingestMetrics();
  let now = 1_000_000;
  let notified = 0;
  const gate = new InboxGate({
    log: pino({ level: "silent" }),
    inbox: state.inbox,
    metrics,
    now: () => now,
    inboxMaxMessages,
    onMessages: () => notified++,
    holdMaxMs: 5_000,
  });
  const outcomes: Array<string | null> = [];
  const accept = (topic: string, n: number) =>
    gate.accept(topic, Buffer.from(`m${n}`), (error) => outcomes.push(error?.message ?? null));
  return {
    gate,
    state,
    outcomes,
    accept,
    advance: (ms: number) => (now += ms),
    notified: () => notified,
  };
}

describe("ingest publish gate", () => {
  it("writes data messages of one turn in one group, and lets other topics through untouched", async () => {
    const { state, outcomes, accept, notified } = setUp(100);
    accept(DATA, 1);
    accept(DATA, 2);
    accept("citywatch/v1/devices/noise-1/status", 3);
    expect(outcomes).toEqual([null]); // the status at once; data waits for the group's write
    expect(state.inbox.depth()).toBe(0);
    await tick();
    expect(outcomes).toEqual([null, null, null]);
    expect(state.inbox.peek(10).map((m) => m.payload.toString())).toEqual(["m1", "m2"]);
    expect(notified()).toBe(1);
  });

  it("holds a publisher at a full inbox, lets it in when there is room, refuses it past the hold", async () => {
    const { state, outcomes, accept, advance } = setUp(2);
    accept(DATA, 1);
    accept(DATA, 2);
    await tick();
    accept(DATA, 3);
    accept(DATA, 4);
    await tick();
    expect(outcomes).toEqual([null, null]); // 3 and 4 held, unacknowledged
    // Room for one: the oldest held goes in, in order.
    const [first] = state.inbox.take(1);
    state.applyBatch({ inboxIds: [first?.id ?? 0], handled: [], deadLetters: [] }, 0);
    await tick();
    await tick();
    expect(outcomes).toEqual([null, null, null]);
    expect(state.inbox.peek(10).map((m) => m.payload.toString())).toEqual(["m2", "m3"]);
    // No more room: past the hold the last one is refused (the broker closes its connection).
    advance(5_000);
    await tick();
    expect(outcomes).toEqual([null, null, null, "ingest inbox full"]);
    expect(state.inbox.depth()).toBe(2);
  });

  it("refuses what is held and what comes after close", async () => {
    const { gate, outcomes, accept } = setUp(1);
    accept(DATA, 1);
    await tick();
    accept(DATA, 2);
    gate.close();
    accept(DATA, 3);
    expect(outcomes).toEqual([null, "ingest stopping", "ingest stopping"]);
  });
});
