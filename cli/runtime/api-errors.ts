import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import {
  type ApiError,
  type ApiErrorCode,
  ApiFailure,
  apiFailure,
  badRequest,
  codeOfStatus,
  headersOf,
  statusOf,
} from "../../contracts/index.js";

/*
 * How the API answers every error: the error catalogue of contracts/model/errors.ts, one body
 * shape `{ error, message, problems? }`. Routes and hooks throw `apiFailure(code, …)`; the zod
 * type provider's validation errors become `bad_request` naming each problem; the framework's own
 * 4xx (a body that is not JSON, too large, of another media type, a URL that cannot be decoded)
 * get the catalogue's code for their status; anything else (the time-series store failing) is
 * `unavailable` with the failure's message. Unknown routes are the catalogue's `not_found`.
 */

/**
 * Headers of every API answer: a browser must not guess a JSON (or a raw dead-letter payload)
 * to be HTML (`nosniff`), and no cache may keep an answer that needed a bearer token (`no-store`;
 * a route may set its own Cache-Control).
 */
export const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
} as const;

/** onRequest hook: SECURITY_HEADERS on the answer (set first, so errors and 404s carry them). */
export function securityHeaders(
  _request: FastifyRequest,
  reply: FastifyReply,
  done: () => void,
): void {
  reply.headers(SECURITY_HEADERS);
  done();
}

/** Whether a request's query, parameters or JSON body holds the NUL character, in a key or a value. */
function holdsNul(value: unknown, depth = 0): boolean {
  if (typeof value === "string") return value.includes("\u0000");
  // Deeper than any request the API takes: the route's schema refuses such a body anyway.
  if (value === null || typeof value !== "object" || Buffer.isBuffer(value) || depth > 32) {
    return false;
  }
  if (Array.isArray(value)) return value.some((v) => holdsNul(v, depth + 1));
  return Object.entries(value).some(([k, v]) => k.includes("\u0000") || holdsNul(v, depth + 1));
}

/**
 * preValidation hook: a request whose text holds the NUL character (U+0000) is refused (400)
 * before any route sees it. No field of the API has a use for it, PostgreSQL's text cannot store
 * it, and a record kept in one store must be keepable in the other (tasks/store.ts,
 * checkAuditText). Uploaded files (binary bodies) are not text and pass.
 */
export function refuseNul(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  if (holdsNul(request.query) || holdsNul(request.params) || holdsNul(request.body)) {
    void sendApiError(reply, "bad_request", {
      error: "bad_request",
      message: "text in a request must not contain the NUL character (U+0000)",
    });
    return;
  }
  done();
}

/** Send an error answer: the catalogue's status and headers (401: the bearer challenge). */
export function sendApiError(reply: FastifyReply, code: ApiErrorCode, body: ApiError) {
  return reply
    .code(statusOf(code))
    .headers({ ...SECURITY_HEADERS, ...headersOf(code) })
    .send(body);
}

/** A validation problem's path as the API names it: `limit`, `values.LAeq`, `(root)`. */
export const problemPath = (instancePath: string): string => {
  const path = instancePath
    .split("/")
    .filter((p) => p !== "")
    .join(".");
  return path === "" ? "(root)" : path;
};

/** The failure an error stands for. */
export function failureOf(error: FastifyError | ApiFailure | Error): ApiFailure {
  if (error instanceof ApiFailure) return error;
  const validation = (error as FastifyError).validation;
  if (Array.isArray(validation) && validation.length > 0) {
    return badRequest(
      validation.map((v) => ({
        path: problemPath(v.instancePath),
        message: v.message ?? "invalid",
      })),
    );
  }
  const status = (error as FastifyError).statusCode ?? 500;
  if (status >= 400 && status < 500) return apiFailure(codeOfStatus(status), error.message);
  return apiFailure("unavailable", error.message);
}

export function apiErrorHandler(
  error: FastifyError | ApiFailure,
  _request: FastifyRequest,
  reply: FastifyReply,
) {
  const failure = failureOf(error);
  return sendApiError(reply, failure.body.error, failure.body);
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  return sendApiError(reply, "not_found", {
    error: "not_found",
    message: `no route ${request.method} ${request.url.split("?")[0]}`,
  });
}
