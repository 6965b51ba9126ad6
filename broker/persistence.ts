import type { AedesOptions } from "aedes";
import { Redis } from "ioredis";
import mqemitterRedis from "mqemitter-redis";
import redisPersistence from "aedes-persistence-redis";
import type { Logger } from "pino";
import type { BrokerPersistence } from "../contracts/index.js";

/** Messages a reconnecting persistent session (the ingest) is handed from its Redis queue at once. */
export const MAX_SESSION_DELIVERY = 1_000_000;

/** What aedes needs for a persistence choice, and how to release it after the broker closed. */
export interface PersistenceParts {
  readonly options: Pick<AedesOptions, "mq" | "persistence">;
  readonly close: () => Promise<void>;
}

/**
 * Memory: aedes' defaults (one process). Redis: sessions and retained messages in Redis and
 * messages fanned out over Redis pub/sub, so several broker processes act as one broker.
 */
export function persistenceFor(choice: BrokerPersistence, log: Logger): PersistenceParts {
  switch (choice.type) {
    case "memory":
      return { options: {}, close: () => Promise.resolve() };
    case "redis": {
      const conn = new Redis(choice.url, { lazyConnect: false, maxRetriesPerRequest: null });
      conn.on("error", (error: Error) =>
        log.warn({ err: error.message }, "Redis persistence connection error; reconnecting"),
      );
      heedEveryCommand(conn, log);
      // A persistent session gets at most maxSessionDelivery queued messages when it reconnects
      // (the rest wait for its next reconnect): 1,000 by default, fewer than a fleet publishes
      // while the ingest reconnects to a restarted broker. Queued messages are keys in one Redis
      // list, read at the reconnect.
      const persistence = redisPersistence({ conn, maxSessionDelivery: MAX_SESSION_DELIVERY });
      const mq = mqemitterRedis({ connectionString: choice.url });
      // mqemitter-redis re-emits its connections' errors on `state`; with no listener one error
      // (Redis restarting, or ioredis' "Connection in subscriber mode" on a reconnect) killed the
      // broker. ioredis reconnects and subscribes again by itself: log it and carry on.
      (mq as unknown as { state: NodeJS.EventEmitter }).state.on("error", (error: Error) =>
        log.warn({ err: error.message }, "Redis pub/sub connection error; reconnecting"),
      );
      return {
        options: { persistence, mq },
        close: async () => {
          // Without a callback destroy() returns the async persistence's promise. (With one, it
          // waits for a "ready" event that aedes 1.x's async setup path never emits.)
          const destroy = (persistence as { destroy(): Promise<void> }).destroy.bind(persistence);
          await Promise.race([
            destroy().catch(() => undefined),
            new Promise((r) => setTimeout(r, 2_000).unref()),
          ]);
          // QUIT lets commands still in flight finish; disconnect() would reject them, and the
          // persistence does not catch those rejections.
          await conn.quit().catch(() => conn.disconnect());
        },
      };
    }
  }
}

/**
 * aedes-persistence-redis issues some commands without awaiting them (the LREM of a will's key,
 * of a stale outgoing packet). When one fails (Redis gone, or the connection closed while the
 * broker stops: "Connection is closed.") its rejection has no handler, and an unhandled
 * rejection ends a Node process. Every command's promise gets a handler that logs the failure;
 * a caller that awaits the command still receives the rejection.
 */
function heedEveryCommand(conn: Redis, log: Logger): void {
  const send = conn.sendCommand.bind(conn);
  conn.sendCommand = (...args: Parameters<Redis["sendCommand"]>) => {
    const result = send(...args);
    if (result instanceof Promise) {
      result.catch((error: unknown) =>
        log.debug(
          { err: error instanceof Error ? error.message : String(error), command: args[0].name },
          "Redis persistence command failed",
        ),
      );
    }
    return result;
  };
}
