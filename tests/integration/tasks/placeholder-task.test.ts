import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EvidencePackage,
  EvidenceVerification,
  TaskDetailResponse,
} from "../../../contracts/index.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { verifyEvidencePackage } from "../../../tasks/evidence-seal.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";
import { packRule } from "../../unit/rules/engine/harness.js";
import { gasNotice, noiseEvidence, noiseNotice, raise } from "../../unit/tasks/fixtures.js";

/*
 * A task raised by a placeholder rule says so: the task (service, store, API) and its sealed
 * evidence package carry the rule's confidence and its unverified parts; the title is the rule's,
 * with no PLACEHOLDER in it.
 */
describe("a task from a placeholder rule", () => {
  const SUMP = packRule("tunnel.sump");
  const SICHUAN = packRule("dust.pm10.sichuan");
  let api: TaskApi;
  let system: TaskSystem;
  let app: FastifyInstance;
  let token: string;

  beforeAll(async () => {
    api = await openTaskApi("cw-placeholder-task-");
    ({ system, app } = api);
    token = system.tokens.add("viewer-1", "viewer").token;
  });
  afterAll(() => api.close());

  const get = (url: string) =>
    app.inject({ method: "GET", url, headers: { authorization: `Bearer ${token}` } });
  const taskOf = async (id: string) =>
    TaskDetailResponse.parse((await get(`/api/v1/tasks/${id}`)).json()).task;
  const packageOf = async (id: string) =>
    EvidencePackage.parse((await get(`/api/v1/tasks/${id}/evidence`)).json());

  it("the emergency task of tunnel.sump: confidence placeholder and what is unverified, on the task and its evidence", async () => {
    const now = Date.now();
    const evidence = {
      readings: [
        {
          deviceId: "g-1",
          ts: new Date(now).toISOString(),
          quality: "normal" as const,
          values: { sumpLevel: 62 },
        },
      ],
      method: "latest sumpLevel",
      windowStart: new Date(now - 60_000).toISOString(),
      windowEnd: new Date(now).toISOString(),
      value: 62,
      limit: 50,
    };
    await system.service.applyAlarm({
      ...gasNotice(raise(now, { level: "IV", deviceId: "g-1", value: 62, limit: 50 }), SUMP),
      evidence,
    });
    const filed = system.store.listTasks({ limit: 10, ruleId: "tunnel.sump" })[0];
    expect(filed).toBeDefined();
    const task = await taskOf(filed?.id ?? "");
    expect(task.title).toBe(SUMP.title);
    expect(task.title).not.toMatch(/PLACEHOLDER/i);
    expect(task.rule).toEqual({
      id: "tunnel.sump",
      version: 1,
      clause: SUMP.clause,
      confidence: "placeholder",
      unverified: [{ path: "limits", note: SUMP.note }],
    });

    const pkg = await packageOf(task.id);
    expect(pkg.rule).toMatchObject({
      id: "tunnel.sump",
      title: SUMP.title,
      confidence: "placeholder",
      unverified: [{ path: "limits", note: SUMP.note }],
    });
    // Sealed with the package: the signature covers it, and the parsed package still verifies.
    const keys = system.keyring.publicKeys();
    expect(verifyEvidencePackage(pkg, keys).valid).toBe(true);
    expect(
      verifyEvidencePackage({ ...pkg, rule: { ...pkg.rule, unverified: [] } }, keys).valid,
    ).toBe(false);
    const html = await get(`/api/v1/tasks/${task.id}/evidence?format=html`);
    expect(html.body).toContain(
      `<th scope="row">规则中未经核实的部分</th><td><div>limits: ${SUMP.note?.replaceAll("'", "&#39;")}`,
    );
    const english = await get(`/api/v1/tasks/${task.id}/evidence?format=html&language=en`);
    expect(english.body).toContain("Unverified parts of the rule");
  });

  it("an enforcement case of the Sichuan dust placeholder (switched on by the city) carries it too", async () => {
    const now = Date.now();
    await system.service.applyAlarm({
      ...noiseNotice("cs-2", raise(now, { value: 480, limit: 200, detail: "PM10 480 > 200" })),
      rule: SICHUAN,
      deviceIds: ["n-2"],
    });
    const filed = system.store.listTasks({ limit: 10, ruleId: "dust.pm10.sichuan" })[0];
    const task = await taskOf(filed?.id ?? "");
    expect(task.kind).toBe("enforcement");
    expect(task.title).not.toMatch(/PLACEHOLDER/i);
    expect(task.rule.confidence).toBe("placeholder");
    expect(task.rule.unverified).toEqual([{ path: "limits", note: SICHUAN.note }]);
    const pkg = await packageOf(task.id);
    expect(pkg.rule.confidence).toBe("placeholder");
    expect(pkg.rule.unverified).toEqual([{ path: "limits", note: SICHUAN.note }]);
  });

  it("a verified rule's task says verified and lists its unverified parts", async () => {
    const now = Date.now();
    // cs-3: another party than the Sichuan dust case's (whose open case would hold this one).
    await system.service.applyAlarm(noiseNotice("cs-3", raise(now), noiseEvidence(now)));
    const filed = system.store.listTasks({ limit: 10, ruleId: "noise.construction.laeq" })[0];
    const task = await taskOf(filed?.id ?? "");
    expect(task.rule.confidence).toBe("verified");
    expect(task.rule.unverified?.map((u) => u.path)).toEqual(["condition.window"]);
    expect((await packageOf(task.id)).rule.unverified?.map((u) => u.path)).toEqual([
      "condition.window",
    ]);
  });

  it("the OpenAPI document describes the task's and the package's new fields", async () => {
    const doc = JSON.stringify((await get("/openapi.json")).json());
    const described = [
      ...doc.matchAll(/"(confidence|unverified)":\{[^{}]*?"description":"([^"]*)"/g),
    ].map((m) => `${m[1]}: ${m[2]}`);
    expect(described).toContain(
      "confidence: placeholder: the rule's numbers are not verified (docs/standards.md); absent on tasks filed before it was recorded",
    );
    expect(described).toContain(
      "unverified: The rule's unverified parts, each a path in the rule and a note (empty: none)",
    );
    expect(described).toContain(
      "unverified: The rule's unverified parts; absent in packages sealed before they were recorded",
    );
  });

  it("POST /api/v1/evidence/verify: a package with the field verifies; one without it re-hashed is refused", async () => {
    const id = system.store.listTasks({ limit: 10, ruleId: "tunnel.sump" })[0]?.id ?? "";
    const pkg = await packageOf(id);
    const verify = async (body: unknown) =>
      EvidenceVerification.parse(
        (
          await app.inject({
            method: "POST",
            url: "/api/v1/evidence/verify",
            headers: { authorization: `Bearer ${token}` },
            payload: body as Record<string, unknown>,
          })
        ).json(),
      );
    expect((await verify(pkg)).valid).toBe(true);
    // The body schema keeps the list: dropping it would change the hash.
    expect((await verify({ ...pkg, rule: { ...pkg.rule, unverified: [] } })).valid).toBe(false);
    // Rewriting the package and its hash is the forgery a signature exists to catch.
    const { unverified: _gone, ...older } = pkg.rule;
    const rewritten = { ...pkg, rule: { ...older, unverified: [] } };
    const answer = await verify(rewritten);
    expect(answer.valid).toBe(false);
    expect(answer.problems.map((p) => p.code)).toContain("differs_from_stored");
  });
});
