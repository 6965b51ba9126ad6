import { Agent, request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { API_ERRORS, ApiError, ApiRole, statusOf } from "../../../contracts/index.js";
import { openTaskApi, type TaskApi } from "../../support/task-api.js";
import {
  DEADMAN,
  gasNotice,
  noiseEvidence,
  noiseNotice,
  raise,
} from "../../unit/tasks/fixtures.js";
import { envCount, fuzzSeed, type Prng, prng } from "./prng.js";

/*
 * Issue #16, the fault and attack suite: the API request fuzzer. CITYWATCH_FUZZ_REQUESTS seeded
 * HTTP requests (5,000 by default; CITYWATCH_FUZZ_SEED replays a run) over a real socket to the
 * API app (readings, dead letters, tasks, evidence, stream, backtest; the task fixtures' city):
 * methods, paths from the OpenAPI document with mutated path parameters, query strings, bodies,
 * content types and tokens (valid of every role, revoked, unknown, malformed, absent). No answer
 * may be a 5xx but a 503 the route documents; every 4xx is JSON with a code of the catalogue
 * (contracts/model/errors.ts) and that code's status; a request without a valid token never gets
 * a 2xx from /api/v1; and /healthz answers afterwards.
 */

const SEED = fuzzSeed();
const REQUESTS = envCount("CITYWATCH_FUZZ_REQUESTS", 5_000);
const PARALLEL = 16;

let api: TaskApi;
let base: { host: string; port: number };
/*
 * One connection per request: with keep-alive, an answer given before a large body was read
 * (413, 401) leaves the rest of that body on the connection, and the client's next request on it
 * read a parse error or a reset that was not its own.
 */
const agent = new Agent({ keepAlive: false, maxSockets: PARALLEL });
const tokens = {} as Record<ApiRole, string>;
let revoked: string;
const taskIds: string[] = [];

interface Operation {
  readonly method: string;
  readonly path: string;
  readonly query: readonly string[];
  readonly responses: ReadonlySet<number>;
  readonly body: boolean;
}
let operations: Operation[] = [];

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ ...base, agent, method, path, headers, timeout: 20_000 }, (res) => {
      const contentType = String(res.headers["content-type"] ?? "");
      // A live stream that opened: its status and type are the answer; close it.
      if (contentType.startsWith("text/event-stream")) {
        resolve({ status: res.statusCode ?? 0, contentType, body: "" });
        res.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timed out: ${method} ${path}`)));
    req.on("error", reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

beforeAll(async () => {
  api = await openTaskApi("cw-fuzz-api-");
  const { system, app } = api;
  for (const role of ApiRole.options) tokens[role] = system.tokens.add(`fuzz-${role}`, role).token;
  revoked = system.tokens.add("fuzz-leaver", "admin").token;
  system.tokens.revoke("fuzz-leaver");
  // One task of each kind, so task, evidence and transition routes have something to find.
  const now = Date.now();
  await system.service.applyAlarm(noiseNotice("cs-1", raise(now), noiseEvidence(now)));
  await system.service.applyAlarm(gasNotice(raise(now, { level: "IV", deviceId: "g-1" })));
  await system.service.applyAlarm({
    rule: DEADMAN,
    subjectType: "device",
    subjectId: "g-1",
    deviceIds: ["g-1"],
    decision: raise(now, { detail: "silent" }),
  });
  for (const task of system.store.listTasks({ limit: 10, state: "open" })) taskIds.push(task.id);
  await app.listen({ host: "127.0.0.1", port: 0 });
  base = { host: "127.0.0.1", port: (app.server.address() as AddressInfo).port };

  // The routes, from the OpenAPI document the API serves.
  const doc = JSON.parse((await send("GET", "/openapi.json", {})).body) as {
    paths: Record<
      string,
      Record<
        string,
        {
          parameters?: Array<{ in: string; name: string }>;
          responses?: Record<string, unknown>;
          requestBody?: unknown;
        }
      >
    >;
  };
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      query: (op.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name),
      responses: new Set(Object.keys(op.responses ?? {}).map(Number)),
      body: op.requestBody !== undefined,
    })),
  );
  // The revocation has reached the API (its token cache) before the run.
  let refused = false;
  const poll = async () => {
    for (let i = 0; i < 150 && !refused; i++) {
      refused =
        (await send("GET", "/api/v1/tasks", { authorization: `Bearer ${revoked}` })).status === 401;
      if (!refused) await new Promise((r) => setTimeout(r, 100));
    }
  };
  await poll();
  if (!refused) throw new Error("the revoked token is still accepted after 15 s");
});

afterAll(async () => {
  agent.destroy();
  await api?.close();
});

// ---------------------------------------------------------------------------------------------
// The generator

const NASTY = [
  "",
  " ",
  "0",
  "-1",
  "1e400",
  "NaN",
  "Infinity",
  "9999999999999",
  "-9999999999999",
  "99999999999999999999999999",
  "9223372036854775808",
  "0x10",
  "1.5",
  "true",
  "null",
  "[]",
  "{}",
  "2026-13-45T25:61:00Z",
  "2026-11-27",
  "2026-11-27T22:01:00",
  "2026-11-27T22:01:00+08:00",
  "1970-01-01T00:00:00Z",
  "+275760-09-13T00:00:00.000Z",
  "yesterday",
  "' OR '1'='1",
  "1; DROP TABLE readings; --",
  '" OR time > 0 --',
  "noise WHERE 1=1",
  "\\",
  "%",
  "%zz",
  "%00",
  "../../etc/passwd",
  "${jndi:ldap://x/a}",
  "<script>alert(1)</script>",
  "噪声",
  "\u{1F4A9}",
  "\u202e",
  "a".repeat(5_000),
];

const VALID: Record<string, readonly string[]> = {
  from: [new Date(Date.now() - 86_400_000).toISOString(), "2026-01-01T00:00:00Z"],
  to: [new Date(Date.now() + 60_000).toISOString()],
  limit: ["1", "10", "1000", "10000"],
  quantity: ["LAeq", "ch4", "pm10"],
  interval: ["1m", "1h", "5m", "60000"],
  fn: ["mean", "max", "energy_mean"],
  kind: ["enforcement", "emergency", "maintenance"],
  state: ["open", "closed"],
  reason: ["schema", "not_json"],
  device: ["n-1", "g-1"],
  format: ["json", "html"],
  flagged: ["true", "false"],
  sequence: ["1", "2"],
};

const enc = (s: string, r: Prng) =>
  // Mostly encoded as a client would; sometimes raw, for the bytes the encoding would hide.
  r.chance(0.85)
    ? encodeURIComponent(s)
    : s.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));

function pathParam(r: Prng): string {
  const roll = r.next();
  if (roll < 0.35) return r.pick(["n-1", "n-2", "g-1", ...taskIds]);
  if (roll < 0.45)
    return r.pick(taskIds.length > 0 ? taskIds : ["t-1"]) + r.pick(["x", "/", "%2F", ".."]);
  return enc(r.pick(NASTY), r);
}

function queryOf(op: Operation | undefined, r: Prng): string {
  const names = [...(op?.query ?? []), "x", "limit", "from"];
  const parts: string[] = [];
  const n = r.int(0, 5);
  for (let i = 0; i < n; i++) {
    const name = r.chance(0.85) ? r.pick(names) : enc(r.pick(NASTY), r);
    const good = VALID[name];
    const value = good !== undefined && r.chance(0.5) ? r.pick(good) : r.pick(NASTY);
    parts.push(`${name}=${enc(value, r)}`);
    if (r.chance(0.1)) parts.push(`${name}=${enc(r.pick(NASTY), r)}`); // an array
  }
  if (r.chance(0.03)) parts.push(r.pick(["&&&", "=", "a[b]=1", "a[]=1&a[]=2", "%", "%zz=1"]));
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

function bodyOf(r: Prng): { body: Buffer; type: string } | undefined {
  const roll = r.next();
  const type = r.chance(0.8)
    ? "application/json"
    : r.pick([
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
        "application/xml",
        "APPLICATION/JSON",
        "application/json, text/plain",
        "garbage",
      ]);
  if (roll < 0.3)
    return {
      type,
      body: Buffer.from(
        JSON.stringify(
          r.pick<unknown>([
            {
              to: r.pick(["acknowledged", "resolved", "closed", "open", "x"]),
              note: r.pick(NASTY),
            },
            { to: "acknowledged", by: r.pick(NASTY), note: "x", extra: 1 },
            { rules: r.pick(NASTY), from: r.pick(NASTY), to: r.pick(NASTY) },
            { package: { sequence: r.pick(NASTY) }, hash: r.pick(NASTY) },
            [],
            null,
            42,
            "string",
            { to: 1, note: { a: [1, 2] } },
          ]),
        ),
      ),
    };
  if (roll < 0.5)
    return {
      type,
      body: Buffer.from(r.pick(['{"to":', "{'a':1}", "{,}", "[", "nul", "\u0000", '{"a":1}}'])),
    };
  if (roll < 0.55)
    return { type, body: Buffer.from(`{"a":"${"x".repeat(r.int(1_100_000, 2_000_000))}"}`) };
  if (roll < 0.6) return { type, body: Buffer.from(`${"[".repeat(5_000)}${"]".repeat(5_000)}`) };
  if (roll < 0.65) return { type, body: r.bytes(r.int(1, 2_000)) };
  if (roll < 0.7) return { type, body: Buffer.alloc(0) };
  return undefined;
}

interface Request {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer;
  readonly op: Operation | undefined;
  readonly authorized: boolean;
  /** The route's path template was kept (not upper-cased, re-versioned, slashed). */
  readonly routed: boolean;
}

/** The live stream's GET route, whose HEAD never answers (see the test at the end). */
const isStreamHead = (method: string, op: Operation | undefined) =>
  method === "HEAD" && op?.path === "/api/v1/tasks/stream";

function generate(r: Prng): Request {
  const op = r.chance(0.93) ? r.pick(operations) : undefined;
  const method =
    op !== undefined && r.chance(0.8)
      ? op.method
      : r.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]);
  if (isStreamHead(method, op)) return generate(r);
  let path: string;
  let routed = false;
  if (op !== undefined) {
    path = op.path.replace(/\{[^}]+\}/g, () => pathParam(r));
    routed = !r.chance(0.03);
    if (!routed)
      path = r.pick([
        `${path}/`,
        `/${path}`,
        path.replace("/api/v1", "/api/v2"),
        path.toUpperCase(),
      ]);
  } else {
    path = r.pick([
      "/",
      "/api",
      "/api/v1",
      "/api/v1/",
      "/admin",
      "/api/v1/tasks/stream/x",
      "//",
      "/.env",
      `/api/v1/${enc(r.pick(NASTY), r)}`,
    ]);
  }
  path += queryOf(op, r);
  const headers: Record<string, string> = {};
  let authorized = false;
  const auth = r.next();
  if (auth < 0.6) {
    headers["authorization"] = `Bearer ${tokens[r.pick(ApiRole.options)]}`;
    authorized = true;
  } else if (auth < 0.7) headers["authorization"] = `Bearer ${revoked}`;
  else if (auth < 0.8)
    headers["authorization"] = r.pick([
      "Bearer",
      "Bearer ",
      `Bearer ${tokens.admin}x`,
      `Bearer ${tokens.admin.slice(0, -1)}`,
      `bearer ${tokens.admin}`,
      `Basic ${Buffer.from("admin:admin").toString("base64")}`,
      "Bearer cwt_",
      `Bearer ${"a".repeat(8_000)}`,
      `Bearer ${tokens.admin} ${tokens.admin}`,
      "Bearer ' OR 1=1 --",
    ]);
  // else: none at all
  // `bearer` (lower case) is a valid scheme name (RFC 7235), so it may be accepted.
  if (headers["authorization"] === `bearer ${tokens.admin}`) authorized = true;
  let body: Buffer | undefined;
  // Bodies on POST, PUT and PATCH only: a DELETE or OPTIONS body sent by Node's client was
  // answered by the HTTP parser's own 400 (not the same request framed by hand; see the report).
  if (["POST", "PUT", "PATCH"].includes(method) && (op?.body === true || r.chance(0.3))) {
    const b = bodyOf(r);
    if (b !== undefined) {
      body = b.body;
      headers["content-type"] = b.type;
    }
  } else if (r.chance(0.05)) headers["content-type"] = "application/json";
  if (r.chance(0.1))
    headers["accept"] = r.pick([
      "text/html",
      "application/xml",
      "*/*",
      "text/event-stream",
      "garbage",
    ]);
  return { method, path, headers, ...(body !== undefined ? { body } : {}), op, authorized, routed };
}

// ---------------------------------------------------------------------------------------------

it(`answers ${REQUESTS} fuzzed requests with documented codes, never a 5xx, and stays up`, async () => {
  const started = Date.now();
  const r = prng(SEED);
  const requests = Array.from({ length: REQUESTS }, () => generate(r));
  const counts = {
    "2xx": 0,
    "3xx": 0,
    "4xx": 0,
    "5xx": 0,
    documented503: 0,
    undocumented: 0,
    clientRefused: 0,
    notInOpenApi: 0,
    unauthorizedPassed: 0,
  };
  const problems: string[] = [];
  const byStatus = new Map<number, number>();
  const notInOpenApi = new Set<string>();
  let next = 0;
  const note = (what: string) => {
    if (problems.length < 20) problems.push(what);
  };
  const worker = async () => {
    while (next < requests.length) {
      const req = requests[next++] as Request;
      const what = `${req.method} ${req.path.slice(0, 200)} ${JSON.stringify(req.headers).slice(0, 200)} body=${req.body?.length ?? 0}`;
      let answer: Answer;
      try {
        answer = await send(req.method, req.path, req.headers, req.body);
      } catch (error) {
        // Node's own client refuses some (characters a request line cannot carry): not sent.
        if (
          (error as { code?: string }).code === "ERR_UNESCAPED_CHARACTERS" ||
          (error as { code?: string }).code === "ERR_INVALID_CHAR"
        ) {
          counts.clientRefused++;
          continue;
        }
        note(`no answer: ${what}: ${String(error)}`);
        counts.undocumented++;
        continue;
      }
      const { status } = answer;
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      if (status >= 200 && status < 300) {
        counts["2xx"]++;
        if (
          !req.authorized &&
          req.path.startsWith("/api/v1") &&
          req.op?.responses.has(401) === true
        ) {
          counts.unauthorizedPassed++;
          note(`${status} without a valid token: ${what}`);
        }
        continue;
      }
      if (status < 400) {
        counts["3xx"]++;
        continue;
      }
      if (status >= 500) {
        const documented =
          status === 503 && req.op?.responses.has(503) === true && req.op.method === req.method;
        if (documented) counts.documented503++;
        else {
          counts["5xx"]++;
          note(`${status} ${answer.body.slice(0, 300)}: ${what}`);
          continue;
        }
      } else counts["4xx"]++;
      if (
        req.op !== undefined &&
        req.routed &&
        req.op.method === req.method &&
        !req.op.responses.has(status)
      ) {
        counts.notInOpenApi++;
        notInOpenApi.add(`${req.method} ${req.op.path} ${status}`);
      }
      if (req.method === "HEAD") continue; // no body to judge
      let code: string | undefined;
      try {
        const parsed = ApiError.safeParse(JSON.parse(answer.body));
        code = parsed.success ? parsed.data.error : undefined;
      } catch {
        code = undefined;
      }
      if (
        code === undefined ||
        !(code in API_ERRORS) ||
        statusOf(code as keyof typeof API_ERRORS) !== status ||
        !answer.contentType.startsWith("application/json")
      ) {
        counts.undocumented++;
        note(`${status} ${answer.contentType} ${answer.body.slice(0, 300)}: ${what}`);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));

  const health = await send("GET", "/healthz", {});
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `[fault] api-fuzz: seed=${SEED}, requests=${REQUESTS}, 2xx=${counts["2xx"]}, 4xx=${counts["4xx"]}, 5xx=${counts["5xx"]}, undocumented=${counts.undocumented}, seconds=${seconds} (documented 503=${counts.documented503}, 3xx=${counts["3xx"]}, refused by the client=${counts.clientRefused}, unauthorized 2xx=${counts.unauthorizedPassed}, statuses ${JSON.stringify(Object.fromEntries([...byStatus].sort((a, b) => a[0] - b[0])))})`,
  );
  if (notInOpenApi.size > 0)
    console.log(
      `[fault] api-fuzz: statuses the OpenAPI document does not list: ${[...notInOpenApi].sort().join("; ")}`,
    );
  for (const p of problems) console.log(`[fault] api-fuzz problem: ${p}`);
  expect(problems).toEqual([]);
  expect(counts["5xx"]).toBe(0);
  expect(counts.undocumented).toBe(0);
  expect(counts.unauthorizedPassed).toBe(0);
  expect(health.status).toBe(200);
  expect(counts["2xx"] + counts["4xx"]).toBeGreaterThan(REQUESTS / 2);
});

/*
 * Found by this fuzzer (seed 4154847982): HEAD /api/v1/tasks/stream with a valid token got no
 * answer at all (no status line; the connection stayed open until the client gave up), where GET
 * answers 200 text/event-stream. HEAD now answers what a GET would open, and opens nothing.
 */
it("answers HEAD on the live stream", async () => {
  const answer = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        ...base,
        agent,
        method: "HEAD",
        path: "/api/v1/tasks/stream",
        headers: { authorization: `Bearer ${tokens.viewer}` },
        timeout: 3_000,
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on("timeout", () => req.destroy(new Error("HEAD /api/v1/tasks/stream: no answer in 3 s")));
    req.on("error", reject);
    req.end();
  });
  expect([200, 405]).toContain(answer);
});
