import { readFileSync } from "node:fs";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import {
  createServer as createTcpServer,
  type AddressInfo,
  type Server as TcpServer,
  type Socket,
} from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { Duplex } from "node:stream";
import { createWebSocketStream, WebSocketServer } from "ws";
import type { BrokerConfig } from "../contracts/index.js";

/** A listener failed to bind; `code` is stable for scripts and tests. */
export class ListenError extends Error {
  constructor(
    readonly code: "BROKER_PORT_IN_USE" | "BROKER_LISTEN_FAILED",
    message: string,
    readonly listener: string,
  ) {
    super(message);
    this.name = "ListenError";
  }
}

export type ConnectionHandler = (stream: Duplex, request?: IncomingMessage) => void;

export interface Listener {
  readonly name: "mqtt" | "mqtts" | "ws" | "wss";
  readonly server: TcpServer | HttpServer;
  /** Accept no new connection; the open ones stay (a graceful stop drains them first). */
  readonly stopAccepting: () => void;
  readonly close: () => Promise<void>;
}

/** Which setting changes each listener's port, for the "port in use" message. */
const PORT_SETTING: Record<Listener["name"], string> = {
  mqtt: "broker.mqtt.port (CITYWATCH_MQTT_PORT, --mqtt-port)",
  mqtts: "broker.tls.port (CITYWATCH_MQTTS_PORT, --mqtts-port)",
  ws: "broker.ws.port (CITYWATCH_WS_PORT, --ws-port)",
  wss: "broker.ws.port (CITYWATCH_WS_PORT, --ws-port)",
};

/**
 * Connections the kernel may hold completed for a listener until the broker accepts them (the
 * listen backlog). With Node's default, 511, a fleet reconnecting at once overflowed it: each
 * connection dropped there costs its device a SYN sent again after 1 s, then 2 s, 4 s... In four
 * alternating runs of bench fleet (10,000 devices back within 5 s of a cut) the kernel dropped a
 * median 44,500 connections with 511 and 20,400 with this, and the fleet was back in 10.9-41.9 s
 * against 12.0-20.7 s. The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
 */
const LISTEN_BACKLOG = 4096;

function listen(
  name: Listener["name"],
  server: TcpServer | HttpServer,
  host: string,
  port: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off("listening", onListening);
      if (error.code === "EADDRINUSE") {
        reject(
          new ListenError(
            "BROKER_PORT_IN_USE",
            `${name} port ${port} on ${host} is already in use; choose another with ${PORT_SETTING[name]}`,
            name,
          ),
        );
      } else {
        reject(
          new ListenError(
            "BROKER_LISTEN_FAILED",
            `${name} cannot listen on ${host}:${port}: ${error.message}`,
            name,
          ),
        );
      }
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ port, host, backlog: LISTEN_BACKLOG });
  });
}

function closeServer(server: TcpServer | HttpServer, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    if (server.listening) server.close(() => resolve());
    else resolve();
    // Connections are closed by aedes.close(); any raw socket still open (never sent CONNECT) goes now.
    for (const socket of sockets) socket.destroy();
  });
}

function trackSockets(server: TcpServer | HttpServer): Set<Socket> {
  const sockets = new Set<Socket>();
  // tls.Server and http(s).Server are net.Servers: "connection" carries the raw TCP socket of each.
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return sockets;
}

export interface ListenerOptions {
  readonly config: BrokerConfig;
  readonly handle: ConnectionHandler;
  /** Raw socket cap per listener (net.Server.maxConnections): above it the OS connection is dropped. */
  readonly maxSockets: number;
}

/** Open the configured listeners: MQTT/TCP, MQTT/TLS (if a certificate is set), MQTT over WebSocket (wss with TLS). */
export async function openListeners({
  config,
  handle,
  maxSockets,
}: ListenerOptions): Promise<Listener[]> {
  const opened: Listener[] = [];
  const tls =
    config.tls.certFile !== undefined && config.tls.keyFile !== undefined
      ? {
          cert: readFileSync(config.tls.certFile),
          key: readFileSync(config.tls.keyFile),
          ...(config.tls.caFile !== undefined ? { ca: readFileSync(config.tls.caFile) } : {}),
        }
      : undefined;

  const open = async (
    name: Listener["name"],
    server: TcpServer | HttpServer,
    port: number,
    extraClose?: () => void,
  ) => {
    server.maxConnections = maxSockets;
    const sockets = trackSockets(server);
    await listen(name, server, config.host, port);
    opened.push({
      name,
      server,
      stopAccepting: () => {
        if (server.listening) server.close();
      },
      close: () => {
        extraClose?.();
        return closeServer(server, sockets);
      },
    });
  };

  try {
    if (config.mqtt.enabled) {
      await open(
        "mqtt",
        createTcpServer((socket) => handle(socket)),
        config.mqtt.port,
      );
    }
    if (tls !== undefined) {
      await open(
        "mqtts",
        createTlsServer(tls, (socket) => handle(socket)),
        config.tls.port,
      );
    }
    if (config.ws.enabled) {
      const server = tls !== undefined ? createHttpsServer(tls) : createHttpServer();
      const wss = new WebSocketServer({
        server,
        path: config.ws.path,
        maxPayload: config.limits.maxPacketBytes + 16,
        // MQTT over WebSocket uses the subprotocol "mqtt" [MQTT-6.0.0-3]; accept clients that send none.
        handleProtocols: (protocols) =>
          protocols.has("mqtt") ? "mqtt" : protocols.has("mqttv3.1") ? "mqttv3.1" : false,
      });
      wss.on("connection", (ws, request) => {
        const stream = createWebSocketStream(ws);
        stream.on("error", () => ws.terminate());
        handle(stream, request);
      });
      await open(tls !== undefined ? "wss" : "ws", server, config.ws.port, () => {
        for (const client of wss.clients) client.terminate();
        wss.close();
      });
    }
  } catch (error) {
    await Promise.all(opened.map((l) => l.close()));
    throw error;
  }
  return opened;
}

/** The bound port of a listener (useful when configured with port 0). */
export function boundPort(listener: Listener): number {
  return (listener.server.address() as AddressInfo).port;
}
