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
 * Issue #16 item 12: 1,000 device connections publishing into one `citywatch broker` process at
 * 30,000+ msg/s in total (as far as this machine's two cores allow; the rate reached is printed).
 * aedes was reported to die with `RangeError: Maximum call stack size exceeded` under such a
 * fan-in. The broker must stay up and answer, shedding load only by counted refusals (the
 * per-device publish rate limit: 20/s sustained, burst 100, cut after 5 s of backpressure).
 *
 * Publishes are QoS 0 so the load is the broker's routing, not a subscriber's acknowledgements;
 * one subscriber (the ingest account) takes them all.
 */

const DEVICES = Number(process.env["CITYWATCH_FAULT_FANIN_DEVICES"] ?? 1_000);
const TARGET_PER_S = Number(process.env["CITYWATCH_FAULT_FANIN_RATE"] ?? 33_000);
const RUN_MS = Number(process.env["CITYWATCH_FAULT_FANIN_MS"] ?? 10_000);
const TICK_MS = 10;

const dir = mkdtempSync(join(tmpdir(), "cw-fault-fanin-"));
let broker: CliProcess | undefined;
const clients: MqttClient[] = [];

afterAll(async () => {
  for (const c of clients) c.end(true);
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function connect(port: number, username: string, password: string, clientId = username) {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    username,
    password,
    protocolVersion: 4,
    reconnectPeriod: 1_000,
    connectTimeout: 30_000,
    keepalive: 60,
  });
  client.on("error", () => undefined);
  clients.push(client);
  return client;
}

async function scrape(httpPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

function sum(values: Map<string, number>, prefix: string): number {
  let total = 0;
  for (const [key, value] of values) if (key.startsWith(prefix)) total += value;
  return total;
}

it("1,000 publishers at 30,000+ msg/s: the broker stays up and sheds only by counted refusals", async () => {
  const registry = new RegistryStore(join(dir, "registry.db"));
  const area = { district: "D", gridCell: "G" };
  const location = { lat: 30, lon: 104 };
  registry.putSite({ id: "s1", type: "ambient", name: "S", area, location });
  const secrets: string[] = [];
  for (let i = 0; i < DEVICES; i++) {
    secrets.push(
      registry.addDevice({
        id: `noise-fan-${i}`,
        kind: "noise",
        model: "M",
        serial: String(i),
        location,
        area,
        siteId: "s1",
      }).secret,
    );
  }
  const ingestSecret = registry.addServiceAccount({ name: "ingest", role: "ingest" }).secret;
  registry.close();

  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  broker = startCli(
    ["broker", "--data-dir", dir, "--mqtt-port", String(mqttPort), "--http-port", String(httpPort)],
    { CITYWATCH_WS_ENABLED: "false", CITYWATCH_LOG_LEVEL: "warn" },
  );
  await broker.waitFor(/citywatch broker is up|broker listening/, 60_000);

  let received = 0;
  const subscriber = connect(mqttPort, "ingest", ingestSecret, "ingest-fanin");
  subscriber.on("message", () => received++);
  let subscriberCloses = 0;
  subscriber.on("close", () => subscriberCloses++);
  await new Promise<void>((resolve) => subscriber.once("connect", () => resolve()));
  await subscriber.subscribeAsync("citywatch/v1/devices/+/data", { qos: 0 });

  const devices: MqttClient[] = [];
  for (let i = 0; i < DEVICES; i++) {
    devices.push(connect(mqttPort, `noise-fan-${i}`, secrets[i] ?? ""));
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
  }
  await until(() => devices.every((d) => d.connected), "every device connected", 60_000);

  const payload = Buffer.alloc(120, 0x61);
  let sent = 0;
  let next = 0;
  const perTick = Math.ceil((TARGET_PER_S * TICK_MS) / 1_000);
  const started = Date.now();
  const timer = setInterval(() => {
    for (let k = 0; k < perTick; k++) {
      const index = next;
      next = (next + 1) % devices.length;
      const device = devices[index];
      if (device?.connected !== true) continue;
      device.publish(deviceTopic(`noise-fan-${index}`, "data"), payload, { qos: 0 });
      sent++;
    }
  }, TICK_MS);
  await new Promise((r) => setTimeout(r, RUN_MS));
  clearInterval(timer);
  const elapsedS = (Date.now() - started) / 1_000;
  // The subscriber shares this process's CPU with the 1,000 publishers: let it catch up with what
  // the broker accepted (QoS 0 to a connected subscriber is held by TCP backpressure, not dropped).
  // The broker still reads what throttled connections left in their sockets after the publishers
  // stop, so the accepted count itself moves for a while: drained means the count held still for
  // a second and the subscriber has all of it.
  const acceptedNow = async () =>
    sum(await scrape(httpPort), "citywatch_broker_publishes_in_total");
  const drain = async (withinMs: number) => {
    const by = Date.now() + withinMs;
    let last = -1;
    let progressAt = Date.now();
    let target = await acceptedNow();
    let steadySince = Date.now();
    while (Date.now() < by) {
      await new Promise((r) => setTimeout(r, 250));
      const now = await acceptedNow();
      if (now !== target) {
        target = now;
        steadySince = Date.now();
        progressAt = Date.now();
      }
      if (received >= target && Date.now() - steadySince >= 1_000) return;
      if (received !== last) {
        last = received;
        progressAt = Date.now();
      } else if (Date.now() - progressAt > 4_000) return;
    }
  };
  await drain(30_000);

  // Alive and answering: a new client connects and the metrics endpoint answers.
  expect(broker.child.exitCode).toBeNull();
  const probe = connect(mqttPort, "noise-fan-0", secrets[0] ?? "");
  await until(() => probe.connected, "a new connection after the fan-in", 15_000);
  await drain(10_000);
  const metrics = await scrape(httpPort);
  const accepted = sum(metrics, "citywatch_broker_publishes_in_total");
  const refusedRate =
    metrics.get('citywatch_broker_limit_rejections_total{limit="publish_rate"}') ?? 0;
  const throttled = metrics.get("citywatch_broker_publishes_throttled_total") ?? 0;
  const output = broker.output();
  const overflow = /Maximum call stack size exceeded/.test(output);
  const closedUnacked = sum(metrics, "citywatch_broker_limit_rejections_total");
  console.log(
    `[fault] fan-in: clients=${DEVICES}, sent=${sent}, offered_rate=${Math.round(sent / elapsedS)}/s, accepted=${accepted}, accepted_rate=${Math.round(accepted / elapsedS)}/s, delivered=${received}, lost=${accepted - received}, throttled=${throttled}, refused=${closedUnacked} (publish_rate ${refusedRate}), broker_alive=${broker.child.exitCode === null}, stack_overflow=${overflow}, subscriber_closes=${subscriberCloses}`,
  );
  if (process.env["CITYWATCH_FAULT_DEBUG"] === "1") console.log(output.slice(-3000));
  expect(overflow).toBe(false);
  // Whatever was not routed was shed by a counted refusal (a throttled or cut connection),
  // never silently: accepted publishes reached the subscriber.
  expect(accepted).toBeGreaterThan(0);
  // The probe's own connect adds nothing; every accepted publish reached the subscriber.
  expect(received).toBe(accepted);
}, 170_000);
