import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { SensorKind } from "../../../../contracts/index.js";
import { hj212DriverFactory, type Hj212Server } from "../../../../edge/drivers/hj212-server.js";
import { buildAgent, edgeMetrics, type EdgeAgent } from "../../../../edge/index.js";
import { EXAMPLE_HJ212_MAPPING } from "../../../../edge/hj212/mapping-example.js";
import type { Ingest } from "../../../../ingest/app.js";
import { startTestBroker, type TestBroker, until } from "../../../support/broker.js";
import { startTestIngest } from "../../../support/ingest.js";
import { frameOf } from "../../../unit/edge/hj212/vectors.js";
import { decodeReplies, SITE_MN, siteSegment } from "../../../unit/edge/drivers/hj212-fixtures.js";
import { edgeConfig, testLog } from "../agent-harness.js";

/*
 * The whole path of issue 5's last test: an HJ 212 monitor over a real TCP socket → the HJ 212
 * driver → the edge agent (write-ahead log, uplink) → the real aedes broker → the ingest → the
 * SQLite store, and the monitor gets its replies: first with the driver wired to the seam
 * (`agent.sink`) by hand, then as a driver of the agent's own configuration.
 */

let dir: string;
let broker: TestBroker | undefined;
let ingest: Ingest | undefined;
let agent: EdgeAgent | undefined;
let driver: Hj212Server | undefined;
let socket: net.Socket | undefined;

