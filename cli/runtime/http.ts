import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";

/** The error of an HTTP port already taken, naming the setting to change. */
export function httpPortInUse(host: string, port: number): Error {
  return Object.assign(
    new Error(
      `HTTP port ${port} on ${host} is already in use; choose another with http.port (CITYWATCH_HTTP_PORT, --http-port)`,
    ),
    { code: "HTTP_PORT_IN_USE" },
  );
}

/**
 * Fail now if the HTTP port cannot be bound (in use, or not allowed), before anything else starts:
 * binds it and lets it go. Port 0 always binds. The listener itself binds last (it needs the
 * running system), so this is the early answer, not the guarantee.
 */
export async function probePort(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? httpPortInUse(host, port) : error),
    );
    server.listen(port, host, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * The process's HTTP listener: `GET /metrics` (Prometheus text format) and `GET /healthz`.
 * The ingest's API (fastify) takes this port over in a later version.
 */
export async function startHttp(options: {
  host: string;
  port: number;
  registries: readonly Registry[];
  health: () => { ok: boolean; detail: Record<string, unknown> };
  /** More GET paths answered with JSON (the edge's `/dead-letters`). */
  routes?: Readonly<Record<string, (query: URLSearchParams) => { status: number; body: unknown }>>;
  log: Logger;
}): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const [path = "/", search = ""] = (req.url ?? "/").split("?");
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
    const route =
      options.routes !== undefined && Object.hasOwn(options.routes, path)
        ? options.routes[path]
        : undefined;
    if (route !== undefined) {
      const answer = route(new URLSearchParams(search));
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
      return;
    }
    res
      .writeHead(404, { "content-type": "application/json" })
      .end(`{"error":"not found: ${path}"}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? httpPortInUse(options.host, options.port) : error),
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
