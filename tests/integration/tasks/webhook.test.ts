import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { TaskSystem } from "../../../tasks/app.js";
import { EvidenceLinks } from "../../../tasks/evidence-links.js";
import { evidenceLinkOf, WebhookPayload, webhookDelivery } from "../../../tasks/notify/webhook.js";
import { until } from "../../support/broker.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  type ReceivedEvent,
  WEBHOOK_SECRET,
  webhookReceiver,
} from "../../support/webhook-receiver.js";
import {
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  startSystem,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe("webhooks through the durable outbox", () => {
  let dir: string;
  let port: number;
  let system: TaskSystem | undefined;
  let server: Server | undefined;

  beforeEach(async () => {
    dir = await makeTempDir("cw-webhook-");
    // Reserve a free port, then leave it closed: the receiver is down.
    const probe = await webhookReceiver([]);
    port = (probe.address() as AddressInfo).port;
    await close(probe);
  });
  afterEach(async () => {
    await system?.stop();
    if (server !== undefined) await close(server);
    await removeTempDir(dir);
  });

  const config = () =>
    tasksConfig({
      webhooks: [
        {
          name: "city-platform",
          url: `http://127.0.0.1:${port}/hooks/citywatch`,
          secret: WEBHOOK_SECRET,
        },
      ],
      outbox: { backoffBaseMs: 20, backoffMaxMs: 200, timeoutMs: 2_000 },
    });

  it("delivers every notification exactly once per idempotency key after the receiver comes up, across a restart", async () => {
    system = startSystem(dir, { now: Date.now, config: config() });
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await system.service.applyAlarm(gasNotice(raise(now, { level: "IV", deviceId: "g-1" })));
    await system.service.transition(
      "emg-000002",
      { to: "acknowledged" },
      { name: "duty (emergency)" },
    );
    expect(system.outbox.pending("city-platform")).toBe(3);
    await failuresReach(system, 2);

    // Restart while the receiver is still down: the outbox is in SQLite.
    await system.stop();
    system = startSystem(dir, { now: Date.now, config: config() });
    // The outbox reads its pending counts from the store as it starts.
    await until(() => system!.outbox.pending("city-platform") === 3, "pending read back");
    await system.service.applyAlarm(
      noiseNotice("cs-3", raise(Date.now()), noiseEvidence(Date.now())),
    );

    const received: ReceivedEvent[] = [];
    server = await webhookReceiver(received, port);
    await until(() => system!.outbox.pending("city-platform") === 0, "outbox drained", 10_000);

    expect(received.map((r) => r.type)).toEqual(["filed", "filed", "transition", "filed"]);
    const keys = received.map((r) => r.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toEqual(received.map((r) => `citywatch-event-${r.eventId}`));
    expect(received.map((r) => r.eventId)).toEqual(
      [...received.map((r) => r.eventId)].sort((a, b) => a - b),
    );
    expect((await system.metrics.deliveries.get()).values[0]?.value).toBe(4);
  });

  it("bounds the outbox: at maxPending the oldest notification moves to the dead outbox, counted", async () => {
    system = startSystem(dir, {
      now: Date.now,
      config: tasksConfig({
        webhooks: [
          { name: "city-platform", url: `http://127.0.0.1:${port}/`, secret: WEBHOOK_SECRET },
        ],
        outbox: { maxPending: 2, backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
      }),
    });
    for (const site of ["cs-1", "cs-2", "cs-3"])
      await system.service.applyAlarm(
        noiseNotice(site, raise(Date.now()), noiseEvidence(Date.now())),
      );
    expect(system.outbox.pending("city-platform")).toBe(2);
    expect(system.store.deadCount()).toBe(1);
    const dead = await system.metrics.deadNotifications.get();
    expect(dead.values).toEqual([
      expect.objectContaining({
        value: 1,
        labels: { target: "city-platform", reason: "outbox_full" },
      }),
    ]);
  });

  it("carries a signed link to the printable evidence of a task that has evidence, made per attempt", async () => {
    system = startSystem(dir, { now: Date.now, config: tasksConfig({}) });
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await system.service.applyAlarm(gasNotice(raise(now, { level: "IV", deviceId: "g-1" })));
    const [noise, gas] = [system.store.event(1), system.store.event(2)];
    expect(noise?.task.evidenceCount).toBe(1);
    expect(gas?.task.evidenceCount).toBe(0);
    // A receiver that keeps what it was sent, after checking the signature over the exact body.
    const bodies: string[] = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const expected = `sha256=${createHmac("sha256", WEBHOOK_SECRET)
          .update(`${String(req.headers["x-citywatch-timestamp"])}.${body}`)
          .digest("hex")}`;
        if (req.headers["x-citywatch-signature"] !== expected) res.writeHead(401).end();
        else {
          bodies.push(body);
          res.writeHead(204).end();
        }
      });
    });
    await new Promise<void>((resolve) => server!.listen(port, "127.0.0.1", () => resolve()));
    const t0 = Math.floor(now / 1000) * 1000; // links expire at whole seconds
    let clock = t0;
    const links = new EvidenceLinks(Buffer.alloc(32, 9), {
      ttlMs: 3_600_000,
      baseUrl: "https://cw.example.gov.cn",
      now: () => clock,
    });
    const hook = config().webhooks[0]!;
    const deliver = webhookDelivery(hook, {
      timeoutMs: 2_000,
      now: Date.now,
      evidenceLink: evidenceLinkOf(links, system.shared),
    });
    await deliver(noise!);
    clock += 60_000; // a retry a minute later gets a link of its own
    await deliver(noise!);
    await deliver(gas!);
    const [first, retry, noEvidence] = bodies.map((b) => WebhookPayload.parse(JSON.parse(b)));
    const taskId = noise!.task.id;
    expect(first?.links?.evidence).toMatch(
      new RegExp(
        `^https://cw\\.example\\.gov\\.cn/evidence/${taskId}/1\\?lang=zh-CN&expires=\\d+&sig=[A-Za-z0-9_-]{43}$`,
      ),
    );
    expect(first?.links?.expiresAt).toBe(new Date(t0 + 3_600_000).toISOString());
    expect(retry?.links?.expiresAt).toBe(new Date(t0 + 3_660_000).toISOString());
    expect(retry?.links?.evidence).not.toBe(first?.links?.evidence);
    expect(retry?.id).toBe(first?.id);
    const url = new URL(first!.links!.evidence);
    expect(
      links.check(taskId, 1, Number(url.searchParams.get("expires")), url.searchParams.get("sig")!),
    ).toEqual({ ok: true });
    // The rest of the body is the event, unchanged.
    const { links: _links, ...event } = first!;
    expect(event).toEqual(JSON.parse(JSON.stringify(noise)));
    expect(noEvidence?.links).toBeUndefined();
    expect(bodies[2]).not.toContain('"links"');
  });
});

/** Wait until the receiver was tried and refused `n` times. */
async function failuresReach(system: TaskSystem, n: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const metric = await system.metrics.deliveryFailures.get();
    if ((metric.values[0]?.value ?? 0) >= n) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} failed deliveries`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
