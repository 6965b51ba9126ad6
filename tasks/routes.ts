import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import {
  EvidencePackage,
  EvidenceVerification,
  problemsOf,
  TaskApiError,
  TaskDetailResponse,
  TaskKind,
  TaskListQuery,
  TaskListResponse,
  TransitionRequest,
} from "../contracts/index.js";
import { bearerAuth, type Caller, problem } from "./auth/bearer.js";
import { kindsOf, mayAct, mayRead } from "./auth/roles.js";
import type { TokenStore } from "./auth/tokens.js";
import type { TaskStream } from "./notify/stream.js";
import { evidenceHtml } from "./evidence-html.js";
import { verifyEvidence } from "./evidence.js";
import type { TaskService } from "./service.js";
import type { TaskStore } from "./store.js";

/*
 * The task API under /api/v1/tasks: list, read with the audit trail, transitions, evidence export
 * (JSON, HTML) and verification, and the live stream. Every request needs a bearer token; every
 * query and body is validated by its zod schema in contracts/tasks.ts.
 */

export interface TaskApiDeps {
  readonly service: TaskService;
  readonly store: TaskStore;
  readonly tokens: TokenStore;
  readonly stream: TaskStream;
  readonly tokenCacheMs: number;
  readonly now: () => number;
}

const DEFAULT_LIMIT = 100;

const EvidenceQuery = z.strictObject({
  format: z.enum(["json", "html"], { error: "format must be json or html" }).default("json"),
  sequence: z
    .string()
    .regex(/^\d+$/, { error: "must be a whole number" })
    .transform(Number)
    .optional(),
});
const StreamQuery = z.strictObject({ kind: TaskKind.optional() });

function badRequest(reply: FastifyReply, error: z.ZodError) {
  const problems = problemsOf(error);
  return problem(reply, 400, {
    error: "bad_request",
    message: problems.map((p) => `${p.path}: ${p.message}`).join("; "),
    problems,
  });
}

export function registerTaskRoutes(app: FastifyInstance, deps: TaskApiDeps): void {
  const authenticate = bearerAuth(deps.tokens, { cacheMs: deps.tokenCacheMs, now: deps.now });
  const reader = (
    request: Parameters<typeof authenticate>[0],
    reply: FastifyReply,
  ): Caller | undefined => {
    const caller = authenticate(request, reply);
    if (caller !== undefined && !mayRead(caller.role)) {
      void problem(reply, 403, {
        error: "forbidden",
        message: `role ${caller.role} may not read tasks`,
      });
      return undefined;
    }
    return caller;
  };
  // Streams never end by themselves: end them when the API closes, or close would wait forever.
  app.addHook("preClose", (done) => {
    deps.stream.close();
    done();
  });
  const notFound = (reply: FastifyReply, id: string) =>
    problem(reply, 404, { error: "not_found", message: `no task ${id}` });

  app.get("/api/v1/tasks", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const query = TaskListQuery.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const q = query.data;
    return {
      tasks: deps.store.listTasks({
        kind: q.kind,
        state: q.state,
        siteId: q.site,
        district: q.district,
        ruleId: q.rule,
        flagged: q.flagged,
        fromMs: q.from,
        toMs: q.to,
        limit: q.limit ?? DEFAULT_LIMIT,
      }),
    };
  });

  app.get("/api/v1/tasks/stream", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const query = StreamQuery.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    if (!deps.stream.admit()) {
      return problem(reply, 503, {
        error: "unavailable",
        message: "too many stream clients; try again later",
      });
    }
    const lastId = Number(request.headers["last-event-id"] ?? Number.NaN);
    const kind = query.data.kind;
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    deps.stream.attach(
      reply.raw,
      (event) => kind === undefined || event.task.kind === kind,
      Number.isInteger(lastId) && lastId >= 0 ? deps.store.eventsAfter(lastId, 1_000) : [],
    );
    return reply;
  });

  app.get<{ Params: { id: string } }>("/api/v1/tasks/:id", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const task = deps.service.task(request.params.id);
    if (task === undefined) return notFound(reply, request.params.id);
    return { task, audit: deps.service.audit(task.id) };
  });

  app.post<{ Params: { id: string } }>("/api/v1/tasks/:id/transitions", (request, reply) => {
    const caller = authenticate(request, reply);
    if (caller === undefined) return reply;
    const body = TransitionRequest.safeParse(request.body);
    if (!body.success) return badRequest(reply, body.error);
    const task = deps.service.task(request.params.id);
    if (task === undefined) return notFound(reply, request.params.id);
    if (!mayAct(caller.role, task.kind)) {
      const kinds = kindsOf(caller.role);
      return problem(reply, 403, {
        error: "forbidden",
        message: `role ${caller.role} may not act on ${task.kind} tasks${kinds.length === 0 ? " (read only)" : `; it acts on ${kinds.join(", ")}`}`,
      });
    }
    const result = deps.service.transition(task.id, body.data, { name: caller.actor });
    if (!result.ok) {
      return result.error === "not_found"
        ? notFound(reply, task.id)
        : problem(reply, 409, { error: "conflict", message: result.message });
    }
    return { task: result.task, audit: deps.service.audit(task.id) };
  });

  app.get<{ Params: { id: string } }>("/api/v1/tasks/:id/evidence", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const query = EvidenceQuery.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const pkg = deps.store.evidence(request.params.id, query.data.sequence);
    if (pkg === undefined) {
      return problem(reply, 404, {
        error: "not_found",
        message: `no evidence package${query.data.sequence === undefined ? "" : ` ${query.data.sequence}`} for task ${request.params.id}`,
      });
    }
    if (query.data.format === "html") {
      // Escaped content, and a policy that would block a script even if escaping failed.
      return reply
        .type("text/html; charset=utf-8")
        .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'")
        .send(evidenceHtml(pkg));
    }
    return reply
      .header(
        "content-disposition",
        `attachment; filename="evidence-${pkg.taskId}-${pkg.sequence}.json"`,
      )
      .send(pkg);
  });

  app.get<{ Params: { id: string } }>("/api/v1/tasks/:id/evidence/verify", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const query = EvidenceQuery.safeParse(request.query);
    if (!query.success) return badRequest(reply, query.error);
    const pkg = deps.store.evidence(request.params.id, query.data.sequence);
    if (pkg === undefined)
      return problem(reply, 404, {
        error: "not_found",
        message: `no evidence package for task ${request.params.id}`,
      });
    return verifyEvidence(pkg);
  });

  app.post("/api/v1/evidence/verify", (request, reply) => {
    if (reader(request, reply) === undefined) return reply;
    const body = EvidencePackage.safeParse(request.body);
    if (!body.success) return badRequest(reply, body.error);
    return verifyEvidence(body.data);
  });
}

