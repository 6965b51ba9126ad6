import type { Aedes, Client } from "aedes";
import type { Logger } from "pino";
import { TOPIC_ROOT } from "../contracts/index.js";
import type { BrokerMetrics, DataRefusal } from "./metrics.js";

/** How the broker decides that device data has a durable consumer; see `DurableDataGate`. */
export interface DurableDataOptions {
  /**
   * Memory persistence keeps a persistent session's queue in this process only: a subscription
   * counts only while its client is connected (and a graceful stop drains its queue). Redis
   * keeps the queue across a restart: the stored subscription is enough.
   */
  readonly consumerMustBeConnected: boolean;
  /** How long a publish is held, unacknowledged, for a durable consumer before it is refused. */
  readonly holdMs: number;
  /** Publishes held at most at once (over all clients); beyond it a publish is refused at once. */
  readonly maxHeld: number;
}

export const DURABLE_DATA_DEFAULTS = { holdMs: 10_000, maxHeld: 10_000 } as const;

/** How often held publishes look again for a consumer (also on every connect and subscribe). */
const RECHECK_MS = 200;
/** How long a graceful stop waits for acknowledged data to reach the consumers' queues and, on memory, for the queues to drain. */
const DRAIN_MS = 10_000;

interface StoredSubscription {
  readonly clientId: string;
  readonly qos: number;
}

interface SessionStore {
  subscriptionsByTopic(topic: string): Promise<StoredSubscription[]>;
  outgoingStream(client: Client): AsyncIterable<unknown>;
}

interface Held {
  readonly topic: string;
  readonly done: (error: Error | null) => void;
  /** Send the publish to the publish gate set meanwhile instead. */
  readonly toGate: () => void;
  readonly until: number;
}

export class DataRefusedError extends Error {
  constructor(readonly reason: DataRefusal) {
    super(`device data refused unacknowledged: ${reason}`);
    this.name = "DataRefusedError";
  }
}

/**
 * The broker acknowledges a QoS 1 (or 2) PUBLISH on a device's `data` topic only when a durable
 * consumer holds it: a persistent session (clean session 0) with a QoS ≥ 1 subscription that
 * matches the topic, for which aedes queues the message in its persistence before routing it.
 * aedes sends the PUBACK right after authorizePublish, before routing, so the rule is applied
 * there. Without a consumer the publish is held, unacknowledged (aedes reads no more from that
 * client meanwhile), until one appears (the ingest reconnecting after a broker restart) or
 * `holdMs` passes; then the connection is closed unacknowledged and the device re-sends.
 *
 * Without the rule, a broker restarted before the ingest's session was back acknowledged device
 * data and routed it to nobody (issue #16 item 11).
 */
export class DurableDataGate {
  private readonly held: Held[] = [];
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private again = false;
  private stopping = false;
  /** Data publishes let through whose routing (queueing for the consumers) has not finished. */
  private routing = 0;
  private readonly log: Logger;

  constructor(
    private readonly aedes: Aedes,
    private readonly options: DurableDataOptions,
    private readonly metrics: BrokerMetrics,
    log: Logger,
    /** Whether a publish gate takes device data now (it is a durable consumer of its own). */
    private readonly gated: () => boolean,
  ) {
    this.log = log.child({ part: "durable-data" });
    metrics.observeHeldData(() => this.held.length);
    const recheck = () => this.recheckSoon();
    aedes.on("client", recheck);
    aedes.on("subscribe", recheck);
    // aedes emits "publish" once a client's publish was queued for every persistent session and
    // routed: what a graceful stop waits for.
    aedes.on("publish", (packet, client) => {
      if (client !== null && packet.qos > 0 && isDataTopic(packet.topic) && this.routing > 0)
        this.routing--;
    });
  }

  /** Let a publish on a data topic through once a durable consumer holds it. */
  admit(topic: string, done: (error: Error | null) => void, toGate: () => void): void {
    if (this.stopping) return this.refuse(done, "broker_stopping");
    if (this.held.length > 0) return this.hold({ topic, done, toGate });
    this.hasConsumer(topic).then(
      (yes) => (yes ? this.pass(done) : this.hold({ topic, done, toGate })),
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
    );
  }

