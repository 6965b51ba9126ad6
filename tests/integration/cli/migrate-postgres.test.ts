import { spawnSync } from "node:child_process";
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { leaseFence } from "../../../cluster/fencing.js";
import { partitionOf } from "../../../cluster/partition.js";
import { deviceTopic } from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { PostgresIngestState } from "../../../ingest/state-postgres.js";
import { RegistryStore } from "../../../registry/store.js";
import { AlarmStore } from "../../../rules/alarm-store.js";
import { readAlarmStates } from "../../../rules/alarm-store-postgres.js";
import { initialAlarmState } from "../../../rules/engine/alarm.js";
import type { EvidencePackage } from "../../../contracts/index.js";
import { TaskStore } from "../../../tasks/store.js";
import { TokenStore } from "../../../tasks/auth/tokens.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import { queueParty, queueTask } from "../../unit/tasks/queue-fixture.js";
import { migrate } from "../../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../../infra/postgres/schema.js";
import { MigrateRefusedError, migrateToPostgres } from "../../../cli/runtime/migrate-postgres.js";
import { device, siteOf } from "../../support/differential-fixtures.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * `citywatch migrate --to postgres://…` (cli/runtime/migrate-postgres.ts, issue #21) on a data
 * directory populated by citywatch's own stores: a registry with two sites, an ingest.db with
 * messages waiting in the inbox, commits, a gap and dead letters, an alarms.db with states, tasks,
 * and a tokens.db with a user signed in and API tokens (one revoked). The
 * copy is read back through the PostgreSQL stores the nodes use.
 */

const postgres = await requireService("citywatch migrate into PostgreSQL", providePostgres);
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const P = 64;

const NOW = 1_765_000_000_000;
const bytes = (...values: number[]) => Buffer.from(values);

/** The secrets the registry issued in populate(), which only their hashes keep. */
const secrets = { noise: "", ingest: "" };
/** The user's password, session cookie and API tokens of populate()'s tokens.db. */
const PASSWORD = "a long enough password";
const access = { cookie: "", token: "", revoked: "" };
const LIMITS = { idleMs: 30 * 60_000, maxMs: 12 * 3_600_000 };

