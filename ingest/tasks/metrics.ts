import { Counter, Gauge, type Registry } from "prom-client";

/** The task service's metrics, on the ingest's registry (one /metrics for the process). */
export function taskMetrics(registry: Registry) {
  const read = {
    open: (): ReadonlyArray<{ kind: string; n: number }> => [],
    flagged: (): ReadonlyArray<{ kind: string; flag: string; n: number }> => [],
    outbox: (): ReadonlyMap<string, number> => new Map(),
    sseClients: () => 0,
  };
  return {
    registry,
    /** Where the gauges read their values at scrape time. */
    observe(sources: Partial<typeof read>): void {
      Object.assign(read, sources);
    },
    opened: new Counter({
      name: "citywatch_tasks_opened_total",
      help: "Tasks opened, by kind.",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    open: new Gauge({
      name: "citywatch_tasks_open",
      help: "Tasks not closed, by kind.",
      labelNames: ["kind"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { kind, n } of read.open()) this.set({ kind }, n);
      },
    }),
    slaFlagged: new Gauge({
      name: "citywatch_tasks_sla_flagged",
      help: "Open tasks past an SLA limit, by kind and flag (not_handled, not_closed).",
      labelNames: ["kind", "flag"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const { kind, flag, n } of read.flagged()) this.set({ kind, flag }, n);
      },
    }),
    outboxDepth: new Gauge({
      name: "citywatch_tasks_outbox_depth",
      help: "Notifications waiting in the durable outbox, by target (webhook name or mqtt).",
      labelNames: ["target"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [target, n] of read.outbox()) this.set({ target }, n);
      },
    }),
    deliveries: new Counter({
      name: "citywatch_tasks_deliveries_total",
      help: "Notifications delivered, by target.",
      labelNames: ["target"] as const,
      registers: [registry],
    }),
    deliveryFailures: new Counter({
      name: "citywatch_tasks_delivery_failures_total",
      help: "Failed delivery attempts (retried with backoff), by target.",
      labelNames: ["target"] as const,
      registers: [registry],
    }),
    deadNotifications: new Counter({
      name: "citywatch_tasks_outbox_dead_total",
      help: "Notifications moved to the dead outbox, by target and reason (outbox_full, max_attempts).",
      labelNames: ["target", "reason"] as const,
      registers: [registry],
    }),
    sseClients: new Gauge({
      name: "citywatch_tasks_stream_clients",
      help: "Clients connected to the live task stream.",
      registers: [registry],
      collect() {
        this.set(read.sseClients());
      },
    }),
    sseDropped: new Counter({
      name: "citywatch_tasks_stream_dropped_total",
      help: "Stream clients disconnected because they fell behind by more than the buffer.",
      registers: [registry],
    }),
    sseRefused: new Counter({
      name: "citywatch_tasks_stream_refused_total",
      help: "Stream connections refused because the client limit was reached.",
      registers: [registry],
    }),
  };
}

export type TaskMetrics = ReturnType<typeof taskMetrics>;
