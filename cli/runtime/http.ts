import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";

/**
 * The process's HTTP listener: `GET /metrics` (Prometheus text format) and `GET /healthz`.
 * The ingest's API (fastify) takes this port over in a later version.
 */
export async function startHttp(options: {
  host: string;
  port: number;
  registries: readonly Registry[];
  health: () => { ok: boolean; detail: Record<string, unknown> };
  log: Logger;
}): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res
        .writeHead(405, { allow: "GET", "content-type": "application/json" })
        .end('{"error":"method not allowed"}');
      return;
    }
    if (path === "/metrics") {
      Promise.all(options.registries.map((r) => r.metrics())).then(
        (texts) => {
          res.writeHead(200, {
            "content-type": options.registries[0]?.contentType ?? "text/plain",
          });
          res.end(texts.join("\n"));
        },
        (error: unknown) => {
          options.log.error({ err: error }, "metrics collection failed");
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === "/healthz") {
      const health = options.health();
      res.writeHead(health.ok ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: health.ok ? "ok" : "unavailable", ...health.detail }));
      return;
    }
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(`{"error":"not found: ${path}"}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE"
          ? Object.assign(
              new Error(
                `HTTP port ${options.port} on ${options.host} is already in use; choose another with http.port (CITYWATCH_HTTP_PORT, --http-port)`,
              ),
              { code: "HTTP_PORT_IN_USE" },
            )
          : error,
      ),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
