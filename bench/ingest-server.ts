/**
 * The system under test of the ingest bench, run in its own process by bench/ingest.ts: the
 * all-in-one shape of cli/commands/serve.ts (the broker and the ingest in one process, the
 * ingest taking device data at the broker's publish gate, cli/local-broker.ts), or the same
 * broker alone with a gate that only counts. Started with child_process.fork; talks over IPC (bench/ingest-protocol.ts).
 *
 *   node --import tsx bench/ingest-server.ts '<ServerArgs as JSON>'
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { build as buildBroker } from "../broker/app.js";
import { BrokerConfig, IngestConfig } from "../contracts/index.js";
import type { Ingest } from "../ingest/app.js";
import { buildSystem, type System } from "../cli/runtime/system.js";
import { localBroker } from "../cli/runtime/local-broker.js";
import { metricValue } from "../infra/metrics.js";
import { RegistryStore } from "../registry/store.js";
import { benchCity } from "./bench-city.js";
import type { ClientCredentials } from "./broker-protocol.js";
import { type ChildMessage, ParentMessage, ServerArgs } from "./ingest-protocol.js";
import { stopThenExit } from "./child-exit.js";

function send(message: ChildMessage): void {
  process.send?.(message);
}

/** The ingest's data directory, removed however the child ends. */
let dataDir: string | undefined;

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("bench/ingest-server.ts runs under fork() only");
  const args = ServerArgs.parse(JSON.parse(process.argv[2] ?? "null"));
  const log = pino({ level: "silent" });

  const registry = new RegistryStore(":memory:");
  // Expected interval 60 s: the rules see live devices, and the bench's own pauses between rounds
  // (counting the store, a few seconds) are not device silence. At 1 s every device's deadman
  // raised in each pause and cleared at the next round, and the ingest's CPU figure measured the
  // task service filing and clearing a hundred alarms (npm run bench -- alerts measures that path).
  const city = benchCity(registry, 60);
  const devices: ClientCredentials[] = args.devices.map(({ id, kind }) => city.add(id, kind));

  const config = BrokerConfig.parse({
    host: "127.0.0.1",
    mqtt: { port: 0 },
    ws: { enabled: false },
    // High enough never to throttle, while every PUBLISH still goes through the token bucket.
    limits: { publishRatePerSecond: 1e9, publishBurst: 1e9 },
    persistence: { type: "memory" },
  });
  const broker = buildBroker({
    log,
    config,
    authenticate: (username, secret) => registry.authenticate(username, secret),
  });
  const addresses = await broker.start();
  if (addresses.mqtt === undefined) throw new Error("the broker opened no MQTT listener");
  const port = addresses.mqtt;

  let system: System | undefined;
  let ingest: Ingest | undefined;
  /** Broker alone: messages its publish gate let through (the ingest's gate, doing nothing). */
  let gated = 0;
  if (args.variant === "all-in-one") {
    dataDir = await mkdtemp(join(tmpdir(), "citywatch-bench-ingest-"));
    system = buildSystem({
      log,
      config: IngestConfig.parse({
        store:
          args.store.type === "sqlite"
            ? { type: "sqlite" }
            : { type: "influxdb", url: args.store.url, database: args.store.database },
        ...args.ingestConfig,
      }),
      dataDir,
      registry: registry.view(),
      local: localBroker(broker, log),
    });
    await system.start();
    ingest = system.ingest;
  } else {
    broker.setPublishGate((_topic, _payload, done) => {
      gated++;
      done(null);
    });
  }

  const stop = stopThenExit(async () => {
    await system?.stop();
    await broker.stop();
    registry.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  const answer = async (message: ParentMessage): Promise<ChildMessage | undefined> => {
    switch (message.type) {
      case "sample": {
        const usage = process.cpuUsage();
        return {
          type: "sample",
          id: message.id,
          cpuMicros: usage.user + usage.system,
          readingsStored: ingest ? await metricValue(ingest.metrics.readingsStored) : 0,
          messagesReceived: ingest ? await metricValue(ingest.metrics.messagesReceived) : gated,
        };
      }
      case "stats": {
        if (ingest === undefined) {
          return {
            type: "stats",
            id: message.id,
            inbox: 0,
            deadLetters: 0,
            duplicates: 0,
            storeErrors: 0,
            storeWrites: 0,
            storeWriteSeconds: 0,
          };
        }
        const latency = (await ingest.metrics.storeLatency.get()).values;
        const pick = (name: string) =>
          latency.find((v) => v.metricName === `citywatch_ingest_store_write_seconds_${name}`)
            ?.value ?? 0;
        return {
          type: "stats",
          id: message.id,
          inbox: ingest.state.inbox.depth(),
          deadLetters: ingest.state.deadLetters.count(),
          duplicates: await metricValue(ingest.metrics.duplicates),
          storeErrors: await metricValue(ingest.metrics.storeErrors),
          storeWrites: pick("count"),
          storeWriteSeconds: pick("sum"),
        };
      }
      case "stop":
        void stop();
        return undefined;
    }
  };

  process.on("message", (raw: unknown) => {
    const parsed = ParentMessage.safeParse(raw);
    if (!parsed.success) {
      send({ type: "failed", message: `unexpected message: ${JSON.stringify(raw)}` });
      return;
    }
    const id = "id" in parsed.data ? parsed.data.id : undefined;
    answer(parsed.data).then(
      (reply) => {
        if (reply !== undefined) send(reply);
      },
      (error: unknown) =>
        send({
          type: "failed",
          ...(id !== undefined ? { id } : {}),
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  });
  // The parent went away without saying stop (crash, Ctrl-C): never outlive it.
  process.on("disconnect", () => void stop());

  send({
    type: "ready",
    port,
    devices,
    ...(dataDir !== undefined && args.store.type === "sqlite"
      ? { timeseriesFile: join(dataDir, "timeseries.db") }
      : {}),
  });
}

main().catch(async (error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`ingest-server: ${message}\n`);
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
  if (process.send === undefined || !process.connected) process.exit(1);
  process.send({ type: "failed", message } satisfies ChildMessage, () => process.exit(1));
});
