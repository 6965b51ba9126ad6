import { createHash } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import { z } from "zod";

/*
 * Versioned migrations for PostgreSQL, run by every node on start (issue #21). The list lives in
 * code; the database records in `citywatch_schema_migrations` which versions it has, with the
 * checksum of the SQL that made them. The rules:
 *
 * - Versions only grow, and a migration once released never changes: the runner refuses a
 *   database whose recorded checksum differs from the code's, because it could not say what the
 *   schema then is. A fix is a new migration.
 * - A database newer than the code (a node not yet upgraded) is refused, not half-used.
 * - Several nodes starting at once take turns: the whole run holds a PostgreSQL advisory lock
 *   (one per schema), so each migration is applied exactly once and a node that waited finds the
 *   work done.
 * - Each migration runs in its own transaction with its row in the table: it is applied whole or
 *   not at all, and a failure leaves the versions before it applied.
 */

export interface Migration {
  /** Positive, strictly increasing along the list. */
  readonly version: number;
  /** Short description, recorded with the version. */
  readonly name: string;
  /** One or more statements, run as one transaction. */
  readonly sql: string;
}

export interface MigrationResult {
  /** Versions this run applied, in order (empty when the database was up to date). */
  readonly applied: readonly number[];
  /** The database's version after the run. */
  readonly version: number;
}

export type MigrationRefusal =
  "newer-database" | "checksum-mismatch" | "unknown-version" | "out-of-order";

/** The database and the code disagree about the schema; nothing was applied. */
export class MigrationRefusedError extends Error {
  override readonly name = "MigrationRefusedError";
  constructor(
    readonly reason: MigrationRefusal,
    message: string,
  ) {
    super(message);
  }
}

export const MIGRATIONS_TABLE = "citywatch_schema_migrations";

/**
 * The advisory lock's first key, so that citywatch's lock cannot collide with another program's on
 * the same database ("cw" in ASCII); the second key is a hash of the schema name.
 */
const LOCK_NAMESPACE = 0x6377;

const migrationListSchema = z
  .array(
    z.object({
      version: z.number().int().positive(),
      name: z.string().min(1),
      sql: z.string().min(1),
    }),
  )
  .superRefine((list, ctx) => {
    for (let i = 1; i < list.length; i++) {
      const [before, after] = [list[i - 1]?.version ?? 0, list[i]?.version ?? 0];
      if (after <= before) {
        ctx.addIssue({
          code: "custom",
          message: `version ${after} follows ${before}: versions must strictly increase`,
          path: [i, "version"],
        });
      }
    }
  });

/** SHA-256 of the migration's SQL, hex: what the database records to notice an edited migration. */
export function migrationChecksum(migration: Pick<Migration, "sql">): string {
  return createHash("sha256").update(migration.sql, "utf8").digest("hex");
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

/** Bring the pool's schema up to the last of `migrations`, or refuse (see the rules above). */
export async function migrate(
  pool: pg.Pool,
  migrations: readonly Migration[],
  log?: Logger,
): Promise<MigrationResult> {
  const checked = migrationListSchema.safeParse(migrations);
  if (!checked.success) throw new Error(`migration list: ${z.prettifyError(checked.error)}`);

  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    // A session lock, not a transaction one: it must outlast the transaction of each migration.
    // It goes away with the connection if this process dies holding it.
    await client.query("SELECT pg_advisory_lock($1, hashtext(coalesce(current_schema(), '')))", [
      LOCK_NAMESPACE,
    ]);
    try {
      return await migrateLocked(client, migrations, log);
    } finally {
      await client.query(
        "SELECT pg_advisory_unlock($1, hashtext(coalesce(current_schema(), '')))",
        [LOCK_NAMESPACE],
      );
    }
  } catch (err) {
    // A connection that failed part-way may still hold the lock or an open transaction: it is
    // closed instead of going back to the pool.
    failure = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    client.release(failure);
  }
}

async function migrateLocked(
  client: pg.PoolClient,
  migrations: readonly Migration[],
  log: Logger | undefined,
): Promise<MigrationResult> {
  // Created under the lock: two sessions running CREATE TABLE IF NOT EXISTS at once can still
  // collide on the catalog's unique index.
  await client.query(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const { rows } = await client.query<AppliedRow>(
    `SELECT version, name, checksum FROM ${MIGRATIONS_TABLE} ORDER BY version`,
  );
  refuseMismatch(rows, migrations);

  const done = new Set(rows.map((r) => r.version));
  const applied: number[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    await client.query("BEGIN");
    try {
      await client.query(migration.sql);
      await client.query(
        `INSERT INTO ${MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)`,
        [migration.version, migration.name, migrationChecksum(migration)],
      );
      await client.query("COMMIT");
    } catch (err) {
      // A failed ROLLBACK means a broken connection, which is closed on release anyway.
      await client.query("ROLLBACK").catch(() => undefined);
      throw new Error(
        `migration ${migration.version} (${migration.name}) failed and was rolled back: ${
          err instanceof Error ? err.message : String(err)
        }`,
        { cause: err },
      );
    }
    applied.push(migration.version);
    log?.info({ version: migration.version, name: migration.name }, "PostgreSQL migration applied");
  }
  const version = Math.max(0, ...rows.map((r) => r.version), ...applied);
  return { applied, version };
}

/** Throws unless every recorded version is one the code has, with the same SQL. */
function refuseMismatch(rows: readonly AppliedRow[], migrations: readonly Migration[]): void {
  const known = new Map(migrations.map((m) => [m.version, m]));
  const newest = migrations.at(-1)?.version ?? 0;
  const databaseVersion = Math.max(0, ...rows.map((r) => r.version));
  if (databaseVersion > newest) {
    throw new MigrationRefusedError(
      "newer-database",
      `the database is at version ${databaseVersion}, this citywatch knows up to ${newest}: upgrade citywatch`,
    );
  }
  for (const row of rows) {
    const migration = known.get(row.version);
    if (migration === undefined) {
      throw new MigrationRefusedError(
        "unknown-version",
        `the database has migration ${row.version} (${row.name}), which this citywatch does not know: ` +
          "migrations were removed or renumbered in the code",
      );
    }
    if (migrationChecksum(migration) !== row.checksum) {
      throw new MigrationRefusedError(
        "checksum-mismatch",
        `migration ${row.version} (${row.name}) was applied with other SQL than this citywatch has ` +
          "(checksum differs): a released migration must not be edited; add a new one",
      );
    }
  }
  // Versions the code has below the database's newest were inserted after it was migrated: applying
  // them now would run them out of order.
  const skipped = migrations.filter(
    (m) => m.version < databaseVersion && !rows.some((r) => r.version === m.version),
  );
  if (skipped.length > 0) {
    throw new MigrationRefusedError(
      "out-of-order",
      `migration ${skipped.map((m) => m.version).join(", ")} is older than the database's version ` +
        `${databaseVersion} but was never applied: new migrations go at the end of the list`,
    );
  }
}
