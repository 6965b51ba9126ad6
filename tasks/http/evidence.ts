import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  apiFailure,
  errorResponses,
  EvidenceKey,
  EvidencePackage,
  EvidenceVerification,
} from "../../contracts/index.js";
import { renderEvidenceDocument } from "../evidence-html.js";
import { verifyAgainstStore } from "../evidence-seal.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";
import { checkScope } from "./tasks.js";

/*
 * Evidence: a task's package exported as JSON or printable HTML, the stored package verified, a
 * package someone holds verified against the stored one, and the deployment's public evidence
 * keys. Every route but the keys needs a bearer token (each route's own hook): the keys are
 * public, so anyone holding a package can check its signature without an account.
 */

const Sequence = z
  .string()
  .regex(/^\d+$/, { error: "must be a whole number" })
  .transform(Number)
  .pipe(z.number().int().min(1, { error: "packages are numbered from 1" }))
  .optional()
  .describe("package number, from 1; default the newest");

const Language = z
  .enum(["zh-CN", "en"], { error: "language must be zh-CN or en" })
  .optional()
  .describe("language of the printable document (format=html): zh-CN or en; default configured");

const EvidenceQuery = z.strictObject({
  format: z
    .enum(["json", "html"], { error: "format must be json or html" })
    .default("json")
    .describe("json (default) or html"),
  sequence: Sequence,
  language: Language,
});
const VerifyQuery = z.strictObject({
  format: z.enum(["json", "html"], { error: "format must be json or html" }).optional(),
  sequence: Sequence,
});

/** Body of `GET /api/v1/evidence/keys` (and the output of `citywatch evidence keys`). */
export const EvidenceKeysResponse = z.object({
  keys: z.array(EvidenceKey).describe("every key that signed or signs packages, oldest first"),
});

const errors = errorResponses({
  bad_request: "a query parameter is malformed or unknown",
  unauthorized: "no valid bearer token",
  forbidden: "the task is outside the caller's scope",
  not_found: "no such task, or no evidence package (with that number) for it",
});

/** The body as the client sent it (before the schema dropped members it does not know). */
const RAW_BODY = Symbol("evidence package as sent");
type WithRaw = FastifyRequest & { [RAW_BODY]?: unknown };

export const evidenceRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = async (
  app,
  { deps, auth },
) => {
  const reader = auth.reader;
  const keys = () => deps.keyring.publicKeys();
  /** 403 for a task outside the caller's scope (as the task routes answer). */
  const inScope = async (request: FastifyRequest, taskId: string) => {
    const task = await deps.store.task(taskId);
    if (task !== undefined) checkScope(auth.callerOf(request), task);
  };

  app.get(
    "/api/v1/evidence/keys",
    {
      schema: {
        tags: ["evidence"],
        summary:
          "The deployment's public evidence keys (Ed25519, SPKI PEM) with their validity: no token needed",
        security: [],
        response: { 200: EvidenceKeysResponse },
      },
    },
    () => ({ keys: keys() }),
  );

  app.get(
    "/api/v1/tasks/:id/evidence",
    {
      onRequest: reader,
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
    async (request, reply) => {
      const { format, sequence, language } = request.query;
      await inScope(request, request.params.id);
      const pkg = await deps.store.evidence(request.params.id, sequence);
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
        return renderEvidenceDocument(pkg, {
          language: language ?? deps.evidenceLanguage,
          // Where the public keys are: printed on the document (absent: no public URL configured).
          verifyUrl: deps.evidenceLinks?.verifyUrl,
        });
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
      onRequest: reader,
      schema: {
        tags: ["evidence"],
        summary:
          "Verify the stored package (newest, or ?sequence=n): hash, Ed25519 signature, key validity at sealing, link to the previous package",
        security,
        params: TaskIdParams,
        querystring: VerifyQuery,
        response: { 200: EvidenceVerification, ...errors },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { sequence } = request.query;
      await inScope(request, id);
      const pkg = await deps.store.evidence(id, sequence);
      if (pkg === undefined)
        throw apiFailure(
          "not_found",
          (await deps.store.task(id)) === undefined
            ? `no task ${id}`
            : `no evidence package${sequence === undefined ? "" : ` ${sequence}`} for task ${id}`,
        );
      return verifyAgainstStore(pkg, keys(), deps.store, {
        taskId: id,
        sequence: sequence ?? (await deps.store.evidenceCount(id)),
      });
    },
  );

  app.post(
    "/api/v1/evidence/verify",
    {
      onRequest: reader,
      // The package exactly as sent: the hash and the comparison cover members the schema does not know.
      preValidation: (request, _reply, done) => {
        (request as WithRaw)[RAW_BODY] = request.body;
        done();
      },
      schema: {
        tags: ["evidence"],
        summary:
          "Verify an evidence package someone holds: hash, signature, key validity, and the stored package of its task and number (every difference named)",
        security,
        body: EvidencePackage,
        response: {
          200: EvidenceVerification,
          ...errorResponses({
            bad_request: "the body is not an evidence package; every problem named",
            unauthorized: "no valid bearer token",
            forbidden: "the package's task is outside the caller's scope",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request) => {
      await inScope(request, request.body.taskId);
      return verifyAgainstStore((request as WithRaw)[RAW_BODY] ?? request.body, keys(), deps.store);
    },
  );
  return Promise.resolve();
};
