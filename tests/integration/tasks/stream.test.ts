import { request as httpRequest, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskEvent } from "../../../contracts/index.js";

import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { until } from "../../support/broker.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import { testApi } from "../../support/ingest.js";
import {
  DEVICES,
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
  registry,
  SITES,
  startSystem,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/** An SSE client on a real socket: collects `task` events, or pauses reading to be a slow client. */
function subscribe(
  port: number,
  token: string,
  options: { path?: string; lastEventId?: number; paused?: boolean } = {},
) {
  const events: TaskEvent[] = [];
  const comments: string[] = [];
  let response: IncomingMessage | undefined;
  let closed = false;
  const req = httpRequest({
    host: "127.0.0.1",
    port,
    path: options.path ?? "/api/v1/tasks/stream",
    headers: {
      authorization: `Bearer ${token}`,
      ...(options.lastEventId === undefined
        ? {}
        : { "last-event-id": String(options.lastEventId) }),
    },
  });
  req.on("response", (res) => {
    response = res;
    if (options.paused === true) {
      res.pause();
      return;
    }
    let buffer = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (frame.startsWith(":")) comments.push(frame);
        const data = frame.split("\n").find((l) => l.startsWith("data: "));
        if (data !== undefined) events.push(TaskEvent.parse(JSON.parse(data.slice(6))));
      }
    });
  });
  req.on("error", () => (closed = true));
  // The socket, not the response: a paused response may never emit its own close.
  req.on("socket", (socket) => socket.on("close", () => (closed = true)));
  req.end();
  return {
    events,
    comments,
    status: () => response?.statusCode,
    closed: () => closed,
    close: () => req.destroy(),
    resume: () => response?.resume(),
  };
}

describe("live task stream (SSE)", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  let port: number;
  let token: string;

  beforeEach(async () => {
    dir = await makeTempDir("cw-stream-");
    system = startSystem(dir, {
      now: Date.now,
      config: tasksConfig({ stream: { clientBuffer: 5, maxClients: 3, heartbeatMs: 100 } }),
    });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    port = (app.server.address() as AddressInfo).port;
    token = system.tokens.add("console", "viewer").token;
  });
  afterEach(async () => {
    await app.close(); // ends the open streams first (preClose), or it would wait for them
    await system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  it("delivers task events to a client, filtered by kind, with heartbeats; resumes with Last-Event-ID", async () => {
    const all = subscribe(port, token);
    const emergencies = subscribe(port, token, { path: "/api/v1/tasks/stream?kind=emergency" });
    await until(() => all.status() === 200 && emergencies.status() === 200, "streams open");
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await system.service.applyAlarm(gasNotice(raise(now, { level: "IV", deviceId: "g-1" })));
    await until(
      () => all.events.length === 2 && emergencies.events.length === 1,
      "events on the stream",
    );
    expect(all.events.map((e) => [e.type, e.task.id])).toEqual([
      ["filed", "enf-000001"],
      ["filed", "emg-000002"],
    ]);
    expect(emergencies.events[0]!.task).toMatchObject({
      kind: "emergency",
      level: "IV",
      affectedSites: ["ts-2", "ts-1", "ts-3"],
    });
    await until(() => all.comments.includes(": heartbeat"), "a heartbeat comment");

    const resumed = subscribe(port, token, { lastEventId: all.events[0]!.id });
    await until(() => resumed.events.length === 1, "missed event replayed");
    expect(resumed.events[0]!.task.id).toBe("emg-000002");
    for (const c of [all, emergencies, resumed]) c.close();
  });

  it("refuses clients beyond the limit with 503 and needs a token", async () => {
    const clients = [0, 1, 2].map(() => subscribe(port, token));
    await until(() => clients.every((c) => c.status() === 200), "three clients");
    const fourth = subscribe(port, token);
    await until(() => fourth.status() !== undefined, "an answer");
    expect(fourth.status()).toBe(503);
    expect((await system.metrics.sseRefused.get()).values[0]?.value).toBe(1);
    const anonymous = subscribe(port, "cwt_nope");
    await until(() => anonymous.status() !== undefined, "an answer");
    expect(anonymous.status()).toBe(401);
    for (const c of [...clients, fourth, anonymous]) c.close();
  });

  it("drops a client that stops reading once its buffer is full, and counts it; others keep receiving", async () => {
    const slow = subscribe(port, token, { paused: true });
    const fast = subscribe(port, token);
    await until(() => slow.status() === 200 && fast.status() === 200, "streams open");
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await until(() => fast.events.length === 1, "first event");
    // Large events fill the socket buffers of the paused client quickly.
    const big = {
      ...fast.events[0]!,
      task: { ...fast.events[0]!.task, detail: "x".repeat(256 * 1024) },
    };
    for (
      let i = 0;
      i < 200 && (await system.metrics.sseDropped.get()).values[0]?.value !== 1;
      i++
    ) {
      system.stream.publish({ ...big, id: big.id + i + 1 });
      await new Promise((r) => setImmediate(r));
    }
    expect((await system.metrics.sseDropped.get()).values[0]?.value).toBe(1);
    // A paused socket does not read the server's close; reading again finds the stream ended.
    slow.resume();
    await until(() => slow.closed(), "slow client disconnected");
    expect(fast.closed()).toBe(false);
    fast.close();
  }, 20_000);
});