/** A data directory as a node that ran leaves it: every file written by the store that owns it. */
async function populate(dir: string): Promise<void> {
  const tokens = new TokenStore(join(dir, "tokens.db"), () => NOW);
  await tokens.users.add(
    { id: "wu", name: "Wu Lei", roles: ["emergency", "viewer"], scope: { cityWide: true } },
    PASSWORD,
  );
  access.cookie = tokens.users.startSession("wu", LIMITS).cookie;
  access.token = tokens.add("wu@phone", "emergency", "wu").token;
  const old = tokens.add("ops", "operator");
  tokens.revoke(old.record.id);
  access.revoked = old.token;
  tokens.close();

  const registry = new RegistryStore(join(dir, "registry.db"));
  registry.addSite(siteOf("construction_site", "site-a"));
  registry.addSite(siteOf("restaurant", "site-b"));
  secrets.noise = registry.addDevice(device("noise-1", "noise", "site-a")).secret;
  registry.addDevice(device("fume-1", "cooking_fume", "site-b"));
  secrets.ingest = registry.addServiceAccount({ name: "ingest", role: "ingest" }).secret;
  registry.putParty({ creditCode: queueParty(0).key, name: "蓉城餐饮0号店", sites: ["site-b"] });
  registry.setDeviceEnabled("fume-1", false);
  registry.close();

  const ingest = new IngestState(join(dir, "ingest.db"));
  const topic = (id: string) => deviceTopic(id, "data");
  ingest.inbox.append(topic("noise-1"), bytes(1, 0xff), NOW);
  ingest.inbox.append(topic("fume-1"), bytes(2, 0x00, 0xfe), NOW + 1);
  ingest.inbox.append(topic("noise-1"), bytes(3), NOW + 2);
  ingest.inbox.append("not/a/citywatch/topic", bytes(4, 4), NOW + 3);
  const [first] = ingest.inbox.take(1);
  ingest.applyBatch(
    {
      inboxIds: first === undefined ? [] : [first.id],
      handled: [
        { deviceId: "noise-1", seq: 1, receivedMs: NOW },
        { deviceId: "noise-1", seq: 2, receivedMs: NOW },
        { deviceId: "fume-1", seq: 1, receivedMs: NOW },
        // seq 2 of fume-1 never came: 3 waits above the gap.
        { deviceId: "fume-1", seq: 3, receivedMs: NOW + 5 },
      ],
      deadLetters: [
        {
          receivedMs: NOW,
          topic: topic("noise-1"),
          deviceId: "noise-1",
          seq: 2,
          reason: "schema",
          detail: "values.LAeq: 250 is above 200",
          payload: bytes(9, 9, 9),
        },
        {
          receivedMs: NOW,
          topic: "citywatch/v1/devices/ghost/readings",
          reason: "unknown_device",
          detail: "ghost is not registered",
          payload: bytes(8),
        },
      ],
    },
    NOW + 10,
  );
  ingest.close();

  const alarms = new AlarmStore(join(dir, "alarms.db"));
  alarms.save(
    { ruleId: "noise-night", subject: "device:noise-1" },
    { ...initialAlarmState(NOW), phase: "active", alarmSeq: 2 },
    NOW,
  );
  alarms.save({ ruleId: "fume-hourly", subject: "site:site-b" }, initialAlarmState(NOW), NOW + 1);
  alarms.close();

  const tasks = new TaskStore(join(dir, "tasks.db"));
  // Two numbers taken: the cluster's next task is the third.
  tasks.nextTaskId("enforcement");
  tasks.nextTaskId("emergency");
  const [open, closed] = [queueTask(0, { nowMs: NOW }), closedTask()];
  tasks.saveTask(open, { partyKey: queueParty(0).key, recheckDueMs: NOW + 3_600_000 });
  tasks.saveTask(closed, {});
  tasks.linkViolation(open.id, "device", "noise-9", "noise-night");
  tasks.appendAudit({
    taskId: open.id,
    atMs: NOW,
    actor: "rules",
    action: "filed",
    detail: "噪声超标",
  });
  tasks.appendAudit({
    taskId: closed.id,
    atMs: NOW + 1,
    actor: "officer-li",
    action: "transition",
    from: "in_progress",
    to: "closed",
    detail: "resolved",
  });
  tasks.addEvidence(evidencePackage(open.id, 1), NOW);
  const at = new Date(NOW).toISOString();
  const filed = tasks.appendEvent({ type: "filed", at, task: open, entries: [] }, NOW);
  const changed = tasks.appendEvent({ type: "transition", at, task: closed, entries: [] }, NOW + 1);
  tasks.enqueue(filed.id, "https://hooks.example/a", NOW);
  tasks.enqueue(changed.id, "https://hooks.example/a", NOW + 1);
  tasks.enqueue(changed.id, "https://hooks.example/b", NOW + 1);
  tasks.retryLater(1, 2, NOW + 60_000, "HTTP 503");
  tasks.bury(3, NOW + 2, "HTTP 410 Gone");
  tasks.addComplaint({
    platform: "12345",
    complaintId: "C-1",
    taskId: open.id,
    receivedMs: NOW,
    contact: { phone: "13800000000" },
    createdMs: NOW,
  });
  tasks.addAttachment({
    taskId: open.id,
    sha256: "a".repeat(64),
    filename: "photo.jpg",
    type: "image/jpeg",
    size: 1234,
    by: "officer-li",
    at,
  });
  tasks.close();
}

/** A task of the queue fixture, closed. */
function closedTask() {
  const task = queueTask(1, { nowMs: NOW });
  return { ...task, state: "closed" as const };
}

/** An evidence package as stored (its content is not checked here, only carried whole). */
function evidencePackage(taskId: string, sequence: number): EvidencePackage {
  return {
    taskId,
    sequence,
    hash: { algorithm: "sha256", value: "f".repeat(64) },
    readings: [{ at: new Date(NOW).toISOString(), value: 71.5 }],
    note: "夜间施工",
  } as unknown as EvidencePackage;
}

async function count(pool: pg.Pool, table: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(rows[0]?.n);
}

