import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { TaskEvent } from "../../contracts/model/tasks.js";
import type { NotifyMetrics } from "./metrics.js";

/*
 * The live task stream (server-sent events). Each client has a bounded buffer of events the
 * socket has not taken yet (write() returned false): a client that falls more than
 * `clientBuffer` events behind is disconnected and counted, so one slow reader cannot hold the
 * process's memory. It reconnects with Last-Event-ID and gets what it missed from the event table.
 */

export interface StreamOptions {
  readonly clientBuffer: number;
  readonly maxClients: number;
  readonly heartbeatMs: number;
}

interface Client {
  readonly res: ServerResponse;
  readonly accepts: (event: TaskEvent) => boolean;
  readonly backlog: string[];
  blocked: boolean;
}

/** One SSE frame: the event id lets a client resume with Last-Event-ID. */
export const sseFrame = (event: TaskEvent): string =>
  `id: ${event.id}\nevent: task\ndata: ${JSON.stringify(event)}\n\n`;

export class TaskStream {
  private readonly clients = new Set<Client>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly options: StreamOptions,
    private readonly deps: { metrics: NotifyMetrics; log: Logger },
  ) {
    this.heartbeat = setInterval(() => {
      for (const client of this.clients) if (!client.blocked) client.res.write(": heartbeat\n\n");
    }, options.heartbeatMs);
    this.heartbeat.unref();
    deps.metrics.observeNotifications({ sseClients: () => this.clients.size });
  }

  /** Whether another client may connect; a refusal is counted. */
  admit(): boolean {
    if (this.clients.size < this.options.maxClients) return true;
    this.deps.metrics.sseRefused.inc();
    return false;
  }

  /**
   * Stream to `res` (headers already sent): first `missed` (resume), then every published event
   * the client accepts, until it disconnects or is dropped.
   */
  attach(
    res: ServerResponse,
    accepts: (event: TaskEvent) => boolean,
    missed: readonly TaskEvent[],
  ): void {
    const client: Client = { res, accepts, backlog: [], blocked: false };
    this.clients.add(client);
    res.on("close", () => this.clients.delete(client));
    res.on("drain", () => this.flush(client));
    res.write(": connected\n\n");
    for (const event of missed) if (accepts(event)) this.send(client, sseFrame(event));
  }

  publish(event: TaskEvent): void {
    const frame = sseFrame(event);
    for (const client of this.clients) if (client.accepts(event)) this.send(client, frame);
  }

  /** Disconnect every client (shutdown). */
  close(): void {
    clearInterval(this.heartbeat);
    for (const client of this.clients) client.res.end();
    this.clients.clear();
  }

  private send(client: Client, frame: string): void {
    if (client.blocked) {
      if (client.backlog.length >= this.options.clientBuffer) return this.drop(client);
      client.backlog.push(frame);
      return;
    }
    if (!client.res.write(frame)) client.blocked = true;
  }

  private flush(client: Client): void {
    client.blocked = false;
    while (client.backlog.length > 0) {
      const frame = client.backlog.shift() ?? "";
      if (!client.res.write(frame)) {
        client.blocked = true;
        return;
      }
    }
  }

  private drop(client: Client): void {
    this.clients.delete(client);
    this.deps.metrics.sseDropped.inc();
    this.deps.log.warn({ buffered: client.backlog.length }, "stream client too slow; disconnected");
    client.backlog.length = 0;
    client.res.destroy();
  }
}