  /**
   * Graceful stop, after the listeners closed: refuse what is held, wait until every publish let
   * through is queued for its consumers and, when queues live in this process only, until the
   * connected consumers have acknowledged them (bounded by DRAIN_MS).
   */
  async drain(): Promise<void> {
    this.stopping = true;
    for (const h of this.held.splice(0)) this.refuse(h.done, "broker_stopping");
    if (this.timer !== undefined) clearTimeout(this.timer);
    const deadline = Date.now() + DRAIN_MS;
    while (this.routing > 0 && Date.now() < deadline) await sleep(20);
    if (this.options.consumerMustBeConnected) {
      while (Date.now() < deadline && (await this.queuedForConsumers())) await sleep(50);
    }
    const left = this.routing + ((await this.queuedForConsumers()) ? 1 : 0);
    if (left > 0)
      this.log.warn(
        { routing: this.routing },
        "broker stopped before its consumers took every acknowledged message",
      );
    else this.log.info("acknowledged device data handed to the consumers");
  }

  private get store(): SessionStore {
    return (this.aedes as unknown as { persistence: SessionStore }).persistence;
  }

  private connected(clientId: string): boolean {
    const clients = (this.aedes as unknown as { clients: Record<string, Client | undefined> })
      .clients;
    return clients[clientId]?.connected === true;
  }

  private async hasConsumer(topic: string): Promise<boolean> {
    const subs = await this.store.subscriptionsByTopic(topic);
    return subs.some(
      (s) => s.qos > 0 && (!this.options.consumerMustBeConnected || this.connected(s.clientId)),
    );
  }

  /** Does a connected persistent session still have messages queued for it? */
  private async queuedForConsumers(): Promise<boolean> {
    const clients = (this.aedes as unknown as { clients: Record<string, Client | undefined> })
      .clients;
    for (const client of Object.values(clients)) {
      if (client === undefined || client.clean) continue;
      for await (const _ of this.store.outgoingStream(client)) return true;
    }
    return false;
  }

  private pass(done: (error: Error | null) => void): void {
    this.routing++;
    done(null);
  }

  private refuse(done: (error: Error | null) => void, reason: DataRefusal): void {
    this.metrics.dataRefused.inc({ reason });
    done(new DataRefusedError(reason));
  }

  private hold(publish: Omit<Held, "until">): void {
    const { topic } = publish;
    if (this.held.length >= this.options.maxHeld) {
      this.log.warn({ topic, held: this.held.length }, "data hold queue full; closing connection");
      return this.refuse(publish.done, "hold_queue_full");
    }
    if (this.held.length === 0)
      this.log.warn({ topic }, "no durable consumer for device data: holding PUBACKs");
    this.metrics.dataHeldTotal.inc();
    this.held.push({ ...publish, until: Date.now() + this.options.holdMs });
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.recheckSoon();
    }, RECHECK_MS);
  }

  /** Look at the held publishes again now (a publish gate was set). */
  wake(): void {
    this.recheckSoon();
  }

  private recheckSoon(): void {
    if (this.held.length === 0) return;
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    void this.recheck()
      .catch((error: unknown) => this.log.error({ err: error }, "durable consumer check failed"))
      .finally(() => {
        this.checking = false;
        if (this.again) {
          this.again = false;
          this.recheckSoon();
        } else if (this.held.length > 0) {
          this.timer ??= setTimeout(() => {
            this.timer = undefined;
            this.recheckSoon();
          }, RECHECK_MS);
        }
      });
  }

  /** Release, in arrival order, every held publish that now has a consumer; refuse the expired. */
  private async recheck(): Promise<void> {
    const known = new Map<string, boolean>();
    const now = Date.now();
    const waiting = this.held.splice(0);
    if (this.gated()) {
      // The all-in-one ingest's gate is set: it takes what was held (into its durable inbox).
      for (const h of waiting) h.toGate();
      return;
    }
    const keep: Held[] = [];
    let i = 0;
    try {
      for (; i < waiting.length; i++) {
        const h = waiting[i] as Held;
        let yes = known.get(h.topic);
        if (yes === undefined) {
          yes = await this.hasConsumer(h.topic);
          known.set(h.topic, yes);
        }
        if (yes) this.pass(h.done);
        else if (now >= h.until) {
          this.log.warn(
            { topic: h.topic },
            "no durable consumer in time; closing connection unacknowledged",
          );
          this.refuse(h.done, "no_durable_consumer");
        } else keep.push(h);
      }
    } finally {
      // Those still waiting go first; publishes held while this ran queue behind them.
      this.held.unshift(...keep, ...waiting.slice(i));
    }
    if (this.held.length === 0 && known.size > 0)
      this.log.info({ released: waiting.length }, "held data publishes answered");
  }
}

const DEVICES = `${TOPIC_ROOT}/devices/`;

/** `citywatch/v1/devices/{id}/data`, the only topic the rule applies to. */
export function isDataTopic(topic: string): boolean {
  return topic.startsWith(DEVICES) && topic.endsWith("/data");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
