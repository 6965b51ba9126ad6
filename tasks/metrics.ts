import { Counter, Gauge, type Registry } from "prom-client";
import { lateBound, scrapedLabelledGauge } from "../infra/metrics.js";

/** The task service's metrics, on the process's registry (one /metrics for the process). */
export function taskMetrics(registry: Registry) {
  const { read, observe } = lateBound({
    open: (): Promise<ReadonlyArray<{ kind: string; n: number }>> => Promise.resolve([]),
    flagged: (): Promise<ReadonlyArray<{ kind: string; flag: string; n: number }>> =>
      Promise.resolve([]),
    alarmQueue: (): number => 0,
  });
  return {
    registry,
    /** Where the gauges read their values at scrape time. */
    observe,
    opened: new Counter({
      name: "citywatch_tasks_opened_total",
      help: "Tasks opened, by kind.",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    /** Flap damping: changes recorded without their own event, and evidence not sealed. */
    suppressed: new Counter({
      name: "citywatch_tasks_suppressed_total",
      help: "Flap damping: task events coalesced into a later event and evidence packages not sealed, because the task reached its hourly bound, by what (event, evidence).",
      labelNames: ["what"] as const,
      registers: [registry],
    }),
    /** Uploads recorded, and refused because the task holds tasks.attachments.maxPerTask. */
    attachments: new Counter({
      name: "citywatch_tasks_attachments_total",
      help: "Task attachments (field photos, documents) by outcome: stored, or refused_full (the task holds tasks.attachments.maxPerTask).",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    attachmentBytes: new Counter({
      name: "citywatch_tasks_attachment_bytes_total",
      help: "Bytes of task attachments recorded (a file attached to two tasks counts twice; it is stored once).",
      registers: [registry],
    }),
    /** Alarm decisions refused by the task service's queue (tasks/alarm-queue.ts). */
    alarmsDropped: new Counter({
      name: "citywatch_tasks_alarm_queue_dropped_total",
      help: "Alarm decisions the task service did not apply, by reason: full (its queue held tasks.alarmQueue bound decisions, or it was stopping) or failed (the task store refused it on every attempt).",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    alarmQueue: new Gauge({
      name: "citywatch_tasks_alarm_queue_depth",
      help: "Alarm decisions handed over by the rules and not yet applied by the task service.",
      registers: [registry],
      collect() {
        this.set(read.alarmQueue());
      },
    }),
    open: scrapedLabelledGauge(
      registry,
      { name: "citywatch_tasks_open", help: "Tasks not closed, by kind.", labelNames: ["kind"] },
      async () => (await read.open()).map(({ kind, n }) => [{ kind }, n] as const),
    ),
    slaFlagged: scrapedLabelledGauge(
      registry,
      {
        name: "citywatch_tasks_sla_flagged",
        help: "Open tasks past an SLA limit, by kind and flag (not_handled, not_closed).",
        labelNames: ["kind", "flag"],
      },
      async () => (await read.flagged()).map(({ kind, flag, n }) => [{ kind, flag }, n] as const),
    ),
  };
}

export type TaskMetrics = ReturnType<typeof taskMetrics>;
