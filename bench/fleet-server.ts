/**
 * The system under test of the fleet bench, run in its own process by bench/fleet.ts: what
 * `citywatch start` runs (cli/commands/serve.ts) without the HTTP API — the registry in its
 * SQLite file with its revocation watch, the broker authenticating every device against it with
 * durable data on, and the ingest, rules and tasks taking device data at the broker's publish
 * gate, storing into the embedded SQLite store (or, as the `broker` variant, the same broker with
 * a publish gate that only counts). The devices are registered here, in one
 * transaction, each with its own secret, and handed to the parent. Talks over IPC
 * (bench/fleet-protocol.ts).
 *
 *   node --expose-gc --import tsx bench/fleet-server.ts '<ServerArgs as JSON>'
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { pino } from "pino";
import { build as buildBroker } from "../broker/app.js";
import { BrokerConfig, IngestConfig, Site } from "../contracts/index.js";
import { localBroker } from "../cli/runtime/local-broker.js";
import { registryPath } from "../cli/runtime/registry-file.js";
import { RegistryRevocations, withRevocations } from "../cli/runtime/revocations.js";
import { authenticateDevices } from "../cli/runtime/standby.js";
import { buildSystem, type System } from "../cli/runtime/system.js";
import { metricValue } from "../infra/metrics.js";
import { RegistryStore } from "../registry/store.js";
import {
  answerRequests,
  type FleetDevice,
  type ServerMessage,
  ServerArgs,
  ServerRequest,
} from "./fleet-protocol.js";
import { benchDevices } from "./ingest-payloads.js";
import { stopThenExit } from "./child-exit.js";

/** Dust monitors per ambient station, and gas monitors per tunnel segment. */
const DUST_PER_STATION = 20;
const GAS_PER_SEGMENT = 5;

/** The warm-up devices' expected interval: a day. */
const WARMUP_INTERVAL_S = 86_400;

const AREA = { district: "Bench", gridCell: "BENCH-001" };
const LOCATION = { lat: 30.6571, lon: 104.0817 };

function send(message: ServerMessage): void {
  process.send?.(message);
}

/**
 * A city for the fleet: half dust monitors at ambient stations, half gas monitors in the gas
 * compartments of tunnel segments, a few to a site as in a real city (one segment holding
 * thousands of sensors would make every reading's k-of-n evaluation look at all of them).
 */
function register(registry: RegistryStore, args: ServerArgs): FleetDevice[] {
  const sites = new Set<string>();
  const site = (kind: "dust" | "utility_tunnel", n: number) => {
    const id =
      kind === "dust"
        ? `fleet-station-${Math.floor(n / DUST_PER_STATION)}`
        : `fleet-segment-${Math.floor(n / GAS_PER_SEGMENT)}`;
    if (!sites.has(id)) {
      sites.add(id);
      registry.putSite(
        Site.parse(
          kind === "dust"
            ? { id, type: "ambient", name: id, area: AREA, location: LOCATION }
            : {
                id,
                type: "tunnel_segment",
                name: id,
                area: AREA,
                location: LOCATION,
                tunnel: "fleet-tunnel",
                compartment: "gas",
                neighbours: [],
              },
        ),
      );
    }
    return id;
  };
  const counts = { dust: 0, utility_tunnel: 0 };
  return benchDevices(args.devices).map(({ id, kind }, i) => {
    const siteId = site(kind, counts[kind]++);
    const { secret } = registry.addDevice({
      id,
      kind,
      model: "bench",
      serial: id,
      location: LOCATION,
      area: AREA,
      siteId,
      expectedIntervalS: i < args.devices - args.warmup ? args.intervalS : WARMUP_INTERVAL_S,
    });
    return { id, kind, password: secret };
  });
}

/** Rows in the embedded store's one table of readings, whatever ingest/store/sqlite.ts calls it. */
function countRows(file: string): number {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'reading%'")
      .all() as Array<{ name: string }>;
    const [table] = tables;
    if (table === undefined || tables.length > 1) {
      throw new Error(`${file}: expected one table of readings, found ${tables.length}`);
    }
    const row = db.prepare(`SELECT count(*) AS n FROM "${table.name.replace(/"/g, '""')}"`).get();
    return (row as { n: number }).n;
  } finally {
    db.close();
  }
}

function collectGarbage(): void {
  const gc = globalThis.gc;
  if (gc === undefined) throw new Error("start the fleet server with --expose-gc");
  // Several passes: what one pass frees (weak maps, finalizers) the next collects.
  for (let i = 0; i < 3; i++) gc();
}

