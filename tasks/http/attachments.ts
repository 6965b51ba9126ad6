import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  apiFailure,
  AttachmentListResponse,
  AttachmentParams,
  AttachmentResponse,
  AttachmentType,
  AttachmentUploadQuery,
  errorResponses,
} from "../../contracts/index.js";
import { detectAttachmentType } from "../attachments.js";
import { actorOf, checkActs, checkScope } from "./tasks.js";
import { security, TaskIdParams, type TaskPluginOptions } from "./options.js";

/*
 * Attachments of a task (issue #19): field photos and documents an officer uploads. The body of
 * the upload is the file itself with its Content-Type (or application/octet-stream), the name in
 * `?filename=`; at most `tasks.attachments.maxBytes` (413) and `maxPerTask` files a task (409); JPEG, PNG, WebP, HEIC or PDF by the
 * file's first bytes (415 otherwise, or when they contradict the declared type). The file is
 * stored under its SHA-256 (tasks/attachments.ts) and the hash recorded in the audit trail.
 * Uploading needs a role that acts on the task's kind; reading, any reader; both the task in the
 * caller's scope; a session caller's upload needs the CSRF token (the auth hook).
 */

/** The Content-Types an upload may declare: the accepted ones, and "look at the bytes". */
const UPLOAD_TYPES = [...AttachmentType.options, "image/heif", "application/octet-stream"];

export const attachmentRoutes: FastifyPluginAsyncZod<TaskPluginOptions> = (app, { deps, auth }) => {
  app.addHook("onRequest", auth.reader);
  const { files, maxBytes } = deps.attachments;
  // This plugin's own parsers only: the raw file as a Buffer (JSON, text and others: 415).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    UPLOAD_TYPES,
    { parseAs: "buffer", bodyLimit: maxBytes },
    (_request, body, done) => {
      done(null, body);
    },
  );
  const taskFor = async (request: Parameters<typeof auth.callerOf>[0], id: string) => {
    const caller = auth.callerOf(request);
    const task = await deps.service.task(id);
    if (task === undefined) throw apiFailure("not_found", `no task ${id}`);
    checkScope(caller, task);
    return { caller, task };
  };

  app.post(
    "/api/v1/tasks/:id/attachments",
    {
      bodyLimit: maxBytes,
      schema: {
        tags: ["tasks"],
        summary:
          "Upload a field photo or document (the body is the file; JPEG, PNG, WebP, HEIC or PDF); its SHA-256 goes into the audit trail",
        security,
        params: TaskIdParams,
        querystring: AttachmentUploadQuery,
        response: {
          201: AttachmentResponse,
          ...errorResponses({
            bad_request: "no file name, a bad one, or an empty body",
            unauthorized: "no valid bearer token or session",
            forbidden:
              "the task is outside the caller's scope, the caller's role does not act on tasks of its kind, or a session change without the CSRF token",
            not_found: "unknown task",
            conflict:
              "the task is closed, holds tasks.attachments.maxPerTask files already (default 50), or the same file is attached already",
            payload_too_large:
              "the file is larger than tasks.attachments.maxBytes (default 10 MiB)",
            unsupported_media_type:
              "the file is not JPEG, PNG, WebP, HEIC or PDF by its first bytes, or not the type its Content-Type says",
          }),
        },
      },
    },
    async (request, reply) => {
      const { caller, task } = await taskFor(request, request.params.id);
      checkActs(caller, task, "attach files to");
      const body: unknown = request.body;
      if (!Buffer.isBuffer(body)) {
        throw apiFailure(
          "unsupported_media_type",
          `send the file itself as the body with its Content-Type (${AttachmentType.options.join(", ")}) or application/octet-stream`,
        );
      }
      if (body.length === 0) {
        throw apiFailure("bad_request", "the body is empty: send the file", [
          { path: "(body)", message: "empty" },
        ]);
      }
      const type = detectAttachmentType(body);
      if (type === undefined) {
        throw apiFailure(
          "unsupported_media_type",
          "the file is not a JPEG, PNG, WebP, HEIC image or a PDF document (judged by its first bytes)",
        );
      }
      const declared = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
      const agrees =
        declared === "application/octet-stream" ||
        declared === type ||
        (declared === "image/heif" && type === "image/heic");
      if (!agrees) {
        throw apiFailure(
          "unsupported_media_type",
          `the Content-Type says ${declared ?? "nothing"} but the file is ${type} by its first bytes`,
        );
      }
      // Refusals the service would give, before any byte is written (it checks again in its
      // transaction): a closed task, a task holding its most files.
      const refusal = await deps.service.attachmentRefusal(task);
      if (refusal !== undefined) throw apiFailure("conflict", refusal);
      // Stored first (content-addressed: a file recorded nowhere is harmless), then recorded.
      const sha256 = await files.put(body);
      const result = await deps.service.addAttachment(
        task.id,
        { sha256, filename: request.query.filename, type, size: body.length },
        actorOf(caller),
      );
      if (!result.ok) throw apiFailure(result.error, result.message);
      if (result.attachment === undefined) throw apiFailure("internal", "attachment not recorded");
      return reply.code(201).send({ attachment: result.attachment });
    },
  );

  app.get(
    "/api/v1/tasks/:id/attachments",
    {
      schema: {
        tags: ["tasks"],
        summary: "A task's attachments, oldest first",
        security,
        params: TaskIdParams,
        response: {
          200: AttachmentListResponse,
          ...errorResponses({
            unauthorized: "no valid bearer token or session",
            forbidden: "the task is outside the caller's scope",
            not_found: "unknown task",
          }),
        },
      },
    },
    async (request) => {
      const { task } = await taskFor(request, request.params.id);
      return { attachments: await deps.store.attachments(task.id) };
    },
  );

  app.get(
    "/api/v1/tasks/:id/attachments/:sha256",
    {
      schema: {
        tags: ["tasks"],
        summary: "Download an attachment: the file with its type, as an attachment (nosniff)",
        security,
        params: AttachmentParams,
        response: {
          200: z.unknown().describe("the file's bytes, with its Content-Type"),
          ...errorResponses({
            bad_request: "the hash is not a SHA-256 in lowercase hex",
            unauthorized: "no valid bearer token or session",
            forbidden: "the task is outside the caller's scope",
            not_found: "unknown task, or no such attachment on it",
          }),
        },
      },
    },
    async (request, reply) => {
      const { task } = await taskFor(request, request.params.id);
      const attachment = await deps.store.attachment(task.id, request.params.sha256);
      if (attachment === undefined) {
        throw apiFailure("not_found", `task ${task.id} has no attachment ${request.params.sha256}`);
      }
      const bytes = await files.get(attachment.sha256);
      if (bytes === undefined) {
        throw apiFailure("not_found", `the file of attachment ${attachment.sha256} is missing`);
      }
      const ascii = attachment.filename.replace(/[^\x20-\x7e]|["\\]/g, "_");
      return reply
        .header("content-type", attachment.type)
        .header(
          "content-disposition",
          `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(attachment.filename)}`,
        )
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", "default-src 'none'; sandbox")
        .send(bytes);
    },
  );
  return Promise.resolve();
};
