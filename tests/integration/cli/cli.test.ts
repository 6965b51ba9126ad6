import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { type CliProcess, startSystem, systemPorts } from "../../support/cli-process.js";
import { duplicateKeys } from "../../support/json-keys.js";

const dir = mkdtempSync(join(tmpdir(), "cw-cli-"));
const running: CliProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
    encoding: "utf8",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const flagsOf = (help: string) => new Set(help.match(/--[a-z][a-z0-9-]*/g) ?? []);

/** Devices in a registry file, without opening it through the store (which would create it). */
function devicesIn(dataDir: string): number {
  const file = join(dataDir, "registry.db");
  if (!existsSync(file)) return 0;
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM device").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function exitOf(proc: CliProcess): Promise<number | null> {
  if (proc.child.exitCode !== null) return proc.child.exitCode;
  return new Promise((resolve) => proc.child.once("exit", resolve));
}

const SECRET = /[A-Za-z0-9_-]{43}/;

describe("citywatch --help per command", () => {
  it("ingest takes the store, rules and its broker, not the broker's listeners", () => {
    const ingest = flagsOf(cli(["ingest", "--help"]).stdout);
    for (const f of [
      "--config",
      "--data-dir",
      "--http-host",
      "--http-port",
      "--store",
      "--influxdb-url",
      "--influxdb-api",
      "--influxdb-token",
      "--rules-dir",
      "--broker-url",
      "--broker-password-file",
    ])
      expect(ingest).toContain(f);
    for (const f of ["--mqtt-port", "--mqtts-port", "--ws-port", "--tls-cert", "--redis-url"])
      expect(ingest).not.toContain(f);
    expect(ingest).not.toContain("--broker-password");
  });

  it("broker takes no store flags; start takes both sets", () => {
    const broker = flagsOf(cli(["broker", "--help"]).stdout);
    expect(broker).toContain("--mqtt-port");
    expect(broker).toContain("--redis-url");
    for (const f of ["--store", "--influxdb-url", "--rules-dir", "--broker-url"])
      expect(broker).not.toContain(f);
    const start = flagsOf(cli(["start", "--help"]).stdout);
    for (const f of ["--mqtt-port", "--tls-cert", "--influxdb-url", "--rules-dir", "--demo"])
      expect(start).toContain(f);
    expect(start).not.toContain("--broker-url");
  });

  it("ingest alone without its broker says which flags to give", () => {
    const r = cli(["ingest", "--data-dir", join(dir, "ingest-alone"), "--http-port", "0"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--broker-url");
    expect(r.stderr).toContain("--broker-password-file");
  });
});

describe("a start that fails seeds nothing and prints no secret", () => {
  it("refuses a taken HTTP port before seeding", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const data = join(dir, "busy-http");
      const proc = startSystem(data, { ...(await systemPorts()), http: taken });
      running.push(proc);
      expect(await exitOf(proc)).toBe(1);
      expect(proc.output()).toContain(
        `HTTP port ${taken} on 127.0.0.1 is already in use; choose another with http.port`,
      );
      expect(proc.output()).not.toMatch(SECRET);
      expect(proc.output()).not.toMatch(/Seeded/);
      expect(devicesIn(data)).toBe(0);
    } finally {
      blocker.close();
    }
  });

  it("refuses bad rule files before seeding", async () => {
    const data = join(dir, "bad-rules");
    const rules = join(dir, "rules");
    mkdirSync(rules, { recursive: true });
    writeFileSync(join(rules, "broken.yaml"), "rules:\n  - id: 12\n    nonsense: true\n");
    const proc = startSystem(data, await systemPorts(), ["--rules-dir", rules]);
    running.push(proc);
    expect(await exitOf(proc)).toBe(1);
    expect(proc.output()).toMatch(/broken\.yaml/);
    expect(proc.output()).not.toMatch(SECRET);
    expect(devicesIn(data)).toBe(0);
  });
});

