import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import { RegistryStore } from "../../../registry/store.js";
import { until } from "../../support/broker.js";
import { type CliProcess, startCli } from "../../support/cli-process.js";
import { freePort } from "../../support/ports.js";

/**
 * The cause of aedes' `RangeError: Maximum call stack size exceeded` under fan-in (issue #16 item
 * 12): aedes' in-memory message emitter (mqemitter) lets 100 messages be routed at once and queues
 * the rest; when one finishes it starts the next from the finishing callback, and a queued message
 * nobody subscribes to (a device's status, the broker's own `$SYS` announcements) finishes at
 * once, so a run of such messages is worked through by recursion, one stack frame set per
 * message. A slow subscriber (100 deliveries waiting for its socket to drain) with thousands of
 * such messages queued behind it overflows the stack when it drains, and the broker process dies.
 * The broker now routes without that queue (broker/app.ts, `concurrency: 0`; publishers are held
 * by TCP backpressure instead, as before).
 */

const PUBLISHERS = Number(process.env["CITYWATCH_FAULT_PUBLISHERS"] ?? 1_000);
const EACH = 30;
const BURST = PUBLISHERS * EACH;
const dir = mkdtempSync(join(tmpdir(), "cw-fault-stack-"));
let broker: CliProcess | undefined;
const clients: MqttClient[] = [];

afterAll(async () => {
  for (const c of clients) c.end(true);
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function connect(port: number, username: string, password: string, clientId: string) {
  return new Promise<MqttClient>((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId,
      username,
      password,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    clients.push(client);
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

it("a slow subscriber with thousands of unsubscribed messages queued behind it: the broker survives", async () => {
  const registry = new RegistryStore(join(dir, "registry.db"));
  const ingestSecret = registry.addServiceAccount({ name: "ingest", role: "ingest" }).secret;
  const simSecret = registry.addServiceAccount({ name: "sim", role: "simulator" }).secret;
  registry.close();
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  broker = startCli(
    ["broker", "--data-dir", dir, "--mqtt-port", String(mqttPort), "--http-port", String(httpPort)],
    { CITYWATCH_WS_ENABLED: "false", CITYWATCH_LOG_LEVEL: "warn" },
  );
  await broker.waitFor(/citywatch broker is up|broker listening/, 60_000);

  const subscriber = await connect(mqttPort, "ingest", ingestSecret, "ingest-slow");
  let received = 0;
  subscriber.on("message", () => received++);
  await subscriber.subscribeAsync("citywatch/v1/devices/+/data", { qos: 0 });
  // The subscriber stops reading: the broker's writes to it back up.
  subscriber.stream.pause();

  // A packet held in the emitter holds its publisher's further packets (aedes reads on when a
  // batch is routed): only many publishers fill the queue, as a fleet does.
  const publishers: MqttClient[] = [];
  for (let i = 0; i < PUBLISHERS; i++) {
    publishers.push(await connect(mqttPort, "sim", simSecret, `sim-${i}`));
  }
  // 400 large messages for the stalled subscriber from 200 publishers: more than 100 in flight.
  const big = Buffer.alloc(16 * 1024, 0x61);
  publishers.slice(0, 200).forEach((p) => {
    for (let k = 0; k < 2; k++) p.publish(deviceTopic("dev-1", "data"), big, { qos: 0 });
  });
  await new Promise((r) => setTimeout(r, 1_000));
  const small = Buffer.from("{}");
  publishers.forEach((p, i) => {
    for (let k = 0; k < EACH; k++)
      p.publish(deviceTopic(`dev-${i}-${k}`, "status"), small, { qos: 0 });
  });
  // Let the broker take the burst in while the subscriber is stalled.
  await new Promise((r) => setTimeout(r, 3_000));
  subscriber.stream.resume();
  await until(
    () => received >= 400 || broker?.child.exitCode !== null,
    "the subscriber drained",
    30_000,
  ).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 1_000));

  const output = broker.output();
  const overflow = /Maximum call stack size exceeded/.test(output);
  const alive = broker.child.exitCode === null;
  console.log(
    `[fault] stack depth: queued_behind_slow_subscriber=${BURST}, delivered=${received}/400, broker_alive=${alive}, stack_overflow=${overflow}`,
  );
  expect(overflow).toBe(false);
  expect(alive).toBe(true);
  expect(received).toBe(400);
  const probe = await connect(mqttPort, "sim", simSecret, "sim-probe");
  expect(probe.connected).toBe(true);
}, 120_000);
