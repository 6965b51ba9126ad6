import { join } from "node:path";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AlarmNotice } from "../../../contracts/model/alarms.js";
import type { Task } from "../../../contracts/index.js";
import { EvidenceKeyring } from "../../../tasks/evidence-keys.js";
import { verifyEvidencePackage } from "../../../tasks/evidence-seal.js";
import { taskMetrics } from "../../../tasks/metrics.js";
import { TaskService } from "../../../tasks/service.js";
import { asyncTaskStore, type AsyncTaskStore } from "../../../tasks/store-port.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { TaskStore } from "../../../tasks/store.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import {
  DAY,
  fakeClock,
  gasNotice,
  MIN,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  T0,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/*
 * The task service on PostgreSQL (issue #21): the same changes give the same tasks, audit trails,
 * events and evidence as on tasks.db; and where several nodes write the same tasks at once, no
 * change is lost and no task is filed twice (row locks and the store's key locks).
 */

const postgres = await requireService("the task service on PostgreSQL", providePostgres);
const log = pino({ level: "silent" });

describe.runIf(postgres)("the task service on PostgreSQL", () => {
  let dir: string;
  let schema: TestSchema;
  let pool: pg.Pool;
  let keyring: EvidenceKeyring;
  const clock = fakeClock();

  beforeEach(async () => {
    dir = await makeTempDir("cw-service-pg-");
    ({ schema, pool } = await createMigratedSchema(postgresUrl(postgres), 8));
    clock.set(T0);
    keyring = EvidenceKeyring.open(join(dir, "evidence-keys.json"), {
      create: true,
      now: clock.now,
    });
  });
  afterEach(async () => {
    await schema.drop();
    await removeTempDir(dir);
  });

  const serviceOn = (store: AsyncTaskStore) =>
    new TaskService({
      log,
      config: tasksConfig(),
      store,
      registry,
      metrics: taskMetrics(new Registry()),
      now: clock.now,
      keyring,
    });

  /** One scripted day of changes: alarms, people's moves, a clear, an SLA tick, a manual filing. */
  async function script(service: TaskService): Promise<void> {
    const at = () => clock.now();
    await service.applyAlarm(noiseNotice("cs-1", raise(at()), noiseEvidence(at())));
    clock.advance(MIN);
    await service.applyAlarm(
      noiseNotice("cs-1", raise(at(), { alarmSeq: 2 }), noiseEvidence(at(), 64)),
    );
    await service.applyAlarm(gasNotice(raise(at(), { level: "IV", deviceId: "g-1" })));
    clock.advance(MIN);
    await service.applyAlarm(
      gasNotice({
        type: "escalate-level",
        alarmSeq: 1,
        from: "IV",
        level: "III",
        levelIndex: 1,
        at: at(),
        value: 26,
        limit: 25,
        detail: "CH4 26 %LEL",
        replayed: false,
      }),
    );
    // Another site of the same party: its violation joins the open case.
    await service.applyAlarm(noiseNotice("cs-2", raise(at()), noiseEvidence(at())));
    await service.transition("enf-000001", { to: "dispatched" }, { name: "dispatcher" });
    await service.transition("emg-000002", { to: "acknowledged" }, { name: "duty officer" });
    clock.advance(MIN);
    await service.applyAlarm(
      gasNotice({
        type: "clear",
        alarmSeq: 1,
        at: at(),
        raisedAt: T0 + MIN,
        levelIndex: 1,
        level: "III",
        repeats: 0,
        replayed: false,
      }),
    );
    clock.advance(2 * DAY);
    await service.tick();
    const manual = await service.fileManual(
      {
        kind: "enforcement",
        siteId: "cs-3",
        rule: { id: "noise.manual", clause: { standard: "GB 12523-2011", section: "4.1" } },
        note: "heard at the gate",
      },
      { name: "officer" },
    );
    expect(manual.ok).toBe(true);
  }

  /** Everything the script left: tasks, audit trails, evidence packages, events. */
  async function everything(store: AsyncTaskStore) {
    const tasks = await store.listTasks({ limit: 100 });
    const byId = [...tasks].sort((a, b) => a.id.localeCompare(b.id));
    return {
      tasks: byId,
      audit: await Promise.all(byId.map((t) => store.audit(t.id))),
      evidence: await Promise.all(
        byId.flatMap((t) =>
          Array.from({ length: t.evidenceCount }, (_, i) => store.evidence(t.id, i + 1)),
        ),
      ),
      events: await store.eventsAfter(0, 1_000),
    };
  }

  it("the same changes give the same tasks, audit trails, evidence and events as on tasks.db", async () => {
    const file = new TaskStore(join(dir, "tasks.db"));
    try {
      const embedded = asyncTaskStore(file);
      await script(serviceOn(embedded));
      clock.set(T0);
      const shared = new PostgresTaskStore(pool);
      await script(serviceOn(shared));

      const expected = await everything(embedded);
      const actual = await everything(shared);
      expect(expected.tasks.map((t) => t.id)).toEqual(["emg-000002", "enf-000001", "enf-000003"]);
      expect(expected.tasks.find((t) => t.id === "enf-000001")?.violations).toHaveLength(2);
      expect(expected.evidence.length).toBeGreaterThanOrEqual(3);
      expect(actual).toStrictEqual(expected);

      // A package sealed on PostgreSQL verifies against the keys and the stored copy.
      for (const pkg of actual.evidence) {
        const stored = await shared.evidence(pkg!.taskId, pkg!.sequence);
        const check = verifyEvidencePackage(pkg, keyring.publicKeys(), stored ?? null, true);
        expect(check.problems).toEqual([]);
        expect(check.valid).toBe(true);
      }
    } finally {
      file.close();
    }
  });

  describe("several nodes at once", () => {
    /** Two services, each on a pool of its own: two nodes on one database. */
    const twoNodes = async () => {
      const other = await schema.pool(8);
      return [serviceOn(new PostgresTaskStore(pool)), serviceOn(new PostgresTaskStore(other))];
    };
    const tasksIn = (store: AsyncTaskStore): Promise<Task[]> => store.listTasks({ limit: 100 });

    it("one alarm raised on both nodes at once is filed once; the other raises attach to it", async () => {
      const nodes = await twoNodes();
      const at = clock.now();
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          nodes[i % 2]!.applyAlarm(
            gasNotice(raise(at, { alarmSeq: i + 1, level: "IV", deviceId: "g-1" })),
          ),
        ),
      );
      const tasks = await tasksIn(new PostgresTaskStore(pool));
      expect(tasks.map((t) => [t.id, t.repeats])).toEqual([["emg-000001", 11]]);
    });

    it("two sites of one party raised on two nodes at once make one case", async () => {
      const nodes = await twoNodes();
      const at = clock.now();
      const notices: AlarmNotice[] = ["cs-1", "cs-2"].map((site) =>
        noiseNotice(site, raise(at), noiseEvidence(at)),
      );
      await Promise.all(notices.map((n, i) => nodes[i]!.applyAlarm(n)));
      const tasks = await tasksIn(new PostgresTaskStore(pool));
      expect(tasks).toHaveLength(1);
      expect(tasks[0]!.violations?.map((v) => v.subject.id).sort()).toEqual(["cs-1", "cs-2"]);
    });

    it("a person's move and the rules' repeats of one task at once: none of them is lost", async () => {
      const nodes = await twoNodes();
      const at = clock.now();
      await nodes[0]!.applyAlarm(gasNotice(raise(at, { level: "IV", deviceId: "g-1" })));
      const repeats = Array.from({ length: 8 }, (_, i) =>
        nodes[1]!.applyAlarm(
          gasNotice(raise(at, { alarmSeq: i + 2, level: "IV", deviceId: "g-1" })),
        ),
      );
      const moves = (async () => {
        for (const to of ["dispatched", "acknowledged", "in_progress"] as const) {
          const moved = await nodes[0]!.transition("emg-000001", { to }, { name: "duty" });
          expect(moved.ok).toBe(true);
        }
      })();
      await Promise.all([...repeats, moves]);
      const task = await new PostgresTaskStore(pool).task("emg-000001");
      expect(task?.state).toBe("in_progress");
      expect(task?.repeats).toBe(8);
      const audit = await new PostgresTaskStore(pool).audit("emg-000001");
      expect(audit.filter((e) => e.action === "repeat_attached")).toHaveLength(8);
      expect(audit.filter((e) => e.action === "transition")).toHaveLength(3);
    });
  });
});
