import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { Testcontainers } from "./docker.js";
import { freePort } from "./ports.js";
import {
  containerHandle,
  provide,
  type LocalLaunch,
  type Provided,
  type ServiceHandle,
} from "./provide.js";

export function provideInfluxDB(): Promise<Provided> {
  return provide({
    name: "InfluxDB",
    envVar: "CITYWATCH_TEST_INFLUXDB_URL",
    urlProtocols: ["http:", "https:"],
    installHint: "install influxd (apt-get install -y influxdb)",
    startContainer,
    executable: "influxd",
    prepareLocal,
  });
}

async function startContainer({ GenericContainer, Wait }: Testcontainers): Promise<ServiceHandle> {
  const container = await new GenericContainer("influxdb:1.8")
    .withEnvironment({
      INFLUXDB_REPORTING_DISABLED: "true",
      INFLUXDB_HTTP_LOG_ENABLED: "false",
      INFLUXDB_MONITOR_STORE_ENABLED: "false",
    })
    .withExposedPorts(8086)
    .withWaitStrategy(Wait.forHttp("/ping", 8086).forStatusCode(204))
    .withStartupTimeout(60_000)
    .start();
  return containerHandle(
    container,
    `http://${container.getHost()}:${container.getMappedPort(8086)}`,
  );
}

async function prepareLocal(dir: string): Promise<LocalLaunch> {
  const httpPort = await freePort();
  // influxd always listens on a second (backup/restore RPC) address, 8088 by default, which the
  // machine's own influxd would hold.
  const rpcPort = await freePort();
  const configFile = path.join(dir, "influxdb.conf");
  await writeFile(configFile, influxConfig(dir, httpPort, rpcPort));
  return {
    args: ["run", "-config", configFile],
    url: `http://127.0.0.1:${httpPort}`,
    // INFLUXDB_* variables override the config file; one inherited from the shell could move
    // this instance onto the machine's directories or ports.
    env: Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith("INFLUXDB_")),
    ),
    readiness: {
      logMarker: new RegExp(`Listening on HTTP.*addr=127\\.0\\.0\\.1:${httpPort}\\b`),
      probe: () => ping(httpPort),
    },
  };
}

async function ping(port: number): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}/ping`, {
    signal: AbortSignal.timeout(1_000),
  });
  await response.arrayBuffer();
  return response.status === 204;
}

function influxConfig(dir: string, httpPort: number, rpcPort: number): string {
  // JSON string syntax is valid TOML basic-string syntax, so it quotes paths safely.
  const q = (value: string): string => JSON.stringify(value);
  return `# Written by tests/support/influxdb.ts for one test run.
# Upstream spells the key reporting-disabled, Debian's package reporting-enabled; each ignores the other.
reporting-disabled = true
reporting-enabled = false
bind-address = ${q(`127.0.0.1:${rpcPort}`)}

[meta]
  dir = ${q(path.join(dir, "meta"))}

[data]
  dir = ${q(path.join(dir, "data"))}
  wal-dir = ${q(path.join(dir, "wal"))}
  query-log-enabled = false

[http]
  enabled = true
  bind-address = ${q(`127.0.0.1:${httpPort}`)}
  auth-enabled = false
  log-enabled = false

[monitor]
  store-enabled = false

[logging]
  suppress-logo = true
`;
}