describe.runIf(postgres)("citywatch migrate --to postgres://", () => {
  const dirs: string[] = [];
  const schemas: TestSchema[] = [];
  afterEach(async () => {
    await Promise.all(schemas.splice(0).map((s) => s.drop()));
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function setup(): Promise<{ dir: string; schema: TestSchema; pool: pg.Pool }> {
    const dir = mkdtempSync(join(tmpdir(), "cw-migrate-"));
    dirs.push(dir);
    await populate(dir);
    const schema = await createTestSchema(postgresUrl(postgres));
    schemas.push(schema);
    return { dir, schema, pool: await schema.pool() };
  }

  it("copies alarm states, inbox, commit ledger and dead letters, each row in its site's partition", async () => {
    const { dir, pool } = await setup();
    const source = new Database(join(dir, "tasks.db"), { readonly: true });
    const sums = (sql: string) =>
      (source.prepare(sql).raw().all() as string[][]).reduce(
        (n, [text]) => n + Buffer.byteLength(text ?? "", "utf8"),
        0,
      );
    const taskBytes = sums("SELECT doc FROM task");
    const auditBytes = sums("SELECT detail FROM audit");
    const evidenceBytes = sums("SELECT package FROM evidence");
    const eventBytes = sums("SELECT payload FROM event");
    source.close();
    const registrySource = new Database(join(dir, "registry.db"), { readonly: true });
    const docBytes = (table: string) =>
      (registrySource.prepare(`SELECT doc FROM ${table}`).raw().all() as string[][]).reduce(
        (n, [text]) => n + Buffer.byteLength(text ?? "", "utf8"),
        0,
      );
    const registryBytes = {
      site: docBytes("site"),
      device: docBytes("device"),
      account: docBytes("service_account"),
      party: docBytes("party"),
    };
    registrySource.close();
    const tokensSource = new Database(join(dir, "tokens.db"), { readonly: true });
    const hashBytes = (sql: string) =>
      (tokensSource.prepare(sql).pluck().all() as string[]).reduce(
        (n, text) => n + Buffer.byteLength(text, "utf8"),
        0,
      );
    const passwordBytes = hashBytes("SELECT password FROM app_user");
    tokensSource.close();
    const report = await migrateToPostgres({ dataDir: dir, pool, partitions: P });

    expect(report.tables.map((t) => [t.target, t.rows, t.copied, t.bytes, t.copiedBytes])).toEqual([
      ["ingest_inbox", 3, 3, 6, 6],
      ["ingest_progress", 2, 2, undefined, undefined],
      ["ingest_processed", 1, 1, undefined, undefined],
      ["ingest_dead_letters", 2, 2, 4, 4],
      ["alarm_states", 2, 2, undefined, undefined],
      ["task", 2, 2, taskBytes, taskBytes],
      ["task_link", 1, 1, undefined, undefined],
      ["task_audit", 2, 2, auditBytes, auditBytes],
      ["task_evidence", 1, 1, evidenceBytes, evidenceBytes],
      ["task_event", 2, 2, eventBytes, eventBytes],
      ["task_outbox", 2, 2, undefined, undefined],
      ["task_outbox_dead", 1, 1, undefined, undefined],
      ["task_complaint", 1, 1, undefined, undefined],
      ["task_attachment", 1, 1, undefined, undefined],
      ["registry_site", 2, 2, registryBytes.site, registryBytes.site],
      ["registry_device", 2, 2, registryBytes.device, registryBytes.device],
      ["registry_device_generation", 2, 2, undefined, undefined],
      ["registry_service_account", 1, 1, registryBytes.account, registryBytes.account],
      ["registry_party", 1, 1, registryBytes.party, registryBytes.party],
      ["registry_party_site", 1, 1, undefined, undefined],
      // Hashes only: a password's scrypt hash, a session cookie's and a token's SHA-256 (hex).
      ["auth_user", 1, 1, passwordBytes, passwordBytes],
      ["auth_session", 1, 1, 64, 64],
      ["auth_api_token", 2, 2, 128, 128],
    ]);
    expect(report.notMoved).toEqual([]);

    // Read back through the stores the nodes use.
    const a = partitionOf("site-a", P);
    const b = partitionOf("site-b", P);
    const state = new PostgresIngestState({ pool, fence: leaseFence(pool, { tokenOf: () => 1 }) });
    const taken = await state.take([a], 10);
    expect(taken.map((m) => [m.topic, m.payload, m.receivedMs])).toEqual([
      [deviceTopic("noise-1", "data"), bytes(3), NOW + 2],
    ]);
    expect((await state.take([b], 10)).map((m) => m.payload)).toEqual([bytes(2, 0x00, 0xfe)]);
    // A topic that names no device is in partition 0, for whichever node holds it to dead-letter.
    expect((await state.take([0], 10)).map((m) => m.payload)).toContainEqual(bytes(4, 4));

    expect(await state.progress("noise-1")).toMatchObject({ committedSeq: 2, lastSeq: 2 });
    expect(await state.progress("fume-1")).toMatchObject({ committedSeq: 1, lastSeq: 3 });
    // The seq above fume-1's gap is still known as handled: a re-send of it is a duplicate.
    expect(
      await state.handled([
        { deviceId: "fume-1", seq: 3 },
        { deviceId: "fume-1", seq: 2 },
      ]),
    ).toEqual([true, false]);
    const { rows: partitions } = await pool.query<{ device_id: string; partition: number }>(
      "SELECT device_id, partition FROM ingest_progress ORDER BY device_id",
    );
    expect(partitions).toEqual([
      { device_id: "fume-1", partition: b },
      { device_id: "noise-1", partition: a },
    ]);

    // Newest first, in the order the data directory had them.
    const letters = await state.deadLetters.list({ limit: 10 });
    expect(letters.map((d) => [d.reason, d.deviceId, d.seq, d.payload])).toEqual([
      ["unknown_device", undefined, undefined, bytes(8)],
      ["schema", "noise-1", 2, bytes(9, 9, 9)],
    ]);
    // The sources' accounts the nodes keep the dead letters' bounds by came along.
    expect(await state.deadLetters.held("noise-1")).toEqual({
      bytes: 3 + Buffer.byteLength("values.LAeq: 250 is above 200"),
      rows: 1,
      missingSeq: 0,
    });
    expect(await state.deadLetters.bytes()).toBe(
      4 +
        Buffer.byteLength("values.LAeq: 250 is above 200") +
        Buffer.byteLength("ghost is not registered"),
    );

    expect(await readAlarmStates(pool, [a])).toEqual([
      {
        ruleId: "noise-night",
        subject: "device:noise-1",
        state: { ...initialAlarmState(NOW), phase: "active", alarmSeq: 2 },
        updatedMs: NOW,
      },
    ]);
    expect((await readAlarmStates(pool, [b])).map((s) => s.subject)).toEqual(["site:site-b"]);
  });

  it("copies the tasks: read back through the PostgreSQL task store as the data directory holds them", async () => {
    const { dir, pool } = await setup();
    await migrateToPostgres({ dataDir: dir, pool, partitions: P });
    const before = new TaskStore(join(dir, "tasks.db"));
    const after = new PostgresTaskStore(pool);
    try {
      const [open, closed] = [queueTask(0, { nowMs: NOW }).id, closedTask().id];
      for (const id of [open, closed]) {
        expect(await after.task(id)).toEqual(before.task(id));
        expect(await after.audit(id)).toEqual(before.audit(id));
      }
      expect(await after.openTasks()).toEqual(before.openTasks());
      // The party key, re-check due and incident link came along with the documents.
      expect((await after.partyCaseHistory(queueParty(0).key)).map((t) => t.id)).toEqual(
        before.partyCaseHistory(queueParty(0).key).map((t) => t.id),
      );
      expect((await after.dueRechecks(NOW + 3_600_000)).map((t) => t.id)).toEqual([open]);
      expect((await after.openTask("device", "noise-9", "noise-night"))?.id).toBe(open);
      expect(await after.evidence(open)).toEqual(before.evidence(open));
      expect(await after.eventsAfter(0, 10)).toEqual(before.eventsAfter(0, 10));
      expect(await after.outboxHead("https://hooks.example/a")).toEqual(
        before.outboxHead("https://hooks.example/a"),
      );
      expect(await after.outboxHead("https://hooks.example/b")).toBeUndefined();
      expect(await after.deadCount()).toBe(1);
      expect(await after.complaintContact("12345", "C-1")).toEqual({ phone: "13800000000" });
      expect(await after.attachments(open)).toEqual(before.attachments(open));

      // New numbers and ids continue after the copied ones: no task number, audit entry or
      // event id (a webhook's idempotency key) is issued twice.
      expect(await after.nextTaskId("maintenance")).toBe("mnt-000003");
      const audit = await after.appendAudit({
        taskId: open,
        atMs: NOW + 5,
        actor: "rules",
        action: "filed",
        detail: "after the move",
      });
      expect(audit.id).toBe(Math.max(...before.audit(closed).map((e) => e.id)) + 1);
      const task = queueTask(0, { nowMs: NOW });
      const event = await after.appendEvent(
        { type: "filed", at: new Date(NOW).toISOString(), task, entries: [] },
        NOW + 5,
      );
      expect(event.id).toBe(3);
      await after.enqueue(event.id, "https://hooks.example/b", NOW + 5);
      expect((await after.outboxHead("https://hooks.example/b"))?.id).toBe(4);
    } finally {
      before.close();
    }
  });

  it("copies the registry: devices and service accounts sign in with their secrets, parties resolve", async () => {
    const { dir, pool } = await setup();
    await migrateToPostgres({ dataDir: dir, pool, partitions: P });
    const before = new RegistryStore(join(dir, "registry.db"));
    const after = new PostgresRegistryStore(pool);
    try {
      expect(await after.listSites()).toEqual(before.listSites());
      expect(await after.listDevices()).toEqual(before.listDevices());
      expect(await after.listServiceAccounts()).toEqual(before.listServiceAccounts());
      expect(await after.listParties()).toEqual(before.listParties());
      expect(await after.resolvedSite("site-b")).toEqual(before.resolvedSite("site-b"));
      // Only the hashes moved; the secrets the devices hold still open the door.
      expect(await after.authenticate("noise-1", secrets.noise)).toEqual(
        before.authenticate("noise-1", secrets.noise),
      );
      expect((await after.authenticate("noise-1", secrets.noise)).ok).toBe(true);
      expect((await after.authenticate("noise-1", "wrong")).ok).toBe(false);
      expect((await after.authenticate("ingest", secrets.ingest)).ok).toBe(true);
      // A disabled device stays disabled.
      expect(await after.authenticate("fume-1", "anything")).toEqual(
        before.authenticate("fume-1", "anything"),
      );
      // A device registered again after the move takes the next generation, not an old one.
      await after.removeDevice("noise-1");
      const again = await after.addDevice(device("noise-1", "noise", "site-a"));
      expect(again.record.generation).toBe((before.getDevice("noise-1")?.generation ?? 0) + 1);
    } finally {
      before.close();
    }
  });

  it("copies users, sessions and API tokens: the token, the password and the session still work", async () => {
    const { dir, pool } = await setup();
    await migrateToPostgres({ dataDir: dir, pool, partitions: P });
    const later = () => NOW + 60_000;
    const before = new TokenStore(join(dir, "tokens.db"), later);
    const after = new PostgresTokenStore(pool, later);
    try {
      expect(await after.list()).toEqual(before.list());
      expect(await after.users.list()).toEqual(before.users.list());
      // Only the hashes moved; what people hold still opens the door, and nothing else does.
      expect(await after.authenticate(access.token)).toEqual(before.authenticate(access.token));
      expect(await after.authenticate(access.token)).toMatchObject({
        name: "wu@phone",
        userId: "wu",
      });
      expect(await after.authenticate(access.revoked)).toBeUndefined();
      expect((await after.users.checkPassword("wu", PASSWORD))?.id).toBe("wu");
      expect(await after.users.checkPassword("wu", "not the password at all")).toBeUndefined();
      expect((await after.users.session(access.cookie, LIMITS))?.user.id).toBe("wu");
      // The revoked token's name is free again, the active one's is not.
      await expect(after.add("wu@phone", "emergency", "wu")).rejects.toThrow(/active token named/);
      expect((await after.add("ops", "operator")).record.name).toBe("ops");
    } finally {
      before.close();
    }
  });

  it("refuses a database that already holds citywatch state, and changes nothing", async () => {
    const { dir, pool } = await setup();
    await migrateToPostgres({ dataDir: dir, pool, partitions: P });
    await expect(migrateToPostgres({ dataDir: dir, pool, partitions: P })).rejects.toThrow(
      /already holds citywatch state \(alarm_states 2 rows, ingest_inbox 3 rows, ingest_progress 2 rows, ingest_processed 1 rows, ingest_dead_letters 2 rows, task 2 rows, task_link 1 rows, task_audit 2 rows, task_evidence 1 rows, task_event 2 rows, task_outbox 2 rows, task_outbox_dead 1 rows, task_complaint 1 rows, task_attachment 1 rows, registry_site 2 rows, registry_device 2 rows, registry_device_generation 2 rows, registry_service_account 1 rows, registry_party 1 rows, registry_party_site 1 rows, auth_user 1 rows, auth_session 1 rows, auth_api_token 2 rows\)/,
    );
    expect(await count(pool, "ingest_inbox")).toBe(3);
    expect(await count(pool, "alarm_states")).toBe(2);
  });

  it("rolls the whole copy back when PostgreSQL does not end up holding what the data directory holds", async () => {
    const { dir, pool } = await setup();
    // A trigger that silently drops one inbox row: the copy's check must catch it.
    await migrate(pool, CITYWATCH_MIGRATIONS);
    await pool.query(`
      CREATE FUNCTION drop_foreign_topic() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.topic = 'not/a/citywatch/topic' THEN RETURN NULL; END IF; RETURN NEW; END $$;
      CREATE TRIGGER drop_foreign_topic BEFORE INSERT ON ingest_inbox
        FOR EACH ROW EXECUTE FUNCTION drop_foreign_topic();`);
    const failed = migrateToPostgres({ dataDir: dir, pool, partitions: P });
    await expect(failed).rejects.toBeInstanceOf(MigrateRefusedError);
    await expect(failed).rejects.toThrow(
      /the copy does not match the data directory \(ingest_inbox: 2 of 3 rows\); nothing was written/,
    );
    for (const table of ["ingest_inbox", "ingest_progress", "ingest_dead_letters", "alarm_states"])
      expect(await count(pool, table)).toBe(0);
  });

  it("refuses a data directory that a running ingest holds, writing nothing", async () => {
    const { dir, pool } = await setup();
    // A running ingest holds its state file exclusively from its first write on.
    const running = new IngestState(join(dir, "ingest.db"));
    running.inbox.append(deviceTopic("noise-1", "data"), bytes(5), NOW + 20);
    try {
      const refused = migrateToPostgres({ dataDir: dir, pool, partitions: P });
      await expect(refused).rejects.toBeInstanceOf(MigrateRefusedError);
      await expect(refused).rejects.toThrow(/in use by a running citywatch: stop it/);
    } finally {
      running.close();
    }
    const { rows } = await pool.query(
      "SELECT 1 FROM pg_tables WHERE tablename = 'ingest_inbox' AND schemaname = current_schema()",
    );
    expect(rows).toEqual([]);
  });

  it("refuses a directory that is not a citywatch data directory", async () => {
    const { pool } = await setup();
    const empty = mkdtempSync(join(tmpdir(), "cw-migrate-empty-"));
    dirs.push(empty);
    await expect(migrateToPostgres({ dataDir: empty, pool, partitions: P })).rejects.toThrow(
      /holds none of ingest.db, alarms.db and tasks.db/,
    );
    await expect(
      migrateToPostgres({ dataDir: join(empty, "missing"), pool, partitions: P }),
    ).rejects.toThrow(/no data directory at/);
  });

  it("runs from the command line: a bad URL refused, the table of counts, then exit 1 on a second run", async () => {
    const { dir, schema } = await setup();
    const run = (url = postgresUrl(postgres)) =>
      spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "cli/citywatch.ts",
          "migrate",
          "--to",
          url,
          "--schema",
          schema.name,
          "--data-dir",
          dir,
        ],
        { cwd: ROOT, encoding: "utf8", timeout: 60_000 },
      );
    const badUrl = run("not-a-url");
    expect(badUrl.status).toBe(1);
    expect(badUrl.stderr).toMatch(/^citywatch: --to \/ --schema: the PostgreSQL URL is not a URL/);
    const first = run();
    expect(first.stderr).toContain("ingest_inbox: 3 of 3 rows");
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/ingest\.db inbox\s+ingest_inbox\s+3\s+3 {2}6 of 6/);
    expect(first.stdout).toMatch(/alarms\.db alarm\s+alarm_states\s+2\s+2/);
    expect(first.stdout).toMatch(/registry\.db device\s+registry_device\s+2\s+2/);
    expect(first.stdout).not.toContain("not copied");
    const second = run();
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/citywatch: the database already holds citywatch state/);
  });
});
