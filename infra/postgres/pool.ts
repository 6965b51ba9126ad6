import pg from "pg";
import type { Logger } from "pino";
import { z } from "zod";

/*
 * How citywatch opens PostgreSQL (issue #21): one `pg` pool per process, from a postgres:// URL,
 * optionally confined to one schema. The pool is checked once on open, so a wrong URL, a server
 * that does not answer or a missing schema is one clear error at start instead of a failure at the
 * first query deep inside a store.
 */

/** A schema name that needs no quoting, in SQL or in the `options` connection parameter. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const openOptionsSchema = z.object({
  url: z.string().min(1),
  schema: z
    .string()
    .regex(SCHEMA_NAME, "a schema name is lower-case letters, digits and _ (at most 63)")
    .optional(),
  applicationName: z.string().max(63).optional(),
  max: z.number().int().min(1).optional(),
  connectTimeoutMs: z.number().int().min(1).optional(),
});

export interface OpenPostgresOptions {
  /** postgres:// or postgresql:// URL; query parameters (sslmode, options, …) are kept. */
  readonly url: string;
  /**
   * Every connection of the pool gets `search_path` set to this schema (and only this one), so
   * unqualified table names resolve there: several citywatch deployments, or tests, can share one
   * database. The schema must exist. Without it the server's search_path applies (`public`).
   */
  readonly schema?: string;
  /** Shown in pg_stat_activity (default "citywatch"). */
  readonly applicationName?: string;
  /** Connections at most (pg's default: 10). */
  readonly max?: number;
  /** How long a new connection may take before it fails (default 5 s; pg's own default waits forever). */
  readonly connectTimeoutMs?: number;
  /** Errors of idle connections (a restarted server, say) are logged here; the pool replaces them. */
  readonly log?: Logger;
}

/** The database could not be reached or refused us; the message names the server, never the password. */
export class PostgresConnectError extends Error {
  override readonly name = "PostgresConnectError";
}

/** `url` as it may be shown: the password replaced by `***`. An unparseable URL yields a placeholder. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(unparseable URL)";
  }
  if (parsed.password !== "") parsed.password = "***";
  return parsed.toString();
}

/** Open a pool and check that it reaches the server (and the schema, when one is given). */
export async function openPostgres(options: OpenPostgresOptions): Promise<pg.Pool> {
  const { log, ...rest } = options;
  const checked = openOptionsSchema.safeParse(rest);
  if (!checked.success) {
    throw new Error(`PostgreSQL options: ${z.prettifyError(checked.error)}`);
  }
  const config = poolConfig(checked.data);
  const shown = redactUrl(options.url);
  const pool = new pg.Pool(config);
  // An idle connection that the server closes emits 'error' on the pool; without a listener
  // Node would end the process. The pool drops that connection and opens another when needed.
  pool.on("error", (err) => {
    log?.warn({ err: err.message, database: shown }, "PostgreSQL connection lost while idle");
  });

  try {
    const { rows } = await pool.query<{ schema: string | null }>(
      "SELECT current_schema() AS schema",
    );
    if (checked.data.schema !== undefined && rows[0]?.schema !== checked.data.schema) {
      throw new PostgresConnectError(
        `schema "${checked.data.schema}" does not exist in the database of ${shown}`,
      );
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (err instanceof PostgresConnectError) throw err;
    throw new PostgresConnectError(`cannot use PostgreSQL at ${shown}: ${describe(err)}`, {
      cause: err,
    });
  }
  return pool;
}

function poolConfig(options: z.infer<typeof openOptionsSchema>): pg.PoolConfig {
  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    // The text itself is not repeated: it may hold a password.
    throw new Error(
      "the PostgreSQL URL is not a URL (expected postgres://user[:password]@host[:port]/database)",
    );
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(
      `the PostgreSQL URL must start with postgres:// or postgresql:// (got ${parsed.protocol}//)`,
    );
  }
  if (parsed.hostname === "") {
    throw new Error(`the PostgreSQL URL ${redactUrl(options.url)} names no host`);
  }
  // pg lets the URL's own parameters override the config object, so an `options` parameter in the
  // URL would silently drop the search_path: take it out and send both together.
  const serverOptions = [parsed.searchParams.get("options") ?? ""];
  parsed.searchParams.delete("options");
  if (options.schema !== undefined) serverOptions.push(`-c search_path=${options.schema}`);
  const joined = serverOptions.filter((o) => o !== "").join(" ");
  return {
    connectionString: parsed.toString(),
    ...(joined === "" ? {} : { options: joined }),
    application_name: options.applicationName ?? "citywatch",
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    // A server that vanished without closing the socket (a dead host, a cut cable) is noticed.
    keepAlive: true,
    ...(options.max === undefined ? {} : { max: options.max }),
  };
}

/** pg's connection errors ("connect ECONNREFUSED 127.0.0.1:5433") and the server's own messages. */
function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    // Node tries every address of a name (::1 and 127.0.0.1 for localhost) and reports them all.
    return err.errors.map(describe).join("; ");
  }
  if (err instanceof Error) return err.message === "" ? err.name : err.message;
  return String(err);
}

/**
 * One statement on a connection of its own, closed after (creating or dropping a schema before a
 * pool can be confined to it: tests and benches).
 */
export async function queryOnce(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
