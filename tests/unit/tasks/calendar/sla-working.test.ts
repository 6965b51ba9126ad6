import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { TasksConfig } from "../../../../contracts/config/tasks.js";
import type { Task } from "../../../../contracts/model/tasks.js";
import { loadCalendarFile } from "../../../../tasks/calendar/working-time.js";
import { limitsOf, slaState } from "../../../../tasks/sla.js";

const calendar = loadCalendarFile(
  fileURLToPath(new URL("../../../../tasks/calendar/cn-2026.yaml", import.meta.url)),
);
const at = (local: string) => Date.parse(`${local}+08:00`);
const iso = (local: string) => new Date(at(local)).toISOString();

function task(over: Partial<Task>): Task {
  return {
    id: "t1",
    kind: "enforcement",
    state: "filed",
    title: "t",
    rule: { id: "noise.construction.laeq", version: 1, clause: { standard: "s", section: "x" } },
    subject: { type: "site", id: "cs-1" },
    deviceIds: [],
    routing: { department: "d", team: "t", rule: null },
    levelIndex: 0,
    affectedSites: [],
    actions: [],
    alarmSeq: 1,
    detail: "",
    replayed: false,
    filedAt: iso("2026-09-30T17:00:00"),
    startedAt: iso("2026-09-30T17:00:00"),
    updatedAt: iso("2026-09-30T17:00:00"),
    repeats: 0,
    escalations: 0,
    sla: { flags: [] },
    evidenceCount: 0,
    ...over,
  };
}

describe("SLA in working hours", () => {
  const sla = TasksConfig.parse({}).sla;

  it("gives an enforcement case filed on the eve of National Day its 3 working days after the holiday", () => {
    // 30 Sep 17:00-18:00 is 1 h; 8, 9 and 10 Oct (a make-up Saturday) give 24 h at 10 Oct 17:00.
    const state = slaState(sla, task({}), at("2026-10-07T12:00:00"), calendar);
    expect(state).toEqual({ flags: [], handleBy: iso("2026-10-10T17:00:00") });
    expect(slaState(sla, task({}), at("2026-10-10T17:30:00"), calendar).flags).toEqual([
      "not_handled",
    ]);
    // Emergencies count every hour.
    const gas = task({ kind: "emergency", rule: { ...task({}).rule, id: "tunnel.ch4" } });
    expect(slaState(sla, gas, at("2026-09-30T19:30:00"), calendar).flags).toEqual(["not_handled"]);
  });

  it("starts from the step the case type names and takes the longest matching rule prefix", () => {
    const config = TasksConfig.parse({
      sla: {
        byRule: {
          "noise.": { handleWithinMs: "8h", closeWithinMs: "16h", clock: "working" },
          "noise.construction.": {
            handleWithinMs: "2h",
            closeWithinMs: "4h",
            clock: "working",
            from: "dispatched",
          },
        },
      },
    }).sla;
    expect(limitsOf(config, task({})).handleWithinMs).toBe(2 * 3_600_000);
    expect(
      limitsOf(config, task({ rule: { ...task({}).rule, id: "noise.social.laeq" } }))
        .handleWithinMs,
    ).toBe(8 * 3_600_000);
    // Not dispatched yet: the timer has not started.
    expect(slaState(config, task({}), at("2026-12-31T00:00:00"), calendar)).toEqual({ flags: [] });
    const dispatched = task({ state: "dispatched", dispatchedAt: iso("2026-12-04T17:30:00") });
    expect(slaState(config, dispatched, at("2026-12-07T09:00:00"), calendar)).toEqual({
      flags: [],
      handleBy: iso("2026-12-07T10:30:00"),
    });
    const handled = task({ state: "handled", handledAt: iso("2026-12-07T11:00:00") });
    // 11:00-12:00 and 13:00-16:00: due at 16:00, overdue just after.
    expect(slaState(config, handled, at("2026-12-07T16:00:00"), calendar).flags).toEqual([]);
    expect(slaState(config, handled, at("2026-12-07T16:01:00"), calendar)).toEqual({
      flags: ["not_closed"],
      closeBy: iso("2026-12-07T16:00:00"),
    });
  });
});
