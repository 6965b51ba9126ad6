import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ApiError,
  CreditRecordRow,
  Party,
  RepeatOffenderStatus,
  Site,
  TaskDetailResponse,
} from "../../../contracts/index.js";
import { IngestState } from "../../../ingest/state.js";
import { createSqliteStore } from "../../../ingest/store/sqlite.js";
import type { TimeSeriesStore } from "../../../ingest/store/types.js";
import type { TaskSystem } from "../../../tasks/app.js";
import { creditRecordCsv, noticeGateProblem, reviewGate } from "../../../tasks/credit-record.js";
import { testApi } from "../../support/ingest.js";
import { makeTempDir, removeTempDir } from "../../support/process.js";
import {
  DAY,
  DEVICES,
  fakeClock,
  gasNotice,
  HOUR,
  MIN,
  noiseEvidence,
  noiseNotice,
  raise,
  SITES,
  startSystem,
  T0,
} from "../../unit/tasks/fixtures.js";

/*
 * Parties, the notice to the party and the credit record (issue #18 item 3) on the real task
 * service (a fake clock) behind the real API app (inject): the party registry's routes and
 * roles; a notice served and a statement recorded with their audit entries; the review gate
 * refusing an approval before the party was heard; a referral to the police; the credit record
 * of a fixture of cases across a party's sites, as JSON and RFC 4180 CSV; repeat-offender status.
 */

const ACME = "91310000MA1FL0AB1X";
const CHEN = "91510100MA6CW7XK3P";
const CHEN_NAME = 'Chen, "Big" Builders';

/** A site of a party whose name needs CSV quoting (a comma and quotes), in pudong. */
const QUOTED_SITE = Site.parse({
  id: "cs-q",
  name: "Quoted party's site",
  type: "construction_site",
  area: { district: "pudong", gridCell: "pd-019" },
  location: { lat: 31.25, lon: 121.52 },
  phase: "structure",
  regulatedParty: { name: CHEN_NAME, creditCode: CHEN },
});
const CITY_SITES = [...SITES, QUOTED_SITE];
const lookup = {
  device: (id: string) => DEVICES.find((d) => d.id === id),
  site: (id: string) => CITY_SITES.find((s) => s.id === id),
};

/** RFC 4180 records of a CSV text (quoted fields, doubled quotes, CRLF). */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      i++;
    } else field += c;
  }
  expect(field).toBe("");
  expect(record).toEqual([]);
  return records;
}

