import { createHmac } from "node:crypto";
import type { WebhookConfig } from "../../contracts/config/tasks.js";
import type { TaskEvent } from "../../contracts/model/tasks.js";

/*
 * Webhook delivery: one POST per task event. The receiver verifies
 *   X-Citywatch-Signature: sha256=hex(HMAC-SHA256(secret, `${X-Citywatch-Timestamp}.${body}`))
 * and drops repeats by Idempotency-Key (delivery is at least once: a timeout after the receiver
 * stored the event makes us send it again). docs/tasks.md has a verification snippet.
 */

/** The signature header value for a timestamp (unix seconds, as sent) and the exact body bytes. */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`, "utf8").digest("hex")}`;
}

/** The idempotency key of an event: the same for every attempt, different for every event. */
export const idempotencyKey = (event: Pick<TaskEvent, "id">): string =>
  `citywatch-event-${event.id}`;

/** A delivery function for one receiver: resolves on a 2xx answer, rejects otherwise. */
export function webhookDelivery(
  hook: WebhookConfig,
  options: { timeoutMs: number; now: () => number },
): (event: TaskEvent) => Promise<void> {
  return async (event) => {
    const body = JSON.stringify(event);
    const timestamp = String(Math.floor(options.now() / 1000));
    const response = await fetch(hook.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "idempotency-key": idempotencyKey(event),
        "x-citywatch-event": event.type,
        "x-citywatch-timestamp": timestamp,
        "x-citywatch-signature": webhookSignature(hook.secret, timestamp, body),
      },
      body,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    // Read the body so the connection can be reused; its content is not ours to interpret.
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`HTTP ${response.status} from ${hook.name}`);
  };
}
