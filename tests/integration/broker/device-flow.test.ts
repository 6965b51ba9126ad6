import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import { buildAgent, type EdgeAgent } from "../../../edge/index.js";
import {
  collect,
  metricValue,
  startTestBroker,
  subscribeCodes,
  type TestBroker,
  until,
} from "../../support/broker.js";
import { startTestIngest, type TestIngest } from "../../support/ingest.js";
import { redisCommands } from "../../support/redis.js";
import { provideRedis } from "../../support/services.js";
import { requireService } from "../../support/suite.js";
import { edgeConfig, storedReadings, testLog, tsOf } from "../edge/agent-harness.js";

/**
 * The protocol's own device flow (docs/protocol.md 1 and 6.4) against every broker persistence:
 * CONNECT with clean session 0, ONE SUBSCRIBE of `commit` and `config`, publish data, receive the
 * commit. On Redis the SUBACK of that SUBSCRIBE never came (issue #16 item 9): aedes stored the
 * packet's filters once per filter, concurrently, and aedes-persistence-redis lost the first
 * store's completion. The edge agent's uplink makes the same SUBSCRIBE.
 */

const redis = await requireService("the device flow on a Redis-persisted broker", provideRedis);

type Persistence = { type: "memory" } | { type: "redis"; url: string };

const persistences: Array<[string, Persistence | undefined]> = [
  ["memory", { type: "memory" }],
  ["redis", redis === undefined ? undefined : { type: "redis", url: redis.url }],
];

afterAll(async () => {
  await redis?.stop();
});

const SUBACK_WAIT_MS = 5_000;
const base = Math.floor((Date.now() - 2 * 3_600_000) / 3_600_000) * 3_600_000 + 300_000;

function envelope(deviceId: string, seq: number): string {
  return JSON.stringify({
    v: 1,
    deviceId,
    seq,
    kind: "noise",
    readings: [
      { ts: new Date(base + seq * 60_000).toISOString(), quality: "normal", values: { LAeq: 55 } },
    ],
  });
}

/** SUBACK codes, or "no SUBACK" when none came within SUBACK_WAIT_MS. */
function subscribeWithin(client: MqttClient, filters: string[]): Promise<number[] | "no SUBACK"> {
  return Promise.race([
    subscribeCodes(client, filters),
    new Promise<"no SUBACK">((resolve) => setTimeout(() => resolve("no SUBACK"), SUBACK_WAIT_MS)),
  ]);
}

