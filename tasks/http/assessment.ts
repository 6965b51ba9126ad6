import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { apiFailure, errorResponses } from "../../contracts/index.js";
import { AssessmentQuery, AssessmentReport } from "../../contracts/model/assessment.js";
import { assessFrom, type AssessmentSettings, reportsCsv } from "../assessment.js";
import { describeScope } from "../auth/scope.js";
import { security, type TaskPluginOptions } from "./options.js";

/*
 * GET /api/v1/assessment?from=&to=&by=&format=: the assessment report of the teams
 * (tasks/assessment.ts, docs/tasks.md Assessment) as JSON, or as CSV to download. For the admin
 * and the command centre roles. A caller with a scope (a user's token or session) gets the report
 * of the tasks in their scope only: the groups and totals count those tasks, and the report
 * names the scope; city-wide callers get the whole city.
 */

declare module "../app.js" {
  interface TaskApiDeps {
    /** The SLA limits and working calendar of the assessment report; absent: no report (503). */
    readonly assessment?: AssessmentSettings | undefined;
  }
}

const ROLES = ["admin", "command_centre"] as const;

export const assessmentApi: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.authenticate);

  app.get(
    "/api/v1/assessment",
    {
      schema: {
        tags: ["tasks"],
        summary:
          "Assessment report of the teams for a period of local dates, per district, street or team (JSON or CSV)",
        security,
        querystring: AssessmentQuery,
        response: {
          200: {
            description:
              "The report (JSON), or the same as CSV with a header row (RFC 4180, a download)",
            content: {
              "application/json": { schema: AssessmentReport },
              "text/csv": { schema: z.string() },
            },
          },
          ...errorResponses({
            bad_request:
              "a query parameter is malformed, unknown, or the period is empty or longer than 366 days",
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller is neither admin nor command centre",
            unavailable: "the task system was started without the report's settings",
          }),
        },
      },
    },
    async (request, reply) => {
      const caller = auth.callerOf(request);
      if (!caller.roles.some((role) => (ROLES as readonly string[]).includes(role))) {
        throw apiFailure(
          "forbidden",
          `the assessment report is for ${ROLES.join(" and ")}; role ${caller.roles.join(", ")} may not read it`,
        );
      }
      const settings = deps.assessment;
      if (settings === undefined) {
        throw apiFailure("unavailable", "the assessment report is not configured on this server");
      }
      const { format, ...period } = request.query;
      const report = await assessFrom(deps.store, period, settings, deps.now(), caller.scope);
      request.log.info(
        {
          by: period.by,
          from: period.from,
          to: period.to,
          scope: describeScope(caller.scope),
        },
        "assessment report",
      );
      void reply.header("cache-control", "private, no-store");
      if (format === "csv") {
        void reply
          .type("text/csv; charset=utf-8")
          .header(
            "content-disposition",
            `attachment; filename="assessment-${period.by}-${period.from}-${period.to}.csv"`,
          );
        return reportsCsv([report]);
      }
      return report;
    },
  );
  return Promise.resolve();
};
