import { Writable } from "node:stream";
import type { MQEmitter } from "mqemitter";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { persistenceFor, type PersistenceParts } from "../../../broker/persistence.js";
import { until } from "../../support/broker.js";
import { provideRedis } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

const redis = await requireService("broker pub/sub through a Redis outage", provideRedis);

/**
 * The Redis fan-out of a clustered broker (mqemitter-redis) through a Redis killed and started
 * again: its connection errors are logged, not thrown (an unheard "error" event ended the broker
 * process), and once Redis is back messages flow again.
 */
describe.runIf(redis?.outage)("the broker's Redis pub/sub when Redis restarts", () => {
  const lines: Array<{ level: number; msg: string }> = [];
  const log = pino(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    }),
  );
  let parts: PersistenceParts | undefined;
  afterAll(async () => {
    await new Promise<void>((resolve) => {
      const mq = parts?.options.mq as MQEmitter | undefined;
      if (mq === undefined) resolve();
      else mq.close(() => resolve());
    });
    await parts?.close();
    await redis?.stop();
  });

  it("logs the errors and delivers again once Redis is back", async () => {
    parts = persistenceFor({ type: "redis", url: redis?.url ?? "" }, log);
    const mq = parts.options.mq as MQEmitter;
    const received: string[] = [];
    await new Promise<void>((resolve) =>
      mq.on(
        "t/1",
        (message, done) => {
          received.push(String(message["n"]));
          done();
        },
        resolve,
      ),
    );
    const publish = (n: number) =>
      new Promise<void>((resolve) => mq.emit({ topic: "t/1", n }, () => resolve()));
    await publish(1);
    await until(() => received.includes("1"), "delivered before the outage");

    await redis?.outage?.kill();
    await until(
      () => lines.some((l) => l.level === 40 && l.msg.startsWith("Redis pub/sub connection error")),
      "the connection error logged",
    );
    await redis?.outage?.restart();
    // Published until one arrives: the subscription comes back with the reconnect.
    const deadline = Date.now() + 15_000;
    for (let n = 2; received.length < 2 && Date.now() < deadline; n++) {
      await publish(n);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(received.length).toBeGreaterThan(1);
    expect(received[0]).toBe("1");
  });
});

/**
 * aedes-persistence-redis sends some commands without awaiting them (the LREM in delWill and
 * putWill). One that fails, here on a connection closed while the broker stops, must not surface
 * as an unhandled rejection: that ends a Node process (it failed a CI run as "Connection is
 * closed." from ioredis). The caller that awaits still gets its error.
 */
describe.runIf(redis)("the broker's Redis persistence on a closed connection", () => {
  it("a command nobody awaits fails without an unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const closed = persistenceFor(
        { type: "redis", url: redis?.url ?? "" },
        pino({ level: "silent" }),
      );
      const persistence = closed.options.persistence as unknown as {
        delWill(client: { id: string; brokerId: string }, done: (error?: Error) => void): void;
      };
      await closed.close();
      const error = await new Promise<Error | undefined>((resolve) =>
        persistence.delWill({ id: "gone", brokerId: "b1" }, resolve),
      );
      expect(error?.message).toMatch(/closed/i);
      await new Promise((r) => setTimeout(r, 200));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
