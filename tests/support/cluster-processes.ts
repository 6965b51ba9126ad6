import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CliProcess,
  bearer,
  startSystem,
  systemPorts,
  type SystemPorts,
} from "./cli-process.js";
import { makeTempDir } from "./process.js";
import { WEBHOOK_SECRET } from "./webhook-receiver.js";

/*
 * `citywatch start --database-url` processes for the cluster tests (docs/cluster.md, Running a
 * node): each node with a data directory of its own, on one PostgreSQL schema, one InfluxDB
 * database and one webhook receiver, as an operator starts them.
 */

export interface ClusterSetting {
  readonly databaseUrl: string;
  readonly schema: string;
  readonly influxUrl: string;
  readonly influxDatabase: string;
  /** A webhook receiver on 127.0.0.1 for every task event; absent: no webhook. */
  readonly webhookPort?: number | undefined;
  readonly partitions: number;
  /** More of the configuration file, top-level YAML lines (the benches lift the broker's limits). */
  readonly configLines?: readonly string[] | undefined;
  /** The brokers' shared Redis (`--redis-url`); absent: each node's broker alone. */
  readonly redisUrl?: string | undefined;
}

export interface NodeProcess {
  readonly name: string;
  readonly process: CliProcess;
  readonly ports: SystemPorts;
  /** Its data directory (the caller removes it). */
  readonly dir: string;
}

/** Start one node and wait until it says it is up. */
export async function startNodeProcess(
  name: string,
  setting: ClusterSetting,
  ports?: SystemPorts,
): Promise<NodeProcess> {
  const dir = await makeTempDir(`cw-cluster-${name}-`);
  const config = join(dir, "citywatch.yaml");
  writeFileSync(
    config,
    [
      "ingest:",
      "  batch: { maxDelayMs: 20 }",
      "  store:",
      "    type: influxdb",
      `    url: ${setting.influxUrl}`,
      `    database: ${setting.influxDatabase}`,
      "  tasks:",
      "    outbox: { backoffBaseMs: 50, backoffMaxMs: 200 }",
      ...(setting.webhookPort === undefined
        ? []
        : [
            "    webhooks:",
            `      - { name: city, url: "http://127.0.0.1:${setting.webhookPort}/", secret: "${WEBHOOK_SECRET}" }`,
          ]),
      ...(setting.configLines ?? []),
      "",
    ].join("\n"),
  );
  const bound = ports ?? (await systemPorts());
  const process = startSystem(dir, bound, [
    "--config",
    config,
    "--log-level",
    "warn",
    "--database-url",
    setting.databaseUrl,
    "--database-schema",
    setting.schema,
    "--node-id",
    name,
    "--partitions",
    String(setting.partitions),
    ...(setting.redisUrl === undefined ? [] : ["--redis-url", setting.redisUrl]),
  ]);
  try {
    await process.waitFor(new RegExp(`cluster node ${name} is up`), 60_000);
  } catch (error) {
    await process.stop();
    throw error;
  }
  return { name, process, ports: bound, dir };
}

/** A node's /healthz, as it answers it (status and the node's figures). */
export async function nodeHealth(ports: SystemPorts): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
  return (await response.json()) as Record<string, unknown>;
}

/** The partitions a node holds now, or 0 when it does not answer. */
export async function ownedBy(ports: SystemPorts): Promise<number> {
  try {
    return Number((await nodeHealth(ports))["owned"]);
  } catch {
    return 0;
  }
}

/** GET an API path of a node with a bearer token; anything but 200 throws. */
export async function nodeApi<T>(ports: SystemPorts, path: string, token: string): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${ports.http}${path}`, { headers: bearer(token) });
  if (response.status !== 200)
    throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}
