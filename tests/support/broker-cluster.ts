import { join } from "node:path";
import { RegistryStore } from "../../registry/store.js";
import { type CliProcess, startCli } from "./cli-process.js";
import { freePort } from "./services.js";

/**
 * `citywatch broker` processes sharing one Redis (a cluster of brokers) over one data directory
 * holding a device `dev-1` and an `ingest` service account, each broker on free ports.
 */
export interface BrokerCluster {
  readonly brokers: CliProcess[];
  /** Each broker's MQTT port, in the order of `names`. */
  readonly ports: number[];
  readonly deviceSecret: string;
  readonly ingestSecret: string;
}

export async function startBrokerCluster(
  dir: string,
  redisUrl: string,
  names: readonly string[],
): Promise<BrokerCluster> {
  const registry = new RegistryStore(join(dir, "registry.db"));
  registry.putSite({
    id: "s1",
    type: "ambient",
    name: "S",
    area: { district: "D", gridCell: "G" },
    location: { lat: 30, lon: 104 },
  });
  const deviceSecret = registry.addDevice({
    id: "dev-1",
    kind: "noise",
    model: "M",
    serial: "1",
    location: { lat: 30, lon: 104 },
    area: { district: "D", gridCell: "G" },
    siteId: "s1",
  }).secret;
  const ingestSecret = registry.addServiceAccount({ name: "ingest", role: "ingest" }).secret;
  registry.close();
  const brokers: CliProcess[] = [];
  const ports: number[] = [];
  for (const name of names) {
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    ports.push(mqttPort);
    const broker = startCli(
      [
        "broker",
        "--data-dir",
        dir,
        "--mqtt-port",
        String(mqttPort),
        "--http-port",
        String(httpPort),
        "--redis-url",
        redisUrl,
      ],
      { CITYWATCH_WS_ENABLED: "false", CITYWATCH_BROKER_ID: `test-broker-${name}` },
    );
    brokers.push(broker);
    await broker.waitFor(/"msg":"broker listening"/);
  }
  return { brokers, ports, deviceSecret, ingestSecret };
}
