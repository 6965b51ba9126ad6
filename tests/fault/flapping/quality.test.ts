import { afterAll, beforeAll, expect, it } from "vitest";
import { until } from "../../support/broker.js";
import { type AllInOne, dataTopic, noiseUplink, startAllInOne } from "./all-in-one.js";

/*
 * Issue #16 item 4 through the whole system: a device whose quality flag alternates fault/normal
 * on every reading (device.quality-flag raises on each fault and clears on each normal) made 783
 * sealed evidence packages for one task. With flap damping the task's events and packages stay at
 * their hourly bounds (tasks.damping: 30 events, 6 packages), and what was held back is counted
 * on the task.
 */

let system: AllInOne;

beforeAll(async () => {
  system = await startAllInOne("cw-flap-");
});
afterAll(() => system.stop());

it("keeps a flapping device's task at its hourly bounds of events and sealed packages", async () => {
  const { t, ingest } = system;
  const secret = t.addDevice("noise-flap", "noise");
  const device = await t.connect({ username: "noise-flap", password: secret });
  const sent = 400;
  const first = Date.now() - 10 * 60_000;
  for (let seq = 1; seq <= sent; seq++) {
    await device.publishAsync(
      dataTopic("noise-flap"),
      noiseUplink("noise-flap", seq, first + seq * 1_000, {
        quality: seq % 2 === 1 ? "fault" : "normal",
      }),
      { qos: 1 },
    );
  }
  await until(
    () => ingest.state.ledger.progress("noise-flap")?.committedSeq === sent,
    "all committed",
    20_000,
  );
  const events = ingest.tasks.store
    .eventsAfter(0, 100_000)
    .filter((e) => e.task.rule.id === "device.quality-flag");
  const ids = [...new Set(events.map((e) => e.task.id))];
  const task = (await ingest.tasks.service.task(ids[0] ?? ""))!;
  const audit = await ingest.tasks.service.audit(task.id);
  const decisions =
    audit.filter((e) => e.action === "repeat_attached" || e.action === "condition_cleared").length +
    1;
  console.log(
    `[fault] flapping: readings=${sent}, decisions=${decisions}, events=${events.length}, sealed packages=${task.evidenceCount}, suppressed events=${task.damping?.suppressedEvents ?? 0}, suppressed packages=${task.damping?.suppressedEvidence ?? 0}, tasks=${ids.length}`,
  );
  await device.endAsync(true);
  expect(ids).toHaveLength(1);
  expect(decisions).toBeGreaterThan(100); // the condition did flap…
  expect(events.length).toBeLessThanOrEqual(30); // …and the task published 30 events at most
  expect(task.evidenceCount).toBeLessThanOrEqual(6);
  expect(task.damping?.suppressedEvents).toBe(decisions - events.length);
  expect(task.damping?.pending).toBe(true);
});
