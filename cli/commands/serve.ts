import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { type Broker, build as buildBroker, type BrokerAddresses } from "../../broker/app.js";
import {
  CITY_WIDE,
  ConfigError,
  deviceTopic,
  type CitywatchConfig,
  type SensorKind,
} from "../../contracts/index.js";
import { buildApi } from "../runtime/api.js";
import { localBroker } from "../runtime/local-broker.js";
import type { IngestDeps } from "../../ingest/app.js";
import { buildSystem, type System } from "../runtime/system.js";
import { RegistryStore } from "../../registry/store.js";
import {
  FIRST_START_SECRETS,
  type IssuedSecret,
  makePrivate,
  secretsFileText,
  writeOwnerOnly,
} from "../../registry/private-files.js";
import { storeRetention } from "../../ingest/store/retention.js";
import { probePort, startHttp } from "../runtime/http.js";
import { RulesError } from "../../rules/app.js";
import { formatRuleProblems, loadRules } from "../../rules/load.js";
import { placeholderHealth } from "../../rules/placeholders.js";
import { stopOnSignal } from "../runtime/lifecycle.js";
import { RegistryRevocations, withRevocations } from "../runtime/revocations.js";
import { startDemo } from "./sim.js";
import { registryPath, seedDemoCity } from "../runtime/registry-file.js";
import { authenticateDevices } from "../runtime/standby.js";

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
  /** An admin API token issued at this start (the first one), shown once. */
  token?: string;
  /** The owner-only file the secret and the token were written to (FIRST_START_SECRETS). */
  secretsFile?: string;
  /** The console's first user made at this start, whose password is in the secrets file. */
  consoleUser?: string;
}

/** A shell expression that reads one secret from the first start's file, for the printed commands. */
const fromSecretsFile = (file: string, id: string) => `$(awk '$1=="${id}"{print $3}' ${file})`;

