import { Counter, type Registry } from "prom-client";
import { scrapedGauge } from "../infra/metrics.js";

/** The rules driver's Prometheus metrics, on the ingest's registry (one /metrics per process). */
export function rulesMetrics(
  registry: Registry,
  read: {
    openAlarms: () => number;
    windowSamples: () => number;
    unsavedMoves: () => number;
    droppedMoves: () => number;
  },
) {
  let reportedDrops = 0;
  return {
    evaluations: new Counter({
      name: "citywatch_rules_evaluations_total",
      help: "Evaluations of a rule for a subject (on readings and on the clock tick).",
      registers: [registry],
    }),
    decisions: new Counter({
      name: "citywatch_rules_decisions_total",
      help: "Alarm decisions handed to the task service, by type (raise, escalate-level, clear, ...).",
      labelNames: ["type"] as const,
      registers: [registry],
    }),
    openAlarms: scrapedGauge(
      registry,
      { name: "citywatch_rules_open_alarms", help: "Alarms pending, active or recovering." },
      read.openAlarms,
    ),
    windowSamples: scrapedGauge(
      registry,
      {
        name: "citywatch_rules_window_samples",
        help: "Samples held in the rules' windows, all devices and quantities (17 bytes each).",
      },
      read.windowSamples,
    ),
    unsavedMoves: scrapedGauge(
      registry,
      {
        name: "citywatch_rules_alarm_moves_unsaved",
        help: "Alarm state moves held in memory because the alarm store could not write them (a full disk, PostgreSQL out of reach); at most 100,000 subjects.",
      },
      read.unsavedMoves,
    ),
    droppedMoves: new Counter({
      name: "citywatch_rules_alarm_moves_dropped_total",
      help: "Alarm state moves not written: past the bound of unsaved moves, refused by the database for their data, or (a cluster node) judged under a lease that is gone. The next evaluations make them again.",
      registers: [registry],
      collect() {
        const count = read.droppedMoves();
        if (count > reportedDrops) this.inc(count - reportedDrops);
        reportedDrops = count;
      },
    }),
    degraded: new Counter({
      name: "citywatch_rules_degraded_evaluations_total",
      help: "k-of-n evaluations judged with fewer voting devices than k (degraded: lower_k), by rule.",
      labelNames: ["rule"] as const,
      registers: [registry],
    }),
    samplesDropped: new Counter({
      name: "citywatch_rules_samples_dropped_total",
      help: "Samples dropped from a full window (more than the per-series bound within a window).",
      registers: [registry],
    }),
  };
}
export type RulesMetrics = ReturnType<typeof rulesMetrics>;
