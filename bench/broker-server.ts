/**
 * A broker under test, run in its own process by bench/broker.ts so that the broker and the
 * MQTT.js load generator do not share one event loop (as in a deployment). Started with
 * child_process.fork; talks over IPC (bench/broker-protocol.ts).
 *
 *   node --import tsx --expose-gc bench/broker-server.ts <shipped|aedes> <idle device count>
 */
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { Aedes } from "aedes";
import { pino } from "pino";
import { build } from "../broker/app.js";
import { BrokerConfig, type DeviceInput, Site } from "../contracts/index.js";
import { RegistryStore } from "../registry/store.js";
import {
  type ChildMessage,
  type ClientCredentials,
  ParentMessage,
  PUBLISHER_ID,
  ServerVariant,
  SUBSCRIBER_ID,
} from "./broker-protocol.js";
import { stopThenExit } from "./child-exit.js";

interface RunningServer {
  readonly port: number;
  readonly publisher: ClientCredentials;
  readonly subscriber: ClientCredentials;
  readonly idle: ClientCredentials[];
  connectedClients(): number;
  stop(): Promise<void>;
}

function idleDeviceId(i: number): string {
  return `bench-idle-${String(i).padStart(4, "0")}`;
}

async function startShipped(idleCount: number): Promise<RunningServer> {
  const store = new RegistryStore(":memory:");
  const site = Site.parse({
    id: "bench-site",
    type: "ambient",
    name: "Benchmark site",
    area: { district: "Bench", gridCell: "BENCH-001" },
    location: { lat: 30.6571, lon: 104.0817 },
  });
  store.putSite(site);
  const register = (id: string) => {
    const input: DeviceInput = {
      id,
      kind: "noise",
      model: "bench",
      serial: id,
      location: site.location,
      area: site.area,
      siteId: site.id,
    };
    const { secret } = store.addDevice(input);
    return { clientId: id, username: id, password: secret };
  };
  const publisher = register(PUBLISHER_ID);
  const ingest = store.addServiceAccount({ name: "ingest", role: "ingest" });
  // Registered before the parent's baseline measurement, so the registry is not counted per connection.
  const idle = Array.from({ length: idleCount }, (_, i) => register(idleDeviceId(i)));

  const config = BrokerConfig.parse({
    host: "127.0.0.1",
    mqtt: { port: 0 },
    ws: { enabled: false },
    // High enough never to throttle, while every PUBLISH still goes through the token bucket.
    limits: { publishRatePerSecond: 1e9, publishBurst: 1e9 },
    persistence: { type: "memory" },
  });
  const broker = build({
    log: pino({ level: "silent" }),
    config,
    authenticate: (username, secret) => store.authenticate(username, secret),
  });
  const addresses = await broker.start();
  if (addresses.mqtt === undefined) throw new Error("shipped broker opened no MQTT listener");
  return {
    port: addresses.mqtt,
    publisher,
    subscriber: { clientId: SUBSCRIBER_ID, username: "ingest", password: ingest.secret },
    idle,
    connectedClients: () => broker.aedes.connectedClients,
    stop: async () => {
      await broker.stop();
      store.close();
    },
  };
}

async function startBareAedes(idleCount: number): Promise<RunningServer> {
  const aedes = new Aedes();
  await aedes.listen();
  const server = createServer(aedes.handle);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    publisher: { clientId: PUBLISHER_ID },
    subscriber: { clientId: SUBSCRIBER_ID },
    idle: Array.from({ length: idleCount }, (_, i) => ({ clientId: idleDeviceId(i) })),
    connectedClients: () => aedes.connectedClients,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await closed;
    },
  };
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

function collectGarbage(): void {
  const gc = globalThis.gc;
  if (gc === undefined) throw new Error("start the broker child with --expose-gc");
  // Several passes: objects freed by one pass (weak maps, finalizers) are collected by the next.
  for (let i = 0; i < 3; i++) gc();
}

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("bench/broker-server.ts runs under fork() only");
  const variant = ServerVariant.parse(process.argv[2]);
  const idleCount = Number(process.argv[3] ?? "0");
  if (!Number.isInteger(idleCount) || idleCount < 0) throw new Error("idle count must be >= 0");

  const server =
    variant === "shipped" ? await startShipped(idleCount) : await startBareAedes(idleCount);

  const stop = stopThenExit(async () => {
    await server.stop();
  });

  process.on("message", (raw: unknown) => {
    const parsed = ParentMessage.safeParse(raw);
    if (!parsed.success) {
      send({ type: "failed", message: `unexpected message: ${JSON.stringify(raw)}` });
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case "measure": {
        collectGarbage();
        const usage = process.memoryUsage();
        send({
          type: "memory",
          heapUsed: usage.heapUsed,
          rss: usage.rss,
          connectedClients: server.connectedClients(),
        });
        return;
      }
      case "cpu": {
        const usage = process.cpuUsage();
        send({ type: "cpu", micros: usage.user + usage.system });
        return;
      }
      case "stop":
        void stop();
        return;
    }
  });
  // The parent went away without saying stop (crash, Ctrl-C): never outlive it.
  process.on("disconnect", () => void stop());

  send({
    type: "ready",
    port: server.port,
    publisher: server.publisher,
    subscriber: server.subscriber,
    idle: server.idle,
  });
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`broker-server: ${message}\n`);
  // A half-started broker may hold the event loop open; exit once the parent has the reason.
  if (process.send === undefined || !process.connected) process.exit(1);
  process.send({ type: "failed", message } satisfies ChildMessage, () => process.exit(1));
});
