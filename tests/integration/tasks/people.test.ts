import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SessionInfo,
  TaskApiError,
  TaskDetailResponse,
  TaskListResponse,
  User,
} from "../../../contracts/index.js";
import { until } from "../../support/broker.js";
import { openStream } from "./sse-reader.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";
import { noiseEvidence, noiseNotice, raise } from "../../unit/tasks/fixtures.js";

/*
 * People on the real API (issue #18 item 2): users sign in with a password and get an httpOnly
 * SameSite=Strict session cookie and a CSRF token; changes made with the cookie need the token;
 * a user acts only on tasks in their scope; sign-in is throttled; a disabled user's sessions and
 * tokens stop at once.
 */

const PASSWORD = "correct horse battery";

describe("users, sessions and scopes on the task API", () => {
  let t: TaskApi;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    t = await openTaskApi("cw-people-");
    const users = t.system.tokens.users;
    await users.add(
      {
        id: "zhang.wei",
        name: "Zhang Wei",
        badge: "31011500123",
        roles: ["enforcement"],
        scope: { districts: ["pudong"] },
        team: "pudong-squad-2",
      },
      PASSWORD,
    );
    await users.add(
      { id: "li.na", name: "Li Na", roles: ["enforcement"], scope: { districts: ["xuhui"] } },
      PASSWORD,
    );
    await users.add(
      { id: "chief", name: "Command Centre", roles: ["command_centre"], scope: { cityWide: true } },
      PASSWORD,
    );
    await users.add(
      { id: "admin.wang", name: "Wang Admin", roles: ["admin"], scope: { cityWide: true } },
      PASSWORD,
    );
    const now = Date.now();
    // cs-1 is in pudong, cs-3 in xuhui.
    await t.system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
    await t.system.service.applyAlarm(noiseNotice("cs-3", raise(now), noiseEvidence(now)));
    for (const task of t.system.store.listTasks({ limit: 10 })) {
      if (task.siteId !== undefined) ids[task.siteId] = task.id;
    }
  });
  afterAll(async () => {
    await t.close();
  });

  const signIn = async (username: string, password = PASSWORD, ip = "10.0.0.1") =>
    t.app.inject({
      method: "POST",
      url: "/api/v1/session",
      payload: { username, password },
      remoteAddress: ip,
    });
  const session = async (username: string) => {
    const res = await signIn(username);
    expect(res.statusCode).toBe(200);
    const setCookie = String(res.headers["set-cookie"]);
    const cookie = setCookie.split(";")[0] ?? "";
    return { cookie, info: SessionInfo.parse(res.json()), setCookie };
  };

  it("signs in with an httpOnly SameSite=Strict cookie and answers who is signed in", async () => {
    const { cookie, info, setCookie } = await session("zhang.wei");
    expect(setCookie).toMatch(
      /^cw_session=cws_[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/,
    );
    expect(info.user).toMatchObject({
      id: "zhang.wei",
      badge: "31011500123",
      roles: ["enforcement"],
    });
    expect(JSON.stringify(info)).not.toContain("scrypt");
    const me = await t.app.inject({ method: "GET", url: "/api/v1/session", headers: { cookie } });
    expect(me.statusCode).toBe(200);
    expect(SessionInfo.parse(me.json()).csrfToken).toBe(info.csrfToken);
    // The session reads tasks like a token does.
    const list = await t.app.inject({ method: "GET", url: "/api/v1/tasks", headers: { cookie } });
    expect(list.statusCode).toBe(200);
  });

  it("refuses a wrong password, an unknown user and a disabled user alike", async () => {
    for (const [user, pw] of [
      ["zhang.wei", "wrong password!!"],
      ["nobody.here", PASSWORD],
    ] as const) {
      const res = await signIn(user, pw, "10.0.0.2");
      expect(res.statusCode).toBe(401);
      expect(TaskApiError.parse(res.json()).message).toBe("wrong user name or password");
    }
  });

  it("needs the CSRF token for a change made with the session cookie", async () => {
    const { cookie, info } = await session("zhang.wei");
    const url = `/api/v1/tasks/${ids["cs-1"]}/transitions`;
    const without = await t.app.inject({
      method: "POST",
      url,
      headers: { cookie },
      payload: { to: "acknowledged" },
    });
    expect(without.statusCode).toBe(403);
    expect(TaskApiError.parse(without.json()).message).toContain("x-csrf-token");
    const wrong = await t.app.inject({
      method: "POST",
      url,
      headers: { cookie, "x-csrf-token": `${info.csrfToken.slice(0, -2)}xx` },
      payload: { to: "acknowledged" },
    });
    expect(wrong.statusCode).toBe(403);
    const ok = await t.app.inject({
      method: "POST",
      url,
      headers: { cookie, "x-csrf-token": info.csrfToken },
      payload: { to: "acknowledged", note: "on my way" },
    });
    expect(ok.statusCode).toBe(200);
    const audit = TaskDetailResponse.parse(ok.json()).audit;
    expect(audit.at(-1)?.actor).toBe("Zhang Wei [zhang.wei #31011500123] (enforcement)");
  });

  it("keeps a user to their scope: another district's case is 403, to read and to act", async () => {
    const li = await session("li.na");
    const pudongCase = ids["cs-1"] ?? "";
    const read = await t.app.inject({
      method: "GET",
      url: `/api/v1/tasks/${pudongCase}`,
      headers: { cookie: li.cookie },
    });
    expect(read.statusCode).toBe(403);
    expect(TaskApiError.parse(read.json()).message).toContain(
      "outside your scope (districts xuhui)",
    );
    const act = await t.app.inject({
      method: "POST",
      url: `/api/v1/tasks/${pudongCase}/transitions`,
      headers: { cookie: li.cookie, "x-csrf-token": li.info.csrfToken },
      payload: { to: "acknowledged" },
    });
    expect(act.statusCode).toBe(403);
    const own = await t.app.inject({
      method: "GET",
      url: `/api/v1/tasks/${ids["cs-3"] ?? ""}`,
      headers: { cookie: li.cookie },
    });
    expect(own.statusCode).toBe(200);
    // The command centre is city-wide.
    const chief = await session("chief");
    const all = await t.app.inject({
      method: "GET",
      url: `/api/v1/tasks/${pudongCase}`,
      headers: { cookie: chief.cookie },
    });
    expect(all.statusCode).toBe(200);
  });

  it("gives a user's token the user's scope, and refuses it once the user is disabled", async () => {
    const { token } = t.system.tokens.add("li.na@laptop", "enforcement", "li.na");
    const headers = { authorization: `Bearer ${token}` };
    const out = await t.app.inject({
      method: "GET",
      url: `/api/v1/tasks/${ids["cs-1"] ?? ""}`,
      headers,
    });
    expect(out.statusCode).toBe(403);
    expect(() => t.system.tokens.add("li.na@2", "admin", "li.na")).toThrow(
      /cannot have the role admin/,
    );
    const li = await session("li.na");
    t.system.tokens.users.setDisabled("li.na", true);
    for (const h of [headers, { cookie: li.cookie }]) {
      const res = await t.app.inject({ method: "GET", url: "/api/v1/tasks", headers: h });
      expect(res.statusCode).toBe(401);
    }
    expect((await signIn("li.na", PASSWORD, "10.0.0.9")).statusCode).toBe(401);
    t.system.tokens.users.setDisabled("li.na", false);
  });

  it("signs out: the cookie is cleared and the session no longer works", async () => {
    const { cookie, info } = await session("chief");
    const out = await t.app.inject({
      method: "DELETE",
      url: "/api/v1/session",
      headers: { cookie, "x-csrf-token": info.csrfToken },
    });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers["set-cookie"])).toContain("Max-Age=0");
    const after = await t.app.inject({ method: "GET", url: "/api/v1/tasks", headers: { cookie } });
    expect(after.statusCode).toBe(401);
  });

  it("throttles failed sign-ins per user name with 429 and Retry-After, even for the right password", async () => {
    for (let i = 0; i < 5; i++) {
      expect((await signIn("admin.wang", "not the password", `10.1.0.${i}`)).statusCode).toBe(401);
    }
    const blocked = await signIn("admin.wang", PASSWORD, "10.1.0.99");
    expect(blocked.statusCode).toBe(429);
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
  });

  const post = (url: string, who: { cookie: string; info: SessionInfo }, payload: object) =>
    t.app.inject({
      method: "POST",
      url,
      headers: { cookie: who.cookie, "x-csrf-token": who.info.csrfToken },
      payload,
    });

  it("keeps duties apart: the handler does not verify; a referral is reviewed and closed by a legal reviewer", async () => {
    await t.system.tokens.users.add(
      { id: "sun.li", name: "Sun Li", roles: ["legal_reviewer"], scope: { districts: ["xuhui"] } },
      PASSWORD,
    );
    await t.system.tokens.users.add(
      { id: "qian.bo", name: "Qian Bo", roles: ["enforcement"], scope: { districts: ["xuhui"] } },
      PASSWORD,
    );
    const li = await session("li.na");
    const qian = await session("qian.bo");
    const reviewer = await session("sun.li");
    const id = ids["cs-3"] ?? "";
    const move = (who: typeof li, to: string, extra: object = {}) =>
      post(`/api/v1/tasks/${id}/transitions`, who, { to, ...extra });
    expect((await move(li, "acknowledged")).statusCode).toBe(200);
    expect((await move(li, "handled")).statusCode).toBe(200);
    const self = await move(li, "verified");
    expect(self.statusCode).toBe(403);
    expect(TaskApiError.parse(self.json()).message).toContain("separation of duties");
    expect((await move(qian, "verified")).statusCode).toBe(200);

    // The party violates again after the rectification deadline: referred, pending review.
    const later = Date.now() + 4 * 86_400_000;
    await t.system.service.applyAlarm(
      noiseNotice("cs-3", raise(later, { alarmSeq: 2 }), noiseEvidence(later)),
    );
    const referred = await t.system.service.task(id);
    expect(referred?.graduated).toMatchObject({ stage: "referred", review: { status: "pending" } });
    const close = (who: typeof li) =>
      move(who, "closed", { reason: "false_positive", note: "the party disputes it" });
    const refused = await close(qian);
    expect(refused.statusCode).toBe(403);
    expect(TaskApiError.parse(refused.json()).message).toContain("legal reviewer");
    expect(
      (await post(`/api/v1/tasks/${id}/review`, qian, { decision: "approve" })).statusCode,
    ).toBe(403);
    expect(
      (await post(`/api/v1/tasks/${id}/review`, reviewer, { decision: "reject" })).statusCode,
    ).toBe(400);
    // The party must be told and heard first (notice, then statement or the window's end).
    const early = await post(`/api/v1/tasks/${id}/review`, reviewer, { decision: "approve" });
    expect(early.statusCode).toBe(409);
    expect(TaskApiError.parse(early.json()).message).toContain("has not been served a notice");
    const notice = { channel: "in_person", servedBy: "Qian Bo" };
    expect((await post(`/api/v1/tasks/${id}/notice`, qian, notice)).statusCode).toBe(200);
    const statement = { outcome: "statement_received", summary: "the party disputes the readings" };
    expect((await post(`/api/v1/tasks/${id}/statement`, reviewer, statement)).statusCode).toBe(200);
    const approved = await post(`/api/v1/tasks/${id}/review`, reviewer, {
      decision: "approve",
      note: "readings and device certificates in order",
    });
    expect(approved.statusCode).toBe(200);
    const body = TaskDetailResponse.parse(approved.json());
    expect(body.task.graduated?.review).toMatchObject({
      status: "approved",
      by: "Sun Li [sun.li] (legal_reviewer)",
    });
    expect(body.audit.at(-1)?.action).toBe("legal_review_approved");
    expect((await close(reviewer)).statusCode).toBe(200);
  });

  it("assigns a task to a person in scope; a reassignment needs a reason", async () => {
    const chief = await session("chief");
    const id = ids["cs-1"] ?? "";
    const assign = (payload: object) => post(`/api/v1/tasks/${id}/assign`, chief, payload);
    const outOfScope = await assign({ userId: "li.na" });
    expect(outOfScope.statusCode).toBe(403);
    expect(TaskApiError.parse(outOfScope.json()).message).toContain("outside li.na's scope");
    const ok = await assign({ userId: "zhang.wei" });
    expect(ok.statusCode).toBe(200);
    expect(TaskDetailResponse.parse(ok.json()).task.assignee).toMatchObject({
      userId: "zhang.wei",
      name: "Zhang Wei",
    });
    await t.system.tokens.users.add(
      {
        id: "zhou.min",
        name: "Zhou Min",
        roles: ["enforcement"],
        scope: { districts: ["pudong"] },
      },
      PASSWORD,
    );
    expect((await assign({ userId: "zhou.min" })).statusCode).toBe(409);
    const re = await assign({ userId: "zhou.min", reason: "Zhang Wei is on leave" });
    expect(re.statusCode).toBe(200);
    expect(TaskDetailResponse.parse(re.json()).audit.at(-1)?.detail).toBe(
      "reassigned from Zhang Wei [zhang.wei] to Zhou Min [zhou.min]: Zhang Wei is on leave",
    );
    expect((await assign({ userId: "nobody" })).statusCode).toBe(404);
  });

  it("lists and streams only the tasks of the caller's scope", async () => {
    const li = await session("li.na");
    const list = await t.app.inject({
      method: "GET",
      url: "/api/v1/tasks",
      headers: { cookie: li.cookie },
    });
    const tasks = TaskListResponse.parse(list.json()).tasks;
    expect(tasks.length).toBeGreaterThan(0);
    expect(tasks.every((task) => task.routing.district === "xuhui")).toBe(true);
    const chief = await session("chief");
    const all = TaskListResponse.parse(
      (
        await t.app.inject({
          method: "GET",
          url: "/api/v1/tasks",
          headers: { cookie: chief.cookie },
        })
      ).json(),
    ).tasks;
    expect(new Set(all.map((task) => task.routing.district))).toEqual(new Set(["pudong", "xuhui"]));

    await t.app.listen({ host: "127.0.0.1", port: 0 });
    const address = t.app.server.address() as AddressInfo;
    const { token } = t.system.tokens.add("li.na@stream", "enforcement", "li.na");
    const reader = await openStream(`http://127.0.0.1:${address.port}`, token);
    try {
      expect(reader.status).toBe(200);
      const now = Date.now() + 10 * 86_400_000;
      for (const site of ["cs-1", "cs-3"]) {
        await t.system.service.applyAlarm(
          noiseNotice(site, raise(now, { alarmSeq: 9 }), noiseEvidence(now)),
        );
      }
      await until(() => reader.events.length > 0, "an event in scope");
      await new Promise((r) => setTimeout(r, 200));
      expect(reader.events.length).toBeGreaterThan(0);
      expect(reader.events.every((e) => e.task.routing.district === "xuhui")).toBe(true);
    } finally {
      reader.close();
    }
  });

  it("lets an admin manage users over the API; others get 403", async () => {
    const chief = await session("chief");
    const refused = await t.app.inject({
      method: "GET",
      url: "/api/v1/users",
      headers: { cookie: chief.cookie },
    });
    expect(refused.statusCode).toBe(403);
    const { token } = t.system.tokens.add("ops-admin", "admin");
    const headers = { authorization: `Bearer ${token}` };
    const create = (password: string) =>
      t.app.inject({
        method: "POST",
        url: "/api/v1/users",
        headers,
        payload: {
          id: "zhao.lei",
          name: "Zhao Lei",
          roles: ["legal_reviewer"],
          scope: { streets: ["lujiazui"] },
          password,
        },
      });
    const created = await create("short");
    expect(created.statusCode).toBe(400);
    expect(TaskApiError.parse(created.json()).message).toContain("at least 12 characters");
    const ok = await create(PASSWORD);
    expect(ok.statusCode).toBe(201);
    expect(User.parse(ok.json()).scope.streets).toEqual(["lujiazui"]);
    const noScope = await t.app.inject({
      method: "PATCH",
      url: "/api/v1/users/zhao.lei",
      headers,
      payload: { scope: { districts: [] } },
    });
    expect(noScope.statusCode).toBe(400);
    const dup = await t.app.inject({
      method: "POST",
      url: "/api/v1/users",
      headers,
      payload: { id: "zhao.lei", name: "Z", roles: ["viewer"], scope: { cityWide: true } },
    });
    expect(dup.statusCode).toBe(409);
  });
});
