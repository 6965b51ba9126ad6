import { inScope } from "../auth/scope.js";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { apiFailure, errorResponses, TaskEvent, TaskKind } from "../../contracts/index.js";
import { security, type TaskPluginOptions } from "./options.js";

/*
 * The live task stream (server-sent events, `event: task`), resumable with Last-Event-ID. Every
 * request needs a bearer token (this plugin's own hook). A token or user at its cap of streams gets
 * 429; beyond the global limit other roles get 503 while admins still have room (adminReserve).
 */

const StreamQuery = z.strictObject({
  kind: TaskKind.optional().describe("only tasks of this kind"),
});

/** Events replayed at most on a resume with Last-Event-ID. */
const MAX_REPLAY = 1_000;

export const streamRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  // Streams never end by themselves: end them when the API closes, or close would wait forever.
  app.addHook("preClose", (done) => {
    deps.stream.close();
    done();
  });

  app.get(
    "/api/v1/tasks/stream",
    {
      schema: {
        tags: ["tasks"],
        summary: "Live task events (server-sent events, event: task); resume with Last-Event-ID",
        security,
        querystring: StreamQuery,
        response: {
          200: {
            description: "A text/event-stream of task events; `: heartbeat` comments keep it open",
            content: { "text/event-stream": { schema: TaskEvent } },
          },
          ...errorResponses({
            bad_request: "a query parameter is malformed or unknown",
            unauthorized: "no valid bearer token",
            too_many_requests: "the token or its user holds its cap of live streams",
            unavailable: "too many stream clients; try again later",
          }),
        },
      },
    },
    async (request, reply) => {
      // HEAD (Fastify answers it with this handler) says what a GET would open, and opens nothing.
      if (request.method === "HEAD") {
        reply.hijack();
        reply.raw.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache",
          "x-content-type-options": "nosniff",
        });
        reply.raw.end();
        return;
      }
      const caller = auth.callerOf(request);
      const admission = deps.stream.admit(caller);
      if (!admission.ok) throw apiFailure(admission.code, admission.message);
      const lastId = Number(request.headers["last-event-id"] ?? Number.NaN);
      const kind = request.query.kind;
      reply.hijack();
      reply.raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      deps.stream.attach(
        reply.raw,
        // A user hears of the tasks of their scope only.
        (event) =>
          (kind === undefined || event.task.kind === kind) && inScope(caller.scope, event.task),
        Number.isInteger(lastId) && lastId >= 0
          ? await deps.store.eventsAfter(lastId, MAX_REPLAY)
          : [],
        caller,
      );
    },
  );
  return Promise.resolve();
};
