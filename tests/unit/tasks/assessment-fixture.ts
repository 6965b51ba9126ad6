import type { TaskSystem } from "../../../tasks/app.js";
import type { Actor } from "../../../tasks/service.js";
import type { TaskState, ClosureReason } from "../../../contracts/model/tasks.js";
import {
  DEADMAN,
  fakeClock,
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  tasksConfig,
} from "./fixtures.js";

/*
 * The assessment fixture: ten tasks with transitions at chosen local times (Asia/Shanghai, the
 * shipped 2026 calendar: office hours 09-12 and 13-18, no holiday in November), driven through
 * the real task service on a fake clock. Eight are filed in November 2026; one before it and one
 * at its end are outside. Two districts (pudong, xuhui) and two teams: the grid cells of pudong's
 * construction site map to `Team "East", Pudong` (a comma and quotes, for the CSV), the tunnel's
 * and xuhui's to `Xuhui team`. The tests compute the expected numbers by hand from this timeline.
 *
 *   I  emg ts-2  filed Fri 30 Oct 10:00, closed false_positive 11:00          (before the period)
 *   K  mnt n-3   filed Sun  1 Nov 00:00 (xuhui, Xuhui team); never touched; flagged not_handled
 *                at the tick of Thu 12 Nov 11:00 (due Tue 10 Nov 18:00: 56 working hours)
 *   A  enf cs-1  filed Mon  2 Nov 10:00 (pudong, East): warning; dispatched 11:00, acknowledged
 *                11:30, in_progress 12:00, handled Tue 3 Nov 10:00, verified 11:00, closed 12:00
 *   C  emg ts-2  filed Tue  3 Nov 14:00 (pudong, Xuhui team): dispatched 14:10, acknowledged
 *                14:20, handled 15:20, verified 15:40, closed 16:00 (due 16:00, calendar clock)
 *   D  emg ts-2  filed Wed  4 Nov 20:00 (pudong, Xuhui team): flagged at the tick of 22:30 (due
 *                22:00), closed false_positive Thu 5 Nov 09:00 straight from filed
 *   E  mnt n-1   filed Fri  6 Nov 17:00 (pudong, East): dispatched Mon 9 Nov 09:30, acknowledged
 *                10:00, handled Tue 10 Nov 17:00; never closed; flagged not_closed at the tick of
 *                Mon 30 Nov 21:00 (due Tue 24 Nov 17:00: 80 working hours)
 *   B  enf cs-1  filed Mon  9 Nov 10:00 (pudong, East): the data at 09:40 are after A's deadline
 *                (Thu 5 Nov 10:00) → referred, repeat of A; acknowledged straight from filed Tue
 *                10 Nov 09:00, in_progress 10:00, flagged not_handled at the tick of Thu 12 Nov
 *                11:00 (due 10:00), handled Fri 13 Nov 10:00, verified 11:00, back to in_progress
 *                12:00, handled Mon 16 Nov 10:00, verified 11:00, closed by the legal reviewer 12:00
 *   F  enf cs-3  filed Wed 11 Nov 10:00 (xuhui, Xuhui team): warning; dispatched 10:30,
 *                acknowledged 11:00, handled Thu 12 Nov 10:00, verified 11:00, back to in_progress
 *                12:00, handled Fri 13 Nov 10:00, verified 11:00, closed 12:00
 *   G  enf cs-3  filed Mon 30 Nov 20:00 (xuhui, Xuhui team): the data at 19:40 are after F's
 *                deadline (Sat 14 Nov 10:00) → referred, repeat of F; acknowledged Tue 1 Dec 09:00
 *                and handled 10:00 (after the period's end)
 *   J  mnt n-2   filed Tue  1 Dec 00:00                                         (after the period)
 */

export const EAST = 'Team "East", Pudong';
export const XUHUI_TEAM = "Xuhui team";

/** A local time in Asia/Shanghai (+08:00) as an instant. */
export const local = (text: string) => Date.parse(`${text}+08:00`);

export function assessmentConfig(extra: Record<string, unknown> = {}) {
  return tasksConfig({
    gridTeams: { "pd-017": EAST, "pd-018": EAST, "pd-100": XUHUI_TEAM, "xh-002": XUHUI_TEAM },
    ...extra,
  });
}

const officer = (name: string): Actor => ({ name, id: name, roles: ["enforcement"] });
const lawyer: Actor = { name: "lawyer-c", id: "lawyer-c", roles: ["legal_reviewer"] };

export interface AssessmentFixture {
  readonly system: TaskSystem;
  /** Task ids by the letters above. */
  readonly ids: Readonly<Record<string, string>>;
}

