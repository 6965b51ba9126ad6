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
import { aggregateBuckets, checkReadingsQuery, pointProblem } from "./checks.js";

/**
 * The embedded time-series store: one SQLite table of readings, keyed like an InfluxDB series
 * point by (measurement, device, quality, time) — the InfluxDB series key, as quality is a tag —
 * so a re-sent reading overwrites itself and fields of the same point merge as in InfluxDB. Quantities are a
 * JSON object; aggregates use SQLite's math functions. For one machine and the quick start.
 *
 * It refuses what InfluxDB refuses (checks.ts: NaN, a time or seq that is not a safe integer, an
 * aggregate of an on/off quantity...), so a deployment can move between the stores; what it takes
 * that InfluxDB does not (a field whose type changes, a tag line protocol cannot carry) is listed in
 * the capabilities of tests/integration/ingest/store/suite.ts.
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
    const rejected: Array<{ index: number; reason: string }> = [];
    for (const [index, p] of points.entries()) {
      const reason = pointProblem(p);
      if (reason !== undefined) {
        rejected.push({ index, reason });
        continue;
      }
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
    return rejected;
  });

  type Row = { time_ms: number; quality: QualityFlag; seq: number; fields: string };
  const toReading = (r: Row): StoredReading => ({
    timeMs: r.time_ms,
    quality: r.quality,
    seq: r.seq,
    values: JSON.parse(r.fields) as Record<string, number | boolean>,
  });

  // Rows as arrays (time_ms, quality, seq, fields), not objects: a range read is the backtest's
  // bulk read, and an object per row cost it about 0.7 µs of 2 per reading (bench/backtest.ts).
  const readingsStmt = db
    .prepare(
      "SELECT time_ms, quality, seq, fields FROM readings WHERE measurement = ? AND device = ? AND quality = ? AND time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT ?",
    )
    .raw(true);
  type RawRow = [number, QualityFlag, number, string];
  // Quality sits between device and time in the key, so a time order or range of a device's
  // readings is not one range of the key: SQLite scanned all of the device's readings for a latest
  // reading (5 ms at 30 days of one a minute) and for every chunk of an aggregate. A device's
  // readings carry few flags; each is found by one seek of the key (the next flag after the last),
  // and each flag's readings are a (quality, time) range (npm run bench -- query).
  const firstQualityStmt = db.prepare(
    "SELECT min(quality) AS quality FROM readings WHERE measurement = ? AND device = ?",
  );
  const nextQualityStmt = db.prepare(
    "SELECT min(quality) AS quality FROM readings WHERE measurement = ? AND device = ? AND quality > ?",
  );
  /** The quality flags among a device's readings, by seeks of the key (no scan). */
  const qualitiesOf = (kind: SensorKind, deviceId: string): string[] => {
    const found: string[] = [];
    type Found = { quality: string | null } | undefined;
    let quality = (firstQualityStmt.get(kind, deviceId) as Found)?.quality ?? null;
    while (quality !== null) {
      found.push(quality);
      quality = (nextQualityStmt.get(kind, deviceId, quality) as Found)?.quality ?? null;
    }
    return found;
  };
  const latestStmt = db.prepare(
    "SELECT time_ms, quality, seq, fields FROM readings WHERE measurement = ? AND device = ? AND quality = ? ORDER BY time_ms DESC LIMIT 1",
  );
  /** A device's newest reading: the newest of each of its quality flags' ranges. */
  const latestRow = (kind: SensorKind, deviceId: string): StoredReading | undefined => {
    let newest: Row | undefined;
    for (const quality of qualitiesOf(kind, deviceId)) {
      const row = latestStmt.get(kind, deviceId, quality) as Row | undefined;
      if (row !== undefined && (newest === undefined || row.time_ms > newest.time_ms)) newest = row;
    }
    return newest === undefined ? undefined : toReading(newest);
  };

  const closedError = () => new StoreUnavailableError("the embedded store is closed");
  /** Runs a read on the open file; a closed store answers as InfluxDB's does. */
  const read = <T>(run: () => T): Promise<T> => {
    if (!db.open) return Promise.reject(closedError());
    try {
      return Promise.resolve(run());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };

  return {
    name: "sqlite",
    open: () => (db.open ? Promise.resolve() : Promise.reject(closedError())),
    write(points: readonly Point[]): Promise<WriteOutcome> {
      if (!db.open) return Promise.reject(closedError());
      try {
        return Promise.resolve({ rejected: writeAll(points) });
      } catch (error) {
        // Disk full, I/O error, locked: the store cannot take it now; the batch waits in the inbox.
        const raw = (error as { code?: unknown }).code;
        const code = typeof raw === "string" ? raw : "";
        if (/^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|PROTOCOL|NOMEM)/.test(code)) {
          return Promise.reject(
            new StoreUnavailableError(`embedded store: ${code}: ${(error as Error).message}`),
          );
        }
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },
    readings(q: ReadingsQuery): Promise<StoredReading[]> {
      return read(() => {
        checkReadingsQuery(q);
        // Each quality flag's range of the key (as latest and aggregates), merged by time: a
        // range of a device's readings no longer scans and sorts its whole history (a month's
        // backtest read in 216 slices re-read every device's month each time).
        let rows: RawRow[] = [];
        const qualities = qualitiesOf(q.kind, q.deviceId);
        for (const quality of qualities) {
          const more = readingsStmt.all(
            q.kind,
            q.deviceId,
            quality,
            q.fromMs,
            q.toMs,
            q.limit,
          ) as RawRow[];
          rows = rows.length === 0 ? more : rows.concat(more);
        }
        if (qualities.length > 1) rows.sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : 1));
        if (rows.length > q.limit) rows.length = q.limit;
        const out = new Array<StoredReading>(rows.length);
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i] as RawRow;
          out[i] = {
            timeMs: r[0],
            quality: r[1],
            seq: r[2],
            values: JSON.parse(r[3]) as Record<string, number | boolean>,
          };
        }
        return out;
      });
    },
    aggregate(q: AggregateQuery): Promise<AggregateBucket[]> {
      return read(() => {
        // Every bucket of the range, empty ones as null, like InfluxQL's fill(null).
        const buckets = aggregateBuckets(q);
        if (buckets.length === 0) return buckets;
        // JSON path of a quantity name: aggregateBuckets allows only the kind's quantities.
        const value = `json_extract(fields, '$."${q.quantity}"')`;
        const expr =
          q.fn === "mean"
            ? `avg(${value})`
            : q.fn === "max"
              ? `max(${value})`
              : `10 * log10(avg(pow(10, ${value} / 10.0)))`;
        // Counted from the first bucket's start, which no reading in the range precedes, so the
        // integer division (BigInt binds as INTEGER; a JS number would bind as REAL) floors, as
        // GROUP BY time() does, for times before 1970 too.
        const first = BigInt(buckets[0]?.timeMs ?? 0);
        const interval = BigInt(q.intervalMs);
        const qualities = qualitiesOf(q.kind, q.deviceId);
        if (qualities.length === 0) return buckets;
        // avg and max skip the readings without the quantity (NULL), and a bucket of only such
        // readings answers NULL, as no bucket would: no `IS NOT NULL` test, which parsed each
        // reading's JSON a second time.
        const rows = db
          .prepare(
            `SELECT ? + ((time_ms - ?) / ?) * ? AS bucket, ${expr} AS value
               FROM readings WHERE measurement = ? AND device = ?
                AND quality IN (${qualities.map(() => "?").join(", ")}) AND time_ms >= ? AND time_ms < ?
              GROUP BY bucket ORDER BY bucket`,
          )
          .all(
            first,
            first,
            interval,
            interval,
            q.kind,
            q.deviceId,
            ...qualities,
            q.fromMs,
            q.toMs,
          ) as Array<{
          bucket: number | bigint;
          value: number | null;
        }>;
        const byBucket = new Map(rows.map((r) => [Number(r.bucket), r.value]));
        for (const bucket of buckets) bucket.value = byBucket.get(bucket.timeMs) ?? null;
        return buckets;
      });
    },
    latest(deviceId: string, kind: SensorKind): Promise<StoredReading | undefined> {
      return read(() => latestRow(kind, deviceId));
    },
    // Each device by the key, as `latest` (about 0.02 ms each at 30 days of one a minute).
    latestOf(kind: SensorKind, deviceIds: readonly string[]) {
      return read(() => {
        const out = new Map<string, StoredReading>();
        for (const id of deviceIds) {
          const reading = latestRow(kind, id);
          if (reading !== undefined) out.set(id, reading);
        }
        return out;
      });
    },
    ping: () => Promise.resolve(db.open),
    close(): Promise<void> {
      if (db.open) db.close();
      return Promise.resolve();
    },
  };
}
