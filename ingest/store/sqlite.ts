import type { QualityFlag, SensorKind } from "../../contracts/index.js";
import { StoreUnavailableError } from "./types.js";
import type {
  AggregateBucket,
  AggregateQuery,
  Point,
  ReadingsQuery,
  StoredReading,
  TimeSeriesStore,
  WriteOutcome,
} from "./types.js";
import { openSqlite } from "../../infra/sqlite-file.js";

/**
 * The embedded time-series store: one SQLite table of readings, keyed like an InfluxDB series
 * point by (measurement, device, quality, time) — the InfluxDB series key, as quality is a tag —
 * so a re-sent reading overwrites itself and fields of the same point merge as in InfluxDB. Quantities are a
 * JSON object; aggregates use SQLite's math functions. For one machine and the quick start.
 */
export function createSqliteStore(file: string): TimeSeriesStore {
  // FULL: a commit is published to a device only after this write returns, so the write must
  // survive a power cut, not just a process crash.
  const db = openSqlite(file, { synchronous: "FULL" });
  db.exec(`CREATE TABLE IF NOT EXISTS readings (
      measurement TEXT NOT NULL,
      device TEXT NOT NULL,
      time_ms INTEGER NOT NULL,
      seq INTEGER NOT NULL,
      quality TEXT NOT NULL,
      site TEXT NOT NULL,
      district TEXT NOT NULL,
      grid_cell TEXT NOT NULL,
      zone TEXT,
      fields TEXT NOT NULL,
      PRIMARY KEY (measurement, device, quality, time_ms)
    ) WITHOUT ROWID`);
  const upsert = db.prepare(
    `INSERT INTO readings (measurement, device, time_ms, seq, quality, site, district, grid_cell, zone, fields)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (measurement, device, quality, time_ms) DO UPDATE SET
       seq = excluded.seq, quality = excluded.quality, site = excluded.site, district = excluded.district,
       grid_cell = excluded.grid_cell, zone = excluded.zone, fields = json_patch(readings.fields, excluded.fields)`,
  );
  const writeAll = db.transaction((points: readonly Point[]) => {
    for (const p of points) {
      upsert.run(
        p.measurement,
        p.tags.device,
        p.timeMs,
        p.seq,
        p.tags.quality,
        p.tags.site,
        p.tags.district,
        p.tags.grid_cell,
        p.tags.zone ?? null,
        JSON.stringify(p.fields),
      );
    }
  });

  type Row = { time_ms: number; quality: QualityFlag; seq: number; fields: string };
  const toReading = (r: Row): StoredReading => ({
    timeMs: r.time_ms,
    quality: r.quality,
    seq: r.seq,
    values: JSON.parse(r.fields) as Record<string, number | boolean>,
  });

  const readingsStmt = db.prepare(
    "SELECT time_ms, quality, seq, fields FROM readings WHERE measurement = ? AND device = ? AND time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT ?",
  );
  const latestStmt = db.prepare(
    "SELECT time_ms, quality, seq, fields FROM readings WHERE measurement = ? AND device = ? ORDER BY time_ms DESC LIMIT 1",
  );

  return {
    name: "sqlite",
    open: () => Promise.resolve(),
    write(points: readonly Point[]): Promise<WriteOutcome> {
      try {
        writeAll(points);
      } catch (error) {
        // Disk full, I/O error, locked: the store cannot take it now; the batch waits in the inbox.
        const raw = (error as { code?: unknown }).code;
        const code = typeof raw === "string" ? raw : "";
        if (/^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|PROTOCOL|NOMEM)/.test(code)) {
          return Promise.reject(
            new StoreUnavailableError(`embedded store: ${code}: ${(error as Error).message}`),
          );
        }
        throw error;
      }
      return Promise.resolve({ rejected: [] });
    },
    readings(q: ReadingsQuery): Promise<StoredReading[]> {
      return Promise.resolve(
        (readingsStmt.all(q.kind, q.deviceId, q.fromMs, q.toMs, q.limit) as Row[]).map(toReading),
      );
    },
    aggregate(q: AggregateQuery): Promise<AggregateBucket[]> {
      // JSON path of a quantity name: names are validated identifiers from contracts/sensors.ts.
      const path = `$."${q.quantity.replace(/"/g, "")}"`;
      const value = `json_extract(fields, '${path.replace(/'/g, "''")}')`;
      const expr =
        q.fn === "mean"
          ? `avg(${value})`
          : q.fn === "max"
            ? `max(${value})`
            : `10 * log10(avg(pow(10, ${value} / 10.0)))`;
      const rows = db
        .prepare(
          `SELECT (time_ms / ?) * ? AS bucket, ${expr} AS value
             FROM readings WHERE measurement = ? AND device = ? AND time_ms >= ? AND time_ms < ? AND ${value} IS NOT NULL
            GROUP BY bucket ORDER BY bucket`,
        )
        // BigInt binds as INTEGER, so the division truncates like GROUP BY time(); a JS number binds as REAL.
        .all(
          BigInt(q.intervalMs),
          BigInt(q.intervalMs),
          q.kind,
          q.deviceId,
          q.fromMs,
          q.toMs,
        ) as Array<{
        bucket: number | bigint;
        value: number | null;
      }>;
      const byBucket = new Map(rows.map((r) => [Number(r.bucket), r.value]));
      // Every bucket of the range, empty ones as null, like InfluxQL's fill(null).
      const buckets: AggregateBucket[] = [];
      for (
        let t = Math.floor(q.fromMs / q.intervalMs) * q.intervalMs;
        t < q.toMs;
        t += q.intervalMs
      ) {
        buckets.push({ timeMs: t, value: byBucket.get(t) ?? null });
      }
      return Promise.resolve(buckets);
    },
    latest(deviceId: string, kind: SensorKind): Promise<StoredReading | undefined> {
      const row = latestStmt.get(kind, deviceId) as Row | undefined;
      return Promise.resolve(row === undefined ? undefined : toReading(row));
    },
    ping: () => Promise.resolve(db.open),
    close(): Promise<void> {
      db.close();
      return Promise.resolve();
    },
  };
}
