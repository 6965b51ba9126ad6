import { join } from "node:path";
import Database from "better-sqlite3";
import type pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { ZodError } from "zod";
import { type DeviceInput, RegistryFile, type Site } from "../../../contracts/index.js";
import { asyncRegistryStore, type AsyncRegistryStore } from "../../../registry/store-port.js";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import { RegistryError, RegistryStore } from "../../../registry/store.js";
import { siteOf } from "../../support/differential-fixtures.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { createMigratedSchema, postgresUrl, providePostgres } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * The registry's contract (registry/store-port.ts, issue #21), one suite for both
 * implementations: the embedded registry.db (registry/store.ts behind asyncRegistryStore) and
 * PostgreSQL (registry/store-postgres.ts). Every case runs on an empty store of its own; what the
 * SQLite store does is the contract. Rows are changed past the store, on a connection of the
 * test's own, only to plant what a registration refuses (records from before the text rules).
 * Then what only the shared database does: concurrent writers and isolation from them.
 */

const postgres = await requireService("the registry in PostgreSQL", providePostgres);

/** One implementation, on empty storage of its own. */
interface Backend {
  readonly store: AsyncRegistryStore;
  /** Replace a stored record's text, past the store. */
  readonly setDoc: (table: "site" | "device", id: string, doc: string) => Promise<void>;
  /** The stored secret hash of a device or service account, read past the store. */
  readonly secretHash: (id: string) => Promise<string | undefined>;
  readonly close: () => Promise<void>;
  /** PostgreSQL's pool (the test schema's). */
  readonly pool?: pg.Pool;
}

const ACME = "91310000MA1FL0AB1X";
const BETA = "91510100MA6CW7XK3P";
const NOW = Date.parse("2026-12-01T00:00:00.000Z");
/** Ids in byte order (SQLite's BINARY collation), which no common locale sorts them in. */
const BYTE_ORDER = ["A9", "B", "a", "a.1", "a0", "a_1", "b"];

const ambient = (id: string) => siteOf("ambient", id);
/** A construction site whose inline party is `party`. */
const construction = (id: string, party: Record<string, unknown> = { name: "Inline Co." }) =>
  siteOf("construction_site", id, { regulatedParty: party });
const segment = (id: string, neighbours: string[]) => siteOf("tunnel_segment", id, { neighbours });
/** A device input as a registration gives it (defaults left to the registry). */
const device = (id: string, siteId = "s1", extra: Partial<DeviceInput> = {}): DeviceInput => ({
  id,
  kind: "noise",
  model: "AWA6228",
  serial: `SN-${id}`,
  location: { lat: 30.6, lon: 104.0 },
  area: { district: "wuhou", gridCell: "g1" },
  siteId,
  ...extra,
});

/** The refusal `promise` rejects with: a RegistryError with `code`, its message matching `why`. */
async function refused(
  promise: Promise<unknown>,
  code: RegistryError["code"],
  why: RegExp,
): Promise<void> {
  const error: unknown = await promise.then(
    () => expect.unreachable("expected a refusal"),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RegistryError);
  expect((error as RegistryError).code).toBe(code);
  expect((error as RegistryError).message).toMatch(why);
}

const regulated = (site: Site | undefined) =>
  site !== undefined && "regulatedParty" in site ? site.regulatedParty : undefined;

// ---------------------------------------------------------------------------------------------
// The implementations

async function openSqlite(): Promise<Backend> {
  const dir = await makeTempDir("cw-registry-store-");
  const file = join(dir, "registry.db");
  const store = asyncRegistryStore(new RegistryStore(file));
  const db = new Database(file);
  db.pragma("busy_timeout = 5000");
  return {
    store,
    setDoc: (table, id, doc) =>
      Promise.resolve().then(() => {
        db.prepare(`UPDATE ${table} SET doc = ? WHERE id = ?`).run(doc, id);
      }),
    secretHash: (id) =>
      Promise.resolve(
        (
          db
            .prepare(
              "SELECT secret_hash FROM device WHERE id = ? UNION ALL SELECT secret_hash FROM service_account WHERE name = ?",
            )
            .get(id, id) as { secret_hash: string } | undefined
        )?.secret_hash,
      ),
    close: async () => {
      await store.close();
      db.close();
      await removeTempDir(dir);
    },
  };
}

