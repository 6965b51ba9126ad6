import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import {
  apiFailure,
  AssignRequest,
  encodeTaskCursor,
  errorResponses,
  LevelRequest,
  ReviewRequest,
  TaskDetailResponse,
  TaskListQuery,
  TaskListResponse,
  TransitionRequest,
} from "../../contracts/index.js";
import type { Caller } from "../auth/bearer.js";
import type { TransitionResult } from "../service.js";
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

/** 403 unless one of the caller's roles acts on the task's kind. */
export function checkActs(
  caller: Caller,
  task: { kind: Parameters<typeof mayAct>[1] },
  verb = "act on",
): void {
  if (caller.roles.some((role) => mayAct(role, task.kind))) return;
  const kinds = [...new Set(caller.roles.flatMap((role) => kindsOf(role)))];
  throw apiFailure(
    "forbidden",
    `role ${caller.roles.join(", ")} may not ${verb} ${task.kind} tasks${kinds.length === 0 ? " (read only)" : `; it acts on ${kinds.join(", ")}`}`,
  );
}

/** The service's actor for a caller: the audit name, the identity for duties, the roles. */
export const actorOf = (caller: Caller) => ({
  name: caller.actor,
  id: caller.userId ?? `token:${caller.name}`,
  roles: caller.roles,
});

export const taskRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  const notFound = (id: string) => apiFailure("not_found", `no task ${id}`);
  /** A service result as the task and its audit trail, or its error. */
  const answer = async (pending: Promise<TransitionResult>, id: string) => {
    const result = await pending;
    if (!result.ok) {
      throw result.error === "not_found" ? notFound(id) : apiFailure(result.error, result.message);
    }
    return { task: result.task, audit: await deps.service.audit(id) };
  };

  app.get(
    "/api/v1/tasks",
    {
      schema: {
        tags: ["tasks"],
        summary:
          "Tasks filtered (state, kind, level, area, party, overdue, search), sorted, one page at a time (cursor)",
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
    async (request) => {
      const q = request.query;
      const scope = auth.callerOf(request).scope;
      const page = await deps.store.queryTasks({
        kind: q.kind,
        state: q.state,
        siteId: q.site,
        district: q.district,
        street: q.street,
        gridCell: q.grid,
        levels: q.level,
        party: q.party,
        ruleId: q.rule,
        flagged: q.flagged,
        overdue: q.overdue,
        nowMs: deps.now(),
        search: q.q,
        fromMs: q.from,
        toMs: q.to,
        // A user sees the tasks of their scope only.
        scope: scope.cityWide ? undefined : scope,
        sort: q.sort,
        after: q.cursor,
        limit: q.limit ?? DEFAULT_LIMIT,
      });
      return {
        tasks: page.tasks,
        ...(page.next === undefined ? {} : { nextCursor: encodeTaskCursor(page.next) }),
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
    async (request) => {
      const task = await deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(auth.callerOf(request), task);
      return { task, audit: await deps.service.audit(task.id) };
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
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(caller, task);
      // A legal reviewer acts on no kind of task, but closes the referred cases they reviewed.
      const reviewerCloses =
        request.body.to === "closed" &&
        task.graduated?.stage === "referred" &&
        caller.roles.includes("legal_reviewer");
      if (!reviewerCloses) checkActs(caller, task);
      const result = deps.service.transition(task.id, request.body, actorOf(caller));
      return answer(result, task.id);
    },
  );

  app.post(
    "/api/v1/tasks/:id/review",
    {
      schema: {
        tags: ["tasks"],
        summary: "A legal reviewer approves or rejects a referral for penalty (法制审核)",
        security,
        params: TaskIdParams,
        body: ReviewRequest,
        response: {
          200: TaskDetailResponse,
          ...errorResponses({
            bad_request: "the body is not a review; every problem named",
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller is not a legal reviewer, or the task is outside their scope",
            not_found: "unknown task",
            conflict: "the task has no referral awaiting review",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(caller, task);
      return answer(deps.service.review(task.id, request.body, actorOf(caller)), task.id);
    },
  );

  app.post(
    "/api/v1/tasks/:id/level",
    {
      schema: {
        tags: ["tasks"],
        summary: "Lower an emergency task's level, or lift it, with a reason",
        security,
        params: TaskIdParams,
        body: LevelRequest,
        response: {
          200: TaskDetailResponse,
          ...errorResponses({
            bad_request: "the body is not a level change; every problem named",
            unauthorized: "no valid bearer token or session",
            forbidden:
              "the caller does not act on emergency tasks, or the task is outside their scope",
            not_found: "unknown task",
            conflict: "not an open emergency task, or the level is not below the current one",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(caller, task);
      checkActs(caller, task);
      return answer(deps.service.changeLevel(task.id, request.body, actorOf(caller)), task.id);
    },
  );

  app.post(
    "/api/v1/tasks/:id/assign",
    {
      schema: {
        tags: ["tasks"],
        summary: "Assign the task to a person (a reassignment needs a reason)",
        security,
        params: TaskIdParams,
        body: AssignRequest,
        response: {
          200: TaskDetailResponse,
          ...errorResponses({
            bad_request: "the body is not an assignment; every problem named",
            unauthorized: "no valid bearer token or session",
            forbidden:
              "the caller may not act on the task, or the person's scope or roles do not cover it",
            not_found: "unknown task or user",
            conflict: "the task is closed, or a reassignment without a reason",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await deps.service.task(request.params.id);
      if (task === undefined) throw notFound(request.params.id);
      checkScope(caller, task);
      checkActs(caller, task);
      const user = await deps.tokens.users.get(request.body.userId);
      if (user === undefined || user.disabled) {
        throw apiFailure("not_found", `no enabled user ${request.body.userId}`);
      }
      if (!inScope(user.scope, task)) {
        throw apiFailure(
          "forbidden",
          `task ${task.id} is outside ${user.id}'s scope (${describeScope(user.scope)})`,
        );
      }
      if (!user.roles.some((role) => mayAct(role, task.kind))) {
        throw apiFailure(
          "forbidden",
          `${user.id} (${user.roles.join(", ")}) does not act on ${task.kind} tasks`,
        );
      }
      return answer(
        deps.service.assign(
          task.id,
          { userId: user.id, name: user.name, reason: request.body.reason },
          actorOf(caller),
        ),
        task.id,
      );
    },
  );
  return Promise.resolve();
};
