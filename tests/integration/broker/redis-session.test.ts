import { afterAll, describe, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import { startTestBroker, until } from "../../support/broker.js";
import { redisCommands } from "../../support/redis.js";
import { provideRedis } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

const redis = await requireService("persistent sessions on Redis", provideRedis);

afterAll(async () => {
  await redis?.stop();
});

/**
 * A persistent session that was away while more than 1,000 messages were queued for it gets them
 * all when it reconnects. aedes-persistence-redis hands over at most `maxSessionDelivery` (1,000
 * by default) and keeps the rest until the session's next reconnect: after a broker restart the
 * ingest missed every reading queued beyond the first 1,000 (issue #16 item 11, 131 readings).
 */
describe.runIf(redis)("a persistent session's queue on Redis", () => {
  it("delivers all 1,500 messages queued while the session was away", async () => {
    await redisCommands(redis?.url ?? "", [["FLUSHALL"]]);
    const t = await startTestBroker(
      {
        persistence: { type: "redis", url: redis?.url ?? "" },
        limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 },
      },
      { durableData: true },
    );
    try {
      const password = t.addService("ingest", "ingest");
      const ingest = await t.connect({
        username: "ingest",
        password,
        clientId: "ingest-q",
        clean: false,
      });
      await ingest.subscribeAsync("citywatch/v1/devices/+/data", { qos: 1 });
      await ingest.endAsync();
      const secret = t.addDevice("noise-b1");
      const device = await t.connect({ username: "noise-b1", password: secret });
      for (let i = 1; i <= 1_500; i++) {
        await device.publishAsync(deviceTopic("noise-b1", "data"), String(i), { qos: 1 });
      }
      // As the ingest does (docs/deploy.md, 3): a CONNACK that does not come within 3 s is tried
      // again. A persistent session's first reconnect on Redis sometimes gets no CONNACK (a known
      // issue, not understood yet); what this test holds is that the queue comes back whole.
      let back: Awaited<ReturnType<typeof t.connect>> | undefined;
      for (let attempt = 1; back === undefined; attempt++) {
        try {
          back = await t.connect({
            username: "ingest",
            password,
            clientId: "ingest-q",
            clean: false,
            connectTimeout: 3_000,
            reconnectPeriod: 0,
          });
        } catch (error) {
          if (attempt >= 3) throw error;
        }
      }
      const received = new Set<string>();
      back.on("message", (_topic, payload) => received.add(payload.toString()));
      await until(() => received.size >= 1_500, "every queued message", 20_000).catch(
        () => undefined,
      );
      expect(received.size).toBe(1_500);
    } finally {
      await t.stop();
    }
  });
});
