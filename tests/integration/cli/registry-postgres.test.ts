import { spawn } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PostgresRegistryStore } from "../../../registry/store-postgres.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  createMigratedSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * `citywatch devices`, `sites` and `parties` on a cluster's shared PostgreSQL (issue #21):
 * --database-url / CITYWATCH_DATABASE_URL and the schema. What they write is what every node's
 * broker authenticates with (checked here on the test's own PostgresRegistryStore), and nothing
 * lands in the data directory. A database that cannot be used is refused with exit 1 and
 * `citywatch <command>: …`, writing nothing.
 */

const postgres = await requireService(
  "citywatch devices/sites/parties on PostgreSQL",
  providePostgres,
);

const BETA = "91510100MA6CW7XK3P";

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/citywatch.ts", ...args], {
      env: { ...process.env, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
    child.stdin.end();
  });
}

/** The run succeeded quietly; its stdout. */
function ok(run: Run): string {
  expect(run.stderr).toBe("");
  expect(run.status).toBe(0);
  return run.stdout;
}

/** The secret a command printed on the line after "Secret …:" or "New secret …:". */
function printedSecret(stdout: string): string {
  const match = /ecret[^\n]*:\n {2}(\S+)\n/.exec(stdout);
  if (match?.[1] === undefined) throw new Error(`no secret in:\n${stdout}`);
  return match[1];
}

const SITE = [
  "add",
  "--id",
  "cs-1",
  "--type",
  "construction_site",
  "--name",
  "East Tower",
  "--party",
  "Inline Name Co.",
  "--phase",
  "structure",
  "--district",
  "jinjiang",
  "--grid-cell",
  "jj-01",
  "--lat",
  "30.6",
  "--lon",
  "104.1",
];

const DEVICE = [
  "add",
  "--id",
  "noise-1",
  "--kind",
  "noise",
  "--site",
  "cs-1",
  "--model",
  "AWA6218J",
  "--serial",
  "N-1",
  "--lat",
  "30.6",
  "--lon",
  "104.1",
  "--district",
  "jinjiang",
  "--grid-cell",
  "jj-01",
];

