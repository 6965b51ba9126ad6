import { Counter, type Registry } from "prom-client";
import { lateBound, scrapedGauge, scrapedLabelledGauge } from "../../infra/metrics.js";

/** The notifications' metrics (outbox, live stream), on the process's registry. */
export function notifyMetrics(registry: Registry) {
  const { read, observe } = lateBound({
    outbox: (): ReadonlyMap<string, number> => new Map(),
    sseClients: (): number => 0,
    outboxLeases: (): number => 0,
  });
  return {
    /** Where the gauges read their values at scrape time. */
    observeNotifications: observe,
    outboxDepth: scrapedLabelledGauge(
      registry,
      {
        name: "citywatch_tasks_outbox_depth",
        help: "Notifications waiting in the durable outbox, by target (webhook name or mqtt).",
        labelNames: ["target"],
      },
      () => Array.from(read.outbox(), ([target, n]) => [{ target }, n] as const),
    ),
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
    outboxLeasesHeld: scrapedGauge(
      registry,
      {
        name: "citywatch_tasks_outbox_leases_held",
        help: "Outbox targets this node delivers now: those whose delivery lease it holds (one node per target).",
      },
      () => read.outboxLeases(),
    ),
    outboxLeaseLost: new Counter({
      name: "citywatch_tasks_outbox_lease_lost_total",
      help: "Delivery leases of a target this node lost (taken over or expired), by target: it stopped delivering that target.",
      labelNames: ["target"] as const,
      registers: [registry],
    }),
    deadNotifications: new Counter({
      name: "citywatch_tasks_outbox_dead_total",
      help: "Notifications moved to the dead outbox, by target and reason (outbox_full, max_attempts).",
      labelNames: ["target", "reason"] as const,
      registers: [registry],
    }),
    sseClients: scrapedGauge(
      registry,
      {
        name: "citywatch_tasks_stream_clients",
        help: "Clients connected to the live task stream.",
      },
      () => read.sseClients(),
    ),
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
    sseCapped: new Counter({
      name: "citywatch_tasks_stream_capped_total",
      help: "Stream connections refused with 429 because the token or user held its cap of streams, by bound (token, user).",
      labelNames: ["bound"] as const,
      registers: [registry],
    }),
    sseRevoked: new Counter({
      name: "citywatch_tasks_stream_revoked_total",
      help: "Stream clients disconnected because their token was revoked.",
      registers: [registry],
    }),
  };
}

export type NotifyMetrics = ReturnType<typeof notifyMetrics>;
