import { createHmac } from "node:crypto";
import { z } from "zod";
import type { WebhookConfig } from "../../contracts/config/tasks.js";
import { TaskEvent } from "../../contracts/model/tasks.js";

/*
 * Webhook delivery: one POST per task event. The receiver verifies
 *   X-Citywatch-Signature: sha256=hex(HMAC-SHA256(secret, `${X-Citywatch-Timestamp}.${body}`))
 * and drops repeats by Idempotency-Key (delivery is at least once: a timeout after the receiver
 * stored the event makes us send it again). docs/tasks.md has a verification snippet.
 *
 * The body is the task event; for a task that has evidence it also carries
 * `links: { evidence, expiresAt }`, a signed link to the printable document of its newest
 * package (tasks/evidence-links.ts), made afresh for every delivery attempt (so a retried body
 * differs in `links` only; its Idempotency-Key is the same).
 */

/** What a webhook receives: the task event, and a signed evidence link where there is evidence. */
export const WebhookPayload = TaskEvent.extend({
  links: z
    .object({
      /** Opens the printable document of the task's newest package without a token. */
      evidence: z.string(),
      /** UTC ISO 8601: the link answers 403 from then on. */
      expiresAt: z.string(),
    })
    .optional(),
});
export type WebhookPayload = z.infer<typeof WebhookPayload>;

/** A signed link to a printable package (tasks/evidence-links.ts makes them). */
export interface EvidenceLink {
  readonly url: string;
  /** UTC ISO 8601. */
  readonly expiresAt: string;
}

/** What makes the links: the task system's EvidenceLinks (its `create`). */
export interface EvidenceLinkMaker {
  create(taskId: string, sequence: number): EvidenceLink;
}

/** Where the delivery finds a task's newest package (the task store). */
export interface NewestEvidence {
  evidence(
    taskId: string,
  ): Promise<{ readonly taskId: string; readonly sequence: number } | undefined>;
}

/**
 * The evidence link of an event: a signed link to the newest package of a task that has one,
 * else undefined. `links` and `store` are the task system's.
 */
export function evidenceLinkOf(
  links: EvidenceLinkMaker,
  store: NewestEvidence,
): (event: TaskEvent) => Promise<EvidenceLink | undefined> {
  return async (event) => {
    if (event.task.evidenceCount === 0) return undefined;
    const pkg = await store.evidence(event.task.id);
    return pkg === undefined ? undefined : links.create(pkg.taskId, pkg.sequence);
  };
}

/** The body of one delivery attempt. */
export function webhookPayload(event: TaskEvent, link: EvidenceLink | undefined): WebhookPayload {
  return link === undefined
    ? event
    : { ...event, links: { evidence: link.url, expiresAt: link.expiresAt } };
}

/** The signature header value for a timestamp (unix seconds, as sent) and the exact body bytes. */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`, "utf8").digest("hex")}`;
}

/** The idempotency key of an event: the same for every attempt, different for every event. */
export const idempotencyKey = (event: Pick<TaskEvent, "id">): string =>
  `citywatch-event-${event.id}`;

/** One signed POST to a receiver: resolves on a 2xx answer, rejects otherwise. */
export async function postSigned(
  hook: Pick<WebhookConfig, "name" | "url" | "secret">,
  message: { readonly event: string; readonly key: string; readonly body: string },
  options: { readonly timeoutMs: number; readonly now: () => number },
): Promise<void> {
  const timestamp = String(Math.floor(options.now() / 1000));
  const response = await fetch(hook.url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "idempotency-key": message.key,
      "x-citywatch-event": message.event,
      "x-citywatch-timestamp": timestamp,
      "x-citywatch-signature": webhookSignature(hook.secret, timestamp, message.body),
    },
    body: message.body,
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  // Read the body so the connection can be reused; its content is not ours to interpret.
  await response.arrayBuffer();
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${hook.name}`);
}

/** A delivery function for one receiver: resolves on a 2xx answer, rejects otherwise. */
export function webhookDelivery(
  hook: WebhookConfig,
  options: {
    timeoutMs: number;
    now: () => number;
    /** The signed evidence link of an event's task (evidenceLinkOf); absent: no links. */
    evidenceLink?: ((event: TaskEvent) => Promise<EvidenceLink | undefined>) | undefined;
  },
): (event: TaskEvent) => Promise<void> {
  return async (event) => {
    let link: EvidenceLink | undefined;
    try {
      link = await options.evidenceLink?.(event);
    } catch {
      // A link that cannot be made (an unusual task id) must not hold the notification back.
      link = undefined;
    }
    const body = JSON.stringify(webhookPayload(event, link));
    await postSigned(hook, { event: event.type, key: idempotencyKey(event), body }, options);
  };
}
