import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEMO_REGISTRY_FILE, readRegistryFile } from "../../../cli/runtime/registry-file.js";
import { RegistryStore } from "../../../registry/store.js";

const area = { district: "Jinjiang", gridCell: "JJ-01" };
const location = { lat: 30.65, lon: 104.08 };
const demo = () => readRegistryFile(DEMO_REGISTRY_FILE);

describe("registry: sites, imports after add-service, the held seed, old files", () => {
  let dir: string;
  let store: RegistryStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "cw-registry-sites-"));
    store = new RegistryStore(join(dir, "registry.db"));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("imports a file after add-service: the same account is kept, a different role refused", () => {
    const { secret } = store.addServiceAccount({ name: "ingest", role: "ingest" });
    const issued = store.importFile(demo());
    expect(issued.devices).toHaveLength(7);
    expect(issued.serviceAccounts.map((a) => a.record.name)).toEqual(["simulator"]);
    expect(issued.kept).toEqual(["ingest"]);
    expect(store.authenticate("ingest", secret).ok).toBe(true); // its secret unchanged
    // The same file again: everything kept, nothing issued.
    const again = store.importFile(demo());
    expect(again.devices).toEqual([]);
    expect(again.kept).toHaveLength(9);

    const other = new RegistryStore(join(dir, "other.db"));
    try {
      other.addServiceAccount({ name: "ingest", role: "monitor" });
      expect(() => other.importFile(demo())).toThrow(/registered with role monitor, not ingest/);
      expect(other.countDevices()).toBe(0);
    } finally {
      other.close();
    }
  });

  it("adds, refuses duplicates and unknown neighbours, and removes sites with --force semantics", () => {
    store.addSite({ id: "s1", type: "ambient", name: "Square", area, location });
    expect(() =>
      store.addSite({ id: "s1", type: "ambient", name: "Again", area, location }),
    ).toThrow(/already registered/);
    store.addSite(
      { id: "s1", type: "ambient", name: "Renamed", area, location },
      { replace: true },
    );
    expect(store.getSite("s1")?.name).toBe("Renamed");
    const segment = (id: string, neighbours: string[]) => ({
      id,
      type: "tunnel_segment",
      name: id,
      area,
      location,
      tunnel: "T",
      compartment: "gas",
      neighbours,
    });
    expect(() => store.addSite(segment("t2", ["t1"]))).toThrow(/neighbour t1 is not a registered/);
    store.addSite(segment("t1", []));
    store.addSite(segment("t2", ["t1"]));
    store.addDevice({
      id: "n1",
      kind: "noise",
      model: "M",
      serial: "S",
      location,
      area,
      siteId: "s1",
    });
    expect(() => store.removeSite("s1")).toThrow(/1 device belongs to it \(n1\)/);
    expect(() => store.removeSite("t1")).toThrow(/tunnel segments name it a neighbour \(t2\)/);
    expect(store.removeSite("s1", { force: true }).devices).toEqual(["n1"]);
    expect(store.getDevice("n1")).toBeUndefined();
    expect(store.removeSite("t1", { force: true }).neighbourOf).toEqual(["t2"]);
    expect(store.getSite("t2")).toMatchObject({ neighbours: [] });
    expect(() => store.removeSite("ghost")).toThrow(/not registered/);
  });

  it("holds a seed until commit; a rollback leaves the registry as it was", () => {
    const held = store.hold();
    store.importFile(demo());
    expect(store.countDevices()).toBe(7); // this store sees it
    const reader = new Database(join(dir, "registry.db"), { readonly: true });
    try {
      expect((reader.prepare("SELECT count(*) AS n FROM device").get() as { n: number }).n).toBe(0);
    } finally {
      reader.close();
    }
    held.rollback();
    expect(store.countDevices()).toBe(0);
    expect(store.listSites()).toEqual([]);
    const kept = store.hold();
    store.importFile(demo());
    kept.commit();
    store.close();
    store = new RegistryStore(join(dir, "registry.db"));
    expect(store.countDevices()).toBe(7);
  });

  it("opens a registry file written before it used the shared SQLite opener", () => {
    store.close();
    const file = join(dir, "old.db");
    // What RegistryStore did before: its own copy of the schema step, user_version 1.
    const old = new Database(file);
    old.pragma("journal_mode = WAL");
    old.exec(`CREATE TABLE site (id TEXT PRIMARY KEY, type TEXT NOT NULL, doc TEXT NOT NULL);
      CREATE TABLE device (id TEXT PRIMARY KEY, kind TEXT NOT NULL, site_id TEXT NOT NULL REFERENCES site(id),
        enabled INTEGER NOT NULL, secret_hash TEXT NOT NULL, doc TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE INDEX device_site ON device(site_id);
      CREATE TABLE service_account (name TEXT PRIMARY KEY, role TEXT NOT NULL, secret_hash TEXT NOT NULL,
        doc TEXT NOT NULL, created_at TEXT NOT NULL);`);
    old.pragma("user_version = 1");
    const site = { id: "s1", type: "ambient", name: "Square", area, location };
    old.prepare("INSERT INTO site VALUES (?, ?, ?)").run("s1", "ambient", JSON.stringify(site));
    old.close();
    store = new RegistryStore(file);
    expect(store.listSites()).toEqual([site]);
    expect(store.addServiceAccount({ name: "ops", role: "monitor" }).record.name).toBe("ops");
  });
});
