import type { Logger } from "pino";
import { build as buildBroker, type BrokerAddresses } from "../../broker/app.js";
import { deviceTopic, type CitywatchConfig, type SensorKind } from "../../contracts/index.js";

/** Plausible values per kind for the example command printed at start. */
const SAMPLE_VALUES: Record<SensorKind, Record<string, number | boolean>> = {
  noise: { LAeq: 58.2, LAmax: 71.5 },
  dust: { pm10: 86, pm2_5: 41 },
  cooking_fume: { oilFume: 0.8, fanOn: true, purifierOn: true },
  water_level: { stage: 3.2 },
  utility_tunnel: { ch4: 2, o2: 20.9 },
};

interface Example {
  id: string;
  kind: SensorKind;
  secret?: string;
}
import { RegistryStore } from "../../registry/store.js";
import { startHttp } from "../http.js";
import { stopOnSignal } from "../lifecycle.js";
import { DEMO_REGISTRY_FILE, readRegistryFile, registryPath } from "../registry-file.js";

function connectHelp(
  host: string,
  addresses: BrokerAddresses,
  metricsUrl: string,
  example: Example,
): string {
  const shownHost = host === "0.0.0.0" ? "127.0.0.1" : host;
  const topic = deviceTopic(example.id, "data");
  const now = new Date().toISOString();
  const payload = JSON.stringify({
    v: 1,
    deviceId: example.id,
    seq: 1,
    kind: example.kind,
    readings: [{ ts: now, quality: "normal", values: SAMPLE_VALUES[example.kind] }],
  });
  const lines = [
    "",
    "citywatch broker is up.",
    `  MQTT       mqtt://${shownHost}:${addresses.mqtt ?? "-"}`,
    ...(addresses.mqtts !== undefined
      ? [`  MQTT/TLS   mqtts://${shownHost}:${addresses.mqtts}`]
      : []),
    ...(addresses.ws !== undefined ? [`  WebSocket  ws://${shownHost}:${addresses.ws}/mqtt`] : []),
    ...(addresses.wss !== undefined
      ? [`  WebSocket  wss://${shownHost}:${addresses.wss}/mqtt`]
      : []),
    `  Metrics    ${metricsUrl}`,
    "",
    "Connect a device: username and client id = device id, password = its secret.",
    `  mosquitto_pub -h ${shownHost} -p ${addresses.mqtt ?? "PORT"} -V mqttv311 -q 1 \\`,
    `    -i ${example.id} -u ${example.id} -P '${example.secret ?? "<secret>"}' \\`,
    `    -t ${topic} \\`,
    `    -m '${payload}'`,
    ...(example.secret === undefined
      ? [
          `  (secrets are shown only when issued; get a new one with: npm run citywatch -- devices rotate-secret ${example.id})`,
        ]
      : []),
    "Register your own: npm run citywatch -- devices add --help    Protocol: docs/protocol.md",
    "",
  ];
  return lines.join("\n");
}

/**
 * Run the broker (and, for `start`, everything that exists so far in one process) until a signal.
 * With `seedDemo`, an empty registry is filled with the demo city and the secrets are printed once.
 */
export async function serve(
  config: CitywatchConfig,
  log: Logger,
  options: { seedDemo: boolean },
): Promise<void> {
  const registry = new RegistryStore(registryPath(config.dataDir));
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [
    { name: "registry", stop: () => Promise.resolve(registry.close()) },
  ];
  let example: Example = { id: "demo-noise-1", kind: "noise" };
  if (
    options.seedDemo &&
    registry.countDevices() === 0 &&
    registry.listServiceAccounts().length === 0
  ) {
    const issued = registry.importFile(readRegistryFile(DEMO_REGISTRY_FILE));
    const rows = [
      ...issued.devices.map((d) => [d.record.id, d.record.kind, d.secret]),
      ...issued.serviceAccounts.map((a) => [a.record.name, `service:${a.record.role}`, a.secret]),
    ];
    process.stdout.write(
      [
        "",
        `Seeded the demo registry into ${registry.file}. Secrets are shown ONCE; store them now:`,
        ...rows.map(
          ([id, kind, secret]) => `  ${String(id).padEnd(22)} ${String(kind).padEnd(18)} ${secret}`,
        ),
        "",
      ].join("\n"),
    );
    const first = issued.devices[0];
    if (first !== undefined)
      example = { id: first.record.id, kind: first.record.kind, secret: first.secret };
  } else {
    const first = registry.listDevices()[0];
    if (first !== undefined) example = { id: first.id, kind: first.kind };
  }

  const broker = buildBroker({
    log,
    config: config.broker,
    authenticate: (username, secret) => registry.authenticate(username, secret),
  });
  const signal = stopOnSignal(log, stops);
  try {
    const addresses = await broker.start(signal);
    stops.push({ name: "broker", stop: () => broker.stop() });
    const http = await startHttp({
      host: config.http.host,
      port: config.http.port,
      registries: [broker.metrics.registry],
      health: () => ({
        ok: !broker.aedes.closed,
        detail: { connectedClients: broker.aedes.connectedClients },
      }),
      log,
    });
    stops.push({ name: "http", stop: () => http.close() });
    log.info(
      { port: http.port, host: config.http.host },
      "metrics on /metrics, health on /healthz",
    );
    process.stdout.write(
      connectHelp(
        config.broker.host,
        addresses,
        `http://${config.http.host}:${http.port}/metrics`,
        example,
      ),
    );
  } catch (error) {
    for (const { stop } of [...stops].reverse()) await stop().catch(() => undefined);
    throw error;
  }
}