describe("parties, notices and the credit record on the task API", () => {
  let dir: string;
  let system: TaskSystem;
  let state: IngestState;
  let store: TimeSeriesStore;
  let app: FastifyInstance;
  const clock = fakeClock(T0);
  const tokens: Record<string, string> = {};
  const ids: Record<string, string> = {};

  const call = (
    method: "GET" | "POST" | "PUT",
    url: string,
    token: string | undefined,
    payload?: unknown,
  ) =>
    app.inject({
      method,
      url,
      ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }),
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });
  const message = (res: { json(): unknown }) => ApiError.parse(res.json()).message;
  const move = async (id: string, to: string, name: string, reason?: string, note?: string) => {
    const result = await system.service.transition(
      id,
      {
        to: to as never,
        ...(reason === undefined ? {} : { reason: reason as never }),
        ...(note === undefined ? {} : { note }),
      },
      { name, id: name, roles: ["enforcement"] },
    );
    expect(result.ok, result.ok ? "" : result.message).toBe(true);
  };
  const closeRectified = async (id: string) => {
    for (const to of ["dispatched", "acknowledged", "in_progress", "handled"])
      await move(id, to, "handler.one");
    await move(id, "verified", "verifier.two");
    await move(id, "closed", "verifier.two", "rectified");
  };

  beforeAll(async () => {
    dir = await makeTempDir("cw-parties-api-");
    system = startSystem(dir, { now: clock.now, registry: lookup });
    state = new IngestState(join(dir, "ingest.db"));
    store = createSqliteStore(join(dir, "timeseries.db"));
    await store.open();
    app = testApi({
      registry: { ...lookup, devices: () => DEVICES, sites: () => CITY_SITES },
      state,
      store,
      metrics: [system.metrics.registry],
      tasks: system.api,
      now: clock.now,
    });
    for (const role of ["admin", "enforcement", "legal_reviewer", "viewer", "emergency"] as const)
      tokens[role] = system.tokens.add(`${role}-1`, role).token;
    await system.tokens.users.add(
      { id: "li.na", name: "Li Na", roles: ["enforcement"], scope: { districts: ["xuhui"] } },
      "correct horse battery",
    );
    tokens["xuhui"] = system.tokens.add("li.na@laptop", "enforcement", "li.na").token;

    // Case A: Acme's first violation at cs-1 → a warning; rectified and closed before the deadline.
    await system.service.applyAlarm(noiseNotice("cs-1", raise(T0), noiseEvidence(T0)));
    ids["a"] = system.store.listTasks({ limit: 10 })[0]?.id ?? "";
    clock.advance(HOUR);
    await closeRectified(ids["a"]);
    // Case B: Acme again, at its other site cs-2, after the deadline (data 4 days on) → referred.
    clock.set(T0 + 4 * DAY);
    await system.service.applyAlarm(noiseNotice("cs-2", raise(T0 + 4 * DAY)));
    ids["b"] = system.store.openIncident(ACME)?.id ?? "";
    // Case C: Other Builder (no credit code) at cs-3 in xuhui → warning, then a false positive.
    await system.service.applyAlarm(noiseNotice("cs-3", raise(T0 + 4 * DAY)));
    ids["c"] = system.store.openIncident("site:cs-3")?.id ?? "";
    await move(
      ids["c"],
      "closed",
      "officer.three",
      "false_positive",
      "the pile driver was\nthe neighbour's",
    );
    // Case D: Chen (a name with a comma and quotes) → a warning.
    await system.service.applyAlarm(noiseNotice("cs-q", raise(T0 + 4 * DAY)));
    ids["d"] = system.store.openIncident(CHEN)?.id ?? "";
    // An emergency task: nobody to serve a notice on.
    await system.service.applyAlarm(
      gasNotice(raise(T0 + 4 * DAY, { level: "IV", deviceId: "g-1" })),
    );
    ids["gas"] = system.store.listTasks({ kind: "emergency", limit: 1 })[0]?.id ?? "";
  });
  afterAll(async () => {
    await app.close();
    await system.stop();
    state.close();
    await store.close();
    await removeTempDir(dir);
  });

  it("sets up the fixture: a warning, a referral pending review, a false positive, a warning", () => {
    expect(Object.values(ids).every((id) => id !== "")).toBe(true);
    expect(system.store.task(ids["b"] ?? "")?.graduated).toMatchObject({
      stage: "referred",
      review: { status: "pending" },
      repeatOf: ids["a"],
    });
    expect(system.store.task(ids["c"] ?? "")?.closure?.reason).toBe("false_positive");
  });

  it("registers, lists, reads and replaces parties: admin writes, any role reads", async () => {
    const body = {
      creditCode: ACME,
      name: "Acme Build Co.",
      legalRepresentative: "Zhang San",
      contacts: [{ name: "Li Si", phone: "13800000000", role: "site manager" }],
      sites: ["cs-1"],
    };
    const refused = await call("POST", "/api/v1/parties", tokens["viewer"], body);
    expect(refused.statusCode).toBe(403);
    expect(message(refused)).toContain("needs admin");
    expect((await call("POST", "/api/v1/parties", undefined, body)).statusCode).toBe(401);
    const created = await call("POST", "/api/v1/parties", tokens["admin"], body);
    expect(created.statusCode).toBe(200);
    const written = z
      .object({ party: Party, warnings: z.array(z.string()), status: RepeatOffenderStatus })
      .parse(created.json());
    expect(written.party).toMatchObject({ key: ACME, legalRepresentative: "Zhang San" });
    // The API's registry is the data directory's: the fixture's sites are not registered there.
    expect(written.warnings.join("\n")).toContain("site cs-1 of party");
    expect(written.status).toMatchObject({ repeatOffender: true, violations: 2 });
    expect((await call("POST", "/api/v1/parties", tokens["admin"], body)).statusCode).toBe(409);

    const noCode = await call("POST", "/api/v1/parties", tokens["admin"], { name: "Street Stall" });
    expect(noCode.statusCode).toBe(200);
    const stall = z.object({ party: Party, warnings: z.array(z.string()) }).parse(noCode.json());
    expect(stall.party.key).toMatch(/^nocode-[0-9a-f]{16}$/);
    expect(stall.warnings.join("\n")).toContain("no unified social credit code");

    const bad = await call("POST", "/api/v1/parties", tokens["admin"], {
      creditCode: "not-a-code",
      name: "",
      contacts: [{ name: "x" }],
    });
    expect(bad.statusCode).toBe(400);
    expect(message(bad)).toMatch(/credit code/);

    const list = await call("GET", "/api/v1/parties", tokens["viewer"]);
    expect(list.statusCode).toBe(200);
    expect(
      z
        .object({ parties: z.array(Party) })
        .parse(list.json())
        .parties.map((p) => p.name),
    ).toEqual(["Acme Build Co.", "Street Stall"]);
    const one = await call("GET", `/api/v1/parties/${ACME}`, tokens["viewer"]);
    expect(one.statusCode).toBe(200);
    expect(
      (await call("GET", "/api/v1/parties/91310000MA1FL0AB2Y", tokens["viewer"])).statusCode,
    ).toBe(404);
    expect((await call("GET", "/api/v1/parties/not-a-key", tokens["viewer"])).statusCode).toBe(400);

    const renamed = await call("PUT", `/api/v1/parties/${ACME}`, tokens["admin"], {
      ...body,
      name: "Acme Construction Co.",
    });
    expect(renamed.statusCode).toBe(200);
    expect(Party.parse(renamed.json<{ party: unknown }>().party).name).toBe(
      "Acme Construction Co.",
    );
    const otherKey = await call("PUT", `/api/v1/parties/${ACME}`, tokens["admin"], {
      ...body,
      creditCode: CHEN,
    });
    expect(otherKey.statusCode).toBe(400);
    expect(message(otherKey)).toContain("cannot change");
    expect(
      (await call("PUT", `/api/v1/parties/${CHEN}`, tokens["admin"], { ...body, creditCode: CHEN }))
        .statusCode,
    ).toBe(404);
    expect(
      (await call("PUT", `/api/v1/parties/${ACME}`, tokens["enforcement"], body)).statusCode,
    ).toBe(403);
  });

  it("serves the notice, refuses what cannot be recorded, and records the party's statement with audit entries", async () => {
    const b = ids["b"] ?? "";
    const notice = { channel: "registered_mail", servedBy: "Officer Zhou #1024" };
    expect(
      (await call("POST", `/api/v1/tasks/${b}/notice`, tokens["viewer"], notice)).statusCode,
    ).toBe(403);
    expect(
      (await call("POST", `/api/v1/tasks/${b}/notice`, tokens["xuhui"], notice)).statusCode,
    ).toBe(403);
    const badChannel = await call("POST", `/api/v1/tasks/${b}/notice`, tokens["enforcement"], {
      ...notice,
      channel: "pigeon",
    });
    expect(badChannel.statusCode).toBe(400);
    expect(message(badChannel)).toContain("channel must be");
    const future = await call("POST", `/api/v1/tasks/${b}/notice`, tokens["enforcement"], {
      ...notice,
      servedAt: new Date(clock.now() + HOUR).toISOString(),
    });
    expect(future.statusCode).toBe(409);
    expect(message(future)).toContain("in the future");
    const gas = await call(
      "POST",
      `/api/v1/tasks/${ids["gas"] ?? ""}/notice`,
      tokens["admin"],
      notice,
    );
    expect(gas.statusCode).toBe(409);
    expect(
      (await call("POST", "/api/v1/tasks/enf-999999/notice", tokens["enforcement"], notice))
        .statusCode,
    ).toBe(404);
    // A statement before any notice.
    const early = await call("POST", `/api/v1/tasks/${b}/statement`, tokens["enforcement"], {
      outcome: "hearing_requested",
    });
    expect(early.statusCode).toBe(409);
    expect(message(early)).toContain("serve it first");

    // The gate refuses an approval before the notice.
    const pending = await system.service.task(b);
    expect(pending).toBeDefined();
    expect(noticeGateProblem(pending!, clock.now())).toContain("has not been served a notice");
    expect(reviewGate(pending!, "approve", clock.now())).toMatchObject({
      ok: false,
      error: "conflict",
    });
    expect(reviewGate(pending!, "reject", clock.now())).toBeUndefined();

    // Served on Monday 30 November 2026 at 22:40 (Shanghai), after office hours: three working
    // days of 8 hours run Tuesday to Thursday, ending Thursday 18:00 (10:00 UTC).
    const served = await call("POST", `/api/v1/tasks/${b}/notice`, tokens["enforcement"], notice);
    expect(served.statusCode).toBe(200);
    const detail = TaskDetailResponse.parse(served.json());
    expect(detail.task.notice).toMatchObject({
      servedAt: new Date(clock.now()).toISOString(),
      channel: "registered_mail",
      servedBy: "Officer Zhou #1024",
      recordedBy: "enforcement-1 (enforcement)",
      windowWorkingDays: 3,
      windowEndsAt: "2026-12-03T10:00:00.000Z",
    });
    const entry = detail.audit.find((e) => e.action === "notice_served");
    expect(entry?.actor).toBe("enforcement-1 (enforcement)");
    expect(entry?.detail).toContain("statement and defence until 2026-12-03T10:00:00.000Z");
    expect(
      (await call("POST", `/api/v1/tasks/${b}/notice`, tokens["enforcement"], notice)).statusCode,
    ).toBe(409);

    // Within the window: the gate still refuses, and "no statement" cannot be recorded yet.
    const inWindow = await system.service.task(b);
    expect(noticeGateProblem(inWindow!, clock.now())).toContain("until 2026-12-03T10:00:00.000Z");
    const tooSoon = await call("POST", `/api/v1/tasks/${b}/statement`, tokens["enforcement"], {
      outcome: "no_statement",
    });
    expect(tooSoon.statusCode).toBe(409);
    expect(message(tooSoon)).toContain("may state their case until");
    const noSummary = await call("POST", `/api/v1/tasks/${b}/statement`, tokens["legal_reviewer"], {
      outcome: "statement_received",
    });
    expect(noSummary.statusCode).toBe(400);
    expect(message(noSummary)).toContain("summary");
    // The window passes: the gate lets the approval through even before "no statement" is recorded.
    expect(noticeGateProblem(inWindow!, Date.parse("2026-12-03T10:00:00.000Z"))).toBeUndefined();
    expect(noticeGateProblem(inWindow!, Date.parse("2026-12-03T09:59:59.999Z"))).toBeDefined();

    // A legal reviewer records the party's statement within the window.
    clock.advance(12 * HOUR);
    const statement = await call("POST", `/api/v1/tasks/${b}/statement`, tokens["legal_reviewer"], {
      outcome: "statement_received",
      summary: "the crane ran late to finish a pour; they ask for leniency",
    });
    expect(statement.statusCode).toBe(200);
    const after = TaskDetailResponse.parse(statement.json());
    expect(after.task.notice?.statement).toMatchObject({
      outcome: "statement_received",
      at: new Date(clock.now()).toISOString(),
      recordedBy: "legal_reviewer-1 (legal_reviewer)",
    });
    expect(after.audit.filter((e) => e.action === "statement_recorded")).toHaveLength(1);
    expect(after.audit.at(-1)?.detail).toContain("crane ran late");
    expect(noticeGateProblem(after.task, clock.now())).toBeUndefined();
    expect(
      (
        await call("POST", `/api/v1/tasks/${b}/statement`, tokens["enforcement"], {
          outcome: "hearing_requested",
        })
      ).statusCode,
    ).toBe(409);

    // Heard: the legal reviewer approves the referral.
    const approved = await call("POST", `/api/v1/tasks/${b}/review`, tokens["legal_reviewer"], {
      decision: "approve",
    });
    expect(approved.statusCode).toBe(200);
  });

  it("records a referral to the police once, with a note", async () => {
    const b = ids["b"] ?? "";
    const empty = await call("POST", `/api/v1/tasks/${b}/police-referral`, tokens["enforcement"], {
      note: " ",
    });
    expect(empty.statusCode).toBe(400);
    clock.advance(MIN);
    const referred = await call(
      "POST",
      `/api/v1/tasks/${b}/police-referral`,
      tokens["enforcement"],
      {
        note: "obstruction of an inspection; case handed to the Pudong public security bureau",
      },
    );
    expect(referred.statusCode).toBe(200);
    const detail = TaskDetailResponse.parse(referred.json());
    expect(detail.audit.at(-1)).toMatchObject({ action: "referred_to_police" });
    expect(detail.audit.at(-1)?.detail).toContain("Pudong public security bureau");
    const again = await call("POST", `/api/v1/tasks/${b}/police-referral`, tokens["enforcement"], {
      note: "again",
    });
    expect(again.statusCode).toBe(409);
  });

  it("computes the credit record across a party's sites, with repeat-offender status", async () => {
    const res = await call("GET", `/api/v1/parties/${ACME}/record`, tokens["viewer"]);
    expect(res.statusCode).toBe(200);
    const record = z
      .object({
        party: Party.nullable(),
        status: RepeatOffenderStatus,
        rows: z.array(CreditRecordRow),
      })
      .parse(res.json());
    expect(record.rows.map((r) => [r.outcome, r.taskId, r.sites.join(" ")])).toEqual([
      ["warning", ids["a"], "cs-1"],
      ["rectified", ids["a"], "cs-1"],
      ["penalty_referral_approved", ids["b"], "cs-2"],
      ["referred_to_police", ids["b"], "cs-2"],
    ]);
    expect(
      record.rows.every(
        (r) => r.creditCode === ACME && r.rules.includes("noise.construction.laeq"),
      ),
    ).toBe(true);
    expect(record.status).toEqual({
      repeatOffender: true,
      violations: 2,
      periodDays: 365,
      caseIds: [ids["a"], ids["b"]],
      sites: ["cs-1", "cs-2"],
    });
    // A party whose only case was a false positive is no repeat offender; it has no code.
    const other = await call("GET", "/api/v1/parties/site:cs-3/record", tokens["viewer"]);
    expect(other.statusCode).toBe(200);
    const otherRecord = z
      .object({ status: RepeatOffenderStatus, rows: z.array(CreditRecordRow) })
      .parse(other.json());
    expect(otherRecord.status).toMatchObject({ repeatOffender: false, violations: 0 });
    expect(otherRecord.rows.map((r) => r.outcome)).toEqual(["warning", "false_positive"]);
    expect(
      (await call("GET", "/api/v1/parties/site:bad%20id/record", tokens["viewer"])).statusCode,
    ).toBe(400);
    const chen = z
      .object({
        status: RepeatOffenderStatus,
        rows: z.array(CreditRecordRow),
        party: Party.nullable(),
      })
      .parse((await call("GET", `/api/v1/parties/${CHEN}/record`, tokens["viewer"])).json());
    expect(chen.party).toBeNull();
    expect(chen.status.repeatOffender).toBe(false);
    expect(chen.rows.map((r) => [r.outcome, r.partyName])).toEqual([["warning", CHEN_NAME]]);
    expect(
      (await call("GET", "/api/v1/parties/91310000MA1FL0AB2Y/record", tokens["viewer"])).statusCode,
    ).toBe(404);
  });

  it("exports every outcome for the credit system as JSON and RFC 4180 CSV, by period and scope", async () => {
    const json = await call("GET", "/api/v1/credit-records", tokens["viewer"]);
    expect(json.statusCode).toBe(200);
    const rows = z.object({ rows: z.array(CreditRecordRow) }).parse(json.json()).rows;
    expect(rows.map((r) => `${r.taskId}:${r.outcome}`).sort()).toEqual(
      [
        `${ids["a"]}:warning`,
        `${ids["a"]}:rectified`,
        `${ids["b"]}:penalty_referral_approved`,
        `${ids["b"]}:referred_to_police`,
        `${ids["c"]}:warning`,
        `${ids["c"]}:false_positive`,
        `${ids["d"]}:warning`,
      ].sort(),
    );
    const falsePositive = rows.find((r) => r.outcome === "false_positive");
    expect(falsePositive).toMatchObject({
      partyKey: "site:cs-3",
      creditCode: null,
      partyName: "Other Builder Ltd.",
    });

    const csv = await call("GET", "/api/v1/credit-records?format=csv", tokens["viewer"]);
    expect(csv.statusCode).toBe(200);
    expect(csv.headers["content-type"]).toBe("text/csv; charset=utf-8");
    expect(csv.headers["content-disposition"]).toContain("attachment");
    expect(csv.body).toContain(`,"Chen, ""Big"" Builders",`);
    expect(csv.body).toContain(`"the pile driver was\nthe neighbour's"`);
    const records = parseCsv(csv.body);
    expect(records[0]).toEqual([
      "partyKey",
      "creditCode",
      "partyName",
      "outcome",
      "at",
      "taskId",
      "sites",
      "rules",
      "detail",
    ]);
    expect(records.slice(1)).toEqual(
      rows.map((r) => [
        r.partyKey,
        r.creditCode ?? "",
        r.partyName,
        r.outcome,
        r.at,
        r.taskId,
        r.sites.join(";"),
        r.rules.join(";"),
        r.detail,
      ]),
    );
    expect(creditRecordCsv([])).toBe(
      "partyKey,creditCode,partyName,outcome,at,taskId,sites,rules,detail\r\n",
    );

    // The period: only the outcomes at or after `from`.
    const from = encodeURIComponent(new Date(T0 + 4 * DAY).toISOString());
    const later = z
      .object({ rows: z.array(CreditRecordRow) })
      .parse(
        (await call("GET", `/api/v1/credit-records?from=${from}`, tokens["viewer"])).json(),
      ).rows;
    expect(later.some((r) => r.taskId === ids["a"])).toBe(false);
    expect(later.length).toBe(rows.length - 2);
    const bad = await call(
      "GET",
      `/api/v1/credit-records?from=${from}&to=0&format=xml`,
      tokens["viewer"],
    );
    expect(bad.statusCode).toBe(400);
    expect(message(bad)).toMatch(/format/);
    // A user scoped to xuhui sees the outcomes of xuhui's cases only.
    const scoped = z
      .object({ rows: z.array(CreditRecordRow) })
      .parse((await call("GET", "/api/v1/credit-records", tokens["xuhui"])).json()).rows;
    expect(new Set(scoped.map((r) => r.taskId))).toEqual(new Set([ids["c"]]));
  });

  it("documents the routes in the OpenAPI document", async () => {
    const doc = (await app.inject({ method: "GET", url: "/openapi.json" })).json<{
      paths: Record<string, Record<string, { tags?: string[] }>>;
    }>();
    for (const [path, method] of [
      ["/api/v1/parties", "get"],
      ["/api/v1/parties", "post"],
      ["/api/v1/parties/{key}", "put"],
      ["/api/v1/parties/{key}/record", "get"],
      ["/api/v1/credit-records", "get"],
      ["/api/v1/tasks/{id}/notice", "post"],
      ["/api/v1/tasks/{id}/statement", "post"],
      ["/api/v1/tasks/{id}/police-referral", "post"],
    ] as const) {
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    }
  });
});
