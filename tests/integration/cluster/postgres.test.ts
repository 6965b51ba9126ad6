import type pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  migrate,
  migrationChecksum,
  MigrationRefusedError,
  MIGRATIONS_TABLE,
  type Migration,
} from "../../../infra/postgres/migrate.js";
import { openPostgres, PostgresConnectError } from "../../../infra/postgres/pool.js";
import { inTransaction, TransactionAbortedError } from "../../../infra/postgres/transaction.js";
import { CITYWATCH_MIGRATIONS } from "../../../infra/postgres/schema.js";
import {
  createTestSchema,
  freePort,
  providePostgres,
  postgresUrl,
  type TestSchema,
} from "../../support/services.js";
import { requireService } from "../../support/suite.js";

// infra/postgres: opening a pool, and the migration runner's rules (docs/cluster.md).
const postgres = await requireService("cluster: PostgreSQL pool and migrations", providePostgres);

describe("openPostgres without a server", () => {
  it("refuses a text that is not a URL without repeating it", async () => {
    const error = await openPostgres({ url: "postgres//admin:hunter2@db" }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/not a URL/);
    expect((error as Error).message).not.toContain("hunter2");
  });

  it("refuses another scheme", async () => {
    await expect(openPostgres({ url: "mysql://db/citywatch" })).rejects.toThrow(
      /must start with postgres:\/\//,
    );
  });

  it("refuses a schema name that would need quoting", async () => {
    await expect(
      openPostgres({ url: "postgres://127.0.0.1/x", schema: "Robert'); DROP" }),
    ).rejects.toThrow(/schema name/);
  });

  it("names the unreachable server, not the password, and does not crash", async () => {
    const port = await freePort();
    const error = await openPostgres({
      url: `postgres://citywatch:s3cret-pw@127.0.0.1:${port}/citywatch`,
    }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(PostgresConnectError);
    const message = (error as Error).message;
    expect(message).toContain(`127.0.0.1:${port}`);
    expect(message).toMatch(/ECONNREFUSED/);
    expect(message).not.toContain("s3cret-pw");
  });
});

describe.runIf(postgres)("PostgreSQL pool and migrations", () => {
  let schema: TestSchema;

  beforeEach(async () => {
    schema = await createTestSchema(postgresUrl(postgres));
  });
  afterEach(async () => {
    await schema.drop();
  });

  /** Whether `table` exists in the test's schema. */
  async function exists(pool: pg.Pool, table: string): Promise<boolean> {
    const { rows } = await pool.query<{ found: string | null }>(
      "SELECT to_regclass($1)::text AS found",
      [`${schema.name}.${table}`],
    );
    return rows[0]?.found !== null;
  }

  async function recorded(pool: pg.Pool): Promise<Array<{ version: number; checksum: string }>> {
    const { rows } = await pool.query<{ version: number; checksum: string }>(
      `SELECT version, checksum FROM ${MIGRATIONS_TABLE} ORDER BY version`,
    );
    return rows;
  }

  const m = (version: number, sql: string): Migration => ({
    version,
    name: `step ${version}`,
    sql,
  });
  const base = [
    m(1, "CREATE TABLE runs (version integer NOT NULL); INSERT INTO runs VALUES (1)"),
    // The sleep widens the window in which a second runner could wrongly apply this too.
    m(2, "SELECT pg_sleep(0.2); INSERT INTO runs VALUES (2)"),
    m(3, "CREATE TABLE third (id integer); INSERT INTO runs VALUES (3)"),
  ];

  it("confines a pool to its schema through search_path", async () => {
    const pool = await schema.pool();
    await pool.query("CREATE TABLE confined (id integer)");
    expect(await exists(pool, "confined")).toBe(true);
    const { rows } = await pool.query<{ path: string }>(
      "SELECT current_setting('search_path') AS path",
    );
    expect(rows[0]?.path).toBe(schema.name);

    const other = await createTestSchema(postgresUrl(postgres));
    try {
      const elsewhere = await other.pool();
      await expect(elsewhere.query("SELECT * FROM confined")).rejects.toThrow(/does not exist/);
    } finally {
      await other.drop();
    }
  });

  it("does not take a COMMIT that PostgreSQL turned into a ROLLBACK for a commit", async () => {
    const pool = await schema.pool();
    await pool.query("CREATE TABLE kept (id integer PRIMARY KEY)");
    // The work catches its failed statement and resolves; PostgreSQL had aborted the transaction.
    const done = inTransaction(pool, async (client) => {
      await client.query("INSERT INTO kept VALUES (1)");
      await client.query("INSERT INTO kept VALUES (1)").catch(() => undefined);
      return "done";
    });
    await expect(done).rejects.toBeInstanceOf(TransactionAbortedError);
    expect((await pool.query("SELECT * FROM kept")).rows).toEqual([]);
    // The connection went back to the pool usable.
    await expect(
      inTransaction(pool, (client) => client.query("INSERT INTO kept VALUES (2)")),
    ).resolves.toMatchObject({ rowCount: 1 });
  });

  it("says so when the schema does not exist", async () => {
    await expect(
      openPostgres({ url: postgresUrl(postgres), schema: `${schema.name}_missing` }),
    ).rejects.toThrow(new RegExp(`schema "${schema.name}_missing" does not exist`));
  });

  it("applies citywatch's migrations once; a second run applies nothing", async () => {
    const pool = await schema.pool();
    const first = await migrate(pool, CITYWATCH_MIGRATIONS);
    const newest = CITYWATCH_MIGRATIONS.at(-1)?.version;
    expect(first).toEqual({ applied: CITYWATCH_MIGRATIONS.map((x) => x.version), version: newest });
    for (const table of ["cluster_nodes", "partition_leases", "alarm_states"]) {
      expect(await exists(pool, table)).toBe(true);
    }

    const second = await migrate(pool, CITYWATCH_MIGRATIONS);
    expect(second).toEqual({ applied: [], version: newest });
    expect(await recorded(pool)).toEqual(
      CITYWATCH_MIGRATIONS.map((x) => ({ version: x.version, checksum: migrationChecksum(x) })),
    );
  });

  it("applies only the migrations the code added since", async () => {
    const pool = await schema.pool();
    expect(await migrate(pool, base.slice(0, 2))).toEqual({ applied: [1, 2], version: 2 });
    expect(await migrate(pool, base)).toEqual({ applied: [3], version: 3 });
    const { rows } = await pool.query<{ version: number }>("SELECT version FROM runs ORDER BY 1");
    expect(rows.map((r) => r.version)).toEqual([1, 2, 3]);
  });

  it("refuses a database newer than the code and changes nothing", async () => {
    const pool = await schema.pool();
    await migrate(pool, base);
    const error = await migrate(pool, base.slice(0, 2)).catch((e: Error) => e);
    expect(error).toBeInstanceOf(MigrationRefusedError);
    expect((error as MigrationRefusedError).reason).toBe("newer-database");
    expect((error as Error).message).toBe(
      "the database is at version 3, this citywatch knows up to 2: upgrade citywatch",
    );
    expect((await recorded(pool)).map((r) => r.version)).toEqual([1, 2, 3]);
  });

  it("refuses an applied migration whose SQL was edited since", async () => {
    const pool = await schema.pool();
    await migrate(pool, base);
    const edited = [base[0]!, m(2, "SELECT pg_sleep(0.2); INSERT INTO runs VALUES (22)"), base[2]!];
    const error = await migrate(pool, edited).catch((e: Error) => e);
    expect(error).toBeInstanceOf(MigrationRefusedError);
    expect((error as MigrationRefusedError).reason).toBe("checksum-mismatch");
    expect((error as Error).message).toMatch(/^migration 2 \(step 2\) was applied with other SQL/);
  });

  it("refuses a migration inserted below the database's version", async () => {
    const pool = await schema.pool();
    await migrate(pool, [base[0]!, base[2]!]);
    const error = await migrate(pool, base).catch((e: Error) => e);
    expect((error as MigrationRefusedError).reason).toBe("out-of-order");
    expect(await exists(pool, "third")).toBe(true);
  });

  it("rolls back a failing migration alone, keeping those before it", async () => {
    const pool = await schema.pool();
    const broken = m(2, "CREATE TABLE half (id integer); SELECT no_such_column FROM half");
    await expect(migrate(pool, [base[0]!, broken])).rejects.toThrow(
      /^migration 2 \(step 2\) failed and was rolled back: column "no_such_column" does not exist/,
    );
    expect((await recorded(pool)).map((r) => r.version)).toEqual([1]);
    expect(await exists(pool, "half")).toBe(false);
    // The pool is still usable, and the fixed list goes on from version 1.
    expect(await migrate(pool, base)).toEqual({ applied: [2, 3], version: 3 });
  });

  it("applies each migration exactly once when three nodes migrate at the same moment", async () => {
    const pools = await Promise.all([schema.pool(), schema.pool(), schema.pool()]);
    const results = await Promise.all(pools.map((pool) => migrate(pool, base)));

    expect(results.flatMap((r) => r.applied).sort()).toEqual([1, 2, 3]);
    expect(results.map((r) => r.version)).toEqual([3, 3, 3]);
    const { rows } = await pools[0].query<{ version: number }>(
      "SELECT version FROM runs ORDER BY 1",
    );
    expect(rows.map((r) => r.version)).toEqual([1, 2, 3]);
    expect((await recorded(pools[0])).map((r) => r.version)).toEqual([1, 2, 3]);
  });

  it("rejects a list whose versions do not increase, before touching the database", async () => {
    const pool = await schema.pool();
    await expect(migrate(pool, [base[1]!, base[0]!])).rejects.toThrow(/must strictly increase/);
    expect(await exists(pool, MIGRATIONS_TABLE)).toBe(false);
  });
});
