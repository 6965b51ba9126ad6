import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { Testcontainers } from "./docker.js";
import { freePort, tcpExchange } from "./ports.js";
import {
  containerHandle,
  provide,
  type LocalLaunch,
  type Provided,
  type ServiceHandle,
} from "./provide.js";

export function provideMosquitto(): Promise<Provided> {
  return provide({
    name: "Mosquitto",
    envVar: "CITYWATCH_TEST_MQTT_URL",
    urlProtocols: ["mqtt:", "mqtts:"],
    installHint: "install mosquitto (apt-get install -y mosquitto)",
    startContainer,
    executable: "mosquitto",
    prepareLocal,
  });
}

/**
 * Mosquitto 2.0 settings shared by the container and the local binary. The defaults (20 in
 * flight, 1000 queued per client) silently drop QoS 1 messages for a subscriber that falls behind
 * a test's burst; 0 means "no maximum" for in-flight, and queued gets a bound far above any test.
 */
function mosquittoConfig(listener: string, logDest: "stdout" | "stderr"): string {
  return `# Written by tests/support/mosquitto.ts for one test run.
${listener}
allow_anonymous true
persistence false
max_inflight_messages 0
max_queued_messages 1000000
log_dest ${logDest}
`;
}

async function startContainer({ GenericContainer, Wait }: Testcontainers): Promise<ServiceHandle> {
  const container = await new GenericContainer("eclipse-mosquitto:2")
    .withCopyContentToContainer([
      {
        content: mosquittoConfig("listener 1883", "stdout"),
        target: "/mosquitto/config/mosquitto.conf",
      },
    ])
    .withExposedPorts(1883)
    .withWaitStrategy(Wait.forLogMessage(/mosquitto version \S+ running/))
    .withStartupTimeout(60_000)
    .start();
  return containerHandle(
    container,
    `mqtt://${container.getHost()}:${container.getMappedPort(1883)}`,
  );
}

async function prepareLocal(dir: string): Promise<LocalLaunch> {
  const port = await freePort();
  const configFile = path.join(dir, "mosquitto.conf");
  await writeFile(configFile, mosquittoConfig(`listener ${port} 127.0.0.1`, "stderr"));
  return {
    args: ["-c", configFile],
    url: `mqtt://127.0.0.1:${port}`,
    readiness: {
      logMarker: new RegExp(`Opening ipv4 listen socket on port ${port}\\b`),
      probe: () => mqttConnack("127.0.0.1", port),
    },
  };
}

// MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 0, empty client id.
const CONNECT = Buffer.from([
  0x10, 12, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00,
]);

/** True when the broker accepts an anonymous MQTT connection (CONNACK with return code 0). */
export async function mqttConnack(host: string, port: number): Promise<boolean> {
  const reply = await tcpExchange(host, port, CONNECT, (received) => received.length >= 4);
  return reply[0] === 0x20 && reply[1] === 0x02 && reply[3] === 0x00;
}
