import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Device, Site } from "../../../contracts/index.js";
import { RegistryStore } from "../../../registry/store.js";

/*
 * The registry fields evidence packages print (issue #17): a site's postal address, a device's
 * type approval and metrology certificate numbers. Stored with the record, read back after a
 * reopen, refused when they could not be printed, and set by the operator's CLI.
 */

const dir = mkdtempSync(join(tmpdir(), "cw-registry-evidence-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const AREA = { district: "dongcheng", gridCell: "dc-01" };
const SITE = {
  id: "build-1",
  type: "construction_site",
  name: "East Tower works",
  area: AREA,
  location: { lat: 39.9, lon: 116.4 },
  regulatedParty: { name: "Capital Build Co." },
  phase: "structure",
  address: "1 East Street, Dongcheng, Beijing",
};
const DEVICE = {
  id: "build-1-noise",
  kind: "noise",
  model: "AWA6228+",
  serial: "SN-1",
  siteId: "build-1",
  area: AREA,
  location: { lat: 39.9, lon: 116.4 },
  typeApproval: "CMC 2019-F123",
  metrologyCertificate: "JD-2026-00451",
};

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
    encoding: "utf8",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("registry fields for evidence", () => {
  it("stores a site's address and a device's approval numbers, and reads them back after a reopen", () => {
    const file = join(dir, "store.db");
    const store = new RegistryStore(file);
    store.addSite(SITE);
    store.addDevice(Device.parse(DEVICE));
    store.close();
    const again = new RegistryStore(file);
    try {
      expect(again.getSite("build-1")).toMatchObject({ address: SITE.address });
      expect(again.getDevice("build-1-noise")).toMatchObject({
        typeApproval: "CMC 2019-F123",
        metrologyCertificate: "JD-2026-00451",
      });
      expect(again.invalidRecords()).toEqual([]);
    } finally {
      again.close();
    }
  });

  it("leaves them out when not given (older records) and refuses what could not be printed", () => {
    const { address: _a, ...bare } = SITE;
    expect(Site.parse(bare)).not.toHaveProperty("address");
    const bad = (patch: Record<string, unknown>) =>
      Device.safeParse({ ...DEVICE, ...patch }).error?.issues.map(
        (i) => `${i.path.join(".")}: ${i.message}`,
      );
    expect(bad({ typeApproval: "x".repeat(101) })).toEqual([
      "typeApproval: Too big: expected string to have <=100 characters",
    ]);
    expect(bad({ metrologyCertificate: "JD\n2026" })).toEqual([
      "metrologyCertificate: must not contain control characters (newline, tab, NUL, …)",
    ]);
    expect(bad({ typeApproval: "" })?.[0]).toMatch(/^typeApproval: Too small/);
    expect(bad({ metrologyCertificate: " JD-1" })).toEqual([
      "metrologyCertificate: must not start or end with whitespace",
    ]);
    expect(
      Site.safeParse({ ...SITE, address: "1 East St\u0000" }).error?.issues.map((i) => i.path),
    ).toEqual([["address"]]);
  });

  it("are set with `sites add --address` and `devices add --type-approval --metrology-certificate`", () => {
    const data = join(dir, "cli");
    const g = ["--data-dir", data];
    const where = [
      "--district",
      "dongcheng",
      "--grid-cell",
      "dc-01",
      "--lat",
      "39.9",
      "--lon",
      "116.4",
    ];
    const site = cli([
      "sites",
      ...g,
      "add",
      "--id",
      "build-1",
      "--type",
      "construction_site",
      "--name",
      "East Tower",
      "--party",
      "Capital Build Co.",
      "--phase",
      "structure",
      ...where,
      "--address",
      "1 East Street, Dongcheng, Beijing",
      "--json",
    ]);
    expect(site.stderr).toBe("");
    expect(site.status).toBe(0);
    expect(JSON.parse(site.stdout)).toMatchObject({ address: "1 East Street, Dongcheng, Beijing" });
    const bad = cli([
      "devices",
      ...g,
      "add",
      "--id",
      "n-1",
      "--kind",
      "noise",
      "--site",
      "build-1",
      "--model",
      "M",
      "--serial",
      "S",
      ...where,
      "--type-approval",
      "x".repeat(101),
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/typeApproval/);
    const ok = cli([
      "devices",
      ...g,
      "add",
      "--id",
      "n-1",
      "--kind",
      "noise",
      "--site",
      "build-1",
      "--model",
      "M",
      "--serial",
      "S",
      ...where,
      "--type-approval",
      "CMC 2019-F123",
      "--metrology-certificate",
      "JD-2026-00451",
      "--json",
    ]);
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    expect((JSON.parse(ok.stdout) as { device: unknown }).device).toMatchObject({
      typeApproval: "CMC 2019-F123",
      metrologyCertificate: "JD-2026-00451",
    });
    const store = new RegistryStore(join(data, "registry.db"));
    try {
      expect(store.getDevice("n-1")?.metrologyCertificate).toBe("JD-2026-00451");
      expect(store.getSite("build-1")?.address).toBe("1 East Street, Dongcheng, Beijing");
    } finally {
      store.close();
    }
  }, 60_000);
});
