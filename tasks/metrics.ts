import { Counter, Gauge, type Registry } from "prom-client";

/** The task service's metrics, on the process's registry (one /metrics for the process). */
export function taskMetrics(registry: Registry) {
  const read = {
    open: (): ReadonlyArray<{ kind: string; n: number }> => [],
    flagged: (): ReadonlyArray<{ kind: string; flag: string; n: number }> => [],
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
  };
}

export type TaskMetrics = ReturnType<typeof taskMetrics>;
