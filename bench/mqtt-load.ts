/**
 * The MQTT.js side of the broker bench: the same client code drives every broker under test.
 */
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import type { ClientCredentials } from "./broker-protocol.js";

/** Where to connect and which topic/filter pair to use, for one broker under test. */
export interface Endpoint {
  readonly url: string;
  readonly topic: string;
  readonly filter: string;
  readonly publisher: ClientCredentials;
  readonly subscriber: ClientCredentials;
}

export type QoS = 0 | 1;

export interface LoadOptions {
  /** Messages published (and awaited) once per session before the timed rounds. */
  readonly warmup: number;
  /** Messages per timed round. */
  readonly messages: number;
  readonly payload: Buffer;
  /** QoS1: publishes sent but not yet acknowledged, at most. */
  readonly window: number;
  /** QoS0: publishes written per turn of the event loop. */
  readonly chunk: number;
  /** Connecting a session, the warm-up, or one round fails after this long. */
  readonly timeoutMs: number;
  /** Publishing finished and nothing arrived for this long: the rest is lost (QoS0 only). */
  readonly idleMs: number;
}

export interface ThroughputSample {
  readonly sent: number;
  readonly received: number;
  /** From the first publish to the last receipt at the subscriber. */
  readonly seconds: number;
  /** Messages per second received at the subscriber. */
  readonly rate: number;
  /** Broker CPU time (user + system) per message received, when the broker's CPU can be read. */
  readonly brokerCpuMicrosPerMessage?: number;
  /** This process's CPU time per message: shows when the load generator, not the broker, limits. */
  readonly clientCpuMicrosPerMessage: number;
}

/** Cumulative CPU microseconds of the broker process. */
export type CpuMeter = () => Promise<number>;

function clientOptions(credentials: ClientCredentials): IClientOptions {
  return {
    clientId: credentials.clientId,
    ...(credentials.username !== undefined ? { username: credentials.username } : {}),
    ...(credentials.password !== undefined ? { password: credentials.password } : {}),
    protocolVersion: 4,
    clean: true,
    // A bench client that loses its connection has a wrong figure; it must fail, not reconnect.
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 60,
  };
}

/** `failed` rejects if `client` errors or closes before `done()`: a dropped client fails the run. */
function watchForFailure(
  client: MqttClient,
  role: string,
): { failed: Promise<never>; done(): void } {
  let done = () => {};
  const failed = new Promise<never>((_, reject) => {
    const onError = (error: Error) => reject(new Error(`${role}: ${error.message}`));
    const onClose = () => reject(new Error(`${role}: connection closed by the broker`));
    client.on("error", onError);
    client.on("close", onClose);
    done = () => {
      client.off("error", onError);
      client.off("close", onClose);
    };
  });
  // Only raced against the run; an unobserved rejection after the run must not crash the bench.
  failed.catch(() => {});
  return { failed, done: () => done() };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Counts receipts at the subscriber; the timestamp of the last one ends the timed interval. */
class ReceiptCounter {
  received = 0;
  lastAt = 0;

  constructor(client: MqttClient) {
    client.on("message", () => {
      this.received++;
      this.lastAt = performance.now();
    });
  }

  reset(): void {
    this.received = 0;
    this.lastAt = 0;
  }
}

async function publishQos0(
  client: MqttClient,
  topic: string,
  options: LoadOptions,
  count: number,
): Promise<void> {
  for (let sent = 0; sent < count;) {
    const end = Math.min(count, sent + options.chunk);
    for (; sent < end; sent++) client.publish(topic, options.payload, { qos: 0 });
    // Bounded client-side buffering: wait for the socket when the kernel stopped taking bytes.
    if (client.stream.writableNeedDrain) await once(client.stream, "drain");
    else await nextTurn();
  }
}

function publishQos1(
  client: MqttClient,
  topic: string,
  options: LoadOptions,
  count: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let acked = 0;
    // MQTT.js passes null, not undefined, on success.
    const onAck = (error?: Error | null) => {
      if (error) {
        reject(error);
        return;
      }
      acked++;
      if (acked === count) resolve();
      else fill();
    };
    const fill = () => {
      while (sent < count && sent - acked < options.window) {
        sent++;
        client.publish(topic, options.payload, { qos: 1 }, onAck);
      }
    };
    fill();
  });
}

async function runPhase(
  publisher: MqttClient,
  counter: ReceiptCounter,
  topic: string,
  qos: QoS,
  options: LoadOptions,
  count: number,
  brokerCpu: CpuMeter | undefined,
): Promise<ThroughputSample> {
  counter.reset();
  const brokerCpuBefore = await brokerCpu?.();
  const clientCpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  if (qos === 0) await publishQos0(publisher, topic, options, count);
  else await publishQos1(publisher, topic, options, count);
  let lastSeen = counter.received;
  let quietSince = performance.now();
  // Polling only decides when to stop looking; the timed interval ends at the last receipt.
  while (counter.received < count) {
    await sleep(10);
    if (counter.received !== lastSeen) {
      lastSeen = counter.received;
      quietSince = performance.now();
    } else if (performance.now() - quietSince > options.idleMs) {
      if (qos === 1)
        throw new Error(`QoS1: ${count - counter.received} acknowledged messages never arrived`);
      break;
    }
  }
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const brokerCpuAfter = await brokerCpu?.();
  const seconds = counter.received === 0 ? 0 : (counter.lastAt - startedAt) / 1000;
  const perMessage = (micros: number) => micros / Math.max(1, counter.received);
  return {
    sent: count,
    received: counter.received,
    seconds,
    rate: seconds > 0 ? counter.received / seconds : 0,
    ...(brokerCpuBefore !== undefined && brokerCpuAfter !== undefined
      ? { brokerCpuMicrosPerMessage: perMessage(brokerCpuAfter - brokerCpuBefore) }
      : {}),
    clientCpuMicrosPerMessage: perMessage(clientCpu.user + clientCpu.system),
  };
}

