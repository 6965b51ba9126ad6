import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  apiFailure,
  errorResponses,
  EvidencePackage,
  EvidenceVerification,
} from "../../contracts/index.js";
import { evidenceHtml } from "../evidence-html.js";
import { verifyEvidence } from "../evidence.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";

/*
 * Evidence: a task's package exported as JSON or printable HTML, the stored package verified, and
 * a package someone holds verified. Every request needs a bearer token (this plugin's own hook).
 */

const Sequence = z
  .string()
  .regex(/^\d+$/, { error: "must be a whole number" })
  .transform(Number)
  .optional()
  .describe("package number, from 1; default the newest");

const EvidenceQuery = z.strictObject({
  format: z
    .enum(["json", "html"], { error: "format must be json or html" })
    .default("json")
    .describe("json (default) or html"),
  sequence: Sequence,
});
const VerifyQuery = z.strictObject({
  format: z.enum(["json", "html"], { error: "format must be json or html" }).optional(),
  sequence: Sequence,
});

const errors = errorResponses({
  bad_request: "a query parameter is malformed or unknown",
  unauthorized: "no valid bearer token",
  not_found: "no such task, or no evidence package (with that number) for it",
});

export const evidenceRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);

  app.get(
    "/api/v1/tasks/:id/evidence",
    {
      schema: {
        tags: ["evidence"],
        summary: "The task's evidence package (newest, or ?sequence=n) as JSON or printable HTML",
        security,
        params: TaskIdParams,
        querystring: EvidenceQuery,
        response: {
          200: {
            description: "The evidence package (JSON as a download, or an HTML page to print)",
            content: {
              "application/json": { schema: EvidencePackage },
              "text/html": { schema: z.string() },
            },
          },
          ...errors,
        },
      },
    },
    (request, reply) => {
      const { format, sequence } = request.query;
      const pkg = deps.store.evidence(request.params.id, sequence);
      if (pkg === undefined) {
        throw apiFailure(
          "not_found",
          `no evidence package${sequence === undefined ? "" : ` ${sequence}`} for task ${request.params.id}`,
        );
      }
      if (format === "html") {
        // Escaped content, and a policy that would block a script even if escaping failed.
        void reply
          .type("text/html; charset=utf-8")
          .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'");
        return evidenceHtml(pkg);
      }
      void reply.header(
        "content-disposition",
        `attachment; filename="evidence-${pkg.taskId}-${pkg.sequence}.json"`,
      );
      return pkg;
    },
  );

  app.get(
    "/api/v1/tasks/:id/evidence/verify",
    {
      schema: {
        tags: ["evidence"],
        summary: "Recompute the stored package's SHA-256 and compare",
        security,
        params: TaskIdParams,
        querystring: VerifyQuery,
        response: { 200: EvidenceVerification, ...errors },
      },
    },
    (request) => {
      const pkg = deps.store.evidence(request.params.id, request.query.sequence);
      if (pkg === undefined)
        throw apiFailure("not_found", `no evidence package for task ${request.params.id}`);
      return verifyEvidence(pkg);
    },
  );

  app.post(
    "/api/v1/evidence/verify",
    {
      schema: {
        tags: ["evidence"],
        summary: "Verify an evidence package someone holds (as exported)",
        security,
        body: EvidencePackage,
        response: {
          200: EvidenceVerification,
          ...errorResponses({
            bad_request: "the body is not an evidence package; every problem named",
            unauthorized: "no valid bearer token",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    (request) => verifyEvidence(request.body),
  );
  return Promise.resolve();
};
