import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Site } from "../../../contracts/index.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { packRule } from "../rules/engine/harness.js";
import { fakeClock, noiseEvidence, raise, registry, startSystem, T0 } from "./fixtures.js";

/*
 * Issue #18: the GB 3096 area-noise rules filed "enforcement cases" with no respondent. GB 3096
 * sets the quality of the environment, not a party's emission limit: an area exceedance is an
 * environmental-quality alert routed to the environment bureau and the grid.
 */

const AMBIENT = Site.parse({
  id: "amb-1",
  name: "Riverside residential station",
  type: "ambient",
  area: { district: "jingan", street: "nanjingxilu", gridCell: "ja-001" },
  location: { lat: 31.23, lon: 121.5 },
  zoneClass: "1",
});

describe("environmental-quality alerts", () => {
  let dir: string;
  let system: TaskSystem;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-environmental-");
    clock.set(T0);
    system = startSystem(dir, {
      now: clock.now,
      registry: {
        device: (id) => registry.device(id),
        site: (id) => (id === AMBIENT.id ? AMBIENT : registry.site(id)),
      },
    });
  });
  afterEach(async () => {
    await system.stop();
    await removeTempDir(dir);
  });

  it("files an area exceedance as an environmental alert to the environment bureau, never a case", async () => {
    for (const id of ["noise.area.laeq", "noise.area.night-lamax"]) {
      const rule = packRule(id);
      expect(rule.taskKind).toBe("environmental");
      await system.service.applyAlarm({
        rule,
        subjectType: "device",
        subjectId: "n-amb",
        siteId: AMBIENT.id,
        deviceIds: ["n-amb"],
        decision: raise(T0),
        evidence: noiseEvidence(T0),
      });
    }
    const tasks = system.store.listTasks({ limit: 10 });
    expect(tasks.map((t) => [t.id, t.kind])).toEqual([
      ["env-000002", "environmental"],
      ["env-000001", "environmental"],
    ]);
    for (const task of tasks) {
      expect(task.routing).toMatchObject({
        department: "ecology-environment-bureau",
        team: "grid ja-001",
        street: "nanjingxilu",
      });
      expect(task.graduated).toBeUndefined();
      expect(task.violations).toBeUndefined();
    }
    expect(system.store.listTasks({ limit: 10, kind: "enforcement" })).toEqual([]);
  });
});
