import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import { TaskEvent } from "../../contracts/index.js";

/** The shared secret the webhook tests configure and their receiver checks. */
export const WEBHOOK_SECRET = "city-platform-shared-secret";

/** One delivery as the receiver saw it (repeats included). */
export interface ReceivedEvent {
  readonly key: string;
  readonly eventId: number;
  readonly type: string;
  readonly taskId: string;
}

/**
 * A webhook receiver as a city platform would write it: verify the signature (401 otherwise),
 * record the delivery, answer 204. Listens on `port` of 127.0.0.1 (0: a free one).
 */
export function webhookReceiver(received: ReceivedEvent[], port = 0): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const timestamp = String(req.headers["x-citywatch-timestamp"]);
      const expected = `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(`${timestamp}.${body}`).digest("hex")}`;
      const given = String(req.headers["x-citywatch-signature"]);
      if (
        given.length !== expected.length ||
        !timingSafeEqual(Buffer.from(given), Buffer.from(expected))
      ) {
        res.writeHead(401).end();
        return;
      }
      // Task events are recorded; anything else the platform is sent (the monthly assessment's
      // announcement) is accepted and not.
      const parsed = TaskEvent.safeParse(JSON.parse(body));
      if (!parsed.success) {
        res.writeHead(204).end();
        return;
      }
      const event = parsed.data;
      received.push({
        key: String(req.headers["idempotency-key"]),
        eventId: event.id,
        type: event.type,
        taskId: event.task.id,
      });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}
