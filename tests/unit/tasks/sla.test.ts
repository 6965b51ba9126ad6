import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DAY,
  fakeClock,
  gasNotice,
  HOUR,
  MIN,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  T0,
  tasksConfig,
} from "./fixtures.js";

async function flaggedGauge(
  system: TaskSystem,
  labels: { kind: string; flag: string },
): Promise<number> {
  const metric = await system.metrics.slaFlagged.get();
  return (
    metric.values.find((v) =>
      Object.entries(labels).every(([k, l]) => v.labels[k as "kind" | "flag"] === l),
    )?.value ?? 0
  );
}

describe("SLA timers", () => {
  let dir: string;
  let system: TaskSystem;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-sla-");
    clock.set(T0);
    system = startSystem(dir, {
      now: clock.now,
      config: tasksConfig({
        sla: {
          enforcement: { handleWithinMs: "3d", closeWithinMs: "1d", clock: "calendar" },
          emergency: { handleWithinMs: "2h", closeWithinMs: "1d" },
        },
      }),
    });
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  it("flags a case filed but not handled past its limit, per case type, in the API filter and the metric", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    await system.service.applyAlarm(
      gasNotice(raise(T0, { level: "IV", deviceId: "g-1", detail: "CH4 22 %LEL" })),
    );
    clock.advance(2 * HOUR);
    await system.service.tick();
    expect(system.store.listTasks({ limit: 10, flagged: true })).toEqual([]); // exactly at the limit: not past it

    clock.advance(1);
    await system.service.tick();
    const flagged = system.store.listTasks({ limit: 10, flagged: true });
    expect(flagged.map((t) => [t.id, t.sla.flags])).toEqual([["emg-000002", ["not_handled"]]]);
    expect(await flaggedGauge(system, { kind: "emergency", flag: "not_handled" })).toBe(1);

    clock.advance(3 * DAY);
    await system.service.tick();
    await system.service.tick(); // a second tick records nothing new
    expect(system.store.listTasks({ limit: 10, flagged: true })).toHaveLength(2);
    const slaEntries = (await system.service.audit("enf-000001")).filter(
      (e) => e.action === "sla_flagged",
    );
    expect(slaEntries).toHaveLength(1);
    expect(slaEntries[0]!.detail).toBe(
      `not handled by ${new Date(T0 + 3 * DAY).toISOString()} (enforcement SLA); escalated to the lead of Pudong grid team 17`,
    );
    expect((await system.service.task("enf-000001"))!.sla.escalatedTo).toBe(
      "the lead of Pudong grid team 17",
    );
  });

  it("clears not_handled once handled and flags handled but not closed", async () => {
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    clock.advance(4 * DAY);
    await system.service.tick();
    expect((await system.service.task("enf-000001"))!.sla.flags).toEqual(["not_handled"]);
    for (const to of ["acknowledged", "handled"] as const)
      await system.service.transition("enf-000001", { to }, { name: "x" });
    expect((await system.service.task("enf-000001"))!.sla.flags).toEqual([]);
    clock.advance(DAY + MIN);
    await system.service.tick();
    expect((await system.service.task("enf-000001"))!.sla.flags).toEqual(["not_closed"]);
    expect(await flaggedGauge(system, { kind: "enforcement", flag: "not_closed" })).toBe(1);
    // Verified by another person than the handler (separation of duties).
    await system.service.transition("enf-000001", { to: "verified" }, { name: "y" });
    await system.service.transition(
      "enf-000001",
      { to: "closed", reason: "rectified" },
      { name: "y" },
    );
    expect((await system.service.task("enf-000001"))!.sla.flags).toEqual([]);
    expect(await flaggedGauge(system, { kind: "enforcement", flag: "not_closed" })).toBe(0);
  });
});
