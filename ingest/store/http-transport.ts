import http from "node:http";
import https from "node:https";

/**
 * The HTTP the InfluxDB store speaks, reduced to what it needs: one request, the status, a
 * header or two and the body as text. The default is node:http with keep-alive connections and
 * a Buffer body sent as it is; tests and embedders may pass a `fetch` instead.
 *
 * Why not fetch by default: undici copies a request body into a web stream and back, and asks
 * for gzip answers it then inflates. At 5,000 lines per write that was a fifth of the ingest's
 * CPU beyond the parse-validate-serialize floor (npm run bench -- ingest).
 */
export interface HttpRequest {
  readonly method: "GET" | "POST";
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer | string | undefined;
  readonly signal: AbortSignal;
}

export interface HttpResponse {
  readonly status: number;
  header(name: string): string | null;
  readonly text: string;
}

export interface HttpTransport {
  send(url: URL, request: HttpRequest): Promise<HttpResponse>;
  /** Drop idle keep-alive connections. */
  close(): void;
}

/** Requests over node:http / node:https, connections kept alive between writes. */
export function nodeTransport(): HttpTransport {
  const agents = {
    "http:": new http.Agent({ keepAlive: true, maxSockets: 8 }),
    "https:": new https.Agent({ keepAlive: true, maxSockets: 8 }),
  };
  return {
    send(url, request) {
      const protocol = url.protocol === "https:" ? "https:" : "http:";
      const body = typeof request.body === "string" ? Buffer.from(request.body) : request.body;
      const headers: Record<string, string | number> = { ...request.headers };
      if (body !== undefined) headers["content-length"] = body.length;
      return new Promise<HttpResponse>((resolve, reject) => {
        const { signal } = request;
        // The reason given to abort (a TimeoutError for a timeout), not Node's own AbortError.
        const fail = (error: Error) =>
          reject(signal.aborted && signal.reason instanceof Error ? signal.reason : error);
        const req = (protocol === "https:" ? https : http).request(
          url,
          { method: request.method, headers, agent: agents[protocol], signal },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            res.on("error", fail);
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                header: (name) => {
                  const value = res.headers[name.toLowerCase()];
                  return value === undefined
                    ? null
                    : Array.isArray(value)
                      ? value.join(", ")
                      : value;
                },
                text: Buffer.concat(chunks).toString("utf8"),
              }),
            );
          },
        );
        req.on("error", fail);
        req.end(body);
      });
    },
    close() {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
}

/** The same over a `fetch` (an injected one in tests, or another HTTP stack). */
export function fetchTransport(fetchFn: typeof fetch): HttpTransport {
  return {
    async send(url, request) {
      const response = await fetchFn(url, {
        method: request.method,
        headers: request.headers,
        ...(request.body === undefined ? {} : { body: request.body }),
        signal: request.signal,
      });
      const text = await response.text();
      return { status: response.status, header: (name) => response.headers.get(name), text };
    },
    close() {},
  };
}
