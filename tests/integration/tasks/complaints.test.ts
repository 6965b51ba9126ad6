import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContactRetention } from "../../../tasks/complaints.js";
import type { TasksConfig } from "../../../contracts/config/tasks.js";
import type { Task } from "../../../contracts/model/tasks.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { Point } from "../../../ingest/store/types.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import { buildTaskSystem } from "../../../tasks/app.js";
import { until } from "../../support/broker.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DEVICES,
  noiseNotice,
  raise,
  registry,
  SITES,
  tasksConfig,
} from "../../unit/tasks/fixtures.js";

/*
 * The issue's "Done when": a complaint from a signed hotline post becomes a task with
 * corroborating readings, and its outcome goes back by webhook exactly once. Real parts: the
 * SQLite time-series store with readings written through its API, the task store, the API over
 * fastify inject, HMAC with node:crypto, and a listening HTTP server as the platform's receiver.
 *
 * The task system is the one the start builds (tasks/app.ts), whose outbox holds a target per
 * platform with a callback URL.
 */

const SECRET = "hotline-12345-shared-secret";
const PLATFORM = "hotline-12345";
const PHONE = "13800138000";
// 23:10 local time: night, GB 12523 construction limit 55 dB(A).
const RECEIVED = "2026-12-05T23:10:00+08:00";
const RECEIVED_MS = Date.parse(RECEIVED);
const MIN = 60_000;

interface Outcome {
  key: string;
  body: { complaintId: string; taskId: string; outcome: string; note: string | null };
}