/** The data directory (registry, inbox, store): removed by the child when it stops, else by the parent. */
let dataDir: string | undefined;

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error("bench/fleet-server.ts runs under fork() only");
  const args = ServerArgs.parse(JSON.parse(process.argv[2] ?? "null"));
  const log = pino({ level: "silent" });
  dataDir = args.dataDir;

  const registry = new RegistryStore(registryPath(dataDir));
  const registering = performance.now();
  const held = registry.hold();
  let devices: FleetDevice[];
  try {
    devices = register(registry, args);
    held.commit();
  } catch (error) {
    held.rollback();
    throw error;
  }
  const registerMs = performance.now() - registering;

  const revocations = new RegistryRevocations(registry.file, { log });
  revocations.start();
  const broker = buildBroker({
    log,
    // As shipped, but on a port of its own and without the WebSocket listener.
    config: BrokerConfig.parse({
      host: "127.0.0.1",
      mqtt: { port: 0 },
      ws: { enabled: false },
      persistence: { type: "memory" },
    }),
    authenticate: authenticateDevices(registry, log),
    durableData: true,
  });
  const addresses = await broker.start();
  revocations.onRevoked(({ deviceId, why }) => broker.revoke(deviceId, why));
  if (addresses.mqtt === undefined) throw new Error("the broker opened no MQTT listener");
  let system: System | undefined;
  /** Broker alone: the messages its publish gate let through. */
  let gated = 0;
  if (args.variant === "all-in-one") {
    system = buildSystem({
      log,
      config: IngestConfig.parse({ store: { type: "sqlite" } }),
      dataDir,
      registry: withRevocations(registry.resolvedView(), revocations),
      local: localBroker(broker, log),
    });
    await system.start();
  } else {
    broker.setPublishGate((_topic, _payload, done) => {
      gated++;
      done(null);
    });
  }
  const ingest = system?.ingest;

  const stop = stopThenExit(async () => {
    await system?.stop();
    await broker.stop();
    revocations.close();
    registry.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  const answer = async (message: ServerRequest): Promise<ServerMessage | undefined> => {
    switch (message.type) {
      case "sample": {
        const usage = process.cpuUsage();
        const memory = process.memoryUsage();
        return {
          type: "sample",
          id: message.id,
          cpuMicros: usage.user + usage.system,
          rss: memory.rss,
          heapUsed: memory.heapUsed,
          heapTotal: memory.heapTotal,
          external: memory.external,
          connectedClients: broker.aedes.connectedClients,
          readingsStored: ingest ? await metricValue(ingest.metrics.readingsStored) : 0,
          messagesReceived: ingest ? await metricValue(ingest.metrics.messagesReceived) : gated,
        };
      }
      case "measure": {
        collectGarbage();
        const memory = process.memoryUsage();
        return {
          type: "measure",
          id: message.id,
          heapUsed: memory.heapUsed,
          rss: memory.rss,
          connectedClients: broker.aedes.connectedClients,
        };
      }
      case "count": {
        if (ingest === undefined) throw new Error("the broker alone stores nothing to count");
        const committed: Record<string, number> = {};
        for (const progress of ingest.state.ledger.all()) {
          committed[progress.deviceId] = progress.committedSeq;
        }
        return {
          type: "count",
          id: message.id,
          storeRows: countRows(join(dataDir ?? "", "timeseries.db")),
          readingsStored: await metricValue(ingest.metrics.readingsStored),
          duplicates: await metricValue(ingest.metrics.duplicates),
          deadLetters: ingest.state.deadLetters.count(),
          storeErrors: await metricValue(ingest.metrics.storeErrors),
          inbox: ingest.state.inbox.depth(),
          committed,
          connectionsAccepted: await metricValue(broker.metrics.connections),
          authFailures: await metricValue(broker.metrics.authFailures),
          limitRejections: await metricValue(broker.metrics.limitRejections),
          clientErrors: await metricValue(broker.metrics.clientErrors),
        };
      }
      case "stop":
        void stop();
        return undefined;
    }
  };

  answerRequests(ServerRequest, answer);
  // The parent went away without saying stop (crash, Ctrl-C): never outlive it.
  process.on("disconnect", () => void stop());

  send({ type: "ready", port: addresses.mqtt, devices, registerMs });
}

main().catch(async (error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`fleet-server: ${message}\n`);
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true }).catch(() => {});
  if (process.send === undefined || !process.connected) process.exit(1);
  process.send({ type: "failed", message } satisfies ServerMessage, () => process.exit(1));
});
