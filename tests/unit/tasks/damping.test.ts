import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AlarmDecision } from "../../../contracts/model/alarms.js";
import type { TaskEvent } from "../../../contracts/model/tasks.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  fakeClock,
  HOUR,
  MIN,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  tasksConfig,
} from "./fixtures.js";

/*
 * Issue #16 item 4: a condition flapping (raise, clear, raise, …) made 6,921 task events and
 * 3,465 sealed evidence packages for 41 tasks. Per task, events and seals are bounded per sliding
 * hour; what is held back is recorded, counted on the task and in a metric, and coalesced into
 * one event when the hour has room.
 */
const clear = (at: number, alarmSeq: number): AlarmDecision => ({
  type: "clear",
  alarmSeq,
  at,
  raisedAt: at - MIN,
  levelIndex: 0,
  level: undefined,
  repeats: 0,
  replayed: false,
});

describe("flap damping", () => {
  let dir: string;
  let system: TaskSystem;
  let events: TaskEvent[];
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-damping-");
    system = startSystem(dir, {
      now: clock.now,
      config: tasksConfig({ damping: { maxEventsPerHour: 10, maxEvidencePerHour: 3 } }),
    });
    events = [];
    system.service.onEvent((e) => events.push(e));
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  /** 200 raise/clear pairs, one every 10 s: 400 decisions within 34 minutes. */
  async function flap(pairs: number): Promise<void> {
    for (let i = 1; i <= pairs; i++) {
      clock.advance(5_000);
      const at = clock.now();
      await system.service.applyAlarm(
        noiseNotice("cs-1", raise(at, { alarmSeq: i }), noiseEvidence(at)),
      );
      clock.advance(5_000);
      await system.service.applyAlarm(noiseNotice("cs-1", clear(clock.now(), i)));
    }
  }

  it("bounds events and sealed packages per task and hour, counts what it held back, and coalesces it", async () => {
    await flap(200);
    const task = (await system.service.task(events[0]!.task.id))!;
    // The filing counts against the hour too: 10 events, 3 packages in all.
    expect(events).toHaveLength(10);
    expect(task.evidenceCount).toBe(3);
    expect(task.repeats).toBe(199); // every repeat is still recorded on the task…
    expect(
      (await system.service.audit(task.id)).filter((e) => e.action === "condition_cleared"),
    ).toHaveLength(200); // …and in the audit trail
    expect(task.damping).toEqual({
      suppressedEvents: 400 - 10,
      suppressedEvidence: 200 - 3,
      pending: true,
    });
    const suppressed = await system.metrics.suppressed.get();
    expect(Object.fromEntries(suppressed.values.map((v) => [v.labels["what"], v.value]))).toEqual({
      event: 390,
      evidence: 197,
    });

    // Within the hour the tick publishes nothing more; after it, one coalesced event.
    await system.service.tick();
    expect(events).toHaveLength(10);
    clock.advance(HOUR);
    await system.service.tick();
    expect(events).toHaveLength(11);
    const coalesced = events.at(-1)!;
    expect(coalesced.type).toBe("events_coalesced");
    expect(coalesced.task).toMatchObject({ repeats: 199, damping: { pending: false } });
    expect(coalesced.entries[0]!.detail).toContain("390 changes recorded without their own event");
    await system.service.tick();
    expect(events).toHaveLength(11);
  });

  it("never holds back a person's transition", async () => {
    await flap(20);
    const id = events[0]!.task.id;
    const before = events.length;
    const result = await system.service.transition(
      id,
      { to: "acknowledged" },
      { name: "team (admin)" },
    );
    expect(result.ok).toBe(true);
    expect(events).toHaveLength(before + 1);
    expect(events.at(-1)!.type).toBe("transition");
  });
});