afterEach(async () => {
  socket?.destroy();
  await driver?.stop();
  await agent?.stop();
  await ingest?.stop();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Waits until `read` gives `count` rows (the store is read asynchronously), and returns them. */
async function rows<T>(read: () => Promise<T[]>, count: number, what: string): Promise<T[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const got = await read();
    if (got.length >= count) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${got.length})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** `YYYYMMDDhhmm00` in Asia/Shanghai for the minute starting `ms`. */
function dataTimeOf(ms: number): string {
  return new Date(ms + 8 * 3_600_000).toISOString().replace(/\D/g, "").slice(0, 12) + "00";
}

/** A broker with the devices registered and an ingest storing into SQLite, under a fresh `dir`. */
async function setup(list: ReadonlyArray<{ deviceId: string; kind: SensorKind }>) {
  dir = mkdtempSync(join(tmpdir(), "cw-hj212-agent-"));
  const t = await startTestBroker({}, { dataDir: join(dir, "broker") });
  broker = t;
  const started = await startTestIngest(t, {
    dataDir: join(dir, "ingest"),
    clientId: "ingest-hj212",
  });
  ingest = started;
  const devices = list.map((d) => ({ ...d, secret: t.addDevice(d.deviceId, d.kind) }));
  return { broker: t, devices, store: started.store };
}

describe("HJ 212 monitor → driver → edge agent → aedes → ingest → SQLite store", () => {
  it("stores the monitor's minute data exactly as sent and answers it; an implausible factor is dead-lettered and its frame answered", async () => {
    const {
      broker: t,
      devices,
      store,
    } = await setup([
      { deviceId: "site-17-dust", kind: "dust" },
      { deviceId: "site-17-noise", kind: "noise" },
    ]);
    agent = buildAgent({ log: testLog(), config: edgeConfig(t.url, devices, dir) });
    await agent.start();
    await until(() => devices.every((d) => agent!.connected(d.deviceId)), "agent connected");

    // Only the combined site monitor of the example mapping is served by this agent.
    const mapping = {
      ...EXAMPLE_HJ212_MAPPING,
      devices: { [SITE_MN]: EXAMPLE_HJ212_MAPPING.devices[SITE_MN] },
    };
    driver = hj212DriverFactory.create(
      hj212DriverFactory.options.parse({ host: "127.0.0.1", port: 0, mapping }),
      { log: testLog(), devices, deadLetters: agent.deadLetters.record },
    );
    await driver.start(agent.sink);

    socket = net.connect({ host: "127.0.0.1", port: driver.port ?? 0 });
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
    await new Promise((resolve) => socket!.once("connect", resolve));

    // Five minutes of minute data, ending 10 minutes ago (inside the ingest's freshness window).
    const firstMinute = Math.floor(Date.now() / 60_000) * 60_000 - 15 * 60_000;
    for (let m = 0; m < 5; m++) {
      const cp = `DataTime=${dataTimeOf(firstMinute + m * 60_000)};a34002-Avg=${80 + m},a34002-Flag=N;a50001-Avg=${60 + m},a50001-Flag=${m === 4 ? "M" : "N"}`;
      socket.write(frameOf(siteSegment(cp, { qn: `1000${m}` })));
    }
    // PM10 of 30 000 µg/m³ (no flag: normal) is outside the plausible range: the factor is
    // refused into the dead-letter log and the frame is answered (resending cannot fix it).
    const refused = `DataTime=${dataTimeOf(firstMinute + 5 * 60_000)};a34002-Avg=30000`;
    socket.write(frameOf(siteSegment(refused, { qn: "10005" })));
    await until(() => decodeReplies(received).length === 6, "six replies");
    expect(decodeReplies(received).map((r) => [r.cn, r.qn])).toEqual(
      [0, 1, 2, 3, 4, 5].map((m) => ["9014", `1000${m}`]),
    );
    expect(driver.stats()).toMatchObject({
      samples: 10,
      sinkRefused: 0,
      badValues: 1,
      replies9014: 6,
    });
    expect(agent.deadLetters.list().map((d) => [d.code, d.source, d.payload])).toEqual([
      ["HJ212_BAD_VALUE", SITE_MN, "a34002-Avg=30000"],
    ]);
    // The refusal is on the agent's /metrics too.
    const metrics = await edgeMetrics(() => agent!.stats()).metrics();
    expect(metrics).toMatch(/^citywatch_edge_dead_letters 1$/m);
    expect(metrics).toMatch(/^citywatch_edge_dead_letters_recorded\{code="HJ212_BAD_VALUE"\} 1$/m);

    const stored = async (deviceId: string, kind: "dust" | "noise") =>
      store.readings({
        deviceId,
        kind,
        fromMs: firstMinute,
        toMs: firstMinute + 10 * 60_000,
        limit: 100,
      });
    await until(
      () => agent!.stats().devices.every((d) => d.log.pending === 0 && d.readings === 5),
      "the readings committed",
      15_000,
    );
    const dust = await stored("site-17-dust", "dust");
    const noise = await stored("site-17-noise", "noise");
    // Minute data is stamped at the end of its minute.
    expect(dust.map((r) => [r.timeMs - firstMinute, r.values["pm10"]])).toEqual(
      [1, 2, 3, 4, 5].map((m) => [m * 60_000, 79 + m]),
    );
    expect(noise.map((r) => [r.values["LAeq"], r.quality])).toEqual([
      [60, "normal"],
      [61, "normal"],
      [62, "normal"],
      [63, "normal"],
      [64, "maintenance"],
    ]);
  });

  it("runs as a driver of the agent's configuration and reports its counters in the agent's stats", async () => {
    const { broker: t, devices, store } = await setup([{ deviceId: "air-1", kind: "dust" }]);
    const mapping = {
      ...EXAMPLE_HJ212_MAPPING,
      devices: { JLYP01_AIR01_0001: EXAMPLE_HJ212_MAPPING.devices.JLYP01_AIR01_0001 },
    };
    agent = buildAgent({
      log: testLog(),
      config: edgeConfig(t.url, devices, dir, {
        drivers: [{ type: "hj212", host: "127.0.0.1", port: 0, mapping }],
      }),
    });
    await agent.start();
    // The driver's name carries the port the OS gave it.
    const name = Object.keys(agent.stats().drivers).find((n) => n.startsWith("hj212:"));
    const port = Number(name?.split(":").at(-1));
    expect(port).toBeGreaterThan(0);

    socket = net.connect({ host: "127.0.0.1", port });
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
    await new Promise((resolve) => socket!.once("connect", resolve));
    const minute = Math.floor(Date.now() / 60_000) * 60_000 - 5 * 60_000;
    const segment = `QN=1;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=5;CP=&&DataTime=${dataTimeOf(minute)};a34002-Avg=31,a34002-Flag=N;a34004-Avg=14,a34004-Flag=N&&`;
    socket.write(frameOf(segment));
    await until(() => decodeReplies(received).length === 1, "the 9014");
    expect(decodeReplies(received)[0]?.cn).toBe("9014");
    await until(
      () =>
        agent!.stats().devices[0]?.log.pending === 0 && agent!.stats().devices[0]?.readings === 1,
      "the reading committed",
      15_000,
    );
    const stored = await store.readings({
      deviceId: "air-1",
      kind: "dust",
      fromMs: minute,
      toMs: minute + 120_000,
      limit: 10,
    });
    expect(stored.map((r) => [r.timeMs - minute, r.values])).toEqual([
      [60_000, { pm10: 31, pm2_5: 14 }],
    ]);
    expect(agent.stats().drivers[name ?? ""]).toMatchObject({
      frames: 1,
      samples: 1,
      replies9014: 1,
    });
  });

  /** The site monitor's driver by hand on the agent's sink and dead-letter log, and a monitor socket. */
  async function siteMonitor(overrides: Record<string, unknown> = {}) {
    const mapping = {
      ...EXAMPLE_HJ212_MAPPING,
      devices: { [SITE_MN]: EXAMPLE_HJ212_MAPPING.devices[SITE_MN] },
    };
    const served = agent!;
    driver = hj212DriverFactory.create(
      hj212DriverFactory.options.parse({ host: "127.0.0.1", port: 0, mapping, ...overrides }),
      { log: testLog(), deadLetters: served.deadLetters.record },
    );
    await driver.start(served.sink);
    socket = net.connect({ host: "127.0.0.1", port: driver.port ?? 0 });
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
    await new Promise((resolve) => socket!.once("connect", resolve));
    return { replies: () => decodeReplies(received) };
  }

  it("answers late real-time samples (a monitor clock behind, a retried frame) and stores them at their own time (issue 16 item 7)", async () => {
    const {
      broker: t,
      devices,
      store,
    } = await setup([
      { deviceId: "site-17-dust", kind: "dust" },
      { deviceId: "site-17-noise", kind: "noise" },
    ]);
    agent = buildAgent({ log: testLog(), config: edgeConfig(t.url, devices, dir) });
    await agent.start();
    const monitor = await siteMonitor({ dataCns: ["2011"] });
    const minute = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    const at = (ms: number) =>
      new Date(ms + 8 * 3_600_000).toISOString().replace(/\D/g, "").slice(0, 14);
    const send = (qn: string, ms: number, pm10: number) =>
      socket!.write(
        frameOf(
          siteSegment(`DataTime=${at(ms)};a34002-Rtd=${pm10},a34002-Flag=N`, { qn, cn: "2011" }),
        ),
      );
    send("1", minute + 10_000, 40);
    send("2", minute + 70_000, 50); // the next minute: the first one is closed and sent
    send("3", minute + 30_000, 45); // 30 s behind: its minute was already sent
    await until(() => monitor.replies().length === 3, "three replies", 5_000);
    expect(monitor.replies().map((r) => [r.cn, r.qn])).toEqual([
      ["9014", "1"],
      ["9014", "2"],
      ["9014", "3"],
    ]);
    const dust = agent.stats().devices.find((d) => d.deviceId === "site-17-dust");
    expect(dust).toMatchObject({ samples: 3, late: 1, refused: 0 });
    await until(
      () => agent!.stats().devices.every((d) => d.log.pending === 0) && (dust?.readings ?? 0) >= 1,
      "the readings committed",
      15_000,
    );
    const stored = await rows(
      () =>
        store.readings({
          deviceId: "site-17-dust",
          kind: "dust",
          fromMs: minute,
          toMs: minute + 180_000,
          limit: 10,
        }),
      3,
      "three readings stored",
    );
    // The first minute's reading, the late sample at its own time, the second minute's reading.
    expect(stored.map((r) => [r.timeMs - minute, r.values["pm10"]])).toEqual([
      [30_000, 45],
      [60_000, 40],
      [120_000, 50],
    ]);
  });

  it("keeps a frame's good factors when one is implausible, and keeps flags T and D with their quality (issue 16 item 7)", async () => {
    const {
      broker: t,
      devices,
      store,
    } = await setup([
      { deviceId: "site-17-dust", kind: "dust" },
      { deviceId: "site-17-noise", kind: "noise" },
    ]);
    agent = buildAgent({ log: testLog(), config: edgeConfig(t.url, devices, dir) });
    await agent.start();
    const monitor = await siteMonitor();
    const minute = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    socket!.write(
      frameOf(
        siteSegment(
          `DataTime=${dataTimeOf(minute)};a34002-Avg=25000,a34002-Flag=N;a34004-Avg=14,a34004-Flag=N;a01001-Avg=17,a01001-Flag=N;a50001-Avg=61.5,a50001-Flag=N`,
          { qn: "1" },
        ),
      ),
    );
    socket!.write(
      frameOf(
        siteSegment(
          `DataTime=${dataTimeOf(minute + 60_000)};a34002-Avg=25000,a34002-Flag=T;a34004-Avg=-9999,a34004-Flag=D;a01001-Avg=18,a01001-Flag=N`,
          { qn: "2" },
        ),
      ),
    );
    await until(() => monitor.replies().length === 2, "both frames answered", 5_000);
    expect(monitor.replies().map((r) => [r.cn, r.qn])).toEqual([
      ["9014", "1"],
      ["9014", "2"],
    ]);
    const read = () =>
      store.readings({
        deviceId: "site-17-dust",
        kind: "dust",
        fromMs: minute,
        toMs: minute + 180_000,
        limit: 10,
      });
    const stored = (await rows(read, 4, "four dust readings stored")).map((r) => [
      r.timeMs - minute,
      r.quality,
      r.values,
    ]);
    expect(stored).toEqual(
      expect.arrayContaining([
        [60_000, "normal", { pm2_5: 14, temperature: 17 }],
        [120_000, "normal", { temperature: 18 }],
        [120_000, "over_range", { pm10: 20_000 }],
        [120_000, "fault", { pm2_5: 0 }],
      ]),
    );
    expect(agent.deadLetters.list().map((d) => [d.code, d.payload])).toEqual([
      ["HJ212_BAD_VALUE", "a34002-Avg=25000,a34002-Flag=N"],
    ]);
    expect(driver!.stats()).toMatchObject({ badValues: 1, clampedValues: 2, sinkRefused: 0 });
  });
});
