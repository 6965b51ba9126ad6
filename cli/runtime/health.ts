import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Registry } from "prom-client";
import { z } from "zod";

/*
 * The probes' and Prometheus's routes: GET /healthz and GET /metrics. No token (a proxy,
 * Prometheus and probes read them); this plugin adds no auth hook.
 */

export interface HealthOptions {
  readonly metrics: readonly Registry[];
  readonly health: () => { ok: boolean; detail: Record<string, unknown> };
}

const Health = z
  .looseObject({ status: z.enum(["ok", "unavailable"]) })
  .describe("What was checked; more fields by what the process runs (docs/api.md)");

export const healthApi: FastifyPluginAsyncZod<HealthOptions> = (app, deps) => {
  app.get(
    "/healthz",
    {
      schema: {
        tags: ["operations"],
        summary: "Health: 200 when everything the process runs works, 503 otherwise",
        response: { 200: Health, 503: Health },
      },
    },
    (_request, reply) => {
      const health = deps.health();
      void reply.code(health.ok ? 200 : 503);
      return { status: health.ok ? ("ok" as const) : ("unavailable" as const), ...health.detail };
    },
  );
  app.get(
    "/metrics",
    {
      schema: {
        tags: ["operations"],
        summary: "Prometheus metrics of the components the process runs",
        response: {
          200: {
            description: "Prometheus text format",
            content: { "text/plain": { schema: z.string() } },
          },
        },
      },
    },
    async (_request, reply) => {
      const texts = await Promise.all(deps.metrics.map((r) => r.metrics()));
      return reply.type(deps.metrics[0]?.contentType ?? "text/plain").send(texts.join("\n"));
    },
  );
  return Promise.resolve();
};
