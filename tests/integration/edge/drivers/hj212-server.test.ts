import { readFileSync } from "node:fs";
import net from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EdgeConfig } from "../../../../contracts/index.js";
import { hj212DriverFactory, type Hj212Server } from "../../../../edge/drivers/hj212-server.js";
import { until } from "../../../support/broker.js";
import {
  frameOf,
  seeded,
  VECTOR_2051,
  VECTOR_2051_FRAME,
} from "../../../unit/edge/hj212/vectors.js";
import {
  decodeReplies,
  driverOptions,
  recordingSink,
  siteSegment,
} from "../../../unit/edge/drivers/hj212-fixtures.js";

/*
 * The HJ 212 server on a real TCP socket on 127.0.0.1, port 0, with monitors played by plain
 * `net` clients. The sink is the seam's plain function, recording what the agent would get.
 */

const log = pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });
const servers: Hj212Server[] = [];
const clients: net.Socket[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

async function startServer(overrides: Record<string, unknown> = {}) {
  const recorder = recordingSink();
  const options = driverOptions({ host: "127.0.0.1", ...overrides });
  const server = hj212DriverFactory.create(options, { log });
  servers.push(server);
  await server.start(recorder.sink);
  const port = server.port;
  if (port === undefined) throw new Error("the server reported no port");
  return { server, port, ...recorder };
}

/** A monitor: a TCP client that keeps what the server sends back. */
async function monitor(port: number) {
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.setNoDelay(true);
  clients.push(socket);
  let received = "";
  let closed = false;
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
  socket.on("error", () => undefined); // a reset by the server shows as `closed`
  socket.on("close", () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return {
    socket,
    send: (data: string | Buffer) => socket.write(data),
    replies: () => decodeReplies(received),
    closed: () => closed,
  };
}

const withAck = (segment: string) => segment.replace(";Flag=4;", ";Flag=5;");

describe("HJ 212 TCP server driver", () => {
  it("takes the air-quality test vector frame and a monitor's own frames, and answers over the socket", async () => {
    const { port, samples, server } = await startServer();
    const device = await monitor(port);
    device.send(VECTOR_2051_FRAME); // Flag=4: no answer asked
    device.send(
      frameOf(withAck(VECTOR_2051).replace("QN=20220513162608370", "QN=20220513162708370")),
    );
    device.send(
      frameOf(
        siteSegment(
          "DataTime=20221127080000;a34002-Avg=88,a34002-Flag=N;a50001-Avg=67.4,a50001-Flag=N",
        ),
      ),
    );
    await until(() => device.replies().length === 2, "two 9014 replies");
    expect(device.replies().map((r) => [r.cn, r.qn])).toEqual([
      ["9014", "20220513162708370"],
      ["9014", "20221127080000001"],
    ]);
    expect(samples.map((s) => [s.deviceId, s.form, s.values])).toEqual([
      [
        "air-1",
        "interval",
        { pm2_5: 14, pm10: 31, windSpeed: 1, windDirection: 11, temperature: 17, humidity: 85 },
      ],
      [
        "air-1",
        "interval",
        { pm2_5: 14, pm10: 31, windSpeed: 1, windDirection: 11, temperature: 17, humidity: 85 },
      ],
      ["site-17-dust", "interval", { pm10: 88 }],
      ["site-17-noise", "interval", { LAeq: 67.4 }],
    ]);
    expect(server.stats()).toMatchObject({
      connections: 1,
      connectionsOpen: 1,
      frames: 3,
      replies9014: 2,
    });
  });

  it("survives garbage, then takes a good frame on the same connection", async () => {
    const { port, samples, server } = await startServer();
    const device = await monitor(port);
    device.send(Buffer.from([0x00, 0xff, 0x23, 0x23, 0x41, 0x0d, 0x0a, 0x16, 0x03]));
    device.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n##12");
    device.send(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88")));
    await until(() => device.replies().length === 1, "the 9014 after the garbage");
    expect(device.replies()[0]?.cn).toBe("9014");
    expect(samples.map((s) => s.values)).toEqual([{ pm10: 88 }]);
    expect(device.closed()).toBe(false);
    const stats = server.stats();
    expect((stats["garbage"] ?? 0) + (stats["badLength"] ?? 0)).toBeGreaterThan(0);
  });

  it("answers a bad CRC with 9011 QnRtn=9 over the socket", async () => {
    const { port, samples } = await startServer();
    const device = await monitor(port);
    device.send(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88"), { crc: "BEEF" }));
    await until(() => device.replies().length === 1, "the 9011");
    expect(device.replies().map((r) => [r.cn, r.cp.params["QnRtn"]])).toEqual([["9011", "9"]]);
    expect(samples).toEqual([]);
  });

  it("serves a slow monitor dribbling one byte at a time while another is answered at once", async () => {
    const { port, samples } = await startServer();
    const slow = await monitor(port);
    const fast = await monitor(port);
    const wire = Buffer.from(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88")));
    for (let i = 0; i < wire.length; i++) {
      slow.send(wire.subarray(i, i + 1));
      if (i === 60) {
        // Halfway through the slow frame, a second monitor is not held up by it.
        fast.send(frameOf(siteSegment("DataTime=20221127080100;a34002-Avg=90", { qn: "2" })));
        await until(() => fast.replies().length === 1, "the fast monitor's reply");
        expect(slow.replies()).toEqual([]);
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await until(() => slow.replies().length === 1, "the slow monitor's reply");
    expect(slow.replies()[0]?.qn).toBe("20221127080000001");
    expect(samples.map((s) => s.values)).toEqual([{ pm10: 90 }, { pm10: 88 }]);
  });

  it("reassembles a split packet whose pieces come over two connections", async () => {
    const { port, samples } = await startServer();
    const piece = (no: number, cp: string) =>
      frameOf(
        siteSegment(`DataTime=20221127080000;${cp}`, {
          qn: `2022112708000000${no}`,
          flag: 7,
          extra: `PNUM=2;PNO=${no}`,
        }),
      );
    const first = await monitor(port);
    first.send(piece(1, "a34002-Avg=88"));
    await until(() => first.replies().length === 1, "the first piece answered");
    first.socket.destroy(); // the monitor's link dropped; it reconnects for the second piece
    const second = await monitor(port);
    second.send(piece(2, "a50001-Avg=67.4"));
    await until(() => samples.length === 2, "the packet delivered");
    expect(samples.map((s) => [s.deviceId, s.values])).toEqual([
      ["site-17-dust", { pm10: 88 }],
      ["site-17-noise", { LAeq: 67.4 }],
    ]);
  });

  it("takes every good frame of a stream of seeded random bytes, and stays up", async () => {
    const { port, samples, server } = await startServer();
    const device = await monitor(port);
    const random = seeded(212);
    let good = 0;
    for (let round = 0; round < 50; round++) {
      const noise = Buffer.from(
        Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)),
      );
      device.send(noise);
      // Noise ending in `#` or `##12` would swallow the next frame's start: end it cleanly.
      device.send("\r\n");
      const minute = String(round).padStart(2, "0");
      device.send(
        frameOf(
          siteSegment(`DataTime=2022112708${minute}00;a34002-Avg=${round}`, { qn: String(round) }),
        ),
      );
      good++;
    }
    await until(() => samples.length === good, `${good} frames taken`, 10_000);
    expect(samples.map((s) => s.values["pm10"])).toEqual(Array.from({ length: good }, (_, i) => i));
    expect(device.closed()).toBe(false);
    const stats = server.stats();
    expect(stats["frames"]).toBeGreaterThanOrEqual(good);
    expect(stats["garbageBytes"]).toBeGreaterThan(1_000);
  });

  it("closes connections beyond maxConnections and counts them", async () => {
    const { port, server } = await startServer({ maxConnections: 2 });
    const first = await monitor(port);
    await monitor(port);
    await until(() => server.stats()["connectionsOpen"] === 2, "two connections");
    const third = await monitor(port);
    await until(() => third.closed(), "the third connection closed");
    expect(server.stats()).toMatchObject({ connectionsRefused: 1, connectionsOpen: 2 });
    first.send(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88")));
    await until(() => first.replies().length === 1, "the first monitor still answered");
  });

  it("closes a monitor that never reads its replies once they pass maxReplyBacklogBytes", async () => {
    const { port, server, samples } = await startServer({ maxReplyBacklogBytes: 1_024 });
    const device = await monitor(port);
    device.socket.pause(); // reads nothing: the replies pile up in the kernel, then in the server
    const frame = frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88"));
    const burst = frame.repeat(2_000);
    for (let i = 0; i < 40 && !device.closed(); i++) {
      device.send(burst);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await until(() => device.closed(), "the connection closed", 20_000);
    expect(server.stats()["replyBacklogOverflows"]).toBe(1);
    // What was taken before the cut stays taken; the server still serves others.
    expect(samples.length).toBeGreaterThan(0);
    const other = await monitor(port);
    other.send(frame);
    await until(() => other.replies().length === 1, "another monitor answered");
  });

  it("closes an idle connection after idleTimeoutS and counts it", async () => {
    const { port, server } = await startServer({ idleTimeoutS: 1 });
    const device = await monitor(port);
    device.send("##00"); // half a header, then silence
    await until(() => device.closed(), "the idle connection closed", 5_000);
    expect(server.stats()).toMatchObject({ idleTimeouts: 1, connectionsOpen: 0, truncated: 1 });
  });

  it("runs the driver of edge/examples/hj212-dust-noise.yaml as documented", async () => {
    const text = readFileSync(
      new URL("../../../../edge/examples/hj212-dust-noise.yaml", import.meta.url),
      "utf8",
    );
    const entry = EdgeConfig.parse(parse(text)).drivers[0];
    const { sink, samples } = recordingSink();
    const server = hj212DriverFactory.create(
      hj212DriverFactory.options.parse({ ...entry, host: "127.0.0.1", port: 0 }),
      { log },
    );
    servers.push(server);
    await server.start(sink);
    const device = await monitor(server.port ?? 0);
    const mn = "510104000000000000000001";
    device.send(
      frameOf(
        siteSegment(
          "DataTime=20261127120000;a34001-Avg=210,a34001-Flag=N;a34002-Avg=96,a34002-Flag=N;a34004-Avg=41,a34004-Flag=N;a01007-Avg=2.1,a01007-Flag=N;a50001-Avg=72.3,a50001-Flag=N",
          { mn },
        ),
      ),
    );
    // Real-time data is answered but not taken (the example takes minute data only).
    device.send(
      frameOf(siteSegment("DataTime=20261127120005;a50001-Rtd=75", { mn, cn: "2011", qn: "2" })),
    );
    await until(() => device.replies().length === 2, "both frames answered");
    expect(device.replies().map((r) => r.cn)).toEqual(["9014", "9014"]);
    expect(samples).toEqual([
      {
        deviceId: "demo-dust-1",
        kind: "dust",
        ts: Date.parse("2026-11-27T12:01:00+08:00"),
        quality: "normal",
        values: { tsp: 210, pm10: 96, pm2_5: 41, windSpeed: 2.1 },
        form: "interval",
      },
      {
        deviceId: "demo-noise-1",
        kind: "noise",
        ts: Date.parse("2026-11-27T12:01:00+08:00"),
        quality: "normal",
        values: { LAeq: 72.3 },
        form: "interval",
      },
    ]);
    expect(server.stats()["ignoredData"]).toBe(1);
  });

  it("stops with monitors connected, closing their connections", async () => {
    const { port, server } = await startServer();
    const device = await monitor(port);
    device.send(frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88")));
    await until(() => device.replies().length === 1, "the reply");
    await server.stop();
    await until(() => device.closed(), "the monitor's connection closed");
    await expect(monitor(port)).rejects.toThrow();
  });

  it("refuses a length field that claims more than the frame holds (0999, 9999) at once, and later frames are answered without delay (issue 16 item 7)", async () => {
    const { port, samples, server } = await startServer();
    const device = await monitor(port);
    const lying = withAck(siteSegment("DataTime=20221127080000;a34002-Avg=88", { qn: "1" }));
    const good = withAck(siteSegment("DataTime=20221127080100;a34002-Avg=89", { qn: "2" }));
    for (const declared of ["0999", "9999"]) {
      device.send(frameOf(lying).replace(/^##\d{4}/, `##${declared}`));
      device.send(frameOf(good));
    }
    // Before, the good frame waited for 999 (or 9 999) more bytes: no answer came at all.
    await until(() => device.replies().length === 4, "four replies", 2_000);
    expect(device.replies().map((r) => [r.cn, r.qn, r.cp.params["QnRtn"]])).toEqual([
      ["9011", "1", "100"],
      ["9014", "2", undefined],
      ["9011", "1", "100"],
      ["9014", "2", undefined],
    ]);
    expect(samples.map((s) => s.values)).toEqual([{ pm10: 89 }]); // the resent copy is not delivered twice
    expect(server.stats()).toMatchObject({ badLength: 2, duplicateFrames: 1 });
    expect(device.closed()).toBe(false);
  });

  it("closes a client that sends one byte a second and never a frame, after frameTimeoutS (issue 16 item 7)", async () => {
    const { port, server } = await startServer({ frameTimeoutS: 1 });
    const slow = await monitor(port);
    const fast = await monitor(port);
    const wire = frameOf(siteSegment("DataTime=20221127080000;a34002-Avg=88"));
    const started = Date.now();
    let i = 0;
    const dribble = setInterval(() => slow.send(wire.slice(i, ++i)), 200);
    try {
      await until(() => slow.closed(), "the dribbling client closed", 4_000);
    } finally {
      clearInterval(dribble);
    }
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3_000);
    // A monitor that sends whole frames, with its CR LF in a later read, stays connected.
    const frame = frameOf(withAck(siteSegment("DataTime=20221127080000;a34002-Avg=88")));
    fast.send(frame.slice(0, -2));
    await new Promise((resolve) => setTimeout(resolve, 100));
    fast.send("\r\n");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(fast.closed()).toBe(false);
    expect(fast.replies().map((r) => r.cn)).toEqual(["9014"]);
    expect(server.stats()).toMatchObject({ frameTimeouts: 1 });
  });
});
