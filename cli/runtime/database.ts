import { join } from "node:path";
import type { Command } from "commander";
import type pg from "pg";
import type { Logger } from "pino";
import { asyncTokenStore, type AsyncTokenStore } from "../../tasks/auth/store-port.js";
import { PostgresTokenStore } from "../../tasks/auth/store-postgres.js";
import { TokenStore } from "../../tasks/auth/tokens.js";
import { loadCitywatchConfig } from "./config.js";
import { migrate } from "../../infra/postgres/migrate.js";
import { openPostgres } from "../../infra/postgres/pool.js";
import { CITYWATCH_MIGRATIONS } from "../../infra/postgres/schema.js";

/*
 * The shared database of a cluster (docs/cluster.md): `--database-url` or CITYWATCH_DATABASE_URL
 * names it, `--database-schema` or CITYWATCH_DATABASE_SCHEMA the schema within it (default: the
 * server's search_path). Absent: the embedded files of the data directory, as ever. A command
 * that opens it brings the schema to the code's migration first (versioned, idempotent, refused
 * with a clear error when the database is newer than the code), as a node does on start.
 */

export const DATABASE_URL_VARIABLE = "CITYWATCH_DATABASE_URL";
export const DATABASE_SCHEMA_VARIABLE = "CITYWATCH_DATABASE_SCHEMA";

export interface DatabaseFlags {
  databaseUrl?: string;
  databaseSchema?: string;
}

/** Adds the two options to a command. */
export function withDatabaseOptions(command: Command): Command {
  return command
    .option(
      "--database-url <url>",
      `the cluster's shared PostgreSQL (postgres://…; default $${DATABASE_URL_VARIABLE}); absent: the data directory's files`,
    )
    .option(
      "--database-schema <name>",
      `the schema within it (default $${DATABASE_SCHEMA_VARIABLE}, else the server's search_path)`,
    );
}

/** The database named by the flags or the environment, or undefined (the embedded files). */
export function databaseOf(
  flags: DatabaseFlags,
  env: NodeJS.ProcessEnv = process.env,
): { url: string; schema?: string } | undefined {
  const url = flags.databaseUrl ?? nonEmpty(env[DATABASE_URL_VARIABLE]);
  if (url === undefined) return undefined;
  const schema = flags.databaseSchema ?? nonEmpty(env[DATABASE_SCHEMA_VARIABLE]);
  return schema === undefined ? { url } : { url, schema };
}

const nonEmpty = (value: string | undefined) =>
  value === undefined || value === "" ? undefined : value;

/** A problem with the shared database, said as the command's user needs it (exit 1). */
export class DatabaseError extends Error {}

/**
 * A small pool on the shared database, migrated: what a one-off command (users, tokens) works
 * on. The caller ends it.
 */
export async function openSharedDatabase(
  database: { url: string; schema?: string },
  pool: { max: number; applicationName: string; log?: Logger } = {
    max: 2,
    applicationName: "citywatch-cli",
  },
): Promise<pg.Pool> {
  let opened: pg.Pool;
  try {
    opened = await openPostgres({ ...database, ...pool });
  } catch (error) {
    throw new DatabaseError(`--database-url / --database-schema: ${(error as Error).message}`);
  }
  try {
    await migrate(opened, CITYWATCH_MIGRATIONS, pool.log);
    return opened;
  } catch (error) {
    await opened.end();
    throw new DatabaseError(`the shared database: ${(error as Error).message}`);
  }
}

/**
 * Users, sessions and API tokens where the command's flags say: the shared database's, or the
 * data directory's tokens.db. `close` ends what was opened.
 */
export async function openTokenStore(
  flags: DatabaseFlags & { config?: string; dataDir?: string },
): Promise<{ readonly store: AsyncTokenStore; close(): Promise<void> }> {
  const database = databaseOf(flags);
  if (database === undefined) {
    const config = loadCitywatchConfig(flags);
    const store = asyncTokenStore(new TokenStore(join(config.dataDir, "tokens.db")));
    return { store, close: () => store.close() };
  }
  const pool = await openSharedDatabase(database);
  const store = new PostgresTokenStore(pool);
  return {
    store,
    close: async () => {
      await store.close();
      await pool.end();
    },
  };
}

/**
 * Run a command's action on `openTokenStore`'s store, closed after; a database problem, or an
 * error `expected` says is the user's (a bad name, a weak password), is printed as
 * `citywatch <command>: <message>` and exits 1.
 */
export async function withTokenStore(
  command: string,
  flags: DatabaseFlags & { config?: string; dataDir?: string },
  expected: (error: unknown) => boolean,
  action: (tokens: AsyncTokenStore) => Promise<void>,
): Promise<void> {
  const refuse = (error: Error) => {
    process.stderr.write(`citywatch ${command}: ${error.message}\n`);
    process.exitCode = 1;
  };
  let opened: Awaited<ReturnType<typeof openTokenStore>>;
  try {
    opened = await openTokenStore(flags);
  } catch (error) {
    if (!(error instanceof DatabaseError)) throw error;
    return refuse(error);
  }
  try {
    await action(opened.store);
  } catch (error) {
    if (!expected(error)) throw error;
    refuse(error as Error);
  } finally {
    await opened.close();
  }
}
