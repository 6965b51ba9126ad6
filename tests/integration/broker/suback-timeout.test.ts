import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Aedes } from "aedes";
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { EdgeConfig } from "../../../contracts/index.js";
import { DeviceLink } from "../../../edge/uplink/device-link.js";
import { WriteAheadLog } from "../../../edge/wal/log.js";
import { until } from "../../support/broker.js";

/**
 * A broker that never answers the start-up SUBSCRIBE (as the Redis-persisted broker did, issue
 * #16 item 9) must not leave the edge agent's device link connected and silent: after its
 * subscribe timeout it logs at warn, drops the connection and connects again.
 */

let server: Server | undefined;
let aedes: Aedes | undefined;
let link: DeviceLink | undefined;
let wal: WriteAheadLog | undefined;
let dir = "";

afterEach(async () => {
  await link?.stop();
  wal?.close();
  await new Promise<void>((resolve) => (aedes ? aedes.close(() => resolve()) : resolve()));
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  rmSync(dir, { recursive: true, force: true });
});

it("drops a connection whose SUBACK never comes, warns, and connects again", async () => {
  dir = mkdtempSync(join(tmpdir(), "cw-suback-"));
  const subscribes: string[] = [];
  // authorizeSubscribe never calls back: aedes never sends the SUBACK.
  aedes = new Aedes({
    authorizeSubscribe: (_client, sub) => {
      subscribes.push(sub.topic);
    },
  });
  await aedes.listen();
  const broker = aedes;
  server = createServer((socket) => broker.handle(socket));
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  const lines: Array<{ level: number; msg: string; timeoutMs?: number }> = [];
  const log = pino(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
        done();
      },
    }),
  );
  wal = new WriteAheadLog({ file: join(dir, "wal.db") }, { now: Date.now });
  const uplink = EdgeConfig.shape.uplink.parse({
    reconnectMinMs: 50,
    reconnectMaxMs: 100,
  });
  link = new DeviceLink(
    {
      url: `mqtt://127.0.0.1:${port}`,
      deviceId: "noise-s1",
      kind: "noise",
      secret: "x",
      keepaliveS: 30,
      connectTimeoutMs: 2_000,
      subscribeTimeoutMs: 300,
      tls: { rejectUnauthorized: true },
      uplink,
      agent: { name: "test", version: "0" },
    },
    { log, wal, now: Date.now, onConfig: () => undefined },
  );
  link.start();
  await until(() => (link?.stats().connects ?? 0) >= 3, "three connections", 5_000);
  const warned = lines.filter((l) => l.level === 40 && l.msg.startsWith("no SUBACK"));
  expect(warned.length).toBeGreaterThanOrEqual(2);
  expect(warned[0]?.timeoutMs).toBe(300);
  expect(link.stats().connected).toBe(false);
  // Every connection made the protocol's one SUBSCRIBE of commit and config.
  expect(subscribes.slice(0, 2)).toEqual([
    "citywatch/v1/devices/noise-s1/commit",
    "citywatch/v1/devices/noise-s1/config",
  ]);
});