async function connectClient(url: string, credentials: ClientCredentials): Promise<MqttClient> {
  const client = await connectAsync(url, clientOptions(credentials));
  // An "error" event without a listener would throw out of the event loop; failures that matter
  // are caught by watchForFailure during a run, and idle clients are checked by the broker's count.
  client.on("error", () => {});
  return client;
}

async function closeClient(client: MqttClient): Promise<void> {
  try {
    await withTimeout(client.endAsync(), 5_000, "client close");
  } catch {
    // A client that will not close gracefully is torn down; the run is over either way.
    await client.endAsync(true).catch(() => {});
  }
}

/**
 * One publisher and one subscriber connection to one broker, kept open across rounds so that
 * rounds on different brokers can alternate quickly. Any error or close on either connection
 * fails the round in progress and every later one.
 */
export class ThroughputSession {
  private readonly counter: ReceiptCounter;
  private readonly watches: { failed: Promise<never>; done(): void }[];

  private constructor(
    private readonly endpoint: Endpoint,
    private readonly qos: QoS,
    private readonly options: LoadOptions,
    private readonly subscriber: MqttClient,
    private readonly publisher: MqttClient,
  ) {
    this.counter = new ReceiptCounter(subscriber);
    this.watches = [
      watchForFailure(subscriber, "subscriber"),
      watchForFailure(publisher, "publisher"),
    ];
  }

  static async open(
    endpoint: Endpoint,
    qos: QoS,
    options: LoadOptions,
  ): Promise<ThroughputSession> {
    const clients: MqttClient[] = [];
    try {
      return await withTimeout(
        (async () => {
          const subscriber = await connectClient(endpoint.url, endpoint.subscriber);
          clients.push(subscriber);
          const granted = await subscriber.subscribeAsync(endpoint.filter, { qos });
          if (granted[0]?.qos !== qos) {
            throw new Error(
              `subscription to ${endpoint.filter} granted QoS ${String(granted[0]?.qos)}, wanted ${qos}`,
            );
          }
          const publisher = await connectClient(endpoint.url, endpoint.publisher);
          clients.push(publisher);
          return new ThroughputSession(endpoint, qos, options, subscriber, publisher);
        })(),
        options.timeoutMs,
        "connecting the bench clients",
      );
    } catch (error) {
      await Promise.all(clients.map(closeClient));
      throw error;
    }
  }

  private run(count: number, brokerCpu: CpuMeter | undefined): Promise<ThroughputSample> {
    const phase = runPhase(
      this.publisher,
      this.counter,
      this.endpoint.topic,
      this.qos,
      this.options,
      count,
      brokerCpu,
    );
    return withTimeout(
      Promise.race([phase, ...this.watches.map((w) => w.failed)]),
      this.options.timeoutMs,
      `QoS${this.qos} round`,
    );
  }

  /** Untimed traffic first: JIT, socket buffers and session state settle before the rounds. */
  async warmup(): Promise<void> {
    await this.run(this.options.warmup, undefined);
  }

  /** Publish `options.messages` and time them to the subscriber. */
  round(brokerCpu?: CpuMeter): Promise<ThroughputSample> {
    return this.run(this.options.messages, brokerCpu);
  }

  async close(): Promise<void> {
    for (const watch of this.watches) watch.done();
    await Promise.all([closeClient(this.publisher), closeClient(this.subscriber)]);
  }
}

/**
 * Open one connection per credential, `batch` at a time (a thousand simultaneous SYNs overflow
 * the listen backlog and turn into retransmit delays). Closes what it opened if one fails.
 */
export async function openIdleConnections(
  url: string,
  credentials: readonly ClientCredentials[],
  batch: number,
): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  for (let i = 0; i < credentials.length; i += batch) {
    const results = await Promise.allSettled(
      credentials.slice(i, i + batch).map((c) => connectClient(url, c)),
    );
    const failures: unknown[] = [];
    for (const result of results) {
      if (result.status === "fulfilled") clients.push(result.value);
      else failures.push(result.reason);
    }
    if (failures.length > 0) {
      await closeIdleConnections(clients, batch);
      const first = failures[0];
      throw new Error(
        `${failures.length} of ${results.length} idle connections failed: ${first instanceof Error ? first.message : String(first)}`,
      );
    }
  }
  return clients;
}

export async function closeIdleConnections(
  clients: readonly MqttClient[],
  batch: number,
): Promise<void> {
  for (let i = 0; i < clients.length; i += batch) {
    await Promise.all(clients.slice(i, i + batch).map(closeClient));
  }
}
