import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import { partitionOf } from "../../../cluster/partition.js";
import { migrate } from "../../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../../infra/postgres/schema.js";
import {
  type AlarmKey,
  type AlarmStates,
  AlarmStore,
  UNSAVED_MAX,
} from "../../../rules/alarm-store.js";
import { PostgresAlarmStore, readAlarmStates } from "../../../rules/alarm-store-postgres.js";
import { RulesDriver } from "../../../rules/driver.js";
import { RuleSet } from "../../../rules/rule-set.js";
import { metricValue } from "../../../infra/metrics.js";
import { device, siteOf } from "../../support/differential-fixtures.js";
import { type AlarmState, initialAlarmState } from "../../../rules/engine/alarm.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { PARTITIONS, PATIENCE, TestCluster } from "../cluster/keepers.js";

/*
 * The alarm states' store, one suite for both kinds (rules/alarm-store.ts): the embedded SQLite
 * file and PostgreSQL (rules/alarm-store-postgres.ts, issue #21). Then what only PostgreSQL does:
 * writing behind the driver through an outage, reading a node's partitions, and refusing the
 * writes of a node that no longer owns a partition (real lease keepers, docs/cluster.md).
 */

const postgres = await requireService("alarm states in PostgreSQL", providePostgres);

/** A store of one kind, opened again on the same data as a restarted process would. */
interface Kind {
  open(): Promise<AlarmStates>;
  /** Everything handed over is written (PostgreSQL writes behind; SQLite at once). */
  settle(store: AlarmStates): Promise<void>;
  close(store: AlarmStates): Promise<void>;
}

const active = (i: number): AlarmState => ({
  ...initialAlarmState(1_000 + i),
  phase: "active",
  alarmSeq: 3,
  startedAt: 900 + i,
  raisedAt: 950 + i,
  levelIndex: 1,
  repeats: i % 4,
  replayed: i % 2 === 0,
  lastValue: 70.25 + i,
  lastLimit: 55,
  acknowledged: i % 3 === 0,
  unacknowledgedEscalations: 1,
});
const key = (i: number, ruleId = "noise-night"): AlarmKey => ({
  ruleId,
  subject: `device:d-${i}`,
});
/** A retry far beyond any test: the test's own flush() is the only retry. */
const NO_RETRY = { baseMs: 600_000, capMs: 600_000, jitter: "none" } as const;
const byKey = (states: AlarmStates) =>
  new Map(states.all().map((s) => [`${s.ruleId} ${s.subject}`, s]));

