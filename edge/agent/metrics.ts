import { Registry } from "prom-client";
import { scrapedGauge, scrapedLabelledGauge } from "../../infra/metrics.js";
import type { AgentStats } from "./agent.js";

/**
 * The agent's Prometheus metrics, read from `stats()` when scraped (the agent keeps its own
 * counters; nothing is counted twice). Served on `http.port` by `citywatch edge` when set.
 */
const SHARE_MS = 1_000;

export function edgeMetrics(read: () => AgentStats): Registry {
  const registry = new Registry();
  let current: { at: number; stats: AgentStats } | undefined;
  /** About one stats() per scrape (it queries the log): the gauges of one scrape share it. */
  const stats = (): AgentStats => {
    const now = Date.now();
    if (current === undefined || now - current.at > SHARE_MS) current = { at: now, stats: read() };
    return current.stats;
  };
  const perDevice = (
    name: string,
    help: string,
    value: (d: AgentStats["devices"][number]) => number,
  ) =>
    scrapedLabelledGauge(registry, { name, help, labelNames: ["device"] }, () =>
      stats().devices.map((d) => [{ device: d.deviceId }, value(d)] as const),
    );
  perDevice(
    "citywatch_edge_log_pending_messages",
    "Messages in the write-ahead log not yet committed by the ingest.",
    (d) => d.log.pending,
  );
  perDevice(
    "citywatch_edge_log_dropped_messages",
    "Messages dropped by the full-log policy (oldest first), running total since the log was created.",
    (d) => d.log.dropped,
  );
  perDevice(
    "citywatch_edge_log_oldest_pending_age_seconds",
    "Age of the oldest uncommitted reading (0 when none).",
    (d) =>
      d.log.oldestPendingTs === undefined
        ? 0
        : Math.max(0, (Date.now() - Date.parse(d.log.oldestPendingTs)) / 1000),
  );
  perDevice("citywatch_edge_connected", "1 while the device's MQTT connection is up.", (d) =>
    d.link.connected ? 1 : 0,
  );
  perDevice(
    "citywatch_edge_inflight_messages",
    "Messages sent and not yet committed (bounded by uplink.window).",
    (d) => d.link.inflight,
  );
  perDevice("citywatch_edge_sent_messages", "Messages published, since start.", (d) => d.link.sent);
  perDevice(
    "citywatch_edge_resent_messages",
    "Messages published again after the re-send timeout, since start.",
    (d) => d.link.resent,
  );
  perDevice(
    "citywatch_edge_refused_samples",
    "Samples refused (unknown device, wrong kind, out of range, late), since start.",
    (d) => d.refused,
  );
  perDevice(
    "citywatch_edge_readings",
    "Readings written to the log, since start.",
    (d) => d.readings,
  );
  perDevice(
    "citywatch_edge_late_samples",
    "Samples that came after their interval was sent, logged at their own time as replay, since start.",
    (d) => d.late,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_edge_dead_letters",
      help: "Refusals of the field drivers held in the edge's dead-letter log (bounded; oldest pruned first).",
    },
    () => stats().deadLetters.entries,
  );
  scrapedLabelledGauge(
    registry,
    {
      name: "citywatch_edge_dead_letters_recorded",
      help: "Refusals of the field drivers recorded in the dead-letter log, by problem code, since start.",
      labelNames: ["code"],
    },
    () =>
      Object.entries(stats().deadLetters.recordedByCode).map(([code, n]) => [{ code }, n] as const),
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_edge_dead_letters_pruned",
      help: "Dead letters pruned by the log's bounds (maxEntries, maxPerSource), since start.",
    },
    () => stats().deadLetters.pruned,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_edge_dead_letter_failures",
      help: "Refusals not recorded because the dead-letter log could not be written, since start.",
    },
    () => stats().deadLetters.failures,
  );
  scrapedGauge(
    registry,
    {
      name: "citywatch_edge_alarm_commands_dropped",
      help: "Alarm events not run because the command queue was full, since start.",
    },
    () => stats().alarmCommands?.dropped ?? 0,
  );
  return registry;
}
