import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import {
  apiFailure,
  errorResponses,
  NoticeRequest,
  PoliceReferralRequest,
  StatementRequest,
  TaskDetailResponse,
} from "../../contracts/index.js";
import type { Caller } from "../auth/bearer.js";
import type { mayAct } from "../auth/roles.js";
import type { TransitionResult } from "../service.js";
import { actorOf, checkActs, checkScope } from "./tasks.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";

/*
 * The party's side of an enforcement case (issue #18 item 3): the notice to the party (告知), the
 * outcome of its statement-and-defence window (陈述、申辩), and a referral to the police (seed
 * point 25). Each needs a caller (token or session) in whose scope the case lies and who acts on
 * enforcement cases; a legal reviewer may also record the party's statement. Each change is one
 * transaction of the task service with its audit entry (notice_served, statement_recorded,
 * referred_to_police).
 */

/** 403 unless one of the caller's roles acts on the task's kind (or, where allowed, reviews). */
function checkActsOrReviews(caller: Caller, kind: Parameters<typeof mayAct>[1], reviewer = false) {
  if (reviewer && caller.roles.includes("legal_reviewer")) return;
  checkActs(caller, { kind });
}

const problems = (what: string) =>
  errorResponses({
    bad_request: `the body is not ${what}; every problem named`,
    unauthorized: "no valid bearer token or session",
    forbidden:
      "the task is outside the caller's scope, or the caller does not act on enforcement cases",
    not_found: "unknown task",
    conflict: `the task is not an enforcement case with a party, or ${what} cannot be recorded now (named)`,
    payload_too_large: "the body is larger than the API accepts",
    unsupported_media_type: "the body is not application/json",
  });

export const noticeRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  const answer = async (pending: Promise<TransitionResult>, id: string) => {
    const result = await pending;
    if (!result.ok) {
      throw result.error === "not_found"
        ? apiFailure("not_found", `no task ${id}`)
        : apiFailure(result.error, result.message);
    }
    return { task: result.task, audit: await deps.service.audit(id) };
  };
  const taskFor = async (caller: Caller, id: string) => {
    const task = await deps.service.task(id);
    if (task === undefined) throw apiFailure("not_found", `no task ${id}`);
    checkScope(caller, task);
    return task;
  };

  app.post(
    "/api/v1/tasks/:id/notice",
    {
      schema: {
        tags: ["tasks"],
        summary:
          "Record the notice to the party (告知): served when, how, by whom; opens the statement-and-defence window",
        security,
        params: TaskIdParams,
        body: NoticeRequest,
        response: { 200: TaskDetailResponse, ...problems("a notice") },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await taskFor(caller, request.params.id);
      checkActsOrReviews(caller, task.kind);
      return answer(deps.service.serveNotice(task.id, request.body, actorOf(caller)), task.id);
    },
  );

  app.post(
    "/api/v1/tasks/:id/statement",
    {
      schema: {
        tags: ["tasks"],
        summary:
          "Record the party's statement and defence (陈述、申辩): a statement, a hearing requested, or none once the window ended",
        security,
        params: TaskIdParams,
        body: StatementRequest,
        response: { 200: TaskDetailResponse, ...problems("a statement") },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await taskFor(caller, request.params.id);
      checkActsOrReviews(caller, task.kind, true);
      return answer(deps.service.recordStatement(task.id, request.body, actorOf(caller)), task.id);
    },
  );

  app.post(
    "/api/v1/tasks/:id/police-referral",
    {
      schema: {
        tags: ["tasks"],
        summary: "Record that the case was referred to the police (seed point 25), with a note",
        security,
        params: TaskIdParams,
        body: PoliceReferralRequest,
        response: { 200: TaskDetailResponse, ...problems("a police referral") },
      },
    },
    async (request) => {
      const caller = auth.callerOf(request);
      const task = await taskFor(caller, request.params.id);
      checkActsOrReviews(caller, task.kind);
      return answer(deps.service.referToPolice(task.id, request.body, actorOf(caller)), task.id);
    },
  );
  return Promise.resolve();
};