async function openPostgres(): Promise<Backend> {
  const { schema, pool } = await createMigratedSchema(postgresUrl(postgres));
  const store = new PostgresRegistryStore(pool);
  return {
    store,
    pool,
    setDoc: async (table, id, doc) => {
      await pool.query(`UPDATE registry_${table} SET doc = $1 WHERE id = $2`, [doc, id]);
    },
    secretHash: async (id) => {
      const { rows } = await pool.query<{ secret_hash: string }>(
        `SELECT secret_hash FROM registry_device WHERE id = $1
         UNION ALL SELECT secret_hash FROM registry_service_account WHERE name = $1`,
        [id],
      );
      return rows[0]?.secret_hash;
    },
    close: async () => {
      await store.close();
      await schema.drop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The contract

function suite(name: string, open: () => Promise<Backend>) {
  describe(`registry store: ${name}`, () => {
    const opened: Backend[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });
    /** An empty store of the test's own, closed after it; with site s1 unless `bare`. */
    const fresh = async (bare = false) => {
      const backend = await open();
      opened.push(backend);
      if (!bare) await backend.store.putSite(ambient("s1"));
      return backend;
    };

    describe("sites", () => {
      it("puts, replaces, reads and lists sites in byte order of their ids", async () => {
        const { store } = await fresh(true);
        for (const id of [...BYTE_ORDER].reverse())
          expect(await store.putSite(ambient(id))).toEqual(ambient(id));
        expect((await store.listSites()).map((s) => s.id)).toEqual(BYTE_ORDER);
        const renamed = { ...ambient("a"), name: "Renamed" };
        await store.putSite(renamed);
        expect(await store.getSite("a")).toStrictEqual(renamed);
        expect(await store.getSite("nowhere")).toBeUndefined();
        expect(await store.listSites()).toHaveLength(BYTE_ORDER.length);
      });

      it("refuses a site that does not parse, and stores nothing", async () => {
        const { store } = await fresh(true);
        await expect(store.putSite({ ...ambient("x"), id: "bad/id" })).rejects.toThrow(ZodError);
        await expect(store.addSite({ ...ambient("x"), extra: 1 })).rejects.toThrow(ZodError);
        expect(await store.listSites()).toEqual([]);
      });

      it("adds a site once, replaces it only when asked, and keeps its devices", async () => {
        const { store } = await fresh(true);
        await store.addSite(ambient("s1"));
        await store.addDevice(device("n1"));
        await refused(
          store.addSite(ambient("s1")),
          "REGISTRY_DUPLICATE",
          /site s1 is already registered/,
        );
        const replaced = await store.addSite(
          { ...ambient("s1"), name: "New name" },
          { replace: true },
        );
        expect(replaced.name).toBe("New name");
        expect((await store.getSite("s1"))?.name).toBe("New name");
        expect((await store.devicesAt("s1")).map((d) => d.id)).toEqual(["n1"]);
      });

      it("adds a tunnel segment only next to registered sites, never next to itself", async () => {
        const { store } = await fresh(true);
        await refused(
          store.addSite(segment("t1", ["t0"])),
          "REGISTRY_NOT_FOUND",
          /neighbour t0 is not a registered site/,
        );
        await refused(
          store.addSite(segment("t1", ["t1"])),
          "REGISTRY_INVALID",
          /t1 cannot neighbour itself/,
        );
        expect(await store.listSites()).toEqual([]);
        await store.addSite(segment("t0", []));
        await store.addSite(segment("t1", ["t0"]));
        expect(await store.getSite("t1")).toMatchObject({ neighbours: ["t0"] });
      });

      it("lists a site's devices in byte order, and only that site's", async () => {
        const { store } = await fresh();
        await store.putSite(ambient("s2"));
        for (const id of [...BYTE_ORDER].reverse()) await store.addDevice(device(id));
        await store.addDevice(device("other", "s2"));
        expect((await store.devicesAt("s1")).map((d) => d.id)).toEqual(BYTE_ORDER);
        expect((await store.devicesAt("s2")).map((d) => d.id)).toEqual(["other"]);
        expect(await store.devicesAt("nowhere")).toEqual([]);
      });

      it("removes a site not in use, and refuses an unknown one", async () => {
        const { store } = await fresh();
        const removed = await store.removeSite("s1");
        expect(removed).toEqual({ site: ambient("s1"), devices: [], neighbourOf: [] });
        expect(await store.getSite("s1")).toBeUndefined();
        await refused(store.removeSite("s1"), "REGISTRY_NOT_FOUND", /site s1 is not registered/);
      });

      it("refuses to remove a site in use without force, naming what uses it, and changes nothing", async () => {
        const { store } = await fresh();
        await store.addDevice(device("n2"));
        await store.addDevice(device("n1"));
        await store.addSite(segment("t1", ["s1"]));
        await refused(
          store.removeSite("s1"),
          "REGISTRY_IN_USE",
          /site s1 is in use: 2 devices belong to it \(n1, n2\); tunnel segments name it a neighbour \(t1\)/,
        );
        await store.removeDevice("n2");
        await refused(store.removeSite("s1"), "REGISTRY_IN_USE", /1 device belongs to it \(n1\)/);
        expect(await store.getSite("s1")).toBeDefined();
        expect(await store.countDevices()).toBe(1);
        expect(await store.getSite("t1")).toMatchObject({ neighbours: ["s1"] });
      });

      it("removes a site in use with force: its devices go (their secrets stop working) and neighbour lists lose it", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1"));
        await store.putSite(ambient("s2"));
        await store.addDevice(device("n2", "s2"));
        await store.addSite(segment("t1", ["s1", "s2"]));
        const removed = await store.removeSite("s1", { force: true });
        expect(removed).toEqual({ site: ambient("s1"), devices: ["n1"], neighbourOf: ["t1"] });
        expect(await store.getSite("s1")).toBeUndefined();
        expect(await store.getDevice("n1")).toBeUndefined();
        expect(await store.authenticate("n1", secret)).toEqual({
          ok: false,
          reason: "unknown_user",
        });
        expect(await store.getSite("t1")).toMatchObject({ neighbours: ["s2"] });
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["n2"]);
      });
    });

    describe("devices", () => {
      it("registers a device with the registry's defaults, generation 1, and a secret stored only as a salted hash", async () => {
        const { store, secretHash } = await fresh();
        const before = Date.now();
        const { record, secret } = await store.addDevice(device("n1"));
        expect(record).toMatchObject({
          id: "n1",
          expectedIntervalS: 60,
          enabled: true,
          generation: 1,
        });
        expect(Date.parse(record.registeredAt ?? "")).toBeGreaterThanOrEqual(before - 1);
        expect(await store.getDevice("n1")).toStrictEqual(record);
        expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
        const hash = await secretHash("n1");
        expect(hash).toMatch(/^sha256\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
        expect(hash).not.toContain(secret);
        // Salted: the same secret hashed for another device would not match this hash's text.
        const other = await store.addDevice(device("n2"));
        expect(await secretHash("n2")).not.toBe(hash);
        expect(other.secret).not.toBe(secret);
      });

      it("ignores a generation or registration time given in the input", async () => {
        const { store } = await fresh();
        const { record } = await store.addDevice(
          device("n1", "s1", { generation: 7, registeredAt: "2020-01-01T00:00:00.000Z" }),
        );
        expect(record.generation).toBe(1);
        expect(record.registeredAt).not.toBe("2020-01-01T00:00:00.000Z");
        expect((await store.getDevice("n1"))?.generation).toBe(1);
      });

      it("refuses a duplicate id, an id in a service account's client ids, an unknown site and bad input", async () => {
        const { store } = await fresh();
        await store.addDevice(device("n1"));
        await store.addServiceAccount({ name: "ingest", role: "ingest" });
        await refused(
          store.addDevice(device("n1")),
          "REGISTRY_DUPLICATE",
          /n1 is already registered/,
        );
        await refused(
          store.addDevice(device("ingest-1")),
          "REGISTRY_DUPLICATE",
          /clashes with a service account's client ids/,
        );
        await refused(
          store.addDevice(device("ingest")),
          "REGISTRY_DUPLICATE",
          /ingest is already registered/,
        );
        await refused(
          store.addDevice(device("n2", "nowhere")),
          "REGISTRY_NOT_FOUND",
          /site nowhere is not registered; add it first/,
        );
        await expect(store.addDevice(device("bad/id"))).rejects.toThrow(ZodError);
        await expect(store.addDevice(device("n3", "s1", { model: "AWA\n6228" }))).rejects.toThrow(
          /control/,
        );
        // Device ids clash with one another's `id-*` too, in one direction only (RegistryStore's
        // rule: a device is checked as if it were a service account's name).
        await store.addDevice(device("pump-1"));
        await refused(store.addDevice(device("pump")), "REGISTRY_DUPLICATE", /clashes/);
        await store.removeDevice("pump-1");
        // A mere common prefix is no clash.
        await store.addDevice(device("ingestion-meter"));
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["ingestion-meter", "n1"]);
        expect(await store.countDevices()).toBe(2);
      });

      it("gives an id registered again the next generation, never an old one", async () => {
        const { store } = await fresh();
        expect((await store.addDevice(device("n1"))).record.generation).toBe(1);
        await store.removeDevice("n1");
        const again = await store.addDevice(device("n1"));
        expect(again.record.generation).toBe(2);
        expect((await store.getDevice("n1"))?.generation).toBe(2);
        await store.removeSite("s1", { force: true });
        await store.putSite(ambient("s1"));
        expect((await store.addDevice(device("n1"))).record.generation).toBe(3);
        expect((await store.addDevice(device("n2"))).record.generation).toBe(1);
      });

      it("lists devices in byte order with their registrations, and counts them", async () => {
        const { store } = await fresh();
        expect(await store.countDevices()).toBe(0);
        const records = [];
        for (const id of [...BYTE_ORDER].reverse())
          records.push((await store.addDevice(device(id))).record);
        const listed = await store.listDevices();
        expect(listed.map((d) => d.id)).toEqual(BYTE_ORDER);
        expect(listed).toEqual(expect.arrayContaining(records));
        expect(await store.countDevices()).toBe(BYTE_ORDER.length);
      });

      it("disables and enables a device; an unknown one is refused", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1"));
        await store.setDeviceEnabled("n1", false);
        expect((await store.getDevice("n1"))?.enabled).toBe(false);
        expect(await store.authenticate("n1", secret)).toEqual({ ok: false, reason: "disabled" });
        await store.setDeviceEnabled("n1", true);
        expect((await store.getDevice("n1"))?.enabled).toBe(true);
        expect((await store.authenticate("n1", secret)).ok).toBe(true);
        await refused(
          store.setDeviceEnabled("ghost", false),
          "REGISTRY_NOT_FOUND",
          /device ghost is not registered/,
        );
      });

      it("removes a device (its secret stops working); an unknown one is refused", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1"));
        await store.addDevice(device("n2"));
        await store.removeDevice("n1");
        expect(await store.getDevice("n1")).toBeUndefined();
        expect(await store.authenticate("n1", secret)).toEqual({
          ok: false,
          reason: "unknown_user",
        });
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["n2"]);
        await refused(
          store.removeDevice("n1"),
          "REGISTRY_NOT_FOUND",
          /device n1 is not registered/,
        );
      });

      it("reads records from before the text rules and reports them; refuses a damaged one", async () => {
        const { store, setDoc } = await fresh();
        await store.addDevice(device("n1"));
        const bad = await store.addDevice(device("n2"));
        const { generation: _g, registeredAt: _r, ...doc } = bad.record;
        await setDoc(
          "device",
          "n2",
          JSON.stringify({ ...doc, area: { district: "Jin\\", gridCell: "x\ny" } }),
        );
        await setDoc("site", "s1", JSON.stringify({ ...ambient("s1"), name: "Sq\tuare" }));
        expect((await store.getDevice("n2"))?.area.gridCell).toBe("x\ny");
        expect((await store.getSite("s1"))?.name).toBe("Sq\tuare");
        const invalid = await store.invalidRecords();
        expect(invalid.map((r) => [r.type, r.id])).toEqual([
          ["site", "s1"],
          ["device", "n2"],
        ]);
        expect(invalid[1]?.problems.join("; ")).toMatch(/area\.district: .*backslash/);
        expect(invalid[1]?.problems.join("; ")).toMatch(/area\.gridCell: .*control/);
        expect(invalid[0]?.problems.join("; ")).toMatch(/name: .*control/);
        await setDoc("device", "n1", '{"id":"n1","kind":"toaster"}');
        await expect(store.getDevice("n1")).rejects.toThrow();
      });

      it("reports no invalid records in a registry written through the store", async () => {
        const { store } = await fresh();
        await store.addDevice(device("n1"));
        expect(await store.invalidRecords()).toEqual([]);
      });
    });

    describe("secrets and authentication", () => {
      it("authenticates a device with its secret only", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1", "s1", { kind: "dust" }));
        expect(await store.authenticate("n1", secret)).toEqual({
          ok: true,
          principal: { type: "device", deviceId: "n1", kind: "dust" },
        });
        expect(await store.authenticate("n1", "wrong")).toEqual({
          ok: false,
          reason: "bad_secret",
        });
        expect(await store.authenticate("n1", `${secret}x`)).toEqual({
          ok: false,
          reason: "bad_secret",
        });
        expect(await store.authenticate("n2", secret)).toEqual({
          ok: false,
          reason: "unknown_user",
        });
      });

      it("checks the secret before saying a device is disabled", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1", "s1", { enabled: false }));
        expect(await store.authenticate("n1", "wrong")).toEqual({
          ok: false,
          reason: "bad_secret",
        });
        expect(await store.authenticate("n1", secret)).toEqual({ ok: false, reason: "disabled" });
      });

      it("rotates a device's and a service account's secret: the old one stops working", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1"));
        const rotated = await store.rotateSecret("n1");
        expect(rotated).not.toBe(secret);
        expect(await store.authenticate("n1", secret)).toEqual({ ok: false, reason: "bad_secret" });
        expect((await store.authenticate("n1", rotated)).ok).toBe(true);
        const account = await store.addServiceAccount({ name: "sim", role: "simulator" });
        const fresh2 = await store.rotateSecret("sim");
        expect(await store.authenticate("sim", account.secret)).toEqual({
          ok: false,
          reason: "bad_secret",
        });
        expect(await store.authenticate("sim", fresh2)).toMatchObject({ ok: true });
        // The device's secret is untouched by the account's rotation.
        expect((await store.authenticate("n1", rotated)).ok).toBe(true);
        await refused(
          store.rotateSecret("ghost"),
          "REGISTRY_NOT_FOUND",
          /ghost is not a registered device or service account/,
        );
      });

      it("puts a device on standby in service at its first accepted CONNECT, once", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(device("n1", "s1", { standby: true }));
        expect((await store.getDevice("n1"))?.standby).toBe(true);
        expect(await store.authenticate("n1", "wrong")).toEqual({
          ok: false,
          reason: "bad_secret",
        });
        expect((await store.getDevice("n1"))?.standby).toBe(true);
        expect(await store.authenticate("n1", secret)).toEqual({
          ok: true,
          principal: { type: "device", deviceId: "n1", kind: "noise" },
          leftStandby: true,
        });
        expect(await store.getDevice("n1")).not.toHaveProperty("standby");
        expect(await store.authenticate("n1", secret)).not.toHaveProperty("leftStandby");
        // Back on standby (`citywatch sim` at the end of a run), the record otherwise unchanged.
        const before = await store.getDevice("n1");
        await store.putOnStandby("n1");
        expect(await store.getDevice("n1")).toStrictEqual({ ...before, standby: true });
        expect(await store.authenticate("n1", secret)).toMatchObject({
          ok: true,
          leftStandby: true,
        });
        await refused(
          store.putOnStandby("n9"),
          "REGISTRY_NOT_FOUND",
          /device n9 is not registered/,
        );
      });

      it("keeps a disabled device on standby refused and on standby", async () => {
        const { store } = await fresh();
        const { secret } = await store.addDevice(
          device("n1", "s1", { standby: true, enabled: false }),
        );
        expect(await store.authenticate("n1", secret)).toEqual({ ok: false, reason: "disabled" });
        expect((await store.getDevice("n1"))?.standby).toBe(true);
      });

      it("creates service accounts, lists them in byte order, and authenticates them with their role", async () => {
        const { store } = await fresh();
        const issued = await store.addServiceAccount({
          name: "monitor",
          role: "monitor",
          description: "read-only",
        });
        expect(issued.record).toEqual({
          name: "monitor",
          role: "monitor",
          description: "read-only",
        });
        await store.addServiceAccount({ name: "Ingest", role: "ingest" });
        await store.addServiceAccount({ name: "ingest", role: "ingest" });
        expect(await store.listServiceAccounts()).toEqual([
          { name: "Ingest", role: "ingest" },
          { name: "ingest", role: "ingest" },
          { name: "monitor", role: "monitor", description: "read-only" },
        ]);
        expect(await store.authenticate("monitor", issued.secret)).toEqual({
          ok: true,
          principal: { type: "service", name: "monitor", role: "monitor" },
        });
        expect(await store.authenticate("monitor", "wrong")).toEqual({
          ok: false,
          reason: "bad_secret",
        });
      });

      it("refuses a service account whose client ids take in a device, a duplicate, and a bad role", async () => {
        const { store } = await fresh();
        await store.addDevice(device("sim-7"));
        await store.addServiceAccount({ name: "ingest", role: "ingest" });
        await refused(
          store.addServiceAccount({ name: "sim", role: "simulator" }),
          "REGISTRY_DUPLICATE",
          /clashes/,
        );
        await refused(
          store.addServiceAccount({ name: "ingest", role: "monitor" }),
          "REGISTRY_DUPLICATE",
          /ingest is already registered/,
        );
        await refused(
          store.addServiceAccount({ name: "sim-7", role: "monitor" }),
          "REGISTRY_DUPLICATE",
          /already registered/,
        );
        await expect(store.addServiceAccount({ name: "root", role: "admin" })).rejects.toThrow(
          ZodError,
        );
        expect((await store.listServiceAccounts()).map((a) => a.name)).toEqual(["ingest"]);
      });
    });

    describe("importing a registry file", () => {
      const registryFile = (fields: Record<string, unknown> = {}) =>
        RegistryFile.parse({
          sites: [ambient("s1"), construction("cs-1"), segment("t1", ["s1"])],
          devices: [device("n1"), device("d1", "cs-1", { kind: "dust" })],
          serviceAccounts: [{ name: "ingest", role: "ingest" }],
          parties: [{ creditCode: ACME, name: "Acme Build Co.", sites: ["cs-1"] }],
          ...fields,
        });

      it("imports sites, devices with secrets, service accounts and parties", async () => {
        const { store } = await fresh(true);
        const issued = await store.importFile(registryFile());
        expect(issued.kept).toEqual([]);
        expect(issued.devices.map((d) => d.record.id)).toEqual(["n1", "d1"]);
        expect(issued.serviceAccounts.map((a) => a.record.name)).toEqual(["ingest"]);
        for (const d of issued.devices)
          expect((await store.authenticate(d.record.id, d.secret)).ok).toBe(true);
        const account = issued.serviceAccounts[0];
        expect(account && (await store.authenticate("ingest", account.secret))).toMatchObject({
          ok: true,
        });
        expect((await store.listSites()).map((s) => s.id)).toEqual(["cs-1", "s1", "t1"]);
        expect((await store.partyOfSite("cs-1"))?.key).toBe(ACME);
        expect(await store.getDevice("d1")).toStrictEqual(issued.devices[1]?.record);
      });

      it("keeps what is registered the same (enabled and standby aside), secrets unchanged, and upserts sites", async () => {
        const { store } = await fresh(true);
        const first = await store.importFile(registryFile());
        await store.setDeviceEnabled("n1", false);
        const again = await store.importFile(
          registryFile({
            sites: [
              { ...ambient("s1"), name: "Renamed" },
              construction("cs-1"),
              segment("t1", ["s1"]),
            ],
          }),
        );
        expect(again).toEqual({ devices: [], serviceAccounts: [], kept: ["n1", "d1", "ingest"] });
        expect((await store.getSite("s1"))?.name).toBe("Renamed");
        const d1 = first.devices[1];
        expect(d1 && (await store.authenticate("d1", d1.secret))).toMatchObject({ ok: true });
        expect((await store.getDevice("n1"))?.enabled).toBe(false);
      });

      it("refuses a device or service account registered differently, and keeps nothing of the file", async () => {
        const { store } = await fresh(true);
        await store.importFile(registryFile());
        const moved = registryFile({
          sites: [ambient("s1"), ambient("s9"), construction("cs-1"), segment("t1", ["s1"])],
          devices: [device("n9", "s9"), device("n1", "s1", { model: "Other" })],
        });
        await refused(
          store.importFile(moved),
          "REGISTRY_DUPLICATE",
          /device n1 is already registered with a different definition/,
        );
        expect(await store.getSite("s9")).toBeUndefined();
        expect(await store.getDevice("n9")).toBeUndefined();
        await refused(
          store.importFile(
            registryFile({
              sites: [ambient("s8"), ambient("s1"), construction("cs-1"), segment("t1", ["s1"])],
              serviceAccounts: [{ name: "ingest", role: "monitor" }],
            }),
          ),
          "REGISTRY_DUPLICATE",
          /service account ingest is already registered with role ingest, not monitor/,
        );
        expect(await store.getSite("s8")).toBeUndefined();
        expect(await store.countDevices()).toBe(2);
      });

      it("refuses a device of the file whose id clashes with a registered service account", async () => {
        const { store } = await fresh(true);
        await store.putSite(ambient("s1"));
        await store.addServiceAccount({ name: "n1", role: "monitor" });
        await refused(
          store.importFile(
            RegistryFile.parse({ sites: [ambient("s1"), ambient("s2")], devices: [device("n1")] }),
          ),
          "REGISTRY_DUPLICATE",
          /n1 is already registered/,
        );
        expect(await store.getSite("s2")).toBeUndefined();
      });
    });

    describe("parties", () => {
      /** A store with cs-1 (inline ACME), cs-2 (inline, no code), cs-3 (inline BETA) and s1. */
      const withSites = async () => {
        const backend = await fresh();
        await backend.store.putSite(
          construction("cs-1", { name: "Acme (inline)", creditCode: ACME }),
        );
        await backend.store.putSite(
          construction("cs-2", {
            name: "Beta inline name",
            contact: { name: "Wang", phone: "110" },
          }),
        );
        await backend.store.putSite(construction("cs-3", { name: "Other", creditCode: BETA }));
        return backend;
      };

      it("registers a party by credit code, refuses it again, and replaces it when asked", async () => {
        const { store } = await withSites();
        const input = {
          creditCode: ACME,
          name: "Acme Build Co.",
          legalRepresentative: "Zhang San",
          contacts: [{ name: "Li Si", phone: "13800000000", role: "site manager" }],
          address: "1 Riverside Road",
        };
        const { party, warnings, created } = await store.putParty(input, { now: NOW });
        expect(created).toBe(true);
        expect(warnings).toEqual([]);
        expect(party).toEqual({
          ...input,
          key: ACME,
          sites: [],
          updatedAt: "2026-12-01T00:00:00.000Z",
        });
        expect(await store.getParty(ACME)).toEqual(party);
        await refused(
          store.putParty({ creditCode: ACME, name: "Acme again" }),
          "REGISTRY_DUPLICATE",
          /party 91310000MA1FL0AB1X is already registered/,
        );
        const replaced = await store.putParty(
          { creditCode: ACME, name: "Acme renamed" },
          { replace: true },
        );
        expect(replaced.created).toBe(false);
        expect((await store.getParty(ACME))?.name).toBe("Acme renamed");
        expect(await store.getParty(BETA)).toBeUndefined();
      });

      it("keys a party without a code by its name, with a warning", async () => {
        const { store } = await withSites();
        const a = await store.putParty({ name: "Street Food Stall" });
        expect(a.party.key).toBe(store.partyKey({ name: "Street Food Stall" }));
        expect(a.party.key).toMatch(/^nocode-[0-9a-f]{16}$/);
        expect(a.warnings.join("\n")).toContain("no unified social credit code");
        expect(store.partyKey({ name: "Another Stall" })).not.toBe(a.party.key);
        expect(store.partyKey({ name: "x", creditCode: BETA })).toBe(BETA);
        const b = await store.putParty(
          { name: "Street Food Stall", address: "2 Lane" },
          { replace: true },
        );
        expect(b.party.key).toBe(a.party.key);
        expect(await store.listParties()).toHaveLength(1);
      });

      it("refuses bad input with every problem named, and stores nothing", async () => {
        const { store } = await withSites();
        const error: unknown = await store
          .putParty({ creditCode: "123", name: " padded ", contacts: [{ name: "x" }] })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ZodError);
        const paths = (error as ZodError).issues.map((i) => i.path.join("."));
        expect(paths).toEqual(expect.arrayContaining(["creditCode", "name", "contacts.0.phone"]));
        await expect(store.importParties([{ name: "A" }, { name: "B", extra: 1 }])).rejects.toThrow(
          ZodError,
        );
        expect(await store.listParties()).toEqual([]);
      });

      it("warns of a listed site not registered, without a regulated party, or naming another code inline", async () => {
        const { store } = await withSites();
        const { party, warnings } = await store.putParty({
          creditCode: BETA,
          name: "Beta Ltd.",
          sites: ["cs-2", "ghost", "s1", "cs-1", "cs-2"],
        });
        expect(party.sites).toEqual(["cs-2", "ghost", "s1", "cs-1"]);
        expect(warnings).toEqual([
          `site ghost of party ${BETA} is not registered (yet)`,
          `site s1 of party ${BETA} is a ambient, which has no regulated party: no case there is addressed to the party`,
          `site cs-1 names credit code ${ACME} inline; the record of party ${BETA} takes precedence`,
        ]);
      });

      it("refuses a site another party's record lists", async () => {
        const { store } = await withSites();
        await store.putParty({ creditCode: BETA, name: "Beta Ltd.", sites: ["cs-1"] });
        await refused(
          store.putParty({ creditCode: ACME, name: "Acme", sites: ["cs-2", "cs-1"] }),
          "REGISTRY_DUPLICATE",
          new RegExp(
            `site cs-1 is already a site of party ${BETA}; remove it from that party first`,
          ),
        );
        expect(await store.getParty(ACME)).toBeUndefined();
        expect((await store.partyOfSite("cs-2"))?.key).toBeUndefined();
        // Replacing a party's own record with the same site is no clash.
        await store.putParty(
          { creditCode: BETA, name: "Beta Ltd.", sites: ["cs-1", "cs-2"] },
          { replace: true },
        );
        expect(await store.sitesOfParty(BETA)).toEqual(["cs-1", "cs-2", "cs-3"]);
      });

      it("lists parties by name, then key, in byte order", async () => {
        const { store } = await withSites();
        await store.putParty({ creditCode: BETA, name: "beta" });
        await store.putParty({ creditCode: ACME, name: "Beta" });
        await store.putParty({ name: "Beta" });
        await store.putParty({ name: "Zed" });
        expect((await store.listParties()).map((p) => [p.name, p.key])).toEqual([
          ["Beta", ACME],
          ["Beta", store.partyKey({ name: "Beta" })],
          ["Zed", store.partyKey({ name: "Zed" })],
          ["beta", BETA],
        ]);
      });

      it("imports parties in one go: created, replaced and their warnings", async () => {
        const { store } = await withSites();
        await store.putParty({ creditCode: ACME, name: "Acme" });
        const result = await store.importParties(
          [
            { creditCode: ACME, name: "Acme Build Co.", sites: ["cs-1"] },
            { creditCode: BETA, name: "Beta Ltd.", sites: ["ghost"] },
            { name: "Stall" },
          ],
          { now: NOW },
        );
        expect(result.replaced.map((p) => p.key)).toEqual([ACME]);
        expect(result.created.map((p) => p.key)).toEqual([BETA, store.partyKey({ name: "Stall" })]);
        expect(result.warnings).toHaveLength(2);
        expect(result.warnings[0]).toContain("site ghost");
        expect(result.warnings[1]).toContain("no unified social credit code");
        expect((await store.getParty(ACME))?.updatedAt).toBe("2026-12-01T00:00:00.000Z");
        expect((await store.getParty(ACME))?.sites).toEqual(["cs-1"]);
      });

      it("imports none of the parties when one is refused", async () => {
        const { store } = await withSites();
        await store.putParty({ creditCode: ACME, name: "Acme", sites: ["cs-1"] });
        await refused(
          store.importParties([
            { creditCode: BETA, name: "Beta Ltd.", sites: ["cs-3"] },
            { name: "Stall", sites: ["cs-1"] },
          ]),
          "REGISTRY_DUPLICATE",
          /site cs-1 is already a site of party/,
        );
        expect(await store.getParty(BETA)).toBeUndefined();
        expect((await store.listParties()).map((p) => p.key)).toEqual([ACME]);
      });

      it("resolves a site's party: the record listing it, else the record of its inline code, else inline", async () => {
        const { store } = await withSites();
        expect(await store.partyOfSite("cs-1")).toBeUndefined();
        expect(await store.resolvedSite("cs-1")).toEqual(await store.getSite("cs-1"));
        await store.putParty({
          creditCode: ACME,
          name: "Acme Build Co.",
          contacts: [{ name: "Li Si", phone: "13800000000" }],
        });
        expect((await store.partyOfSite("cs-1"))?.key).toBe(ACME);
        expect(regulated(await store.resolvedSite("cs-1"))).toEqual({
          name: "Acme Build Co.",
          creditCode: ACME,
          contact: { name: "Li Si", phone: "13800000000" },
        });
        // A record without contacts keeps the site's inline contact; the record's code is taken.
        await store.putParty({ creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2"] });
        expect(regulated(await store.resolvedSite("cs-2"))).toEqual({
          name: "Beta Ltd.",
          creditCode: BETA,
          contact: { name: "Wang", phone: "110" },
        });
        // A record without a code keeps the site's inline code.
        await store.putParty({ name: "Renamer", sites: ["cs-3"] });
        expect(regulated(await store.resolvedSite("cs-3"))).toEqual({
          name: "Renamer",
          creditCode: BETA,
        });
        // A record listing a site whose inline code is another's wins.
        await store.putParty(
          { creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2", "cs-1"] },
          { replace: true },
        );
        expect((await store.partyOfSite("cs-1"))?.key).toBe(BETA);
        expect(await store.resolvedSite("s1")).toStrictEqual(ambient("s1"));
        expect(await store.resolvedSite("ghost")).toBeUndefined();
        expect(await store.partyOfSite("ghost")).toBeUndefined();
      });

      it("gives a party's sites: listed ones and those with its code inline that no other record lists", async () => {
        const { store } = await withSites();
        await store.putParty({ creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2"] });
        expect(await store.sitesOfParty(BETA)).toEqual(["cs-2", "cs-3"]);
        await store.putParty({ creditCode: ACME, name: "Acme" });
        expect(await store.sitesOfParty(ACME)).toEqual(["cs-1"]);
        await store.putParty(
          { creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2", "cs-1"] },
          { replace: true },
        );
        expect(await store.sitesOfParty(ACME)).toEqual([]);
        expect(await store.sitesOfParty("nocode-0000000000000000")).toEqual([]);
      });
    });

    describe("views", () => {
      it("answers lookups and lists from the stored records", async () => {
        const { store } = await fresh();
        const view = store.view();
        expect(await view.device("n1")).toBeUndefined();
        const { record } = await store.addDevice(device("n1"));
        // A lookup reads when called, not when the view was taken.
        expect(await view.device("n1")).toStrictEqual(record);
        expect(await view.site("s1")).toStrictEqual(ambient("s1"));
        expect(await view.site("ghost")).toBeUndefined();
        expect(await view.devices()).toEqual([record]);
        expect(await view.sites()).toEqual([ambient("s1")]);
      });

      it("resolves every site's party in the resolved view, and none in the plain one", async () => {
        const { store } = await fresh();
        await store.putSite(construction("cs-1", { name: "Acme (inline)", creditCode: ACME }));
        await store.putSite(construction("cs-2", { name: "Beta inline name" }));
        await store.putSite(construction("cs-3", { name: "Other", creditCode: BETA }));
        await store.putParty({ creditCode: ACME, name: "Acme Build Co." });
        await store.putParty({ creditCode: BETA, name: "Beta Ltd.", sites: ["cs-2"] });
        const names = (sites: Site[]) => sites.map((s) => regulated(s)?.name ?? s.id);
        expect(names(await store.resolvedView().sites())).toEqual([
          "Acme Build Co.",
          "Beta Ltd.",
          "Beta Ltd.",
          "s1",
        ]);
        expect(names(await store.view().sites())).toEqual([
          "Acme (inline)",
          "Beta inline name",
          "Other",
          "s1",
        ]);
        expect(regulated(await store.resolvedView().site("cs-2"))).toEqual({
          name: "Beta Ltd.",
          creditCode: BETA,
        });
        expect(await store.view().site("cs-2")).toStrictEqual(await store.getSite("cs-2"));
        const { record } = await store.addDevice(device("n1", "cs-1"));
        expect(await store.resolvedView().device("n1")).toStrictEqual(record);
        expect(await store.resolvedView().devices()).toEqual([record]);
      });
    });

    describe("transactions", () => {
      it("commits a transaction's writes together and resolves to its value", async () => {
        const { store } = await fresh();
        const value = await store.transaction(async (tx) => {
          await tx.addSite(ambient("s2"));
          const issued = await tx.addDevice(device("n1", "s2"));
          await tx.addServiceAccount({ name: "ingest", role: "ingest" });
          await tx.putParty({ creditCode: ACME, name: "Acme" });
          // The transaction's own reads see its writes.
          expect(await tx.getDevice("n1")).toStrictEqual(issued.record);
          expect((await tx.authenticate("n1", issued.secret)).ok).toBe(true);
          return issued.secret;
        });
        expect((await store.authenticate("n1", value)).ok).toBe(true);
        expect(await store.getSite("s2")).toBeDefined();
        expect((await store.listServiceAccounts()).map((a) => a.name)).toEqual(["ingest"]);
        expect((await store.getParty(ACME))?.name).toBe("Acme");
      });

      it("keeps nothing of a transaction that throws", async () => {
        const { store } = await fresh();
        const kept = await store.addDevice(device("n0"));
        await expect(
          store.transaction(async (tx) => {
            await tx.putSite(ambient("s2"));
            await tx.addDevice(device("n1", "s2"));
            await tx.addServiceAccount({ name: "ingest", role: "ingest" });
            await tx.putParty({ creditCode: ACME, name: "Acme", sites: ["s2"] });
            await tx.rotateSecret("n0");
            await tx.setDeviceEnabled("n0", false);
            await tx.removeSite("s1", { force: true });
            expect(await tx.countDevices()).toBe(1);
            throw new Error("abandoned");
          }),
        ).rejects.toThrow("abandoned");
        expect((await store.listSites()).map((s) => s.id)).toEqual(["s1"]);
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["n0"]);
        expect(await store.listServiceAccounts()).toEqual([]);
        expect(await store.listParties()).toEqual([]);
        expect(await store.authenticate("n0", kept.secret)).toMatchObject({ ok: true });
        // The abandoned registration took no generation.
        expect((await store.addDevice(device("n1"))).record.generation).toBe(1);
      });

      it("undoes a refused operation inside a transaction, and goes on with the rest", async () => {
        const { store } = await fresh();
        await store.addDevice(device("n1"));
        await store.transaction(async (tx) => {
          await tx.putSite(ambient("s2"));
          // The import upserts s9 and adds n9 before it meets n1 registered differently.
          await refused(
            tx.importFile(
              RegistryFile.parse({
                sites: [ambient("s9"), ambient("s1")],
                devices: [device("n9", "s9"), device("n1", "s1", { model: "Other" })],
              }),
            ),
            "REGISTRY_DUPLICATE",
            /different definition/,
          );
          expect(await tx.getSite("s9")).toBeUndefined();
          expect(await tx.getDevice("n9")).toBeUndefined();
          await refused(tx.removeSite("s1"), "REGISTRY_IN_USE", /in use/);
          await tx.addDevice(device("n2", "s2"));
        });
        expect((await store.listSites()).map((s) => s.id)).toEqual(["s1", "s2"]);
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["n1", "n2"]);
      });

      it("runs a transaction begun inside another as part of it", async () => {
        const { store } = await fresh();
        const value = await store.transaction(async (tx) => {
          await tx.addDevice(device("n1"));
          const inner = await tx.transaction(async (nested) => {
            expect(await nested.getDevice("n1")).toBeDefined();
            await nested.addDevice(device("n2"));
            return "inner";
          });
          expect(await tx.getDevice("n2")).toBeDefined();
          return inner;
        });
        expect(value).toBe("inner");
        expect(await store.countDevices()).toBe(2);
        await expect(
          store.transaction(async (tx) => {
            await tx.transaction(async (nested) => {
              await nested.addDevice(device("n3"));
            });
            throw new Error("the outer fails");
          }),
        ).rejects.toThrow("the outer fails");
        expect(await store.getDevice("n3")).toBeUndefined();
      });

      it("answers a refusal with a rejected promise, inside a transaction as outside", async () => {
        const { store } = await fresh();
        let outside: Promise<unknown> | undefined;
        expect(() => {
          outside = store.putSite({ id: "bad/id" });
        }).not.toThrow();
        await expect(outside).rejects.toThrow(ZodError);
        await store.transaction(async (tx) => {
          let inside: Promise<unknown> | undefined;
          expect(() => {
            inside = tx.removeDevice("ghost");
          }).not.toThrow();
          await expect(inside).rejects.toThrow(RegistryError);
        });
      });

      it("keeps a write from outside out of a transaction in progress, and out of its rollback", async () => {
        const { store } = await fresh();
        let release: () => void = () => undefined;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const running = store.transaction(async (tx) => {
          await tx.addDevice(device("n1"));
          await gate;
          throw new Error("abandoned");
        });
        // Let the transaction begin before the write from outside is issued.
        await new Promise((resolve) => setTimeout(resolve, 50));
        const outside = store.addDevice(device("n2"));
        release();
        await expect(running).rejects.toThrow("abandoned");
        await outside;
        expect((await store.listDevices()).map((d) => d.id)).toEqual(["n2"]);
      });
    });
  });
}