/** The platform's receiver: verifies the signature; refuses the first `failFirst` posts. */
function receiver(accepted: Outcome[], attempts: { n: number }, failFirst: number) {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      attempts.n++;
      const body = Buffer.concat(chunks).toString("utf8");
      const ts = String(req.headers["x-citywatch-timestamp"]);
      const expected = `sha256=${createHmac("sha256", SECRET).update(`${ts}.${body}`).digest("hex")}`;
      const given = String(req.headers["x-citywatch-signature"]);
      if (
        given.length !== expected.length ||
        !timingSafeEqual(Buffer.from(given), Buffer.from(expected))
      ) {
        res.writeHead(401).end();
        return;
      }
      if (attempts.n <= failFirst) {
        res.writeHead(503).end();
        return;
      }
      const key = String(req.headers["idempotency-key"]);
      // A platform drops repeats by key (delivery is at least once).
      if (!accepted.some((a) => a.key === key)) {
        accepted.push({ key, body: JSON.parse(body) as Outcome["body"] });
      }
      res.writeHead(204).end();
    });
  });
  return new Promise<Server>((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** The task system as the start builds it: its outbox holds the platforms' targets. */
function complaintSystem(dir: string, config: TasksConfig) {
  const system = buildTaskSystem({
    log: pino({ level: "silent" }),
    config,
    dataDir: dir,
    registry,
    metricsRegistry: new Registry(),
    now: Date.now,
    random: () => 0.5,
  });
  system.start();
  return system;
}

/** Noise readings of a device: one a minute from `fromMs`, LAeq and LAmax as given. */
function noisePoints(deviceId: string, fromMs: number, n: number, laeq: number, lamax: number) {
  const device = DEVICES.find((d) => d.id === deviceId)!;
  return Array.from({ length: n }, (_, i): Point => ({
    measurement: "noise",
    tags: {
      device: deviceId,
      site: device.siteId,
      district: device.area.district,
      grid_cell: device.area.gridCell,
      quality: "normal",
    },
    fields: { LAeq: laeq, LAmax: lamax },
    seq: i + 1,
    timeMs: fromMs + i * MIN,
  }));
}

describe("complaints from hotline platforms and manual filing", () => {
  let dir: string;
  let server: Server;
  let system: ReturnType<typeof complaintSystem>;
  let ts: TimeSeriesStore;
  let state: IngestState;
  let app: FastifyInstance;
  const accepted: Outcome[] = [];
  const attempts = { n: 0 };
  let platformToken: string;
  let adminToken: string;

  beforeAll(async () => {
    dir = await makeTempDir("cw-complaints-");
    // The receiver refuses the first delivery: the outbox must retry, and deliver once.
    server = await receiver(accepted, attempts, 1);
    const port = (server.address() as AddressInfo).port;
    const config = tasksConfig({
      complaints: {
        platforms: [
          { name: PLATFORM, secret: SECRET, callbackUrl: `http://127.0.0.1:${port}/outcome` },
          { name: "hotline-12319", secret: "another-platform-secret" },
        ],
      },
      outbox: { backoffBaseMs: 20, backoffMaxMs: 100, timeoutMs: 2_000 },
    });
    system = complaintSystem(dir, config);
    state = new IngestState(join(dir, "ingest.db"));
    ts = createSqliteStore(join(dir, "timeseries.db"));
    await ts.open();
    // n-1 (at cs-1) heard 68 dB(A) around the complaint; n-3 nothing in the window.
    await ts.write(noisePoints("n-1", RECEIVED_MS - 10 * MIN, 20, 68, 81.5));
    await ts.write(noisePoints("n-3", RECEIVED_MS - 5 * 3_600_000, 5, 50, 60));
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store: ts,
      metrics: [],
      tasks: system.api,
    });
    // A service account named after the platform: its name, not its role, lets it post.
    platformToken = system.tokens.add(`${PLATFORM}@gateway`, "viewer").token;
    adminToken = system.tokens.add("admin-1", "admin").token;
    await system.tokens.users.add(
      {
        id: "zhang.wei",
        name: "Zhang Wei",
        roles: ["enforcement"],
        scope: { districts: ["pudong"] },
      },
      "correct horse battery staple",
    );
    await system.tokens.users.add(
      { id: "li.na", name: "Li Na", roles: ["enforcement"], scope: { districts: ["xuhui"] } },
      "correct horse battery staple",
    );
  });

  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    await ts.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await removeTempDir(dir);
  });

  const complaint = (extra: Record<string, unknown> = {}) => ({
    complaintId: "12345-20261205-0001",
    receivedAt: RECEIVED,
    category: "noise",
    text: "Piling at the Riverside tower site after 23:00 again",
    location: { lat: 31.2301, lon: 121.5001, address: "Riverside Road 1", district: "pudong" },
    contact: { name: "Ms Wang", phone: PHONE },
    ...extra,
  });

  const post = (
    body: string,
    options: {
      token?: string | undefined;
      platform?: string;
      secret?: string;
      timestamp?: string;
      signature?: string;
    } = {},
  ) => {
    const timestamp = options.timestamp ?? String(Math.floor(Date.now() / 1000));
    const signature =
      options.signature ??
      `sha256=${createHmac("sha256", options.secret ?? SECRET)
        .update(`${timestamp}.${body}`)
        .digest("hex")}`;
    const token = "token" in options ? options.token : platformToken;
    return app.inject({
      method: "POST",
      url: "/api/v1/complaints",
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        "x-citywatch-platform": options.platform ?? PLATFORM,
        "x-citywatch-timestamp": timestamp,
        "x-citywatch-signature": signature,
      },
      payload: body,
    });
  };

  const taskOf = async (id: string) => {
    const res = await app.inject({
      method: "GET",
      url: `/api/v1/tasks/${id}`,
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(res.statusCode).toBe(200);
    return res.json<{ task: Task; audit: Array<{ action: string; detail: string }> }>();
  };

  let taskId = "";

  it("files a signed complaint as a task with corroborating readings; the contact stays out of it", async () => {
    const res = await post(JSON.stringify(complaint()));
    expect(res.statusCode, res.body).toBe(201);
    const answer = res.json<{ taskId: string; created: boolean }>();
    expect(answer.created).toBe(true);
    taskId = answer.taskId;
    expect(taskId).toMatch(/^enf-/);
    const { task, audit } = await taskOf(taskId);
    expect(task.kind).toBe("enforcement");
    expect(task.siteId).toBe("cs-1");
    expect(task.routing.district).toBe("pudong");
    // Routed as the noise rules are: the domain line of the configuration matched.
    expect(task.routing.department).toBe("pudong-enforcement-brigade");
    expect(task.rule.id).toBe(`noise.complaint/${PLATFORM}/12345-20261205-0001`);
    expect(task.rule.clause).toEqual({ standard: "hotline complaint", section: PLATFORM });
    const source = task.source;
    expect(source?.type).toBe("complaint");
    if (source?.type !== "complaint") return;
    expect(source.complaintId).toBe("12345-20261205-0001");
    expect(source.nearestSite?.id).toBe("cs-1");
    const c = source.corroboration;
    const n1 = c.devices.find((d) => d.deviceId === "n-1");
    // 20 readings at a constant 68 dB(A): energy mean 68; LAmax max 81.5.
    expect(n1).toMatchObject({ readings: 20, quantity: "LAeq", mean: 68, maxLAmax: 81.5 });
    // n-3's readings are hours before the complaint: outside ±30 min.
    expect(c.devices.find((d) => d.deviceId === "n-3")?.readings).toBe(0);
    expect(c.limit).toEqual({
      value: 55,
      quantity: "LAeq",
      source: "GB 12523-2011 construction site boundary limit, night",
    });
    expect(c.exceedance).toBe(true);
    expect(c.statement).toContain("exceeded at n-1");
    expect(audit[0]?.action).toBe("filed");
    expect(audit[0]?.detail).toContain("corroboration");
    // The complainant's contact is kept with the complaint only.
    expect(JSON.stringify(task)).not.toContain(PHONE);
    expect(JSON.stringify(audit)).not.toContain(PHONE);
    // Filing is no closing event: nothing for the platform yet.
    expect(system.outbox.pending(`complaint:${PLATFORM}`)).toBe(0);
  });

  it("answers a repeat with the same task and creates nothing", async () => {
    const before = system.store.listTasks({ limit: 100 }).length;
    const res = await post(JSON.stringify(complaint({ text: "again, same complaint id" })));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ taskId, created: false });
    expect(system.store.listTasks({ limit: 100 })).toHaveLength(before);
  });

  it("files one task for two copies of a complaint posted at once", async () => {
    const body = JSON.stringify(complaint({ complaintId: "12345-20261205-0009" }));
    const [a, b] = await Promise.all([post(body), post(body)]);
    const answers = [a, b].map((r) => r.json<{ taskId: string; created: boolean }>());
    expect(answers[0]?.taskId).toBe(answers[1]?.taskId);
    expect(answers.map((x) => x.created).sort()).toEqual([false, true]);
    expect([a.statusCode, b.statusCode].sort()).toEqual([200, 201]);
  });

  it("keeps one task per complaint in the service too (a post that passed the route's check)", async () => {
    const first = system.store.task(taskId)!;
    if (first.source?.type !== "complaint") throw new Error("not a complaint task");
    const again = await system.service.fileComplaint({
      platform: PLATFORM,
      complaintId: first.source.complaintId,
      receivedAt: RECEIVED,
      kind: "enforcement",
      category: "noise",
      ruleId: "noise.complaint/other",
      siteId: "cs-1",
      source: first.source,
      contact: undefined,
      actor: "test",
    });
    expect(again).toMatchObject({ created: false, task: { id: taskId } });
  });

  it("refuses a bad signature, a stale timestamp, an unknown platform and other tokens", async () => {
    const body = JSON.stringify(complaint({ complaintId: "x-1" }));
    const bad = await post(body, { secret: "not-the-platform-secret" });
    expect(bad.statusCode).toBe(401);
    expect(bad.json<{ message: string }>().message).toContain("X-Citywatch-Signature");
    // A body changed after signing.
    const ts1 = String(Math.floor(Date.now() / 1000));
    const sig = `sha256=${createHmac("sha256", SECRET).update(`${ts1}.${body}`).digest("hex")}`;
    const tampered = await post(body.replace("Piling", "Drilling"), {
      timestamp: ts1,
      signature: sig,
    });
    expect(tampered.statusCode).toBe(401);
    const stale = await post(body, { timestamp: String(Math.floor(Date.now() / 1000) - 600) });
    expect(stale.statusCode).toBe(401);
    expect(stale.json<{ message: string }>().message).toContain("X-Citywatch-Timestamp");
    expect((await post(body, { platform: "hotline-99999" })).statusCode).toBe(401);
    expect((await post(body, { token: undefined })).statusCode).toBe(401);
    // A token that is not the platform's (nor admin / command centre), though signed right.
    const viewer = system.tokens.add("viewer-1", "viewer").token;
    expect((await post(body, { token: viewer })).statusCode).toBe(403);
    // The other platform's secret does not sign for this one.
    const other = await post(body, { secret: "another-platform-secret" });
    expect(other.statusCode).toBe(401);
    expect(system.store.complaintTask(PLATFORM, "x-1")).toBeUndefined();
  });

  it("answers a malformed body with 400 naming every problem, and a body that is not JSON", async () => {
    const res = await post(
      JSON.stringify({
        complaintId: "bad id with spaces",
        receivedAt: "yesterday",
        category: "smell",
        text: "",
        location: { lat: 31.2 },
        extra: true,
      }),
    );
    expect(res.statusCode).toBe(400);
    const { problems } = res.json<{ problems: Array<{ path: string; message: string }> }>();
    const paths = problems.map((p) => p.path);
    for (const path of ["complaintId", "receivedAt", "category", "text"])
      expect(paths, JSON.stringify(problems)).toContain(path);
    expect(paths.some((p) => p.startsWith("location"))).toBe(true);
    expect(JSON.stringify(problems)).toContain("extra");
    const notJson = await post("{not json");
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json<{ message: string }>().message).toContain("not valid JSON");
  });

  it("links a complaint to the site's open case, with an audit entry on both", async () => {
    const now = Date.now();
    await system.service.applyAlarm(noiseNotice("cs-1", raise(now)));
    const open = system.store.openIncident("91310000MA1FL0AB1X");
    expect(open).toBeDefined();
    const res = await post(JSON.stringify(complaint({ complaintId: "12345-20261205-0002" })));
    expect(res.statusCode).toBe(201);
    const { task, audit } = await taskOf(res.json<{ taskId: string }>().taskId);
    expect(task.source?.type === "complaint" && task.source.linkedTaskId).toBe(open!.id);
    expect(audit.some((a) => a.detail.includes(`linked to open case ${open!.id}`))).toBe(true);
    const linked = await taskOf(open!.id);
    expect(linked.audit.some((a) => a.detail.includes(`filed as ${task.id}`))).toBe(true);
    // The limit compared is the open case's own, and the statement says so.
    if (task.source?.type === "complaint") {
      expect(task.source.corroboration.limit?.source).toContain(`open case ${open!.id}`);
    }
  });

  it("sends the outcome back to the platform exactly once when the task closes (after a failed attempt)", async () => {
    const res = await app.inject({
      method: "POST",
      url: `/api/v1/tasks/${taskId}/transitions`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { to: "closed", reason: "false_positive", note: "site visited: piling had stopped" },
    });
    expect(res.statusCode, res.body).toBe(200);
    await until(
      () => accepted.length === 1 && system.outbox.pending(`complaint:${PLATFORM}`) === 0,
      "outcome delivered",
      10_000,
    );
    // The first attempt was refused (503), the retry accepted: one outcome.
    expect(attempts.n).toBeGreaterThanOrEqual(2);
    expect(accepted).toHaveLength(1);
    expect(accepted[0]).toEqual({
      key: `${taskId}-closed`,
      body: {
        complaintId: "12345-20261205-0001",
        taskId,
        outcome: "false_positive",
        note: "site visited: piling had stopped",
        closedAt: expect.any(String) as string,
      },
    });
    expect(JSON.stringify(accepted)).not.toContain(PHONE);
    // A closing of a task that is no complaint goes nowhere near the platform.
    const open = system.store.openIncident("91310000MA1FL0AB1X")!;
    const closed = await app.inject({
      method: "POST",
      url: `/api/v1/tasks/${open.id}/transitions`,
      headers: { authorization: `Bearer ${adminToken}` },
      payload: { to: "closed", reason: "false_positive" },
    });
    expect(closed.statusCode).toBe(200);
    expect(system.outbox.pending(`complaint:${PLATFORM}`)).toBe(0);
    expect(accepted).toHaveLength(1);
    // The platform's target took the closing event only: one delivery, no other event queued.
    const deliveries = (await system.metrics.deliveries.get()).values.filter(
      (v) => v.labels["target"] === `complaint:${PLATFORM}`,
    );
    expect(deliveries.map((v) => v.value)).toEqual([1]);
  });

  it("erases the complainant's contact once the closed task is past the retention period, keeping the complaint", async () => {
    const contact = () => system.store.complaintContact(PLATFORM, "12345-20261205-0001");
    expect(contact()).toEqual({ name: "Ms Wang", phone: PHONE });
    const log = { info: () => undefined, error: () => undefined };
    const closedAt = system.store.task(taskId)?.updatedAt ?? "";
    const retention = (nowMs: number) =>
      new ContactRetention({
        store: system.shared,
        retentionMs: 180 * 86_400_000,
        intervalMs: 3_600_000,
        now: () => nowMs,
        log,
      });
    // 179 days after the task closed: still needed (a call back, a dispute).
    expect(await retention(Date.parse(closedAt) + 179 * 86_400_000).erase()).toBe(0);
    expect(contact()).toEqual({ name: "Ms Wang", phone: PHONE });
    // Past 180 days: erased; the complaint still maps to its task (a repeat post is not refiled).
    expect(await retention(Date.parse(closedAt) + 181 * 86_400_000).erase()).toBe(1);
    expect(contact()).toBeUndefined();
    expect(system.store.complaintTask(PLATFORM, "12345-20261205-0001")).toBe(taskId);
  });

  it("documents both routes in the OpenAPI document", async () => {
    const res = await app.inject({ method: "GET", url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    const paths = res.json<{ paths: Record<string, Record<string, unknown>> }>().paths;
    expect(Object.keys(paths["/api/v1/complaints"] ?? {})).toContain("post");
    expect(Object.keys(paths["/api/v1/tasks"] ?? {})).toEqual(
      expect.arrayContaining(["get", "post"]),
    );
  });

  describe("manual filing", () => {
    const file = (token: string, body: Record<string, unknown>) =>
      app.inject({
        method: "POST",
        url: "/api/v1/tasks",
        headers: { authorization: `Bearer ${token}` },
        payload: body,
      });

    it("files a task at a site in the officer's scope, with attached readings", async () => {
      const token = system.tokens.add("zhang.wei@tablet", "enforcement", "zhang.wei").token;
      const res = await file(token, {
        siteId: "cs-1",
        observation: "night_works_without_permit",
        note: "piling seen at 23:20, no night-works permit shown",
        readings: [
          {
            deviceId: "n-1",
            from: new Date(RECEIVED_MS - 10 * MIN).toISOString(),
            to: new Date(RECEIVED_MS).toISOString(),
          },
        ],
      });
      expect(res.statusCode, res.body).toBe(201);
      const { task, audit } = res.json<{
        task: Task;
        audit: Array<{ actor: string; detail: string }>;
      }>();
      expect(task.kind).toBe("enforcement");
      expect(task.rule.id).toBe("manual.night_works_without_permit");
      expect(task.source?.type).toBe("manual");
      if (task.source?.type === "manual") {
        expect(task.source.by).toContain("Zhang Wei");
        expect(task.source.readings?.[0]?.readings).toHaveLength(10);
      }
      expect(audit[0]?.detail).toContain("10 readings of n-1 attached");
      // The same observation open at the same site: 409 naming the open task.
      const again = await file(token, {
        siteId: "cs-1",
        observation: "night_works_without_permit",
        note: "again",
      });
      expect(again.statusCode).toBe(409);
      expect(again.json<{ message: string }>().message).toContain(task.id);
    });

    it("refuses a site outside the officer's scope (403), a role that does not act on the kind (403) and a bad body (400)", async () => {
      const token = system.tokens.add("li.na@tablet", "enforcement", "li.na").token;
      const out = await file(token, { siteId: "cs-1", observation: "dust", note: "dusty" });
      expect(out.statusCode).toBe(403);
      expect(out.json<{ message: string }>().message).toContain("outside your scope");
      const inScope = await file(token, { siteId: "cs-3", observation: "dust", note: "dusty" });
      expect(inScope.statusCode).toBe(201);
      const operator = system.tokens.add("op-1", "operator").token;
      expect(
        (await file(operator, { siteId: "cs-1", observation: "x", note: "n" })).statusCode,
      ).toBe(403);
      const bad = await file(adminToken, { siteId: "cs-1", note: "" });
      expect(bad.statusCode).toBe(400);
      const paths = bad.json<{ problems: Array<{ path: string }> }>().problems.map((p) => p.path);
      expect(paths).toEqual(expect.arrayContaining(["note", "rule"]));
      expect(
        (await file(adminToken, { siteId: "nowhere", observation: "x", note: "n" })).statusCode,
      ).toBe(404);
    });

    it("bounds the attached readings at 2000", async () => {
      const start = RECEIVED_MS + 3_600_000;
      await ts.write(noisePoints("n-2", start, 2_001, 60, 70));
      const res = await file(adminToken, {
        siteId: "cs-2",
        observation: "long_range",
        note: "too many readings",
        readings: [
          {
            deviceId: "n-2",
            from: new Date(start).toISOString(),
            to: new Date(start + 2_001 * MIN).toISOString(),
          },
        ],
      });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ message: string }>().message).toContain("2000");
    });
  });
});