/** Build the fixture in `dataDir` (the system is stopped's caller's to stop). */
export async function buildAssessmentFixture(dataDir: string): Promise<AssessmentFixture> {
  const clock = fakeClock(local("2026-10-30T10:00:00"));
  const system = startSystem(dataDir, { now: clock.now, config: assessmentConfig() });
  // No timer of its own: the SLA tick runs only where the timeline says.
  await system.service.stop();
  const ids: Record<string, string> = {};
  const at = (text: string) => clock.set(local(text));
  const lastFiled = () => {
    const [task] = system.store.listTasks({ limit: 1 });
    if (task === undefined) throw new Error("nothing filed");
    return task.id;
  };
  const move = async (
    letter: string,
    when: string,
    to: TaskState,
    actor: Actor,
    reason?: ClosureReason,
  ) => {
    at(when);
    const id = ids[letter] ?? "?";
    const result = await system.service.transition(id, { to, reason }, actor);
    if (!result.ok) throw new Error(`${letter} ${id} → ${to}: ${result.message}`);
  };
  const gas = async (when: string, seq: number) => {
    at(when);
    await system.service.applyAlarm(
      gasNotice(raise(clock.now(), { alarmSeq: seq, level: "IV", deviceId: "g-1", detail: "CH4" })),
    );
  };
  const noise = async (site: string, when: string, seq: number) => {
    at(when);
    await system.service.applyAlarm(
      noiseNotice(site, raise(clock.now(), { alarmSeq: seq }), noiseEvidence(clock.now())),
    );
  };
  const deadman = async (device: string, when: string) => {
    at(when);
    await system.service.applyAlarm({
      rule: DEADMAN,
      subjectType: "device",
      subjectId: device,
      deviceIds: [device],
      decision: raise(clock.now(), { detail: "silent", deviceId: device }),
    });
  };
  const crew = officer("crew-d");
  const chief = officer("chief-e");

  await gas("2026-10-30T10:00:00", 1);
  ids["I"] = lastFiled();
  await move("I", "2026-10-30T11:00:00", "closed", crew, "false_positive");

  await deadman("n-3", "2026-11-01T00:00:00");
  ids["K"] = lastFiled();

  await noise("cs-1", "2026-11-02T10:00:00", 1);
  ids["A"] = lastFiled();
  await move("A", "2026-11-02T11:00:00", "dispatched", officer("dispatcher"));
  await move("A", "2026-11-02T11:30:00", "acknowledged", officer("officer-a"));
  await move("A", "2026-11-02T12:00:00", "in_progress", officer("officer-a"));
  await move("A", "2026-11-03T10:00:00", "handled", officer("officer-a"));
  await move("A", "2026-11-03T11:00:00", "verified", officer("inspector-b"));
  await move("A", "2026-11-03T12:00:00", "closed", officer("inspector-b"), "rectified");

  await gas("2026-11-03T14:00:00", 2);
  ids["C"] = lastFiled();
  await move("C", "2026-11-03T14:10:00", "dispatched", chief);
  await move("C", "2026-11-03T14:20:00", "acknowledged", crew);
  await move("C", "2026-11-03T15:20:00", "handled", crew);
  await move("C", "2026-11-03T15:40:00", "verified", chief);
  await move("C", "2026-11-03T16:00:00", "closed", chief, "rectified");

  await gas("2026-11-04T20:00:00", 3);
  ids["D"] = lastFiled();
  at("2026-11-04T22:30:00");
  await system.service.tick();
  await move("D", "2026-11-05T09:00:00", "closed", chief, "false_positive");

  await deadman("n-1", "2026-11-06T17:00:00");
  ids["E"] = lastFiled();
  await move("E", "2026-11-09T09:30:00", "dispatched", officer("dispatcher"));
  await move("E", "2026-11-09T10:00:00", "acknowledged", crew);

  await noise("cs-1", "2026-11-09T10:00:00", 2);
  ids["B"] = lastFiled();
  await move("B", "2026-11-10T09:00:00", "acknowledged", officer("officer-a"));
  await move("B", "2026-11-10T10:00:00", "in_progress", officer("officer-a"));
  await move("E", "2026-11-10T17:00:00", "handled", crew);

  await noise("cs-3", "2026-11-11T10:00:00", 1);
  ids["F"] = lastFiled();
  await move("F", "2026-11-11T10:30:00", "dispatched", officer("dispatcher"));
  await move("F", "2026-11-11T11:00:00", "acknowledged", officer("officer-x"));
  await move("F", "2026-11-12T10:00:00", "handled", officer("officer-x"));
  await move("F", "2026-11-12T11:00:00", "verified", officer("inspector-y"));
  at("2026-11-12T11:00:00");
  await system.service.tick();
  await move("F", "2026-11-12T12:00:00", "in_progress", officer("inspector-y"));
  await move("B", "2026-11-13T10:00:00", "handled", officer("officer-a"));
  await move("F", "2026-11-13T10:00:00", "handled", officer("officer-x"));
  await move("B", "2026-11-13T11:00:00", "verified", officer("inspector-b"));
  await move("F", "2026-11-13T11:00:00", "verified", officer("inspector-y"));
  await move("B", "2026-11-13T12:00:00", "in_progress", officer("inspector-b"));
  await move("F", "2026-11-13T12:00:00", "closed", officer("inspector-y"), "rectified");
  await move("B", "2026-11-16T10:00:00", "handled", officer("officer-a"));
  await move("B", "2026-11-16T11:00:00", "verified", officer("inspector-b"));
  await move("B", "2026-11-16T12:00:00", "closed", lawyer, "rectified");

  await noise("cs-3", "2026-11-30T20:00:00", 2);
  ids["G"] = lastFiled();
  at("2026-11-30T21:00:00");
  await system.service.tick();

  await deadman("n-2", "2026-12-01T00:00:00");
  ids["J"] = lastFiled();
  await move("G", "2026-12-01T09:00:00", "acknowledged", officer("officer-x"));
  await move("G", "2026-12-01T10:00:00", "handled", officer("officer-x"));
  return { system, ids };
}
