import { randomBytes } from "node:crypto";
import pg from "pg";
import { openPostgres, queryOnce as adminQuery } from "../../infra/postgres/pool.js";
import { migrate } from "../../infra/postgres/migrate.js";
import { CITYWATCH_MIGRATIONS } from "../../infra/postgres/schema.js";
import type { Provided, ServiceHandle } from "./provide.js";

/*
 * PostgreSQL for suites. Unlike the other services it is not started per run: a test isolates
 * itself in a schema of its own (createTestSchema) instead of a server of its own, so the server
 * already running on the machine is safe to share. In order: CITYWATCH_TEST_POSTGRES_URL, then the
 * machine's server at its standard address; otherwise the suite is skipped (or fails, with
 * CITYWATCH_REQUIRE_SERVICES=1: see suite.ts).
 */

export const POSTGRES_URL_VARIABLE = "CITYWATCH_TEST_POSTGRES_URL";
export const LOCAL_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export async function providePostgres(): Promise<Provided> {
  const fromEnv = process.env[POSTGRES_URL_VARIABLE];
  if (fromEnv !== undefined && fromEnv !== "") {
    const protocol = URL.canParse(fromEnv) ? new URL(fromEnv).protocol : "";
    if (protocol !== "postgres:" && protocol !== "postgresql:") {
      throw new Error(`${POSTGRES_URL_VARIABLE}: expected a postgres:// or postgresql:// URL`);
    }
    // A URL given on purpose that does not answer is a broken setup, not a reason to skip.
    const failure = await probe(fromEnv);
    if (failure !== undefined) throw new Error(`${POSTGRES_URL_VARIABLE}: ${failure}`);
    return { ok: true, service: runningServer(fromEnv, "env") };
  }
  const failure = await probe(LOCAL_POSTGRES_URL);
  if (failure === undefined) {
    return { ok: true, service: runningServer(LOCAL_POSTGRES_URL, "running-server") };
  }
  return {
    ok: false,
    reason:
      `PostgreSQL unavailable: nothing answers at ${LOCAL_POSTGRES_URL} (${failure}); ` +
      `set ${POSTGRES_URL_VARIABLE} or start a server (apt-get install -y postgresql)`,
  };
}

/** The URL of the server a `describe.runIf(service)` suite runs with. */
export function postgresUrl(service: ServiceHandle | undefined): string {
  // describe.runIf does not narrow the type inside the suite.
  if (service === undefined) throw new Error("suite ran without PostgreSQL");
  return service.url;
}

/** undefined when `SELECT 1` works at `url`, else why not. */
async function probe(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  // A connection failure also emits 'error' on the client; the rejected connect() reports it.
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message || err.name : String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function runningServer(url: string, source: "env" | "running-server"): ServiceHandle {
  return { url, source, stop: () => Promise.resolve() };
}

export interface TestSchema {
  /** Random, e.g. citywatch_test_4f1c2a9be07d. */
  readonly name: string;
  /** A pool confined to the schema (openPostgres); drop() ends it if the test did not. */
  pool(max?: number): Promise<pg.Pool>;
  /** Ends the schema's pools, then DROP SCHEMA … CASCADE; idempotent. */
  drop(): Promise<void>;
}

/** A fresh schema for one test; drop it in afterEach (everything in it goes with it). */
export async function createTestSchema(url: string): Promise<TestSchema> {
  const name = `citywatch_test_${randomBytes(6).toString("hex")}`;
  await adminQuery(url, `CREATE SCHEMA ${name}`);
  const pools: pg.Pool[] = [];
  let dropped: Promise<void> | undefined;
  const drop = async (): Promise<void> => {
    // A test may have ended a pool itself (a simulated crash); ending it twice rejects.
    await Promise.all(pools.filter((pool) => !pool.ended).map((pool) => pool.end()));
    await adminQuery(url, `DROP SCHEMA IF EXISTS ${name} CASCADE`);
  };
  return {
    name,
    pool: async (max = 4) => {
      const pool = await openPostgres({ url, schema: name, max, applicationName: name });
      pools.push(pool);
      return pool;
    },
    drop: () => (dropped ??= drop()),
  };
}

/**
 * A fresh schema migrated to CITYWATCH_MIGRATIONS and a pool on it: what a store suite opens a
 * store on. The schema is dropped if the migration fails.
 */
export async function createMigratedSchema(
  url: string,
  max = 4,
): Promise<{ schema: TestSchema; pool: pg.Pool }> {
  const schema = await createTestSchema(url);
  try {
    const pool = await schema.pool(max);
    await migrate(pool, CITYWATCH_MIGRATIONS);
    return { schema, pool };
  } catch (error) {
    await schema.drop();
    throw error;
  }
}

/**
 * A fresh schema migrated to CITYWATCH_MIGRATIONS, with `partition` leased to node-a under
 * `token` for ever: what a store's fenced writes need, without a lease keeper.
 */
export async function createLeasedSchema(
  url: string,
  partition: number,
  token: number,
): Promise<{ schema: TestSchema; admin: pg.Pool }> {
  const { schema, pool: admin } = await createMigratedSchema(url);
  await admin.query(
    `INSERT INTO partition_leases (partition, owner, token, acquired_at, expires_at)
     VALUES ($1, 'node-a', $2, now(), 'infinity')`,
    [partition, token],
  );
  return { schema, admin };
}

/**
 * Count every query made on `pool`'s connections from now on: each connection is wrapped the
 * first time it is handed out (the pool's own `query` takes one too).
 */
export function countQueries(pool: pg.Pool): {
  readonly count: () => number;
  readonly stop: () => void;
} {
  let count = 0;
  let counting = true;
  const wrapped = new WeakSet<pg.PoolClient>();
  const wrap = (client: pg.PoolClient) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args) => {
      if (counting) count++;
      return query(...args);
    };
  };
  pool.on("acquire", wrap);
  return {
    count: () => count,
    stop: () => {
      counting = false;
      pool.off("acquire", wrap);
    },
  };
}
