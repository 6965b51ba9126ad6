import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { ApiRole, TaskEvent } from "../../contracts/model/tasks.js";
import type { NotifyMetrics } from "./metrics.js";

/*
 * The live task stream (server-sent events). Each client has a bounded buffer of events the
 * socket has not taken yet (write() returned false): a client that falls more than
 * `clientBuffer` events behind is disconnected and counted, so one slow reader cannot hold the
 * process's memory. It reconnects with Last-Event-ID and gets what it missed from the event table.
 *
 * Bounds for readers: a token holds at most `maxPerToken` streams and a user (the token name
 * before `@`) `maxPerUser` over all their tokens (429); the last `adminReserve` of `maxClients`
 * are kept for admin tokens (503 for other roles beyond). A revoked token's streams are closed at
 * once (`revalidate`, run by the token watch) and never carry an event written after a
 * revocation the watch has seen (`check` runs before every publish; an event goes to the clients
 * connected when it was published, in publishing order, once `check` has settled).
 */

export interface StreamOptions {
  readonly clientBuffer: number;
  readonly maxClients: number;
  readonly heartbeatMs: number;
  readonly adminReserve?: number | undefined;
  readonly maxPerToken?: number;
  readonly maxPerUser?: number;
}

/** Who holds a stream. */
export interface StreamCaller {
  readonly tokenId: string;
  readonly user: string;
  readonly role: ApiRole;
}

/** Why a stream was refused: the API answers with the code and message. */
export type Admission =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly code: "too_many_requests" | "unavailable";
      readonly message: string;
    };

interface Client {
  readonly caller: StreamCaller | undefined;
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
  /** The last publish: the next one is sent after it (events keep their order). */
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: StreamOptions,
    private readonly deps: {
      metrics: NotifyMetrics;
      log: Logger;
      /**
       * Waited for before each publish is sent: the token watch's (a revocation closes streams
       * first). It must not reject.
       */
      check?: () => Promise<void>;
    },
  ) {
    this.heartbeat = setInterval(() => {
      for (const client of this.clients) if (!client.blocked) client.res.write(": heartbeat\n\n");
    }, options.heartbeatMs);
    this.heartbeat.unref();
    deps.metrics.observeNotifications({ sseClients: () => this.clients.size });
  }

  /** Whether another client of `caller` may connect; a refusal is counted. */
  admit(caller?: StreamCaller): Admission {
    const { maxClients, maxPerToken, maxPerUser } = this.options;
    const adminReserve = this.options.adminReserve ?? Math.floor(maxClients / 10);
    if (caller !== undefined) {
      let token = 0;
      let user = 0;
      for (const c of this.clients) {
        if (c.caller?.tokenId === caller.tokenId) token++;
        if (c.caller?.user === caller.user) user++;
      }
      if (maxPerToken !== undefined && token >= maxPerToken) {
        this.deps.metrics.sseCapped.inc({ bound: "token" });
        return {
          ok: false,
          code: "too_many_requests",
          message: `this token holds ${token} live streams, its limit (tasks.stream.maxPerToken = ${maxPerToken}); close one first`,
        };
      }
      if (maxPerUser !== undefined && user >= maxPerUser) {
        this.deps.metrics.sseCapped.inc({ bound: "user" });
        return {
          ok: false,
          code: "too_many_requests",
          message: `user ${caller.user} holds ${user} live streams over their tokens, the limit (tasks.stream.maxPerUser = ${maxPerUser}); close one first`,
        };
      }
    }
    const limit =
      caller === undefined || caller.role === "admin"
        ? maxClients
        : Math.max(0, maxClients - adminReserve);
    if (this.clients.size < limit) return { ok: true };
    this.deps.metrics.sseRefused.inc();
    return {
      ok: false,
      code: "unavailable",
      message: `too many stream clients (${this.clients.size}); try again later`,
    };
  }

  /** Clients connected now. */
  size(): number {
    return this.clients.size;
  }

  /**
   * Close the streams of tokens no longer active (revoked), as soon as `isActive` has answered for
   * each token holding one (once per token); resolves with how many were closed. It rejects, and
   * closes none, when `isActive` does.
   */
  async revalidate(isActive: (tokenId: string) => boolean | Promise<boolean>): Promise<number> {
    const verdicts = new Map<string, boolean>();
    // Until every client's token has an answer: one may attach while the answers are awaited.
    for (;;) {
      const asked = new Set<string>();
      for (const client of this.clients) {
        const tokenId = client.caller?.tokenId;
        if (tokenId !== undefined && !verdicts.has(tokenId)) asked.add(tokenId);
      }
      if (asked.size === 0) break;
      await Promise.all(
        [...asked].map(async (tokenId) => verdicts.set(tokenId, await isActive(tokenId))),
      );
    }
    let closed = 0;
    for (const client of this.clients) {
      const tokenId = client.caller?.tokenId;
      if (tokenId === undefined || verdicts.get(tokenId) !== false) continue;
      this.clients.delete(client);
      closed++;
      client.backlog.length = 0;
      if (!client.blocked) client.res.write(": token revoked\n\n");
      client.res.end();
      // A client that does not read would keep the socket: it gets no more time.
      client.res.destroy();
    }
    if (closed > 0) {
      this.deps.metrics.sseRevoked.inc(closed);
      this.deps.log.info({ closed }, "streams of revoked tokens closed");
    }
    return closed;
  }

  /**
   * Stream to `res` (headers already sent): first `missed` (resume), then every published event
   * the client accepts, until it disconnects or is dropped.
   */
  attach(
    res: ServerResponse,
    accepts: (event: TaskEvent) => boolean,
    missed: readonly TaskEvent[],
    caller?: StreamCaller,
  ): void {
    const client: Client = { caller, res, accepts, backlog: [], blocked: false };
    this.clients.add(client);
    res.on("close", () => this.clients.delete(client));
    res.on("drain", () => this.flush(client));
    res.write(": connected\n\n");
    for (const event of missed) if (accepts(event)) this.send(client, sseFrame(event));
  }

  publish(event: TaskEvent): void {
    const frame = sseFrame(event);
    const to = [...this.clients].filter((client) => client.accepts(event));
    const deliver = () => {
      // A client closed meanwhile (revoked, dropped, gone) gets nothing.
      for (const client of to) if (this.clients.has(client)) this.send(client, frame);
    };
    const check = this.deps.check;
    if (check === undefined) return deliver();
    this.sending = this.sending
      .then(check)
      .then(deliver, deliver)
      .catch((error: unknown) => {
        this.deps.log.error({ err: (error as Error).message }, "stream: an event not sent");
      });
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
