import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import {
  apiFailure,
  errorResponses,
  TaskDetailResponse,
  TaskListQuery,
  TaskListResponse,
  TransitionRequest,
} from "../../contracts/index.js";
import type { Caller } from "../auth/bearer.js";
import { kindsOf, mayAct } from "../auth/roles.js";
import { describeScope, inScope } from "../auth/scope.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";

/*
 * The task routes: the list, one task with its audit trail, transitions. Every request needs a
 * caller (token or session) of a role that may read tasks (this plugin's own onRequest hook); a
 * task outside the caller's scope is refused (403); a transition also needs a role that acts on
 * the task's kind.
 */

/** 403 unless the task lies in the caller's scope. */
export function checkScope(caller: Caller, task: Parameters<typeof inScope>[1] & { id: string }) {
  if (!inScope(caller.scope, task)) {
    throw apiFailure(
      "forbidden",
      `task ${task.id} is outside your scope (${describeScope(caller.scope)}); it is routed to ${[task.routing.district, task.routing.street, task.routing.gridCell].filter((x) => x !== undefined).join(" / ") || "no area (city-wide work)"}`,
    );
  }
}

const DEFAULT_LIMIT = 100;

export const taskRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  const notFound = (id: string) => apiFailure("not_found", `no task ${id}`);

  app.get(
    "/api/v1/tasks",
    {
      schema: {
        tags: ["tasks"],
        summary: "Tasks, newest first, filtered",
        security,
        querystring: TaskListQuery,
        response: {
          200: TaskListResponse,
          ...errorResponses({
            bad_request: "a query parameter is malformed, unknown or out of range",
            unauthorized: "no valid bearer token",
          }),
        },
      },
    },
    (request) => {
      const q = request.query;
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
    },
  );

  app.get(
    "/api/v1/tasks/:id",
    {
      schema: {
        tags: ["tasks"],
        summary: "One task with its audit trail",
        security,
        params: TaskIdParams,
        response: {
          200: TaskDetailResponse,
          ...errorResponses({
            bad_request: "the task id is malformed",
            unauthorized: "no valid bearer token",
            forbidden: "the task is outside the caller's scope",
            not_found: "unknown task",
          }),
        },
      },
    },
    (request) => {
      const task = deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(auth.callerOf(request), task);
      return { task, audit: deps.service.audit(task.id) };
    },
  );

  app.post(
    "/api/v1/tasks/:id/transitions",
    {
      schema: {
        tags: ["tasks"],
        summary: "Move a task along its lifecycle (closing needs a reason)",
        security,
        params: TaskIdParams,
        body: TransitionRequest,
        response: {
          200: TaskDetailResponse,
          ...errorResponses({
            bad_request: "the body is not a transition request; every problem named",
            unauthorized: "no valid bearer token",
            forbidden:
              "the task is outside the caller's scope, or the caller's role does not act on tasks of this kind",
            not_found: "unknown task",
            conflict: "a transition the lifecycle does not allow; the allowed ones named",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    (request) => {
      const caller = auth.callerOf(request);
      const task = deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(caller, task);
      if (!caller.roles.some((role) => mayAct(role, task.kind))) {
        const kinds = [...new Set(caller.roles.flatMap((role) => kindsOf(role)))];
        throw apiFailure(
          "forbidden",
          `role ${caller.roles.join(", ")} may not act on ${task.kind} tasks${kinds.length === 0 ? " (read only)" : `; it acts on ${kinds.join(", ")}`}`,
        );
      }
      const result = deps.service.transition(task.id, request.body, { name: caller.actor });
      if (!result.ok) {
        throw result.error === "not_found"
          ? notFound(task.id)
          : apiFailure("conflict", result.message);
      }
      return { task: result.task, audit: deps.service.audit(task.id) };
    },
  );
  return Promise.resolve();
};
