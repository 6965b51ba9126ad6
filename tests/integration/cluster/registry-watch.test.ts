import type pg from "pg";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PostgresRegistryWatch } from "../../../cli/runtime/registry-watch-postgres.js";
import type { DeviceRevocation } from "../../../cli/runtime/revocations.js";
import { RegistryFile } from "../../../contracts/index.js";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import {
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { DEVICES, SITES } from "../../unit/tasks/fixtures.js";

/*
 * A cluster node's copy of the registry (cli/runtime/registry-watch-postgres.ts): another node's
 * or the CLI's change, made on its own connection, reaches the copy at the next poll; the ingest's
 * view is told once that it changed; revocations reach the broker; a registry that cannot be
 * read keeps the copy as it was.
 */

const postgres = await requireService("the registry watch (PostgreSQL)", providePostgres);
const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });

describe.runIf(postgres)("a node's copy of the registry in PostgreSQL", () => {
  let schema: TestSchema | undefined;
  let watch: PostgresRegistryWatch | undefined;

  afterEach(async () => {
    watch?.close();
    await schema?.drop();
    [schema, watch] = [undefined, undefined];
  });

  /** The schema with the fixtures' sites and devices but n-2, and a node's pool and another's. */
  async function registry(): Promise<{ node: pg.Pool; other: PostgresRegistryStore }> {
    const created = await createMigratedSchema(postgresUrl(postgres), 2);
    schema = created.schema;
    const other = new PostgresRegistryStore(created.pool);
    await other.importFile(
      RegistryFile.parse({ sites: SITES, devices: DEVICES.filter((d) => d.id !== "n-2") }),
    );
    return { node: await schema.pool(2), other };
  }

  it("sees another connection's changes at the next poll, and tells the view once", async () => {
    const { node, other } = await registry();
    watch = await PostgresRegistryWatch.open({
      pool: node,
      store: new PostgresRegistryStore(node),
      log,
      intervalMs: 50,
    });
    const view = watch.view();
    expect(view.changed?.()).toBe(false);
    expect(
      view
        .devices()
        .map((d) => d.id)
        .sort(),
    ).toEqual(["g-1", "n-1", "n-3"]);
    // Sites come with their party resolved, as the rules and the tasks read them.
    expect(view.site("cs-1")).toEqual(await other.resolvedSite("cs-1"));
    expect(watch.knows("n-2")).toBe(false);

    const n2 = DEVICES.find((d) => d.id === "n-2");
    await other.addDevice(n2!);
    // Not seen until a poll reads the change count again.
    expect(view.device("n-2")).toBeUndefined();
    watch.start();
    await vi.waitFor(() => expect(view.device("n-2")?.siteId).toBe("cs-2"), {
      timeout: 5_000,
      interval: 20,
    });
    expect(watch.knows("n-2")).toBe(true);
    expect(watch.knows("n-2", 2)).toBe(false);
    expect(view.changed?.()).toBe(true);
    expect(view.changed?.()).toBe(false);
    // A second view has its own memory of what it saw.
    const second = watch.view();
    expect(second.changed?.()).toBe(false);

    // Nothing changed: polls read one row and leave the copy (and the views) alone.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(view.changed?.()).toBe(false);

    // A site changed elsewhere, through the same count.
    const site = SITES.find((s) => s.id === "cs-2")!;
    await other.putSite({ ...site, name: "Renamed site" });
    await vi.waitFor(() => expect(view.site("cs-2")?.name).toBe("Renamed site"), {
      timeout: 5_000,
      interval: 20,
    });
  });

  it("tells revocations: disabled, secret rotated, removed", async () => {
    const { node, other } = await registry();
    watch = await PostgresRegistryWatch.open({
      pool: node,
      store: new PostgresRegistryStore(node),
      log,
    });
    const told: Array<Pick<DeviceRevocation, "deviceId" | "why">> = [];
    watch.onRevoked(({ deviceId, why }) => told.push({ deviceId, why }));

    await other.setDeviceEnabled("n-1", false);
    await other.rotateSecret("n-3");
    await watch.refresh();
    await other.removeDevice("g-1");
    await watch.refresh();
    expect(told).toEqual([
      { deviceId: "n-1", why: "disabled" },
      { deviceId: "n-3", why: "rotated" },
      { deviceId: "g-1", why: "removed" },
    ]);
    expect(watch.view().device("g-1")).toBeUndefined();
    // Enabled again is no revocation.
    await other.setDeviceEnabled("n-1", true);
    await watch.refresh();
    expect(told).toHaveLength(3);
    expect(watch.view().device("n-1")?.enabled).toBe(true);
  });

  it("keeps the copy when the registry cannot be read, and reads it again once it can", async () => {
    const { node, other } = await registry();
    watch = await PostgresRegistryWatch.open({
      pool: node,
      store: new PostgresRegistryStore(node),
      log,
    });
    const view = watch.view();
    // The change is counted, but the devices cannot be read when the node looks.
    await other.removeDevice("n-1");
    const admin = await schema!.pool(1);
    await admin.query("ALTER TABLE registry_device RENAME TO registry_device_away");
    await expect(watch.refresh()).rejects.toThrow(/registry_device/);
    expect(view.device("n-1")?.siteId).toBe("cs-1");
    expect(view.changed?.()).toBe(false);
    await admin.query("ALTER TABLE registry_device_away RENAME TO registry_device");
    await admin.end();
    await watch.refresh();
    expect(view.device("n-1")).toBeUndefined();
    expect(view.changed?.()).toBe(true);
  });
});
