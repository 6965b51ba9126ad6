import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import { metricValue, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { startTestIngest, type TestIngest } from "../../support/ingest.js";
import { freePort } from "../../support/ports.js";
import { redisCommands } from "../../support/redis.js";
import { provideRedis } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/**
 * Issue #16 item 11: separate broker and ingest (the ingest over MQTT with its persistent
 * session), a graceful broker restart, and a plain QoS 1 device that trusts the PUBACK (no
 * commit protocol) publishing all along. Every reading the broker acknowledged must be stored:
 * before the fix, publishes to the restarted broker made before the ingest's session was back
 * were acknowledged and routed to nobody (820 to 3,240 readings lost per run).
 *
 * `CITYWATCH_FAULT_DURABLE=0` runs the same with the broker's durable-data rule off, to see the
 * loss this test guards against.
 */

const redis = await requireService("broker restart with Redis persistence", provideRedis);
const durable = process.env["CITYWATCH_FAULT_DURABLE"] !== "0";

afterAll(async () => {
  await redis?.stop();
});

const T0 = Math.floor((Date.now() - 2 * 3_600_000) / 3_600_000) * 3_600_000;
const PERIOD_MS = 10;

type Persistence = { type: "memory" } | { type: "redis"; url: string };

const cases: Array<[string, Persistence | undefined]> = [
  ["memory", { type: "memory" }],
  ["redis", redis === undefined ? undefined : { type: "redis", url: redis.url }],
];

for (const [name, persistence] of cases) {
  describe.runIf(persistence)(`graceful broker restart, ${name} persistence`, () => {
    it("stores every reading the broker acknowledged", async () => {
      if (persistence?.type === "redis") await redisCommands(persistence.url, [["FLUSHALL"]]);
      const dir = mkdtempSync(join(tmpdir(), `cw-fault-restart-${name}-`));
      const port = await freePort();
      const overrides = {
        mqtt: { port },
        persistence,
        limits: { publishRatePerSecond: 1_000, publishBurst: 1_000 },
      };
      const setup = { dataDir: join(dir, "broker"), durableData: durable };
      let broker: TestBroker | undefined = await startTestBroker(overrides, setup);
      const first = broker;
      // The ingest's registry view follows the broker of the moment (a restart reopens the file).
      const following = Object.create(first, {
        registry: { get: () => (broker ?? first).registry },
      }) as TestBroker;
      let ingest: TestIngest | undefined;
      let device: MqttClient | undefined;
      let timer: NodeJS.Timeout | undefined;
      try {
        ingest = await startTestIngest(following, {
          dataDir: join(dir, "ingest"),
          clientId: `ingest-${name}`,
        });
        const secret = first.addDevice("noise-q1");
        // A plain QoS 1 device: reconnects by itself, trusts the PUBACK, keeps no log.
        device = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
          clientId: "noise-q1",
          username: "noise-q1",
          password: secret,
          protocolVersion: 4,
          reconnectPeriod: 100,
          connectTimeout: 2_000,
        });
        device.on("error", () => undefined);
        await new Promise<void>((resolve) => device?.once("connect", () => resolve()));

        const acked = new Set<number>();
        let sent = 0;
        const publisher = device;
        timer = setInterval(() => {
          const seq = ++sent;
          const body = JSON.stringify({
            v: 1,
            deviceId: "noise-q1",
            seq,
            kind: "noise",
            readings: [
              {
                ts: new Date(T0 + seq * 1_000).toISOString(),
                quality: "normal",
                values: { LAeq: 50 },
              },
            ],
          });
          publisher.publish(deviceTopic("noise-q1", "data"), body, { qos: 1 }, (error) => {
            if (!error) acked.add(seq);
          });
        }, PERIOD_MS);

        await until(() => acked.size >= 100, "acknowledged before the restart", 10_000);
        await broker.stop();
        broker = undefined;
        const downAt = Date.now();
        await new Promise((r) => setTimeout(r, 300));
        broker = await startTestBroker(overrides, setup);
        const live = ingest;
        await until(() => live.mqttConnected(), "the ingest back", 15_000);
        const ingestBackMs = Date.now() - downAt;
        const ackedAtRestart = acked.size;
        await until(
          () => acked.size >= ackedAtRestart + 200,
          "acknowledged after the restart",
          20_000,
        );
        clearInterval(timer);
        timer = undefined;
        // The last PUBACKs in flight.
        await new Promise((r) => setTimeout(r, 500));

        const stored = async () =>
          live.store.readings({
            deviceId: "noise-q1",
            kind: "noise",
            fromMs: T0,
            toMs: T0 + 10_000_000,
            limit: 1_000_000,
          });
        const storedSeqs = () =>
          stored().then((rows) => rows.map((r) => Math.round((r.timeMs - T0) / 1_000)));
        await until(() => live.state.inbox.depth() === 0, "the inbox drained", 20_000);
        let seqs = await storedSeqs();
        const deadline = Date.now() + 10_000;
        while ([...acked].some((s) => !seqs.includes(s)) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 200));
          seqs = await storedSeqs();
        }
        const storedSet = new Set(seqs);
        const lost = [...acked].filter((s) => !storedSet.has(s));
        const duplicates = seqs.length - storedSet.size;
        const refused = broker
          ? await metricValue(broker.broker, "citywatch_broker_data_refused_total", {
              reason: "no_durable_consumer",
            })
          : 0;
        console.log(
          `[fault] broker restart (${name}${durable ? "" : ", durable-data rule off"}): sent=${sent}, acked=${acked.size}, stored=${storedSet.size}, lost=${lost.length}, duplicates=${duplicates}, refused_after_restart=${refused}, ingest_back_ms=${ingestBackMs}`,
        );
        expect(lost).toEqual([]);
        expect(duplicates).toBe(0);
        expect(ingestBackMs).toBeLessThan(5_000);
      } finally {
        if (timer !== undefined) clearInterval(timer);
        await device?.endAsync(true).catch(() => undefined);
        await ingest?.stop();
        await broker?.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }, 90_000);
  });
}