suite("SQLite", openSqlite);

describe.runIf(postgres)("the registry in PostgreSQL", () => {
  suite("PostgreSQL", openPostgres);

  describe("what only the shared database does", () => {
    const opened: Backend[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((b) => b.close()));
    });
    const fresh = async () => {
      const backend = await openPostgres();
      if (backend.pool === undefined) throw new Error("no pool");
      opened.push(backend);
      await backend.store.putSite(ambient("s1"));
      return { ...backend, pool: backend.pool };
    };

    it('sorts ids, names and keys in byte order whatever the server\'s locale (COLLATE "C")', async () => {
      // The byte-order lists above cannot tell on a server whose default collation is C.
      const { pool } = await fresh();
      const { rows } = await pool.query<{ column: string; collation: string | null }>(
        `SELECT table_name || '.' || column_name AS column, collation_name AS collation
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name LIKE 'registry%'
           AND column_name IN ('id', 'site_id', 'name', 'key', 'party_key')
         ORDER BY 1`,
      );
      expect(rows).toEqual(
        [
          "registry_device.id",
          "registry_device.site_id",
          "registry_device_generation.id",
          "registry_party.key",
          "registry_party.name",
          "registry_party_site.party_key",
          "registry_party_site.site_id",
          "registry_service_account.name",
          "registry_site.id",
        ].map((column) => ({ column, collation: "C" })),
      );
    });

    it("registers an id once when two writers race for it", async () => {
      const { store } = await fresh();
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, () => store.addDevice(device("n1"))),
      );
      expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      for (const o of outcomes.filter((o) => o.status === "rejected"))
        expect(o.reason).toMatchObject({ code: "REGISTRY_DUPLICATE" });
      expect(await store.countDevices()).toBe(1);
    });

    it("refuses one of a device and a service account racing into one client-id space", async () => {
      const { store } = await fresh();
      for (let round = 0; round < 5; round++) {
        const outcomes = await Promise.allSettled([
          store.addDevice(device(`ingest${round}-1`)),
          store.addServiceAccount({ name: `ingest${round}`, role: "ingest" }),
        ]);
        expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
      }
    });

    it("tells one of two CONNECTs at once that the device left standby", async () => {
      const { store } = await fresh();
      const { secret } = await store.addDevice(device("n1", "s1", { standby: true }));
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, () => store.authenticate("n1", secret)),
      );
      expect(outcomes.every((o) => o.ok)).toBe(true);
      expect(outcomes.filter((o) => o.ok && o.leftStandby === true)).toHaveLength(1);
    });

    it("shows a transaction's uncommitted device to no read outside it", async () => {
      const { store } = await fresh();
      const seen = await store.transaction(async (tx) => {
        const { secret } = await tx.addDevice(device("n1"));
        return {
          inside: await tx.getDevice("n1"),
          outside: await store.getDevice("n1"),
          auth: await store.authenticate("n1", secret),
        };
      });
      expect(seen.inside).toBeDefined();
      expect(seen.outside).toBeUndefined();
      expect(seen.auth).toEqual({ ok: false, reason: "unknown_user" });
      expect(await store.getDevice("n1")).toBeDefined();
    });

    it("takes part in a caller's transaction through on(client), and its view too", async () => {
      const { store, pool } = await fresh();
      const pgStore = store as PostgresRegistryStore;
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        const tx = pgStore.on(client);
        await tx.addDevice(device("n1"));
        expect(await tx.view().device("n1")).toBeDefined();
        expect(await pgStore.view().device("n1")).toBeUndefined();
        await client.query("ROLLBACK");
      } finally {
        client.release();
      }
      expect(await store.getDevice("n1")).toBeUndefined();
    });
  });
});
