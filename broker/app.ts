import {
  Aedes,
  type AedesPublishPacket,
  type AuthenticateError,
  type Client,
  type Subscription,
} from "aedes";
import type { Logger } from "pino";
import {
  type AuthOutcome,
  type BrokerConfig,
  deviceTopic,
  type Principal,
} from "../contracts/index.js";
import { devicePublishTopics, mayPublish, maySubscribe, retainForbidden } from "./acl.js";
import { DURABLE_DATA_DEFAULTS, DurableDataGate, isDataTopic } from "./durable.js";
import { boundPort, type Listener, openListeners } from "./listeners.js";
import { type AuthFailureReason, type BrokerMetrics, brokerMetrics } from "./metrics.js";
import { limitPacketSize, PacketTooLargeError } from "./packet-size.js";
import { persistenceFor } from "./persistence.js";
import { PublishBucket } from "./rate-limit.js";
import { indexRetained, type RetainedStore } from "./retained.js";
import { guardSubscriptionStore, type SubscriptionStore } from "./sessions.js";

export interface BrokerDeps {
  readonly log: Logger;
  readonly config: BrokerConfig;
  /** Check a username and secret against the registry (salted hashes; see registry/secrets.ts). */
  readonly authenticate: (username: string, secret: string) => AuthOutcome | Promise<AuthOutcome>;
  readonly metrics?: BrokerMetrics;
  /** Milliseconds since the epoch; injected so rate limits can be tested with a fake clock. */
  readonly now?: () => number;
  /**
   * Acknowledge a QoS 1 publish on a device's `data` topic only once a durable consumer holds
   * it: a publish gate (the all-in-one ingest), or a persistent session subscribed to it (the
   * ingest over MQTT; connected, with memory persistence). Otherwise the PUBACK is held, then
   * the connection is closed unacknowledged (broker/durable.ts). On in production
   * (`citywatch broker`, `citywatch start`); off by default so a bare broker routes like any
   * MQTT broker. `holdMs` and `maxHeld` default to 10 s and 10,000 publishes.
   */
  readonly durableData?: boolean | { readonly holdMs?: number; readonly maxHeld?: number };
}

/** Ports the broker actually listens on (useful with port 0). */
export interface BrokerAddresses {
  readonly mqtt?: number;
  readonly mqtts?: number;
  readonly ws?: number;
  readonly wss?: number;
}

/**
 * Sees every publish a client is allowed to make, before the broker acknowledges or routes it.
 * `done(null)` lets it through; `done(error)` closes the client's connection unacknowledged, so
 * the client re-sends it. Holding `done` holds the client (aedes reads no more from it).
 */
export type PublishGate = (
  topic: string,
  payload: Buffer,
  done: (error: Error | null) => void,
) => void;

export interface Broker {
  readonly metrics: BrokerMetrics;
  /** The aedes instance, for in-process publishers in the all-in-one process. */
  readonly aedes: Aedes;
  /**
   * Put a gate in front of every authorized client publish (one at most). The all-in-one
   * process's ingest writes device data to its durable inbox here, before the QoS 1 PUBACK:
   * aedes acknowledges a QoS 1 publish before routing it, so a subscriber cannot give that
   * guarantee.
   */
  setPublishGate(gate: PublishGate | undefined): void;
  /**
   * A device was revoked in the registry (cli/runtime/revocations.ts): its open connection is
   * closed at once (a rotated secret's session must not outlive the secret; a disabled or removed
   * device publishes nothing more). A removed device's registration ends here: its persistent
   * subscriptions and its retained commit are dropped, so an id registered again starts clean.
   */
  revoke(deviceId: string, why: "disabled" | "removed" | "rotated"): void;
  start(signal?: AbortSignal): Promise<BrokerAddresses>;
  stop(): Promise<void>;
}

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3. */
const CONNACK = {
  identifierRejected: 2,
  serverUnavailable: 3,
  badCredentials: 4,
  notAuthorized: 5,
} as const;

function authError(returnCode: number, message: string): AuthenticateError {
  const error = new Error(message) as AuthenticateError;
  error.returnCode = returnCode;
  return error;
}

function remoteOf(client: Client): string | undefined {
  const conn = client.conn as { remoteAddress?: string; remotePort?: number };
  const req = (client as { req?: { socket?: { remoteAddress?: string } } }).req;
  return conn.remoteAddress ?? req?.socket?.remoteAddress;
}