const json = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: "output", unrepresentable: "any" });

/** The task API's paths for the OpenAPI document. */
export function taskOpenApiPaths(): Record<string, unknown> {
  const security = [{ bearer: [] }];
  const error = (description: string) => ({
    description,
    content: { "application/json": { schema: json(TaskApiError) } },
  });
  const errors = {
    "400": error("Bad request; every problem named"),
    "401": error("No valid bearer token"),
    "403": error("The token's role may not do this"),
    "404": error("Unknown task"),
  };
  const ok = (schema: z.ZodType) => ({
    description: "OK",
    content: { "application/json": { schema: json(schema) } },
  });
  const idParam = {
    name: "id",
    in: "path",
    required: true,
    schema: { type: "string" },
    description: "task id",
  };
  const query = (names: Record<string, string>) =>
    Object.entries(names).map(([name, description]) => ({
      name,
      in: "query",
      required: false,
      schema: { type: "string" },
      description,
    }));
  return {
    "/api/v1/tasks": {
      get: {
        summary: "Tasks, newest first, filtered",
        security,
        parameters: query({
          kind: "enforcement | emergency | maintenance",
          state: "a lifecycle state, or open",
          site: "site id",
          district: "district",
          rule: "rule id",
          flagged: "true: only tasks past an SLA limit",
          from: "filed at or after (RFC 3339 or epoch ms)",
          to: "filed before",
          limit: "1..1000, default 100",
        }),
        responses: { "200": ok(TaskListResponse), ...errors },
      },
    },
    "/api/v1/tasks/stream": {
      get: {
        summary: "Live task events (server-sent events, event: task); resume with Last-Event-ID",
        security,
        parameters: query({ kind: "only tasks of this kind" }),
        responses: {
          "200": { description: "text/event-stream of TaskEvent" },
          "503": error("Too many stream clients"),
          ...errors,
        },
      },
    },
    "/api/v1/tasks/{id}": {
      get: {
        summary: "One task with its audit trail",
        security,
        parameters: [idParam],
        responses: { "200": ok(TaskDetailResponse), ...errors },
      },
    },
    "/api/v1/tasks/{id}/transitions": {
      post: {
        summary: "Move a task along its lifecycle (closing needs a reason)",
        security,
        parameters: [idParam],
        requestBody: {
          required: true,
          content: { "application/json": { schema: json(TransitionRequest) } },
        },
        responses: {
          "200": ok(TaskDetailResponse),
          ...errors,
          "409": error("Illegal transition; the allowed ones named"),
        },
      },
    },
    "/api/v1/tasks/{id}/evidence": {
      get: {
        summary: "The task's evidence package (newest, or ?sequence=n) as JSON or printable HTML",
        security,
        parameters: [
          idParam,
          ...query({ format: "json (default) | html", sequence: "package number, from 1" }),
        ],
        responses: { "200": ok(EvidencePackage), ...errors },
      },
    },
    "/api/v1/tasks/{id}/evidence/verify": {
      get: {
        summary: "Recompute the stored package's SHA-256 and compare",
        security,
        parameters: [idParam, ...query({ sequence: "package number, from 1" })],
        responses: { "200": ok(EvidenceVerification), ...errors },
      },
    },
    "/api/v1/evidence/verify": {
      post: {
        summary: "Verify an evidence package someone holds (as exported)",
        security,
        requestBody: {
          required: true,
          content: { "application/json": { schema: json(EvidencePackage) } },
        },
        responses: { "200": ok(EvidenceVerification), ...errors },
      },
    },
  };
}
