import net from "node:net";

// Services on this machine (and on CI runners) already own the standard ports; a test that
// bound one of them would either fail or, worse, talk to the machine's own service.
const STANDARD_PORTS = new Set([1883, 8883, 9001, 6379, 5432, 8086, 8088]);

/** A TCP port on 127.0.0.1 that the OS just reported as free (it can be taken again before use). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await osAssignedPort();
    if (!STANDARD_PORTS.has(port)) return port;
  }
}

function osAssignedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      const port = address !== null && typeof address === "object" ? address.port : undefined;
      server.close((err) => {
        if (err) reject(err);
        else if (port === undefined) reject(new Error("listening socket reported no port"));
        else resolve(port);
      });
    });
  });
}

/** Whether something accepts TCP connections on host:port right now. */
export function canConnect(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const finish = (connected: boolean): void => {
      socket.destroy();
      resolve(connected);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/**
 * Sends `request` and collects the reply until `isComplete` accepts it. Used by readiness probes
 * that must speak the service's protocol, because an open port alone does not mean "ready".
 */
export function tcpExchange(
  host: string,
  port: number,
  request: Buffer,
  isComplete: (received: Buffer) => boolean,
  timeoutMs = 1_000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let received = Buffer.alloc(0);
    let settled = false;
    const settle = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (error) reject(error);
      else resolve(received);
    };
    socket.setTimeout(timeoutMs, () =>
      settle(new Error(`no complete reply from ${host}:${port} within ${timeoutMs} ms`)),
    );
    socket.once("connect", () => socket.write(request));
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (isComplete(received)) settle(undefined);
    });
    socket.once("error", (err) => settle(err));
    socket.once("close", () =>
      settle(new Error(`${host}:${port} closed the connection before a complete reply`)),
    );
  });
}
