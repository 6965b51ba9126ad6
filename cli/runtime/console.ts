import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

/*
 * The operators' console (console/, docs/console.md) on the API's port at `/`: the files Vite
 * built into console/dist, and index.html for the console's pages (CONSOLE_PAGES: the console
 * routes in the browser, so a reload or a shared link of /tasks/{id} opens that page). Hashed
 * assets (/assets/*) are cached for a year (their name changes with their content); index.html
 * is revalidated on every load, so a new build is picked up at once. The console's answers carry
 * a Content-Security-Policy that allows only this origin's scripts, styles and connections, no
 * framing and no inline script. Without a build, `/` answers a page saying how to make one.
 */

/** Where `npm ci` (the `prepare` script, console/build.ts) writes the console. */
export const CONSOLE_DIST = fileURLToPath(new URL("../../console/dist/", import.meta.url));

/**
 * The console's pages (console/src/router.ts): index.html answers them, so a reload or a shared
 * link opens the page. Any other path is the API's 404.
 */
export const CONSOLE_PAGES = [
  "/",
  "/signin",
  "/tasks/*",
  "/devices",
  "/devices/*",
  "/dead-letters",
  "/sites",
  "/rules",
  "/reports",
  "/emergency",
  "/map",
  "/public",
] as const;

/** Paths that belong to the API and the process, never to the console (their 404 stays JSON). */
const RESERVED = ["/api/", "/evidence/", "/docs", "/openapi.json", "/metrics", "/healthz"];

/** The policy, with the map's tile origins (console.map.tileUrl) allowed as images. */
export const consoleCsp = (imageOrigins: readonly string[] = []): string =>
  [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    ["img-src 'self' data:", ...imageOrigins].join(" "),
    "font-src 'self'",
    "connect-src 'self'",
    "media-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");

export const CONSOLE_CSP = consoleCsp();

/** The page shown without a build: no script, its inline style only. */
const NOT_BUILT_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

/** Headers of every console answer, beside the API's nosniff (api-errors.ts). */
export const consoleHeaders = (imageOrigins: readonly string[] = []) =>
  ({
    "content-security-policy": consoleCsp(imageOrigins),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
  }) as const;
export const CONSOLE_HEADERS = consoleHeaders();

const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";

const notBuiltPage = (dist: string) => `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>citywatch: the console is not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5">
<h1>The console is not built</h1>
<p>控制台尚未构建。There is no <code>${dist}index.html</code>.</p>
<p><code>npm ci</code> builds it (its <code>prepare</code> step runs <code>console/build.ts</code>; it needs the
dev dependencies, so not <code>npm ci --omit=dev</code>). To build it again: <code>npm run console:build</code>,
then reload this page.</p>
<p>The API answers meanwhile at <a href="/api/v1/tasks">/api/v1/tasks</a> (<a href="/docs">API docs</a>).</p>
</body>
</html>
`;

export interface ConsoleOptions {
  /** The built console (default: console/dist next to this checkout). */
  readonly dist?: string | undefined;
  /** Origins the map's tiles come from (console.map.tileUrl), allowed as images. */
  readonly imageOrigins?: readonly string[] | undefined;
}

const reserved = (url: string): boolean => {
  const path = url.split("?", 1)[0] ?? "/";
  return RESERVED.some((prefix) => path === prefix.replace(/\/$/, "") || path.startsWith(prefix));
};

/** A path the browser asks for as a file (an old asset, a typo): 404, never index.html. */
const looksLikeFile = (url: string): boolean => {
  const path = url.split("?", 1)[0] ?? "/";
  return path.startsWith("/assets/") || /\.[a-z0-9]{1,8}$/i.test(path);
};

export const consoleUi: FastifyPluginAsync<ConsoleOptions> = async (app, options) => {
  const dist = options.dist ?? CONSOLE_DIST;
  const built = existsSync(join(dist, "index.html"));
  const headers = consoleHeaders(options.imageOrigins);

  if (built) {
    await app.register(fastifyStatic, {
      root: dist,
      prefix: "/",
      // Routes for the files there at start (a rebuild's new names need a restart); every other
      // path is the console's own (below).
      wildcard: false,
      index: false,
      cacheControl: false,
      schemaHide: true,
      setHeaders: (reply, path) => {
        void reply.headers(headers);
        void reply.header(
          "cache-control",
          path.includes(`${join(dist, "assets")}`) ? IMMUTABLE : REVALIDATE,
        );
      },
    });
  }

  const page = (request: FastifyRequest, reply: FastifyReply) => {
    if (reserved(request.url) || looksLikeFile(request.url)) return reply.callNotFound();
    void reply.headers(headers);
    if (!built) {
      return (
        // 200: the page itself is the answer (a 5xx would read as the API failing).
        reply
          .code(200)
          .header("cache-control", "no-store")
          // The page's own inline style only.
          .header("content-security-policy", NOT_BUILT_CSP)
          .type("text/html; charset=utf-8")
          .send(notBuiltPage(dist))
      );
    }
    return reply.header("cache-control", REVALIDATE).sendFile("index.html", dist, {
      cacheControl: false,
    });
  };
  for (const path of CONSOLE_PAGES)
    app.get(path, { schema: { hide: true }, logLevel: "warn" }, page);
};
