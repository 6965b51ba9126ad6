/**
 * The system under test of the alerts bench, in its own process (bench/alerts.ts forks it): the
 * all-in-one shape of cli/commands/serve.ts — broker, ingest at the broker's publish gate, rules
 * (the default pack plus one probe rule), tasks and the HTTP API with the live task stream — on
 * the embedded SQLite store in a temporary directory.
 *
 *   node --import tsx bench/alerts-server.ts '<AlertsArgs as JSON>'
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { z } from "zod";
import { build as buildBroker } from "../broker/app.js";
import { localBroker } from "../cli/runtime/local-broker.js";
import { BrokerConfig, IngestConfig, SensorKind } from "../contracts/index.js";
import { buildApi } from "../cli/runtime/api.js";
import { buildSystem } from "../cli/runtime/system.js";
import { RegistryStore } from "../registry/store.js";
import { benchCity } from "./bench-city.js";
import { stopThenExit } from "./child-exit.js";

export const AlertsArgs = z.strictObject({
  /** Background devices (bench/ingest-payloads.ts benchDevices). */
  devices: z.array(z.strictObject({ id: z.string(), kind: SensorKind })),
  /** Probe devices (noise), one alarm each. */
  probes: z.array(z.string()),
});
export type AlertsArgs = z.infer<typeof AlertsArgs>;

const Credentials = z.strictObject({
  clientId: z.string(),
  username: z.string(),
  password: z.string(),
});

export const AlertsReady = z.strictObject({
  type: z.literal("ready"),
  mqttPort: z.number().int(),
  httpPort: z.number().int(),
  token: z.string(),
  devices: z.array(Credentials),
  probes: z.array(Credentials),
});
export type AlertsReady = z.infer<typeof AlertsReady>;

/** The probe rule: any LAeq above 100 dB(A), raised at once (no `for`), an enforcement case. */
export const PROBE_RULE = `
rules:
  - id: bench.probe-loud
    version: 1
    title: Probe - latest LAeq above 100 dB(A) (alerts bench)
    clause: { standard: BENCH, section: "alert latency probe" }
    confidence: verified
    taskKind: enforcement
    scope: { kinds: [noise] }
    subject: device
    condition: { type: threshold, quantity: LAeq, aggregate: latest, op: ">", raise: 100 }
`;

async function main(): Promise<void> {
  const args = AlertsArgs.parse(JSON.parse(process.argv[2] ?? "null"));
  const dir = await mkdtemp(join(tmpdir(), "citywatch-bench-alerts-"));
  const log = pino({ level: "silent" });
  const registry = new RegistryStore(":memory:");
  const city = benchCity(registry, 60);
  const add = (id: string, kind: SensorKind) => city.add(id, kind);
  const devices = args.devices.map((d) => add(d.id, d.kind));
  const probes = args.probes.map((id) => add(id, "noise"));

  const rulesDir = join(dir, "rules");
  await mkdir(rulesDir);
  await writeFile(join(rulesDir, "probe.yaml"), PROBE_RULE);

  const broker = buildBroker({
    log,
    config: BrokerConfig.parse({
      host: "127.0.0.1",
      mqtt: { port: 0 },
      ws: { enabled: false },
      limits: { publishRatePerSecond: 1e9, publishBurst: 1e9 },
      persistence: { type: "memory" },
    }),
    authenticate: (username, secret) => registry.authenticate(username, secret),
  });
  const addresses = await broker.start();
  const view = registry.view();
  const system = buildSystem({
    log,
    config: IngestConfig.parse({ rules: { directories: [rulesDir], tickMs: 1_000 } }),
    dataDir: dir,
    registry: view,
    local: localBroker(broker, log),
  });
  await system.start();
  const { ingest, tasks } = system;
  const api = buildApi({
    registry: view,
    state: ingest.state,
    store: ingest.store,
    metrics: [ingest.metrics.registry],
    health: () => ({ ok: true, detail: {} }),
    onlineIntervals: 3,
    now: Date.now,
    tasks: tasks.api,
  });
  await api.listen({ host: "127.0.0.1", port: 0 });
  const address = api.server.address();
  const httpPort = typeof address === "object" && address !== null ? address.port : 0;
  const { token } = tasks.tokens.add("bench", "viewer");

  const stop = stopThenExit(async () => {
    await api.close();
    await system.stop();
    await broker.stop();
    registry.close();
    await rm(dir, { recursive: true, force: true });
  });
  process.on("message", (message: unknown) => {
    if ((message as { type?: unknown } | null)?.type === "stop") void stop();
  });
  process.on("disconnect", () => void stop());
  const ready: AlertsReady = {
    type: "ready",
    mqttPort: addresses.mqtt ?? 0,
    httpPort,
    token,
    devices,
    probes,
  };
  process.send?.(ready);
}

if (process.send !== undefined) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
