import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { nodeTransport } from "../../../../ingest/store/http-transport.js";

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(handler: http.RequestListener): Promise<URL> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/write?db=x`);
}

describe("nodeTransport", () => {
  it("sends the body with its length and returns status, headers and text", async () => {
    let received = "";
    let length: string | undefined;
    const url = await serve((req, res) => {
      length = req.headers["content-length"];
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => (received += chunk));
      req.on("end", () => {
        res.writeHead(429, { "retry-after": "7", "x-influxdb-error": "slow down" });
        res.end('{"error":"slow down"}');
      });
    });
    const transport = nodeTransport();
    const answer = await transport.send(url, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: Buffer.from("m v=1 1\nm,t=区 v=2 2"),
      signal: AbortSignal.timeout(5_000),
    });
    transport.close();
    expect(answer.status).toBe(429);
    expect(answer.header("Retry-After")).toBe("7");
    expect(answer.header("x-influxdb-error")).toBe("slow down");
    expect(answer.header("x-missing")).toBeNull();
    expect(answer.text).toBe('{"error":"slow down"}');
    expect(received).toBe("m v=1 1\nm,t=区 v=2 2");
    expect(Number(length)).toBe(Buffer.byteLength(received));
  });

  it("rejects with the signal's reason when the peer does not answer in time", async () => {
    const url = await serve(() => {
      // never answers
    });
    const transport = nodeTransport();
    const error = await transport
      .send(url, { method: "GET", headers: {}, signal: AbortSignal.timeout(100) })
      .catch((e: unknown) => e);
    transport.close();
    expect((error as Error).name).toBe("TimeoutError");
  });

  it("rejects with the connection error when nothing listens", async () => {
    const url = await serve(() => {});
    const server = servers.pop() as http.Server;
    await new Promise((resolve) => server.close(resolve));
    const transport = nodeTransport();
    const error = await transport
      .send(url, { method: "GET", headers: {}, signal: AbortSignal.timeout(5_000) })
      .catch((e: unknown) => e);
    transport.close();
    expect((error as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });
});
