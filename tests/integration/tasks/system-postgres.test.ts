import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { buildSharedTaskSystem, type SharedTaskSystem } from "../../../tasks/app.js";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { PostgresTaskStore } from "../../../tasks/store-postgres.js";
import { until } from "../../support/broker.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import {
  type ReceivedEvent,
  WEBHOOK_SECRET,
  webhookReceiver,
} from "../../support/webhook-receiver.js";
import {
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/*
 * The whole task system of two cluster nodes on one PostgreSQL (buildSharedTaskSystem, issue
 * #21): the rules of both hand decisions over at once, people move tasks on either node, and one
 * webhook receiver hears every event exactly once, signed, in order; a node that stops hands its
 * deliveries to the other. Nothing of the tasks is in the nodes' data directories.
 */

const postgres = await requireService("the task system on PostgreSQL", providePostgres);
describe.runIf(postgres)("the task system of two nodes on PostgreSQL", () => {
  let schema: TestSchema | undefined;
  let server: Server | undefined;
  const dirs: string[] = [];
  const systems: SharedTaskSystem[] = [];

  afterEach(async () => {
    await Promise.all(systems.splice(0).map((s) => s.stop()));
    await schema?.drop();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await Promise.all(dirs.splice(0).map((d) => removeTempDir(d)));
  });

  async function node(name: string, port: number, pool: pg.Pool): Promise<SharedTaskSystem> {
    const dir = await makeTempDir(`cw-system-pg-${name}-`);
    dirs.push(dir);
    const system = buildSharedTaskSystem(
      {
        log: pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" }),
        config: tasksConfig({
          webhooks: [
            { name: "city-platform", url: `http://127.0.0.1:${port}/`, secret: WEBHOOK_SECRET },
          ],
          outbox: { backoffBaseMs: 20, backoffMaxMs: 100 },
        }),
        dataDir: dir,
        registry,
        metricsRegistry: new Registry(),
        now: Date.now,
        random: () => 0.5,
      },
      { tasks: new PostgresTaskStore(pool), tokens: new PostgresTokenStore(pool), holder: name },
    );
    system.start();
    systems.push(system);
    return system;
  }

  it("files each alarm once, and the receiver hears every event once, in order, across a node's stop", async () => {
    const url = postgresUrl(postgres);
    const created = await createMigratedSchema(url, 4);
    schema = created.schema;
    const received: ReceivedEvent[] = [];
    server = await webhookReceiver(received);
    const port = (server.address() as AddressInfo).port;
    const a = await node("node-a", port, created.pool);
    const b = await node("node-b", port, await schema.pool(4));

    // Both nodes' rules hand over the same alarms (a takeover re-decides them) and others.
    const at = Date.now();
    for (const system of [a, b]) {
      system.service.handleAlarm(gasNotice(raise(at, { level: "IV", deviceId: "g-1" })));
      system.service.handleAlarm(noiseNotice("cs-1", raise(at), noiseEvidence(at)));
      system.service.handleAlarm(noiseNotice("cs-3", raise(at), noiseEvidence(at)));
    }
    await Promise.all([a.service.settled(), b.service.settled()]);
    const tasks = await a.shared.listTasks({ limit: 100 });
    expect(tasks.map((t) => [t.id, t.repeats]).sort()).toEqual([
      ["emg-000001", 1],
      ["enf-000002", 1],
      ["enf-000003", 1],
    ]);

    // People move them on either node.
    for (const [system, id] of [
      [a, "emg-000001"],
      [b, "enf-000002"],
      [a, "enf-000003"],
    ] as const) {
      const moved = await system.service.transition(id, { to: "dispatched" }, { name: "duty" });
      expect(moved.ok).toBe(true);
    }
    const events = await a.shared.eventsAfter(0, 1_000);
    await until(() => received.length >= events.length, "every event delivered", 15_000);

    // Node a stops (its leases released); node b delivers what follows.
    const holder = [a, b].find((s) => s.outbox.leasesHeld().has("city-platform"));
    expect(holder).toBeDefined();
    await holder!.stop();
    systems.splice(systems.indexOf(holder!), 1);
    const other = holder === a ? b : a;
    const moved = await other.service.transition(
      "emg-000001",
      { to: "acknowledged" },
      { name: "duty" },
    );
    expect(moved.ok).toBe(true);
    const all = await other.shared.eventsAfter(0, 1_000);
    await until(() => received.length >= all.length, "the last event delivered", 15_000);
    await until(() => other.outbox.pending("city-platform") === 0, "outbox drained", 15_000);

    expect(received.map((r) => r.eventId)).toEqual(all.map((e) => e.id));
    expect(received.map((r) => r.key)).toEqual(all.map((e) => `citywatch-event-${e.id}`));
    expect(new Set(received.map((r) => r.key)).size).toBe(received.length);
  });
});
