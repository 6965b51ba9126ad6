import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { lateBound, scrapedGauge } from "../infra/metrics.js";

/** The ingest's Prometheus metrics, on a registry of its own. */
export function ingestMetrics(registry: Registry = new Registry()) {
  const { read, observe } = lateBound({
    inbox: (): number => 0,
    storeUp: (): number => 1,
    deadLetterBytes: (): number => 0,
  });
  return {
    registry,
    /** Where the gauges read their values at scrape time. */
    observe,
    messagesReceived: new Counter({
      name: "citywatch_ingest_messages_received_total",
      help: "Uplink messages received (written to the inbox).",
      registers: [registry],
    }),
    readingsReceived: new Counter({
      name: "citywatch_ingest_readings_received_total",
      help: "Readings in valid messages.",
      registers: [registry],
    }),
    readingsStored: new Counter({
      name: "citywatch_ingest_readings_stored_total",
      help: "Readings the time-series store acknowledged.",
      registers: [registry],
    }),
    latestLookups: new Counter({
      name: "citywatch_store_latest_lookups_total",
      help: "Devices whose newest reading was asked (API latest queries): answered from the ingest's last-value cache (hit) or by the time-series store (miss).",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    duplicates: new Counter({
      name: "citywatch_ingest_duplicate_messages_total",
      help: "Messages whose (device, seq) was already handled; not stored again.",
      registers: [registry],
    }),
    deadLettered: new Counter({
      name: "citywatch_ingest_dead_letters_total",
      help: "Messages (or readings, for store rejections) kept as dead letters, by reason.",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    deadLetterBytes: scrapedGauge(
      registry,
      {
        name: "citywatch_ingest_dead_letter_bytes",
        help: "Bytes of raw payload and detail the dead letters hold (bounded by ingest.deadLetters.maxBytes).",
      },
      () => read.deadLetterBytes(),
    ),
    deadLettersPruned: new Counter({
      name: "citywatch_ingest_dead_letters_pruned_total",
      help: "Dead letters deleted to keep within ingest.deadLetters, by why (age, bytes).",
      labelNames: ["why"] as const,
      registers: [registry],
    }),
    inboxDepth: scrapedGauge(
      registry,
      {
        name: "citywatch_ingest_inbox_depth",
        help: "Messages in the durable inbox (received, not yet stored or dead-lettered).",
      },
      () => read.inbox(),
    ),
    inboxFullWaits: new Counter({
      name: "citywatch_ingest_inbox_full_waits_total",
      help: "Times a message waited for room in the full inbox (PUBACK withheld).",
      registers: [registry],
    }),
    walReclaims: new Counter({
      name: "citywatch_ingest_wal_reclaims_total",
      help: "Times free space under twice the disk reserve made the ingest truncate its state file's WAL.",
      registers: [registry],
    }),
    storeUp: scrapedGauge(
      registry,
      {
        name: "citywatch_ingest_store_up",
        help: "1 when the last store write succeeded, 0 while the store is unavailable.",
      },
      () => read.storeUp(),
    ),
    storeLatency: new Histogram({
      name: "citywatch_ingest_store_write_seconds",
      help: "Time of successful store writes (one batch).",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: "citywatch_ingest_store_errors_total",
      help: "Store writes that failed and will be retried.",
      registers: [registry],
    }),
    commitsPublished: new Counter({
      name: "citywatch_ingest_commits_published_total",
      help: "Commit messages published to devices.",
      registers: [registry],
    }),
    commitLag: new Gauge({
      name: "citywatch_ingest_commit_lag_messages",
      help: "Per device: highest seq received minus the committed seq.",
      labelNames: ["device"] as const,
      registers: [registry],
    }),
  };
}

export type IngestMetrics = ReturnType<typeof ingestMetrics>;