/** Who a principal is, for logs and metric labels. */
function principalLabel(principal: Principal | undefined): string {
  if (principal === undefined) return "unauthenticated";
  return principal.type === "device" ? "device" : `service:${principal.role}`;
}

/**
 * The embedded MQTT broker: aedes with device authentication, per-device topic ACL, limits,
 * memory or Redis persistence, and Prometheus metrics.
 */
export function build(deps: BrokerDeps): Broker {
  const { config } = deps;
  const log = deps.log.child({ module: "broker" });
  let gate: PublishGate | undefined;
  const metrics = deps.metrics ?? brokerMetrics();
  const now = deps.now ?? Date.now;
  const limits = config.limits;
  const persistence = persistenceFor(config.persistence, log);
  const durableOptions =
    deps.durableData === undefined || deps.durableData === false
      ? undefined
      : { ...DURABLE_DATA_DEFAULTS, ...(deps.durableData === true ? {} : deps.durableData) };

  const principals = new WeakMap<Client, Principal>();
  const buckets = new WeakMap<Client, PublishBucket>();
  /** A device's allowed publish topics, computed once per connection: a Set lookup per PUBLISH. */
  const devicePublish = new WeakMap<Client, ReadonlySet<string>>();

  const refuseConnect = (
    client: Client,
    username: string | undefined,
    reason: AuthFailureReason,
    code: number,
    message: string,
  ) => {
    metrics.authFailures.inc({ reason });
    log.warn(
      { clientId: client.id, username, remote: remoteOf(client), reason },
      "connection refused",
    );
    return authError(code, message);
  };

  const aedes = new Aedes({
    ...(config.id !== undefined ? { id: config.id } : {}),
    ...persistence.options,
    connectTimeout: limits.connectTimeoutMs,
    // No routing queue in aedes' in-memory emitter (mqemitter; the Redis one has none either).
    // With aedes' default of 100 messages routed at once, the rest queue, and a queued message
    // that no one subscribes to finishes inside the callback that started it: a run of thousands
    // (devices' statuses behind a slow subscriber, from a fleet) recursed until
    // "RangeError: Maximum call stack size exceeded" killed the broker
    // (tests/fault/broker/stack-depth.test.ts). Unqueued, messages are routed as they come;
    // publishers are still held by TCP backpressure, since aedes reads no further packet of a
    // client until its last batch is routed.
    concurrency: 0,
    maxTopicLevels: limits.maxTopicLevels,
    maxClientsIdLength: 128,
    // Packets a client may send before its CONNECT is processed (aedes' pre-CONNECT queue); a slow
    // reader is cut by aedes' drainTimeout (60 s default), not by this.
    queueLimit: 1_000,

    authenticate: (client, username, password, done) => {
      if (aedes.connectedClients >= limits.maxConnections) {
        metrics.limitRejections.inc({ limit: "connections" });
        log.warn(
          { clientId: client.id, remote: remoteOf(client), limit: limits.maxConnections },
          "connection cap reached",
        );
        done(authError(CONNACK.serverUnavailable, "server at connection capacity"), false);
        return;
      }
      if (username === undefined || password === undefined) {
        done(
          refuseConnect(
            client,
            username,
            "missing_credentials",
            CONNACK.badCredentials,
            "username and password required",
          ),
          false,
        );
        return;
      }
      Promise.resolve(deps.authenticate(username, password.toString("utf8"))).then(
        (outcome) => {
          if (!outcome.ok) {
            // Unknown user and wrong secret look the same to the client, so ids cannot be probed.
            const code =
              outcome.reason === "disabled" ? CONNACK.notAuthorized : CONNACK.badCredentials;
            done(
              refuseConnect(client, username, outcome.reason, code, "bad user name or password"),
              false,
            );
            return;
          }
          const principal = outcome.principal;
          // A client id is a session: taking another device's id would kick it off [MQTT-3.1.4-2].
          const idOk =
            principal.type === "device"
              ? client.id === principal.deviceId
              : client.id === principal.name || client.id.startsWith(`${principal.name}-`);
          if (!idOk) {
            done(
              refuseConnect(
                client,
                username,
                "client_id_mismatch",
                CONNACK.identifierRejected,
                "client id must match the account",
              ),
              false,
            );
            return;
          }
          // A device's Will announces its death on its own status topic, and nowhere else.
          const will = (client as { _will?: { topic?: string } | null })._will;
          const willAllowed =
            will?.topic === undefined ||
            (principal.type === "device"
              ? will.topic === deviceTopic(principal.deviceId, "status")
              : mayPublish(principal, will.topic));
          if (!willAllowed) {
            done(
              refuseConnect(
                client,
                username,
                "will_denied",
                CONNACK.notAuthorized,
                "will topic not allowed",
              ),
              false,
            );
            return;
          }
          principals.set(client, principal);
          if (principal.type === "device") {
            devicePublish.set(client, devicePublishTopics(principal.deviceId));
            buckets.set(
              client,
              new PublishBucket(limits.publishRatePerSecond, limits.publishBurst, now),
            );
          }
          metrics.connections.inc({ principal: principalLabel(principal) });
          done(null, true);
        },
        (error: unknown) => {
          log.error({ err: error, username }, "credential store failed");
          done(authError(CONNACK.serverUnavailable, "credential store unavailable"), false);
        },
      );
    },

    authorizePublish: (client, packet, callback) => {
      // client is null for the broker's own publishes (wills restored from persistence).
      if (client === null) return callback(null);
      const principal = principals.get(client);
      const allowed =
        principal !== undefined &&
        (devicePublish.get(client)?.has(packet.topic) ??
          (principal.type === "service" && mayPublish(principal, packet.topic)));
      if (!allowed) {
        metrics.aclDenials.inc({ action: "publish", principal: principalLabel(principal) });
        log.warn(
          { clientId: client.id, topic: packet.topic, principal: principalLabel(principal) },
          "publish denied by ACL; closing connection",
        );
        // MQTT 3.1.1 cannot NACK a PUBLISH; the server must ack or close [MQTT-3.3.5-2]. We close.
        return callback(new Error(`not authorized to publish on ${packet.topic}`));
      }
      if (packet.retain && retainForbidden(packet.topic)) {
        // Delivered as a live message; aedes stores retained messages after this hook.
        packet.retain = false;
        metrics.retainDropped.inc();
        log.debug({ clientId: client.id, topic: packet.topic }, "retain flag dropped");
      }
      const bucket = buckets.get(client);
      const wait = bucket?.reserve() ?? 0;
      const toGate = (next: PublishGate) => {
        const payload =
          typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
        next(packet.topic, payload, callback);
      };
      const admit = () => {
        metrics.hot.publishesIn[packet.qos]++;
        if (gate !== undefined) return toGate(gate);
        if (durable !== undefined && packet.qos > 0 && isDataTopic(packet.topic))
          return durable.admit(packet.topic, callback, () =>
            gate === undefined ? callback(new Error("publish gate gone")) : toGate(gate),
          );
        callback(null);
      };
      if (wait === 0) return admit();
      if (wait > limits.maxThrottleMs) {
        bucket?.refund();
        metrics.limitRejections.inc({ limit: "publish_rate" });
        log.warn(
          { clientId: client.id, waitMs: wait, rate: limits.publishRatePerSecond },
          "publish rate far above limit; closing connection",
        );
        return callback(new Error("publish rate limit exceeded"));
      }
      // Holding the callback stops aedes reading this socket: TCP backpressure on the device.
      metrics.publishesThrottled.inc();
      setTimeout(admit, wait);
    },

    authorizeSubscribe: (client, subscription: Subscription, callback) => {
      const principal = principals.get(client);
      if (principal !== undefined && maySubscribe(principal, subscription.topic)) {
        return callback(null, subscription);
      }
      metrics.aclDenials.inc({ action: "subscribe", principal: principalLabel(principal) });
      log.warn(
        { clientId: client.id, filter: subscription.topic, principal: principalLabel(principal) },
        "subscribe denied by ACL",
      );
      // A null subscription is granted as 0x80 (failure) in the SUBACK [MQTT-3.9.3].
      callback(null, null);
    },

    authorizeForward: (_client, packet: AedesPublishPacket) => {
      metrics.hot.publishesOut++;
      return packet;
    },
  });

  metrics.observeConnectedClients(() => aedes.connectedClients);
  const durable =
    durableOptions === undefined
      ? undefined
      : new DurableDataGate(
          aedes,
          {
            ...durableOptions,
            // Memory persistence loses a session's queue with this process.
            consumerMustBeConnected: config.persistence.type === "memory",
          },
          metrics,
          log,
          () => gate !== undefined,
        );
  aedes.on("clientError", (client, error) => {
    if (error instanceof PacketTooLargeError) return; // counted where it was raised
    if (error.message === "topic has too many levels") {
      metrics.limitRejections.inc({ limit: "topic_levels" });
      log.warn(
        { clientId: client.id, remote: remoteOf(client) },
        "topic has too many levels; closing connection",
      );
      return;
    }
    metrics.clientErrors.inc();
    log.debug({ clientId: client.id, err: error.message }, "client error");
  });
  aedes.on("connectionError", (client, error) => {
    if (error instanceof PacketTooLargeError) return;
    metrics.clientErrors.inc();
    log.debug({ remote: remoteOf(client), err: error.message }, "connection error before CONNECT");
  });

  const handle = (
    stream: Parameters<Aedes["handle"]>[0],
    request?: Parameters<Aedes["handle"]>[1],
  ) => {
    const client = aedes.handle(stream, request);
    limitPacketSize(client, limits.maxPacketBytes, (error) => {
      metrics.limitRejections.inc({ limit: "packet_size" });
      log.warn(
        {
          clientId: client.id,
          remote: remoteOf(client),
          bytes: error.announced,
          limit: error.limit,
        },
        "packet too large; closing connection",
      );
    });
  };

  let listeners: Listener[] = [];
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // No new connections; what was acknowledged reaches the consumers' queues first.
      for (const l of listeners) l.stopAccepting();
      await durable?.drain();
      await Promise.all(listeners.map((l) => l.close()));
      listeners = [];
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await persistence.close();
      log.info("broker stopped");
    })();
    return stopping;
  };

  const start = async (signal?: AbortSignal): Promise<BrokerAddresses> => {
    signal?.throwIfAborted();
    await aedes.listen();
    // aedes creates its persistence in listen().
    guardSubscriptionStore(
      (aedes as unknown as { persistence: SubscriptionStore }).persistence,
      (client, topic) => {
        const principal = principals.get(client);
        return principal !== undefined && maySubscribe(principal, topic);
      },
    );
    // Memory persistence: a SUBSCRIBE finds its retained messages by topic, not by a scan of
    // every retained message (broker/retained.ts). Redis persistence keeps its own.
    if (config.persistence.type === "memory") {
      indexRetained((aedes as unknown as { persistence: RetainedStore }).persistence);
    }
    try {
      listeners = await openListeners({
        config,
        handle,
        // Headroom over the MQTT-level cap so refused clients still get a CONNACK telling them why.
        maxSockets: Math.ceil(limits.maxConnections * 1.1) + 10,
      });
    } catch (error) {
      await stop();
      throw error;
    }
    signal?.addEventListener("abort", () => void stop(), { once: true });
    const addresses: Record<string, number> = {};
    for (const l of listeners) addresses[l.name] = boundPort(l);
    log.info(
      { id: aedes.id, host: config.host, ...addresses, persistence: config.persistence.type },
      "broker listening",
    );
    return addresses;
  };

  return {
    metrics,
    aedes,
    start,
    stop,
    setPublishGate(next) {
      gate = next;
      if (next !== undefined) durable?.wake();
    },
    revoke(deviceId, why) {
      // aedes' types name neither its clients by id nor its persistence.
      const internals = aedes as unknown as {
        clients: Record<string, Client | undefined>;
        persistence: { cleanSubscriptions(client: { id: string }): Promise<void> };
      };
      const client = internals.clients[deviceId];
      if (client !== undefined) {
        metrics.sessionsRevoked.inc({ why });
        log.warn({ device: deviceId, why }, "closed a revoked device's connection");
        client.close();
      }
      if (why !== "removed") return;
      const dropped = (what: string) => (error: unknown) =>
        log.warn({ err: (error as Error).message, device: deviceId }, `could not drop ${what}`);
      Promise.resolve(internals.persistence.cleanSubscriptions({ id: deviceId })).catch(
        dropped("the removed device's persistent subscriptions"),
      );
      // An empty retained message deletes the retained one (MQTT 3.1.1 §3.3.1.3).
      aedes.publish(
        {
          cmd: "publish",
          topic: deviceTopic(deviceId, "commit"),
          payload: Buffer.alloc(0),
          qos: 0,
          dup: false,
          retain: true,
        },
        (error) => {
          if (error) dropped("the removed device's retained commit")(error);
        },
      );
    },
  };
}