describe("a short start's log lines", () => {
  it("carry no key twice", async () => {
    const data = join(dir, "logs");
    const proc = startSystem(data, await systemPorts(), ["--log-level", "debug"]);
    running.push(proc);
    await proc.waitFor(/Metrics {4}http/);
    expect(await proc.stop()).toBe(0);
    const lines = proc
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"));
    expect(lines.length).toBeGreaterThan(5);
    expect(lines.some((l) => l.includes('"msg":"stopping"'))).toBe(true);
    const duplicates = lines.flatMap((l) => duplicateKeys(l).map((k) => `${k} in ${l}`));
    expect(duplicates).toEqual([]);
    expect(devicesIn(data)).toBe(7); // the successful start kept its seed
  });
});

describe("citywatch sites and devices import", () => {
  const data = join(dir, "sites");
  const g = ["--data-dir", data];
  const base = ["--district", "Jinjiang", "--grid-cell", "JJ-1", "--lat", "30.6", "--lon", "104.1"];

  it("adds a site, listing every problem of a bad one", () => {
    const bad = cli([
      "sites",
      ...g,
      "add",
      "--id",
      "r1",
      "--type",
      "restaurant",
      "--name",
      "Hotpot",
      ...base,
      "--size",
      "huge",
      "--phase",
      "earthwork",
      "--zone",
      "9",
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/4 problems/);
    expect(bad.stderr).toContain("--phase: only for construction_site sites");
    expect(bad.stderr).toMatch(/regulatedParty\.name \(--party\)/);
    expect(bad.stderr).toMatch(/size \(--size\)/);
    expect(bad.stderr).toMatch(/zoneClass \(--zone\)/);
    const ok = cli([
      "sites",
      ...g,
      "add",
      "--id",
      "r1",
      "--type",
      "restaurant",
      "--name",
      "Hotpot",
      ...base,
      "--size",
      "small",
      "--party",
      "Hotpot Ltd",
      "--zone",
      "2",
      "--permit",
      "night_works,2026-01-01T00:00:00+08:00,2026-06-30T00:00:00+08:00,NW-1",
    ]);
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    const again = cli([
      "sites",
      ...g,
      "add",
      "--id",
      "r1",
      "--type",
      "ambient",
      "--name",
      "X",
      ...base,
    ]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already registered \(--replace/);
  });

  it("lists sites as a table and as JSON", () => {
    const table = cli(["sites", ...g, "list"]);
    expect(table.stdout).toMatch(/^r1\s+restaurant\s+Jinjiang\s+JJ-1\s+2\s+0\s+Hotpot$/m);
    expect(table.stdout).toContain("1 site");
    const json = JSON.parse(cli(["sites", ...g, "list", "--json"]).stdout) as unknown[];
    expect(json).toEqual([
      expect.objectContaining({
        id: "r1",
        regulatedParty: { name: "Hotpot Ltd" },
        permits: [expect.objectContaining({ type: "night_works", reference: "NW-1" })],
      }),
    ]);
  });

  it("refuses to remove a site with devices unless --force, which removes them too", () => {
    const added = cli([
      "devices",
      ...g,
      "add",
      "--id",
      "fume-1",
      "--kind",
      "cooking_fume",
      "--site",
      "r1",
      "--model",
      "M",
      "--serial",
      "S",
      ...base,
    ]);
    expect(added.status).toBe(0);
    const refused = cli(["sites", ...g, "remove", "r1"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("1 device belongs to it (fume-1)");
    const forced = cli(["sites", ...g, "remove", "r1", "--force"]);
    expect(forced.status).toBe(0);
    expect(forced.stdout).toContain("with its devices: fume-1");
    expect(cli(["devices", ...g, "list"]).stdout).toContain("0 devices");
  });

  it("imports a registry file after add-service", () => {
    const svc = cli(["devices", ...g, "add-service", "--name", "ingest", "--role", "ingest"]);
    expect(svc.status).toBe(0);
    const imported = cli(["devices", ...g, "import", "simulators/demo-city/registry.yaml"]);
    expect(imported.stderr).toBe("");
    expect(imported.status).toBe(0);
    expect(imported.stdout).toContain("7 devices, 1 service accounts");
    expect(imported.stdout).toContain("kept with their secrets: ingest");
  });
});