function connectHelp(
  host: string,
  addresses: BrokerAddresses,
  httpBase: string,
  withIngest: boolean,
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
  const readingsUrl = `${httpBase}/api/v1/devices/${example.id}/readings?from=${new Date(Date.now() - 3_600_000).toISOString()}`;
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
    ...(withIngest
      ? [
          `  Console    ${httpBase}/   (sign in as a user: citywatch users add; docs/console.md)`,
          ...(example.consoleUser !== undefined && example.secretsFile !== undefined
            ? [
                `    first start: sign in as ${example.consoleUser}, password in ${example.secretsFile} (the line ${example.consoleUser}):`,
                `    awk '$1=="${example.consoleUser}"{print $3}' ${example.secretsFile}`,
              ]
            : []),
          `  API        ${httpBase}/api/v1/devices   (bearer token; OpenAPI: ${httpBase}/openapi.json)`,
          `  Readings   ${readingsUrl}`,
          `  Tasks      ${httpBase}/api/v1/tasks   (live: ${httpBase}/api/v1/tasks/stream; bearer token, docs/tasks.md)`,
          ...(example.token !== undefined && example.secretsFile !== undefined
            ? [
                `  Admin API token: in ${example.secretsFile} (more with: npm run citywatch -- tokens add --help):`,
                `    curl -H "Authorization: Bearer ${fromSecretsFile(example.secretsFile, ADMIN_TOKEN_ID)}" ${httpBase}/api/v1/tasks`,
                `    curl -H "Authorization: Bearer ${fromSecretsFile(example.secretsFile, ADMIN_TOKEN_ID)}" '${readingsUrl}'`,
              ]
            : []),
        ]
      : []),
    `  Metrics    ${httpBase}/metrics`,
    "",
    "Connect a device: username and client id = device id, password = its secret.",
    `  mosquitto_pub -h ${shownHost} -p ${addresses.mqtt ?? "PORT"} -V mqttv311 -q 1 \\`,
    `    -i ${example.id} -u ${example.id} -P ${example.secret !== undefined && example.secretsFile !== undefined ? `"${fromSecretsFile(example.secretsFile, example.id)}"` : "'<secret>'"} \\`,
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

/** The id of the first admin API token in the first start's secrets file. */
const ADMIN_TOKEN_ID = "first-admin";
/** The console's first user, made at the first start (password in the secrets file). */
const FIRST_USER_ID = "admin";

/** The secrets of the demo city seeded at this start, for the owner-only secrets file. */
function seededSecrets(issued: ReturnType<RegistryStore["importFile"]>): IssuedSecret[] {
  return [
    ...issued.devices.map((d) => ({ id: d.record.id, what: d.record.kind, secret: d.secret })),
    ...issued.serviceAccounts.map((a) => ({
      id: a.record.name,
      what: `service:${a.record.role}`,
      secret: a.secret,
    })),
  ];
}

/** Where the ingest takes device data from: the embedded broker's gate, or a broker elsewhere. */
function ingestSource(
  config: CitywatchConfig,
  broker: Broker | undefined,
  log: Logger,
): Pick<IngestDeps, "mqtt" | "local"> {
  const mqttConfig = config.ingest.mqtt;
  if (broker !== undefined && mqttConfig.url === undefined) {
    // In one process the ingest takes device data at the broker's publish gate, written to
    // its inbox before the broker acknowledges: no MQTT hop and no account to configure.
    return { local: localBroker(broker, log) };
  }
  return {
    mqtt: {
      url: mqttConfig.url ?? "",
      username: mqttConfig.username,
      password: mqttConfig.password ?? "",
      clientId: mqttConfig.clientId,
    },
  };
}

/**
 * What can be refused without starting anything: the ingest's broker account when it runs
 * alone, the rule files, and the HTTP port. The configuration itself was validated at load.
 */
export async function preflight(
  config: CitywatchConfig,
  options: { broker: boolean; ingest: boolean },
): Promise<void> {
  if (options.ingest && config.ingest.enabled) {
    const mqtt = config.ingest.mqtt;
    if (!options.broker && (mqtt.url === undefined || mqtt.password === undefined)) {
      throw new ConfigError("configuration", [
        {
          path: "ingest.mqtt",
          message:
            "the ingest alone needs the broker's URL and the ingest account's secret: --broker-url (CITYWATCH_INGEST_MQTT_URL, ingest.mqtt.url) and --broker-password-file (CITYWATCH_INGEST_MQTT_PASSWORD, ingest.mqtt.password)",
        },
      ]);
    }
    if (options.broker && mqtt.url !== undefined && mqtt.password === undefined) {
      throw new ConfigError("configuration", [
        {
          path: "ingest.mqtt.password",
          message:
            "ingest.mqtt.url is set, so the ingest subscribes over MQTT and needs ingest.mqtt.password (CITYWATCH_INGEST_MQTT_PASSWORD)",
        },
      ]);
    }
    const rules = loadRules({
      defaultPack: config.ingest.rules.defaultPack,
      directories: config.ingest.rules.directories,
    });
    if (!rules.ok) throw new RulesError(formatRuleProblems(rules.problems));
  }
  await probePort(config.http.host, config.http.port);
}

/**
 * Run the broker (and, for `start`, everything in one process) until a signal.
 *
 * Everything that can fail comes first: the configuration (validated at load), the rule files
 * and the HTTP port (preflight), then binding the broker's listeners, opening the ingest's files
 * and the API's listener. With `seedDemo`, an empty registry is filled with the demo city inside
 * a transaction held until all of that succeeded: a failed start leaves the registry as it was,
 * and the secrets (and the first admin token) are written to the owner-only secrets file only once
 * the start succeeded.
 */
export async function serve(
  config: CitywatchConfig,
  log: Logger,
  options: { seedDemo: boolean; broker: boolean; ingest: boolean; demo?: boolean },
): Promise<void> {
  await preflight(config, options);
  // Owner-only from here on: every file this process creates, and what an older version left open.
  const tightened = makePrivate(config.dataDir);
  if (tightened.length > 0)
    log.warn(
      { dataDir: config.dataDir, paths: tightened.length },
      "the data directory and its files were readable by others; made them owner-only (0700/0600)",
    );
  const registry = new RegistryStore(registryPath(config.dataDir));
  // Rows written before the registry's text rules are read, and said (registry/store.ts).
  for (const bad of registry.invalidRecords())
    log.warn(
      bad,
      "a registry record holds values the time-series stores cannot hold: its readings are dead-lettered (store_rejected) until it is registered again with valid values",
    );
  let seed: { commit(): void; rollback(): void } | undefined;
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [
    {
      name: "registry",
      stop: () => {
        seed?.rollback();
        registry.close();
        return Promise.resolve();
      },
    },
  ];
  stopOnSignal(log, stops);
  try {
    let example: Example = { id: "demo-noise-1", kind: "noise" };
    let seeded: ReturnType<RegistryStore["importFile"]> | undefined;
    if (options.seedDemo) {
      seed = registry.hold();
      seeded = seedDemoCity(registry, Date.now());
      if (seeded === undefined) {
        seed.commit();
        seed = undefined;
      }
    }
    const first = seeded?.devices[0];
    if (first !== undefined) {
      example = { id: first.record.id, kind: first.record.kind, secret: first.secret };
    } else {
      const listed = registry.listDevices()[0];
      if (listed !== undefined) example = { id: listed.id, kind: listed.kind };
    }

    let addresses: BrokerAddresses = {};
    const registries: Registry[] = [];
    // Revocations (devices rotate-secret, disable, remove) reach the broker's open sessions and
    // the ingest's next lookup at once (revocations.ts).
    let revocations: RegistryRevocations | undefined;
    if (options.broker || (options.ingest && config.ingest.enabled)) {
      const watch = new RegistryRevocations(registry.file, { log });
      watch.start();
      stops.push({ name: "revocations", stop: () => Promise.resolve(watch.close()) });
      revocations = watch;
    }
    let broker: Broker | undefined;
    if (options.broker) {
      broker = buildBroker({
        log,
        config: config.broker,
        authenticate: authenticateDevices(registry, log),
        // Device data is acknowledged only once the ingest holds it (docs/protocol.md 6.1).
        durableData: true,
      });
      // No abort signal: on SIGTERM the broker stops last, after the ingest published its commits.
      addresses = await broker.start();
      const running = broker;
      revocations?.onRevoked(({ deviceId, why }) => running.revoke(deviceId, why));
      stops.push({ name: "broker", stop: () => running.stop() });
      registries.push(broker.metrics.registry);
    }

    let system: System | undefined;
    if (options.ingest && config.ingest.enabled) {
      const source = ingestSource(config, broker, log);
      system = buildSystem({
        log,
        config: config.ingest,
        dataDir: config.dataDir,
        registry:
          revocations === undefined
            ? registry.resolvedView()
            : withRevocations(registry.resolvedView(), revocations),
        ...source,
        // Signed evidence links point here unless tasks.evidence.publicUrl says otherwise.
        httpBase: `http://${config.http.host}:${config.http.port}`,
      });
      await system.start();
      const running = system;
      stops.push({ name: "ingest", stop: () => running.stop() });
      registries.push(system.ingest.metrics.registry);
    }
    const ingest = system?.ingest;

    const health = () => ({
      ok:
        (broker === undefined || !broker.aedes.closed) &&
        (ingest === undefined ||
          (ingest.pipeline.isStoreUp && ingest.mqttConnected() && !ingest.diskFull())),
      detail: {
        ...(broker !== undefined ? { connectedClients: broker.aedes.connectedClients } : {}),
        ...(ingest !== undefined
          ? {
              store: ingest.store.name,
              storeUp: ingest.pipeline.isStoreUp,
              mqttConnected: ingest.mqttConnected(),
              inbox: ingest.state.inbox.depth(),
              // Device data held unacknowledged and commits withheld until space is freed.
              ...(ingest.diskFull() ? { disk: "full" } : {}),
            }
          : {}),
        // Rules in force that are disabled placeholders or run on unverified numbers (not a failure).
        ...(system !== undefined ? { rules: placeholderHealth(system.rules.placeholders()) } : {}),
      },
    });
    let httpPort: number;
    if (ingest !== undefined) {
      const api = buildApi({
        registry: registry.resolvedView(),
        state: ingest.state,
        store: ingest.store,
        metrics: registries,
        health,
        onlineIntervals: config.ingest.onlineIntervals,
        now: Date.now,
        tasks: system?.tasks.api,
        readings: config.http.readings,
        trustProxy: config.http.trustProxy,
        sessions: apiSessions(config),
        registryAdmin: {
          registry,
          mqttPort: addresses.mqtt ?? config.broker.mqtt.port,
          map: config.console.map,
        },
        publicPage: config.console.public,
        ...(system === undefined ? {} : { rules: () => system.rules.ruleSet.loaded }),
        backtest: {
          rules: config.ingest.rules,
          retention: () => storeRetention(config.ingest.store),
        },
      });
      httpPort = await listenApi(api, config.http.host, config.http.port);
      stops.push({ name: "api", stop: () => api.close() });
    } else {
      const http = await startHttp({
        host: config.http.host,
        port: config.http.port,
        registries,
        health,
        log,
      });
      httpPort = http.port;
      stops.push({ name: "http", stop: () => http.close() });
    }

    // Started: keep the seeded registry, then write its secrets and the first admin token, once.
    seed?.commit();
    seed = undefined;
    const issued = seeded === undefined ? [] : seededSecrets(seeded);
    // The first start issues an admin token, so the task API can be read at once.
    if (options.seedDemo && system !== undefined && system.tasks.tokens.list().length === 0) {
      const token = system.tasks.tokens.add(ADMIN_TOKEN_ID, "admin").token;
      example = { ...example, token };
      issued.push({ id: ADMIN_TOKEN_ID, what: "token:admin", secret: token });
    }
    // And the console's first user, so someone can sign in at / (docs/console.md).
    if (options.seedDemo && system !== undefined && system.tasks.tokens.users.list().length === 0) {
      const password = randomBytes(15).toString("base64url");
      await system.tasks.tokens.users.add(
        { id: FIRST_USER_ID, name: "Administrator", roles: ["admin"], scope: CITY_WIDE },
        password,
      );
      example = { ...example, consoleUser: FIRST_USER_ID };
      issued.push({ id: FIRST_USER_ID, what: "user:admin", secret: password });
    }
    if (issued.length > 0) {
      // Secrets go to a file only the owner can read, never to stdout (where logs keep them).
      const file = join(config.dataDir, FIRST_START_SECRETS);
      writeOwnerOnly(file, secretsFileText(issued, Date.now()));
      example = { ...example, secretsFile: file };
      log.warn(
        { file, secrets: issued.length },
        "first start: the secrets issued (demo devices, service accounts, the first admin API token) are in this file, readable by its owner only; store them elsewhere, then delete it",
      );
      if (seeded !== undefined)
        process.stdout.write(
          `\nSeeded the demo registry into ${registry.file}. Its secrets, the first admin API token and the console user admin's password are in ${file} (owner-only, mode 0600): store them, then delete the file.\nThe demo devices are on standby: no rule judges or watches one until it first connects.\n`,
        );
    }
    const base = `http://${config.http.host}:${httpPort}`;
    log.info(
      { url: base },
      ingest !== undefined
        ? "API on /api/v1, OpenAPI on /openapi.json, metrics on /metrics"
        : "metrics on /metrics, health on /healthz",
    );
    if (broker !== undefined) {
      process.stdout.write(
        connectHelp(config.broker.host, addresses, base, ingest !== undefined, example),
      );
      if (options.demo === true) {
        // The demo city plays in this process against this broker (docs/simulators.md).
        const host = ["0.0.0.0", "::"].includes(config.broker.host)
          ? "127.0.0.1"
          : config.broker.host;
        const mqttUrl = `mqtt://${host}:${addresses.mqtt ?? config.broker.mqtt.port}`;
        const demo = await startDemo({ log, registry, mqttUrl });
        stops.push({ name: "demo", stop: demo.stop });
      }
    } else {
      process.stdout.write(
        `\ncitywatch ingest is up. API ${base}/api/v1/devices (bearer token: citywatch tokens add), OpenAPI ${base}/openapi.json, console ${base}/\n\n`,
      );
    }
  } catch (error) {
    for (const { stop } of [...stops].reverse()) await stop().catch(() => undefined);
    throw error;
  }
}

/** Users' browser sessions for the API: behind HTTPS the session cookie is marked Secure. */
export function apiSessions(config: CitywatchConfig): {
  config: CitywatchConfig["ingest"]["tasks"]["sessions"];
  secureCookie: boolean;
} {
  const sessions = config.ingest.tasks.sessions;
  return {
    config: sessions,
    secureCookie:
      sessions.secureCookie ??
      config.ingest.tasks.evidence.publicUrl?.startsWith("https:") ??
      false,
  };
}

export async function listenApi(api: FastifyInstance, host: string, port: number): Promise<number> {
  try {
    await api.listen({ host, port });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw Object.assign(
        new Error(
          `HTTP port ${port} on ${host} is already in use; choose another with http.port (CITYWATCH_HTTP_PORT, --http-port)`,
        ),
        { code: "HTTP_PORT_IN_USE" },
      );
    }
    throw error;
  }
  return (api.server.address() as AddressInfo).port;
}