for (const [name, persistence] of persistences) {
  describe.runIf(persistence)(`the protocol's device flow, ${name} persistence`, () => {
    let dir = "";
    let t: TestBroker | undefined;
    let ingest: TestIngest | undefined;
    const agents: EdgeAgent[] = [];

    afterEach(async () => {
      for (const agent of agents.splice(0)) await agent.stop().catch(() => undefined);
      await ingest?.stop();
      await t?.stop();
      ingest = undefined;
      t = undefined;
      rmSync(dir, { recursive: true, force: true });
    });

    async function setup(): Promise<{ t: TestBroker; ingest: TestIngest }> {
      dir = mkdtempSync(join(tmpdir(), `cw-flow-${name}-`));
      // A Redis shared by the tests of this file: every test starts from an empty one.
      if (persistence?.type === "redis") await flushRedis();
      t = await startTestBroker({ persistence }, { durableData: true });
      ingest = await startTestIngest(t, {
        dataDir: join(dir, "ingest"),
        clientId: `ingest-${name}`,
      });
      return { t, ingest };
    }

    it("clean session 0, one SUBSCRIBE of commit and config: SUBACK 1,1, then the commit of the data", async () => {
      const { t } = await setup();
      const secret = t.addDevice("noise-f1");
      const device = await t.connect({ username: "noise-f1", password: secret, clean: false });
      const commits = collect(device);
      expect(
        await subscribeWithin(device, [
          deviceTopic("noise-f1", "commit"),
          deviceTopic("noise-f1", "config"),
        ]),
      ).toEqual([1, 1]);
      await device.publishAsync(deviceTopic("noise-f1", "data"), envelope("noise-f1", 1), {
        qos: 1,
      });
      await until(
        () => commits.some((m) => m.payload.includes('"committedSeq":1')),
        "the commit of seq 1",
        10_000,
      );
      // Reconnected with the session present, the device is subscribed without a new SUBSCRIBE.
      await device.endAsync();
      const again = await t.connect({ username: "noise-f1", password: secret, clean: false });
      const later = collect(again);
      await again.publishAsync(deviceTopic("noise-f1", "data"), envelope("noise-f1", 2), {
        qos: 1,
      });
      await until(
        () => later.some((m) => m.payload.includes('"committedSeq":2')),
        "the commit of seq 2 on the restored session",
        10_000,
      );
    });

    it("stores no refused filter with a persistent session: a device never reads another device's commit", async () => {
      const { t } = await setup();
      const secret = t.addDevice("noise-spy");
      t.addDevice("noise-victim");
      const spy = await t.connect({ username: "noise-spy", password: secret, clean: false });
      expect(
        await subscribeWithin(spy, [
          deviceTopic("noise-spy", "commit"),
          deviceTopic("noise-victim", "commit"),
        ]),
      ).toEqual([1, 128]);
      await spy.endAsync();
      // While the spy is offline a commit goes to the victim (QoS 1: queued for sessions).
      const victimCommit = JSON.stringify({ v: 1, deviceId: "noise-victim", committedSeq: 7 });
      await new Promise<void>((resolve, reject) =>
        t.broker.aedes.publish(
          {
            cmd: "publish",
            topic: deviceTopic("noise-victim", "commit"),
            payload: Buffer.from(victimCommit),
            qos: 1,
            retain: false,
            dup: false,
          },
          (error) => (error ? reject(error) : resolve()),
        ),
      );
      const back = await t.connect({ username: "noise-spy", password: secret, clean: false });
      const received = collect(back);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(received.filter((m) => m.topic.includes("noise-victim"))).toEqual([]);
    });

    it("the edge agent's uplink: readings committed through this broker", async () => {
      const { t, ingest } = await setup();
      const secret = t.addDevice("noise-fa");
      const agent = buildAgent({
        log: testLog(),
        config: edgeConfig(t.url, [{ deviceId: "noise-fa", kind: "noise", secret }], dir),
      });
      agents.push(agent);
      await agent.start();
      for (let n = 0; n < 20; n++) {
        agent.sink({
          deviceId: "noise-fa",
          kind: "noise",
          ts: tsOf(n),
          quality: "normal",
          values: { LAeq: 50, LAmax: 90 },
          form: "interval",
        });
      }
      await until(
        () => agent.stats().devices[0]?.log.pending === 0,
        "the agent's readings committed",
        15_000,
      );
      expect((await storedReadings(ingest, "noise-fa", "noise")).length).toBe(20);
    });

    it("drops the retain flag of a data publish: nothing retained, counted", async () => {
      const { t } = await setup();
      const secret = t.addDevice("noise-r1");
      const device = await t.connect({ username: "noise-r1", password: secret });
      await device.publishAsync(deviceTopic("noise-r1", "data"), envelope("noise-r1", 1), {
        qos: 1,
        retain: true,
      });
      const monitor = await t.connect({
        username: "monitor",
        password: t.addService("monitor", "monitor"),
      });
      const seen = collect(monitor);
      await monitor.subscribeAsync(deviceTopic("noise-r1", "data"), { qos: 1 });
      await new Promise((r) => setTimeout(r, 500));
      expect(seen).toEqual([]);
      expect(await metricValue(t.broker, "citywatch_broker_retain_dropped_total")).toBe(1);
    });
  });
}

async function flushRedis(): Promise<void> {
  await redisCommands(redis?.url ?? "", [["FLUSHALL"]]);
}
