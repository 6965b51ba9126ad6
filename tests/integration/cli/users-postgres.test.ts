import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PostgresTokenStore } from "../../../tasks/auth/store-postgres.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  createTestSchema,
  postgresUrl,
  providePostgres,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/*
 * `citywatch users` and `citywatch tokens` on a cluster's shared PostgreSQL (issue #21):
 * --database-url / CITYWATCH_DATABASE_URL and the schema; the database is migrated first; what
 * they write is what every node's API authenticates with, and nothing lands in the data
 * directory.
 */

const postgres = await requireService("citywatch users/tokens on PostgreSQL", providePostgres);

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}, stdin = ""): Promise<Run> {
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
    child.stdin.end(stdin);
  });
}

describe.runIf(postgres)("citywatch users and tokens on the shared database", () => {
  let schema: TestSchema;
  let dir: string;
  let url: string;

  beforeEach(async () => {
    url = postgresUrl(postgres);
    schema = await createTestSchema(url);
    dir = await makeTempDir("cw-users-pg-");
  });
  afterEach(async () => {
    await schema.drop();
    await removeTempDir(dir);
  });

  const flags = () => ["--data-dir", dir, "--database-url", url, "--database-schema", schema.name];

  it("adds a user and a token there, which the shared store then authenticates", async () => {
    const added = await cli(
      [
        "users",
        ...flags(),
        "add",
        "li.na",
        "--name",
        "Li Na",
        "--role",
        "enforcement",
        "--city-wide",
        "--password-stdin",
      ],
      {},
      "a long enough password 2026\n",
    );
    expect(added.stderr).toBe("");
    expect(added.status).toBe(0);
    const token = await cli([
      "tokens",
      ...flags(),
      "add",
      "--role",
      "enforcement",
      "--name",
      "li-na-app",
      "--user",
      "li.na",
      "--json",
    ]);
    expect(token.stderr).toBe("");
    expect(token.status).toBe(0);
    const issued = JSON.parse(token.stdout) as { token: string; id: string };

    const pool: pg.Pool = await schema.pool(2);
    const store = new PostgresTokenStore(pool);
    expect((await store.authenticate(issued.token))?.userId).toBe("li.na");
    expect((await store.users.checkPassword("li.na", "a long enough password 2026"))?.name).toBe(
      "Li Na",
    );
    // Nothing of it in the data directory.
    expect(existsSync(join(dir, "tokens.db"))).toBe(false);

    // Through the environment instead of flags; the revocation is seen by the store.
    const revoked = await cli(["tokens", "--data-dir", dir, "revoke", issued.id], {
      CITYWATCH_DATABASE_URL: url,
      CITYWATCH_DATABASE_SCHEMA: schema.name,
    });
    expect(revoked.stderr).toBe("");
    expect(revoked.status).toBe(0);
    expect(await store.authenticate(issued.token)).toBeUndefined();
    const listed = await cli(["users", ...flags(), "list", "--json"]);
    expect((JSON.parse(listed.stdout) as Array<{ id: string }>).map((u) => u.id)).toEqual([
      "li.na",
    ]);
  });

  it("refuses a database it cannot use with exit 1 and a message naming the flag, and a user problem as before", async () => {
    const bad = await cli(["users", "--data-dir", dir, "--database-url", "mysql://x", "list"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("--database-url");
    const missing = await cli([
      "tokens",
      ...flags().slice(0, 4),
      "--database-schema",
      "no_such_schema_here",
      "list",
    ]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('schema "no_such_schema_here" does not exist');
    const unknown = await cli(["users", ...flags(), "disable", "nobody"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^citywatch users: .*nobody/);
  });
});
