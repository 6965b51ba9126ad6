import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEMO_REGISTRY_FILE, readRegistryFile } from "../../../cli/runtime/registry-file.js";
import { RegistryError, RegistryStore } from "../../../registry/store.js";

const area = { district: "Jinjiang", gridCell: "JJ-01" };
const location = { lat: 30.65, lon: 104.08 };
const device = (id: string, siteId = "s1") => ({
  id,
  kind: "noise" as const,
  model: "AWA",
  serial: id,
  location,
  area,
  siteId,
});

describe("registry store on a real SQLite file", () => {
  let dir: string;
  let file: string;
  let store: RegistryStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "cw-registry-"));
    file = join(dir, "registry.db");
    store = new RegistryStore(file);
    store.putSite({ id: "s1", type: "ambient", name: "Square", area, location });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("issues a secret that authenticates the device, and stores only its hash", () => {
    const { secret, record } = store.addDevice(device("n1"));
    expect(record.expectedIntervalS).toBe(60);
    expect(store.authenticate("n1", secret)).toEqual({
      ok: true,
      principal: { type: "device", deviceId: "n1", kind: "noise" },
    });
    expect(store.authenticate("n1", "nope")).toEqual({ ok: false, reason: "bad_secret" });
    expect(store.authenticate("n2", secret)).toEqual({ ok: false, reason: "unknown_user" });
    store.close();
    expect(readFileSync(file).includes(Buffer.from(secret))).toBe(false);
    store = new RegistryStore(file); // persisted across reopen
    expect(store.authenticate("n1", secret).ok).toBe(true);
  });

  it("puts a device on standby in service at its first accepted CONNECT, and back on standby", () => {
    const { secret } = store.addDevice({ ...device("n1"), standby: true });
    expect(store.getDevice("n1")?.standby).toBe(true);
    // A refused CONNECT changes nothing.
    expect(store.authenticate("n1", "nope")).toEqual({ ok: false, reason: "bad_secret" });
    expect(store.getDevice("n1")?.standby).toBe(true);
    expect(store.authenticate("n1", secret)).toEqual({
      ok: true,
      principal: { type: "device", deviceId: "n1", kind: "noise" },
      leftStandby: true,
    });
    expect(store.getDevice("n1")).not.toHaveProperty("standby");
    // In service: the next CONNECT is an ordinary one.
    expect(store.authenticate("n1", secret)).not.toHaveProperty("leftStandby");
    store.putOnStandby("n1");
    expect(store.listDevices()[0]?.standby).toBe(true);
    expect(store.authenticate("n1", secret)).toMatchObject({ ok: true, leftStandby: true });
    expect(() => store.putOnStandby("n9")).toThrow(/not registered/);
  });

  it("a disabled device on standby stays refused and on standby", () => {
    const { secret } = store.addDevice({ ...device("n1"), standby: true, enabled: false });
    expect(store.authenticate("n1", secret)).toEqual({ ok: false, reason: "disabled" });
    expect(store.getDevice("n1")?.standby).toBe(true);
  });

  it("refuses duplicates across devices and service accounts, and unknown sites", () => {
    store.addDevice(device("n1"));
    expect(() => store.addDevice(device("n1"))).toThrow(RegistryError);
    expect(() => store.addServiceAccount({ name: "n1", role: "ingest" })).toThrow(
      /already registered/,
    );
    expect(() => store.addDevice(device("n2", "nowhere"))).toThrow(
      /site nowhere is not registered/,
    );
    expect(() => store.addDevice({ ...device("bad/id") })).toThrow();
    expect(store.countDevices()).toBe(1);
  });

  it("rotates a secret: the old one stops working", () => {
    const { secret } = store.addDevice(device("n1"));
    const fresh = store.rotateSecret("n1");
    expect(store.authenticate("n1", secret).ok).toBe(false);
    expect(store.authenticate("n1", fresh).ok).toBe(true);
    expect(() => store.rotateSecret("ghost")).toThrow(/not a registered/);
  });

  it("disables and re-enables a device", () => {
    const { secret } = store.addDevice(device("n1"));
    store.setDeviceEnabled("n1", false);
    expect(store.authenticate("n1", secret)).toEqual({ ok: false, reason: "disabled" });
    expect(store.getDevice("n1")?.enabled).toBe(false);
    store.setDeviceEnabled("n1", true);
    expect(store.authenticate("n1", secret).ok).toBe(true);
  });

  it("authenticates service accounts with their role", () => {
    const { secret } = store.addServiceAccount({ name: "ingest", role: "ingest" });
    expect(store.authenticate("ingest", secret)).toEqual({
      ok: true,
      principal: { type: "service", name: "ingest", role: "ingest" },
    });
  });

  it("imports a registry file atomically: a failure leaves nothing behind", () => {
    const demo = readRegistryFile(DEMO_REGISTRY_FILE);
    store.addDevice(device("demo-fume-1")); // collides with a demo device
    expect(() => store.importFile(demo)).toThrow(/already registered/);
    expect(store.listSites().map((s) => s.id)).toEqual(["s1"]);
    store.removeDevice("demo-fume-1");
    const issued = store.importFile(demo);
    expect(issued.devices).toHaveLength(7);
    expect(issued.serviceAccounts.map((a) => a.record.name)).toEqual(["ingest", "simulator"]);
    for (const d of issued.devices) expect(store.authenticate(d.record.id, d.secret).ok).toBe(true);
    // Those CONNECTs put the demo devices in service; the same file imported again keeps them.
    expect(store.importFile(demo).kept).toHaveLength(9);
    expect(store.getSite("demo-tunnel-s1")).toMatchObject({
      type: "tunnel_segment",
      neighbours: ["demo-tunnel-s2"],
    });
  });
});

describe("registry identity clashes", () => {
  it("refuses a device id inside a service account's client-id space, and the reverse", () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-registry-clash-"));
    const store = new RegistryStore(join(dir, "registry.db"));
    try {
      store.putSite({ id: "s1", type: "ambient", name: "Square", area, location });
      store.addServiceAccount({ name: "ingest", role: "ingest" });
      // "ingest-1" is the ingest's default client id: a device by that name could take over its session.
      expect(() => store.addDevice(device("ingest-1"))).toThrow(
        /clashes with a service account's client ids/,
      );
      expect(() => store.addDevice(device("ingest"))).toThrow(RegistryError);
      store.addDevice(device("ingestion-meter")); // a mere common prefix is fine
      store.addDevice(device("sim-7"));
      expect(() => store.addServiceAccount({ name: "sim", role: "simulator" })).toThrow(/clashes/);
      expect(store.countDevices()).toBe(2);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