describe.runIf(postgres)("citywatch devices, sites and parties on the shared database", () => {
  let schema: TestSchema;
  let pool: pg.Pool;
  let store: PostgresRegistryStore;
  let dir: string;
  let url: string;

  beforeEach(async () => {
    url = postgresUrl(postgres);
    ({ schema, pool } = await createMigratedSchema(url, 2));
    store = new PostgresRegistryStore(pool);
    dir = await makeTempDir("cw-registry-pg-");
  });
  afterEach(async () => {
    await schema.drop();
    await removeTempDir(dir);
  });

  const flags = () => ["--data-dir", dir, "--database-url", url, "--database-schema", schema.name];

  it("adds a site and a device there, which the shared store then sees, authenticates, disables and removes", async () => {
    expect(ok(await cli(["sites", ...flags(), ...SITE]))).toContain(
      "Registered site cs-1 (construction_site): East Tower",
    );
    expect((await store.getSite("cs-1"))?.name).toBe("East Tower");

    const added = ok(await cli(["devices", ...flags(), ...DEVICE]));
    expect(added).toContain("Registered noise-1 (noise) at site cs-1.");
    const secret = printedSecret(added);
    expect(await store.authenticate("noise-1", secret)).toMatchObject({ ok: true });
    expect(await store.authenticate("noise-1", `${secret}x`)).toEqual({
      ok: false,
      reason: "bad_secret",
    });

    expect(ok(await cli(["devices", ...flags(), "list"]))).toMatch(
      /^noise-1\s+noise\s+cs-1\s+jj-01\s+enabled\n1 device\n$/m,
    );
    expect(ok(await cli(["sites", ...flags(), "list"]))).toMatch(
      /^cs-1\s+construction_site\s+jinjiang\s+jj-01\s+-\s+1 {2}East Tower\n1 site\n$/m,
    );

    // rotate-secret: the old secret is refused, the new one works.
    const rotated = ok(await cli(["devices", ...flags(), "rotate-secret", "noise-1"]));
    const renewed = printedSecret(rotated);
    expect(renewed).not.toBe(secret);
    expect(await store.authenticate("noise-1", secret)).toEqual({
      ok: false,
      reason: "bad_secret",
    });
    expect(await store.authenticate("noise-1", renewed)).toMatchObject({ ok: true });

    // Through the environment instead of flags: disable.
    const env = { CITYWATCH_DATABASE_URL: url, CITYWATCH_DATABASE_SCHEMA: schema.name };
    expect(ok(await cli(["devices", "--data-dir", dir, "disable", "noise-1"], env))).toBe(
      "noise-1 disabled\n",
    );
    expect((await store.getDevice("noise-1"))?.enabled).toBe(false);
    expect(await store.authenticate("noise-1", renewed)).toEqual({
      ok: false,
      reason: "disabled",
    });
    expect(ok(await cli(["devices", "--data-dir", dir, "list"], env))).toMatch(
      /^noise-1\s+.*\sdisabled$/m,
    );

    // remove: gone from the shared store, and the site counts follow.
    expect(ok(await cli(["devices", ...flags(), "remove", "noise-1"]))).toBe("noise-1 removed\n");
    expect(await store.getDevice("noise-1")).toBeUndefined();
    expect(await store.listDevices()).toEqual([]);
    expect(ok(await cli(["sites", ...flags(), "list"]))).toMatch(/^cs-1\s+.*\s0 {2}East Tower$/m);

    // None of it in the data directory.
    expect(existsSync(join(dir, "registry.db"))).toBe(false);
  });

  it("imports a registry file and registers a party of a site there", async () => {
    ok(await cli(["sites", ...flags(), ...SITE]));

    // import: a site and a device, its secret printed once and valid on the shared store.
    const file = join(dir, "city.yaml");
    writeFileSync(
      file,
      `sites:
  - id: amb-1
    type: ambient
    name: Park gauge
    area: { district: jinjiang, gridCell: jj-02 }
    location: { lat: 30.61, lon: 104.11 }
devices:
  - id: dust-1
    kind: dust
    model: YC-YZ01
    serial: D-1
    siteId: amb-1
    location: { lat: 30.61, lon: 104.11 }
    area: { district: jinjiang, gridCell: jj-02 }
    expectedIntervalS: 60
`,
    );
    const imported = ok(await cli(["devices", ...flags(), "import", file]));
    expect(imported).toContain("Imported 1 sites, 1 devices, 0 service accounts.");
    const dustSecret = /^ {2}dust-1\s+dust\s+(\S+)$/m.exec(imported)?.[1];
    expect(dustSecret).toBeDefined();
    expect((await store.getSite("amb-1"))?.type).toBe("ambient");
    expect(await store.authenticate("dust-1", dustSecret ?? "")).toMatchObject({ ok: true });
    expect((await store.listSites()).map((s) => s.id)).toEqual(["amb-1", "cs-1"]);

    // parties: add with its site, then list and show.
    const party = ok(
      await cli([
        "parties",
        ...flags(),
        "add",
        "--name",
        "Beta Build Co.",
        "--credit-code",
        BETA,
        "--site",
        "cs-1",
        "--json",
      ]),
    );
    expect(JSON.parse(party)).toMatchObject({ party: { key: BETA }, sites: ["cs-1"] });
    expect(await store.sitesOfParty(BETA)).toEqual(["cs-1"]);
    expect((await store.getParty(BETA))?.name).toBe("Beta Build Co.");
    expect(ok(await cli(["parties", ...flags(), "list"]))).toMatch(
      new RegExp(`^${BETA}\\s+1 {2}Beta Build Co\\.\\n1 party\\n$`, "m"),
    );
    const shown = ok(await cli(["parties", ...flags(), "show", BETA]));
    expect(shown).toContain(`${BETA}  Beta Build Co.`);
    expect(shown).toContain("sites:                cs-1");

    // None of it in the data directory.
    expect(existsSync(join(dir, "registry.db"))).toBe(false);
  });

  it("refuses a database it cannot reach with exit 1 and citywatch <command>: …, writing nothing", async () => {
    const unreachable = ["--data-dir", dir, "--database-url", "postgres://127.0.0.1:1/x"];
    const runs = await Promise.all([
      cli(["sites", ...unreachable, ...SITE]),
      cli(["devices", ...unreachable, ...DEVICE]),
      cli(["parties", "--data-dir", dir, "add", "--name", "Beta", "--credit-code", BETA], {
        CITYWATCH_DATABASE_URL: "postgres://127.0.0.1:1/x",
      }),
    ]);
    for (const [command, run] of [
      ["sites", runs[0]],
      ["devices", runs[1]],
      ["parties", runs[2]],
    ] as const) {
      expect(run.status).toBe(1);
      expect(run.stdout).toBe("");
      expect(run.stderr).toMatch(
        new RegExp(
          `^citywatch ${command}: --database-url / --database-schema: .*127\\.0\\.0\\.1:1`,
        ),
      );
      expect(run.stderr).toContain("ECONNREFUSED");
    }
    // Nothing written: not even a registry.db in the data directory instead.
    expect(readdirSync(dir)).toEqual([]);
  });
});
