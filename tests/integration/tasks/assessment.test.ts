import { existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { TaskApiError } from "../../../contracts/index.js";
import { AssessmentReport } from "../../../contracts/model/assessment.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import { AssessmentSchedule } from "../../../tasks/assessment-schedule.js";
import { webhookSignature } from "../../../tasks/notify/webhook.js";
import { calendarOf } from "../../../tasks/calendar/working-time.js";
import { TaskStore } from "../../../tasks/store.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  assessmentConfig,
  buildAssessmentFixture,
  EAST,
  local,
  XUHUI_TEAM,
  type AssessmentFixture,
} from "../../unit/tasks/assessment-fixture.js";
import { DEVICES, registry, SITES, startSystem } from "../../unit/tasks/fixtures.js";
import { until } from "../../support/broker.js";

/*
 * The assessment report on the real API (fastify inject, real SQLite, real tokens and users) and
 * the monthly run writing real files: the same hand-checked fixture as the unit test
 * (tests/unit/tasks/assessment-fixture.ts).
 */

describe("GET /api/v1/assessment", () => {
  let dir: string;
  let fixture: AssessmentFixture;
  let app: FastifyInstance;
  let state: IngestState;
  let store: ReturnType<typeof createSqliteStore>;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    dir = await makeTempDir("cw-assessment-api-");
    fixture = await buildAssessmentFixture(dir);
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    app = testApi({
      registry: { ...registry, devices: () => DEVICES, sites: () => SITES },
      state,
      store,
      metrics: [fixture.system.metrics.registry],
      tasks: fixture.system.api,
    });
    const t = fixture.system.tokens;
    tokens["admin"] = t.add("ops-admin", "admin").token;
    tokens["enforcement"] = t.add("officer", "enforcement").token;
    tokens["centre"] = t.add("centre", "command_centre").token;
    await t.users.add({
      id: "xu.chief",
      name: "Xuhui Chief",
      roles: ["command_centre"],
      scope: { districts: ["xuhui"] },
    });
    tokens["scoped"] = t.add("xu.chief@desk", "command_centre", "xu.chief").token;
  });
  afterAll(async () => {
    await app.close();
    await fixture.system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  const get = (query: string, token?: string) =>
    app.inject({
      method: "GET",
      url: `/api/v1/assessment?${query}`,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
  const NOVEMBER = "from=2026-11-01&to=2026-12-01";

  it("answers the admin the report as JSON, with the hand-computed totals", async () => {
    const res = await get(`${NOVEMBER}&by=district`, tokens["admin"]);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    const report = AssessmentReport.parse(res.json());
    expect(report.rows.map((r) => [r.group, r.received])).toEqual([
      ["pudong", 5],
      ["xuhui", 3],
    ]);
    // As the unit test computes them by hand.
    expect(report.totals).toMatchObject({
      received: 8,
      handledOnTime: 4,
      overdue: 4,
      reopened: 2,
      falsePositiveRate: 0.2,
      repeatOffenders: 2,
    });
    expect(report.scope).toBeUndefined();
  });

  it("answers CSV as a download, RFC 4180 quoting the team with a comma and quotes", async () => {
    const res = await get(`${NOVEMBER}&by=team&format=csv`, tokens["centre"]);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/csv; charset=utf-8");
    expect(res.headers["content-disposition"]).toBe(
      'attachment; filename="assessment-team-2026-11-01-2026-12-01.csv"',
    );
    const lines = res.body.split("\r\n");
    expect(lines[0]?.startsWith("row,by,group,received,")).toBe(true);
    expect(lines[1]?.startsWith('group,team,"Team ""East"", Pudong",3,')).toBe(true);
    expect(lines[2]?.startsWith(`group,team,${XUHUI_TEAM},5,`)).toBe(true);
    expect(lines[3]?.startsWith("total,team,,8,")).toBe(true);
    expect(EAST).toContain(",");
  });

  it("refuses an enforcement token (403) and a request without a token (401)", async () => {
    const res = await get(`${NOVEMBER}&by=team`, tokens["enforcement"]);
    expect(res.statusCode).toBe(403);
    expect(TaskApiError.parse(res.json())).toMatchObject({
      error: "forbidden",
      message: expect.stringContaining("admin and command_centre") as unknown,
    });
    const none = await get(`${NOVEMBER}&by=team`);
    expect(none.statusCode).toBe(401);
  });

  it("gives a scoped user the tasks of their scope only", async () => {
    const res = await get(`${NOVEMBER}&by=district`, tokens["scoped"]);
    expect(res.statusCode).toBe(200);
    const report = AssessmentReport.parse(res.json());
    expect(report.rows.map((r) => r.group)).toEqual(["xuhui"]);
    expect(report.totals.received).toBe(3);
    expect(report.scope).toEqual({ districts: ["xuhui"], streets: [], gridCells: [] });
  });

  it("names every problem of a bad query (400)", async () => {
    const res = await get("from=2026-11-31&to=2026-11-01&by=grid&format=pdf", tokens["admin"]);
    expect(res.statusCode).toBe(400);
    const body = TaskApiError.parse(res.json());
    expect(body.problems?.map((p) => p.path).sort()).toEqual(["by", "format", "from"]);
    const empty = await get("from=2026-11-01&to=2026-11-01&by=team", tokens["admin"]);
    expect(empty.statusCode).toBe(400);
    expect(TaskApiError.parse(empty.json()).problems).toEqual([
      { path: "to", message: "to must be after from (the period is [from, to))" },
    ]);
  });

  it("is in the OpenAPI document", async () => {
    const res = await app.inject({ method: "GET", url: "/openapi.json" });
    const doc = res.json<{ paths: Record<string, { get?: { tags?: string[] } }> }>();
    expect(doc.paths["/api/v1/assessment"]?.get?.tags).toEqual(["tasks"]);
  });
});

describe("the monthly assessment run", () => {
  let dir: string;
  let fixture: AssessmentFixture;

  beforeAll(async () => {
    dir = await makeTempDir("cw-assessment-month-");
    fixture = await buildAssessmentFixture(join(dir, "tasks"));
    await fixture.system.stop();
  });
  afterAll(async () => {
    await removeTempDir(dir);
  });

  it("writes last month's report once, owner-only, and not again after a restart", async () => {
    const config = assessmentConfig();
    const settings = { sla: config.sla, calendar: calendarOf(config.calendar) };
    const dataDir = join(dir, "data");
    let now = local("2026-11-30T23:59:00");
    const open = () => {
      const store = new TaskStore(join(dir, "tasks", "tasks.db"));
      const schedule = new AssessmentSchedule({
        store,
        settings,
        dataDir,
        log: pino({ level: "silent" }),
        now: () => now,
        intervalMs: 60_000,
      });
      return { store, schedule };
    };
    const first = open();
    const json = join(dataDir, "assessments", "2026-11.json");
    const csv = join(dataDir, "assessments", "2026-11.csv");
    try {
      // Still November: the month before is October, whose one task (I) is reported.
      expect(await first.schedule.tick()).toMatchObject({ status: "written", month: "2026-10" });
      expect(existsSync(json)).toBe(false);
      // The first tick after local midnight of 1 December writes November.
      now = local("2026-12-01T00:00:30");
      expect(await first.schedule.tick()).toEqual({
        status: "written",
        month: "2026-11",
        files: [json, csv],
      });
      const written = readFileSync(json, "utf8");
      const month = JSON.parse(written) as { month: string; reports: unknown[] };
      expect(month.month).toBe("2026-11");
      const reports = month.reports.map((r) => AssessmentReport.parse(r));
      expect(reports.map((r) => r.by)).toEqual(["district", "street", "team"]);
      expect(reports.map((r) => r.totals.received)).toEqual([8, 8, 8]);
      expect(reports[0]?.rows.map((r) => r.group)).toEqual(["pudong", "xuhui"]);
      const csvText = readFileSync(csv, "utf8");
      expect(csvText.split("\r\n").filter((l) => l.startsWith("total,"))).toHaveLength(3);
      for (const file of [json, csv, join(dataDir, "assessments")]) {
        expect(statSync(file).mode & 0o077).toBe(0);
      }
      expect(existsSync(`${json}.partial`)).toBe(false);
      const mtime = statSync(json).mtimeMs;
      // A second tick: nothing new.
      now = local("2026-12-01T00:01:30");
      expect(await first.schedule.tick()).toEqual({ status: "exists", month: "2026-11" });
      expect(readFileSync(json, "utf8")).toBe(written);
      expect(statSync(json).mtimeMs).toBe(mtime);
    } finally {
      first.store.close();
    }
    // A restart later that day: the files say November was written.
    const second = open();
    try {
      now = local("2026-12-01T09:00:00");
      expect(await second.schedule.tick()).toEqual({ status: "exists", month: "2026-11" });
      expect(readFileSync(json, "utf8")).toContain('"month": "2026-11"');
    } finally {
      second.store.close();
    }
  });

  it("the task system runs it on its timer (tasks.tickMs) and stops it", async () => {
    const dataDir = join(dir, "wired");
    const system = startSystem(dataDir, {
      now: () => local("2026-12-01T00:00:30"),
      config: assessmentConfig({ tickMs: 20 }),
    });
    try {
      await until(() => existsSync(join(dataDir, "assessments", "2026-11.json")), "the file");
      expect(existsSync(join(dataDir, "assessments", "2026-11.csv"))).toBe(true);
    } finally {
      await system.stop();
    }
  });

  it("announces the month's report to every webhook taking all events: signed, retried until accepted, once across a restart", async () => {
    const dataDir = join(dir, "announced");
    const secret = "announce-secret-0123456789";
    const posts: Array<{ path: string; headers: IncomingMessage["headers"]; body: string }> = [];
    let refuse = 1;
    const server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        posts.push({ path: request.url ?? "", headers: request.headers, body });
        const status = request.url === "/all" && refuse-- > 0 ? 503 : 200;
        response.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const config = assessmentConfig({
      tickMs: 20,
      webhooks: [
        { name: "city-platform", url: `${base}/all`, secret },
        { name: "flood-desk", url: `${base}/emergency`, secret, kinds: ["emergency"] },
      ],
      outbox: { backoffBaseMs: 30, backoffMaxMs: 60 },
    });
    // The clock runs from just after midnight on 1 December (the retry waits on it).
    const t0 = Date.now();
    const now = () => local("2026-12-01T00:00:30") + (Date.now() - t0);
    const run = () => startSystem(dataDir, { now, config });
    const announced = join(dataDir, "assessments", "2026-11.announced.json");
    try {
      const first = run();
      try {
        await until(() => existsSync(announced), "the announcement accepted");
      } finally {
        await first.stop();
      }
      // The first attempt was refused (503), the second accepted: both with one key.
      expect(posts.map((p) => p.path)).toEqual(["/all", "/all"]);
      for (const post of posts) {
        expect(post.headers["x-citywatch-event"]).toBe("assessment.published");
        expect(post.headers["idempotency-key"]).toBe("citywatch-assessment-2026-11");
        const timestamp = String(post.headers["x-citywatch-timestamp"]);
        expect(post.headers["x-citywatch-signature"]).toBe(
          webhookSignature(secret, timestamp, post.body),
        );
        const body = JSON.parse(post.body) as { type: string; month: string; reports: unknown[] };
        expect(body).toMatchObject({ type: "assessment.published", month: "2026-11" });
        expect(body.reports.map((r) => AssessmentReport.parse(r).by)).toEqual([
          "district",
          "street",
          "team",
        ]);
      }
      expect(JSON.parse(readFileSync(announced, "utf8"))).toEqual({
        month: "2026-11",
        receivers: ["city-platform"],
      });
      expect(statSync(announced).mode & 0o077).toBe(0);
      // A restart the same day sends nothing again.
      const second = run();
      try {
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        await second.stop();
      }
      expect(posts).toHaveLength(2);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