function suite(name: string, kind: () => Kind) {
  describe(`alarm states: ${name}`, () => {
    it("gives back after a restart exactly the states saved", async () => {
      const k = kind();
      const first = await k.open();
      expect(first.all()).toEqual([]);
      for (let i = 0; i < 5; i++) first.save(key(i), active(i), 2_000 + i);
      await k.settle(first);
      expect(first.unsavedCount()).toBe(0);
      await k.close(first);

      const again = await k.open();
      const states = byKey(again);
      expect(states.size).toBe(5);
      for (let i = 0; i < 5; i++) {
        expect(states.get(`noise-night device:d-${i}`)).toEqual({
          ...key(i),
          state: active(i),
          updatedMs: 2_000 + i,
        });
      }
      await k.close(again);
    });

    it("keeps the latest move of each (rule, subject), every subject's own", async () => {
      const k = kind();
      const store = await k.open();
      // Within one turn and across turns, as the driver's tick and readings make them.
      for (let i = 0; i < 10; i++) store.save(key(1), active(i), 3_000 + i);
      store.save(key(1, "noise-day"), active(42), 3_500);
      await k.settle(store);
      store.save(key(1), { ...active(10), phase: "recovering" }, 4_000);
      await k.settle(store);
      await k.close(store);

      const again = await k.open();
      const states = byKey(again);
      expect(states.size).toBe(2);
      expect(states.get("noise-night device:d-1")?.state).toEqual({
        ...active(10),
        phase: "recovering",
      });
      expect(states.get("noise-night device:d-1")?.updatedMs).toBe(4_000);
      expect(states.get("noise-day device:d-1")?.state).toEqual(active(42));
      await k.close(again);
    });

    it("writes thousands of moves at once", async () => {
      const k = kind();
      const store = await k.open();
      for (let i = 0; i < 2_500; i++) store.save(key(i), active(i), 5_000 + i);
      await k.settle(store);
      await k.close(store);
      const again = await k.open();
      expect(again.all()).toHaveLength(2_500);
      expect(byKey(again).get("noise-night device:d-2499")?.state).toEqual(active(2_499));
      await k.close(again);
    });
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "cw-alarm-states-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
suite("SQLite", () => {
  const file = join(dir, `alarms-${files++}.db`);
  return {
    open: () => Promise.resolve(new AlarmStore(file)),
    settle: () => Promise.resolve(),
    close: (store) => Promise.resolve((store as AlarmStore).close()),
  };
});

describe.runIf(postgres)("alarm states in PostgreSQL", () => {
  const schemas: TestSchema[] = [];
  const clusters: TestCluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((c) => c.close()));
    await Promise.all(schemas.splice(0).map((s) => s.drop()));
  });

  /** A migrated schema of the test's own, and a pool on it. */
  async function database(): Promise<pg.Pool> {
    const schema = await createTestSchema(postgresUrl(postgres));
    schemas.push(schema);
    const pool = await schema.pool();
    await migrate(pool, CITYWATCH_MIGRATIONS);
    return pool;
  }

  describe("the shared suite", () => {
    let pool: Promise<pg.Pool> | undefined;
    afterEach(() => {
      pool = undefined;
    });
    suite("PostgreSQL", () => ({
      open: async () => PostgresAlarmStore.open({ pool: await (pool ??= database()) }),
      settle: (store) => (store as PostgresAlarmStore).flush(),
      close: (store) => (store as PostgresAlarmStore).close(),
    }));
  });

  it("keeps the moves while the database refuses them and writes them once it takes them", async () => {
    const pool = await database();
    const store = await PostgresAlarmStore.open({ pool });
    store.save(key(1), active(1), 1);
    await store.flush();
    // The table out of reach: every write fails as a lost database's would.
    await pool.query("ALTER TABLE alarm_states RENAME TO alarm_states_away");
    for (let i = 0; i < 3; i++) store.save(key(2), active(i), 10 + i);
    store.save(key(3), active(3), 20);
    await expect(store.flush()).rejects.toThrow(/alarm states not written: .*alarm_states/);
    expect(store.unsavedCount()).toBe(2);
    store.save(key(3), active(4), 21);
    expect(store.unsavedCount()).toBe(2);

    await pool.query("ALTER TABLE alarm_states_away RENAME TO alarm_states");
    // Written by the store's own retry (no flush asked for).
    await vi.waitFor(() => expect(store.unsavedCount()).toBe(0), PATIENCE);
    const states = byKey(await PostgresAlarmStore.open({ pool }));
    expect(states.get("noise-night device:d-2")?.state).toEqual(active(2));
    expect(states.get("noise-night device:d-3")?.state).toEqual(active(4));
    expect(store.counts()).toMatchObject({ written: 3, dropped: 0, fencedOut: 0 });
    await store.close();
  });

  it("keeps at most UNSAVED_MAX subjects' moves while the database refuses them, counting the rest", async () => {
    const pool = await database();
    const store = await PostgresAlarmStore.open({ pool, retry: NO_RETRY });
    await pool.query("ALTER TABLE alarm_states RENAME TO alarm_states_away");
    const over = 25;
    for (let i = 0; i < UNSAVED_MAX + over; i++) store.save(key(i), active(i % 50), 10);
    // A subject already kept still takes its newer move at the bound.
    store.save(key(7), active(49), 11);
    expect(store.unsavedCount()).toBe(UNSAVED_MAX);
    expect(store.counts()).toMatchObject({ written: 0, dropped: over });
    expect(store.droppedCount()).toBe(over);
    await expect(store.flush()).rejects.toThrow(/alarm states not written/);

    await pool.query("ALTER TABLE alarm_states_away RENAME TO alarm_states");
    await store.flush();
    expect(store.unsavedCount()).toBe(0);
    expect(store.counts()).toMatchObject({ written: UNSAVED_MAX, dropped: over });
    const { rows } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM alarm_states");
    expect(Number(rows[0]?.n)).toBe(UNSAVED_MAX);
    const states = byKey(await PostgresAlarmStore.open({ pool }));
    expect(states.get("noise-night device:d-7")?.state).toEqual(active(49));
    expect(states.has(`noise-night device:d-${UNSAVED_MAX}`)).toBe(false);
    await store.close();
  }, 120_000);

  it("shows the moves it holds on the rules' metrics while the database refuses them", async () => {
    const pool = await database();
    const store = await PostgresAlarmStore.open({ pool });
    const registry = new Registry();
    const restaurant = siteOf("restaurant", "rest-1");
    const hood = device("hood-1", "cooking_fume", restaurant.id);
    const rules = new RuleSet();
    expect(rules.reload()).toEqual([]);
    const at = Date.parse("2026-11-27T04:00:00Z");
    const driver = new RulesDriver({
      log: pino({ level: "silent" }),
      rules,
      registry: { devices: () => [hood], sites: () => [restaurant] },
      alarms: store,
      sink: { handleAlarm: () => undefined, onAcknowledged: () => () => {} },
      region: "default",
      tickMs: 3_600_000,
      now: () => at,
      metricsRegistry: registry,
    });
    await driver.start();
    const unsaved = async () =>
      metricValue(registry.getSingleMetric("citywatch_rules_alarm_moves_unsaved"));
    await pool.query("ALTER TABLE alarm_states RENAME TO alarm_states_away");
    // Fan on, purifier off: the purifier-off alarm goes pending, a move to keep.
    driver.onStored([
      {
        deviceId: hood.id,
        kind: "cooking_fume",
        timeMs: at,
        quality: "normal",
        values: { fanOn: true, purifierOn: false, oilFume: 0.5 },
        replay: false,
      },
    ]);
    await expect(store.flush()).rejects.toThrow(/alarm states not written/);
    expect(await unsaved()).toBeGreaterThan(0);
    await pool.query("ALTER TABLE alarm_states_away RENAME TO alarm_states");
    await vi.waitFor(async () => expect(await unsaved()).toBe(0), PATIENCE);
    const pending = (await readAlarmStates(pool)).find(
      (s) => s.ruleId === "cooking-fume.purifier-off",
    );
    expect(pending?.state.phase).toBe("pending");
    expect(
      await metricValue(registry.getSingleMetric("citywatch_rules_alarm_moves_dropped_total")),
    ).toBe(0);
    driver.stop();
    await store.close();
  });

  it("keeps a move handed over while the batch that held the previous one is being written", async () => {
    const pool = await database();
    const store = await PostgresAlarmStore.open({ pool });
    // Another session holds the table, so the store's INSERT waits inside the database.
    const blocker = await pool.connect();
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE alarm_states IN EXCLUSIVE MODE");
    store.save(key(1), active(1), 1);
    const flushed = store.flush();
    await vi.waitFor(async () => {
      const { rows } = await pool.query<{ waiting: number }>(
        "SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted AND relation = 'alarm_states'::regclass",
      );
      expect(rows[0]?.waiting).toBe(1);
    }, PATIENCE);
    store.save(key(1), active(2), 2);
    await blocker.query("COMMIT");
    blocker.release();
    await flushed;
    await store.flush();
    expect(byKey(await PostgresAlarmStore.open({ pool })).get("noise-night device:d-1")).toEqual({
      ...key(1),
      state: active(2),
      updatedMs: 2,
    });
    await store.close();
  });

  it("writes with one writer however many flushes are asked for at once", async () => {
    const pool = await database();
    // No retry of its own: the flushes below find the moves held and no writer running.
    const store = await PostgresAlarmStore.open({ pool, retry: NO_RETRY });
    await pool.query("ALTER TABLE alarm_states RENAME TO alarm_states_away");
    for (let i = 0; i < 50; i++) store.save(key(i), active(i), i);
    await expect(store.flush()).rejects.toThrow(/alarm states not written/);
    await pool.query("ALTER TABLE alarm_states_away RENAME TO alarm_states");
    await Promise.all([store.flush(), store.flush(), store.flush()]);
    expect(store.counts()).toMatchObject({ written: 50 });
    expect(await readAlarmStates(pool)).toHaveLength(50);
    await store.close();
  });

  it("drops a move the database refuses for its data, and writes the others", async () => {
    const pool = await database();
    const store = await PostgresAlarmStore.open({ pool });
    // In one batch: a move the database refuses every time (not a bigint) among good ones.
    store.save(key(1), active(1), 1);
    store.save(key(2), active(2), 2.5);
    store.save(key(3), active(3), 3);
    await store.flush();
    store.save(key(4), active(4), 4);
    await store.flush();
    expect(store.counts()).toMatchObject({ written: 3, refused: 1 });
    expect(store.droppedCount()).toBe(1);
    expect((await readAlarmStates(pool)).map((s) => s.subject).sort()).toEqual([
      "device:d-1",
      "device:d-3",
      "device:d-4",
    ]);
    await store.close();
  });

  it("never writes a move judged under a lease that is gone, even when the node holds the partition again", async () => {
    const schema = await createTestSchema(postgresUrl(postgres));
    schemas.push(schema);
    const cluster = await TestCluster.create(schema);
    clusters.push(cluster);
    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    const subjectPartition = (subject: string) => partitionOf(subject, PARTITIONS);
    const store = await PostgresAlarmStore.open({
      pool: a!.pool,
      partitionOf: subjectPartition,
      fence: leaseFence(a!.pool, a!.keeper),
      // No retry of its own: the test says when the held move is tried again.
      retry: NO_RETRY,
    });
    const partition = subjectPartition(key(1).subject);
    const first = a!.keeper.tokenOf(partition)!;
    store.save(key(1), active(1), 1);
    await store.flush();

    // A move held (the table out of reach) while the lease changes hands and comes back: in
    // between, another node judged the subject and wrote its state.
    await cluster.admin.query("ALTER TABLE alarm_states RENAME TO alarm_states_away");
    store.save(key(1), active(2), 2);
    await expect(store.flush()).rejects.toThrow(/alarm states not written/);
    await cluster.admin.query(
      "UPDATE partition_leases SET token = nextval('partition_lease_token') WHERE partition = $1",
      [partition],
    );
    await cluster.admin.query(
      "UPDATE alarm_states_away SET state = $1, updated_ms = 3 WHERE subject = $2",
      [JSON.stringify(active(3)), key(1).subject],
    );
    await vi.waitFor(() => {
      const token = a!.keeper.tokenOf(partition);
      expect(token !== undefined && token > first).toBe(true);
    }, PATIENCE);
    await cluster.admin.query("ALTER TABLE alarm_states_away RENAME TO alarm_states");
    await store.flush();
    expect(store.counts()).toMatchObject({ written: 1, fencedOut: 1 });
    const row = (await readAlarmStates(cluster.admin)).find((s) => s.subject === key(1).subject);
    expect(row?.state).toEqual(active(3));

    // A move judged under the new lease is written.
    store.save(key(1), active(4), 4);
    await store.flush();
    expect(
      (await readAlarmStates(cluster.admin)).find((s) => s.subject === key(1).subject)?.state,
    ).toEqual(active(4));
    await store.close();
  }, 60_000);

  it("reads only the partitions it is given", async () => {
    const pool = await database();
    const partitionOfSubject = (subject: string) => Number(subject.slice(-1)) % 3;
    const store = await PostgresAlarmStore.open({ pool, partitionOf: partitionOfSubject });
    for (let i = 0; i < 9; i++) store.save(key(i), active(i), i);
    await store.close();
    const some = await PostgresAlarmStore.open({ pool, partitions: [0, 2] });
    expect(
      some
        .all()
        .map((s) => s.subject)
        .sort(),
    ).toEqual(["device:d-0", "device:d-2", "device:d-3", "device:d-5", "device:d-6", "device:d-8"]);
  });

  it("writes a partition's states only while the node owns it", async () => {
    const schema = await createTestSchema(postgresUrl(postgres));
    schemas.push(schema);
    const cluster = await TestCluster.create(schema);
    clusters.push(cluster);
    const subjectPartition = (subject: string) => partitionOf(subject, PARTITIONS);

    const [a] = await cluster.start("node-a");
    await vi.waitFor(() => expect(a!.keeper.owned().size).toBe(PARTITIONS), PATIENCE);
    const storeA = await PostgresAlarmStore.open({
      pool: a!.pool,
      partitionOf: subjectPartition,
      fence: leaseFence(a!.pool, a!.keeper),
    });
    for (let i = 0; i < 40; i++) storeA.save(key(i), active(0), 100);
    await storeA.flush();
    expect(storeA.counts()).toMatchObject({ written: 40, fencedOut: 0 });

    // A second node takes its share: node a no longer owns those partitions.
    const [b] = await cluster.start("node-b");
    await vi.waitFor(() => cluster.expectSettled([a!, b!]), PATIENCE);
    const ofB = [...b!.keeper.owned().keys()];
    const subjectsOfB = Array.from({ length: 40 }, (_, i) => i).filter((i) =>
      ofB.includes(subjectPartition(key(i).subject)),
    );
    expect(subjectsOfB.length).toBeGreaterThan(0);
    for (let i = 0; i < 40; i++) storeA.save(key(i), active(1), 200);
    await storeA.flush();
    expect(storeA.counts()).toMatchObject({
      written: 40 + 40 - subjectsOfB.length,
      fencedOut: subjectsOfB.length,
    });

    // The new owner reads its partitions' states (node a's last writes there) and writes on.
    const storeB = await PostgresAlarmStore.open({
      pool: b!.pool,
      partitionOf: subjectPartition,
      fence: leaseFence(b!.pool, b!.keeper),
      partitions: ofB,
    });
    expect(
      storeB
        .all()
        .map((s) => Number(s.subject.slice("device:d-".length)))
        .sort((x, y) => x - y),
    ).toEqual(subjectsOfB);
    for (const s of storeB.all()) expect(s.state).toEqual(active(0));
    for (const i of subjectsOfB) storeB.save(key(i), active(2), 300);
    await storeB.flush();
    expect(storeB.counts()).toMatchObject({ written: subjectsOfB.length, fencedOut: 0 });

    const states = byKey(await PostgresAlarmStore.open({ pool: cluster.admin }));
    for (let i = 0; i < 40; i++) {
      const expected = subjectsOfB.includes(i) ? active(2) : active(1);
      expect(states.get(`noise-night device:d-${i}`)?.state).toEqual(expected);
    }
    await storeA.close();
    await storeB.close();
  }, 60_000);
});
