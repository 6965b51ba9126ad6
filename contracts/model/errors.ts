import { z } from "zod";

/*
 * The error catalogue of the HTTP API: every code an answer can carry, with its HTTP status and
 * when it is used. Every route answers errors through it (routes throw `apiFailure(code, …)`,
 * the API's error handler writes the body), so an error has the same shape whichever part of the
 * product answers it — readings, tasks, evidence, the live stream, health.
 */
export const API_ERRORS = {
  bad_request: {
    status: 400,
    when: "a query parameter, path parameter or body failed validation (each problem named); a body that is not valid JSON; a URL that cannot be decoded",
  },
  bad_range: {
    status: 400,
    when: "a query's from or to outside the instants every store can hold (±9223372036854 ms since 1970), on any store",
  },
  unauthorized: {
    status: 401,
    when: "no bearer token, or an unknown or revoked one",
    /** The challenge of RFC 6750 §3. */
    headers: { "www-authenticate": 'Bearer realm="citywatch"' },
  },
  forbidden: { status: 403, when: "the token's role may not do this" },
  not_found: {
    status: 404,
    when: "no such route, device, task or evidence package; a device without readings",
  },
  conflict: { status: 409, when: "a task transition its lifecycle does not allow" },
  payload_too_large: { status: 413, when: "a request body above the server's body limit" },
  unsupported_media_type: { status: 415, when: "a request body that is not application/json" },
  too_many_requests: {
    status: 429,
    when: "the caller's live streams or queries in flight are at their bound (per token, per user)",
  },
  internal: { status: 500, when: "reserved: a fault of the API itself" },
  unavailable: {
    status: 503,
    when: "the time-series store could not answer; too many live-stream clients",
  },
} as const satisfies Record<
  string,
  { readonly status: number; readonly when: string; readonly headers?: Record<string, string> }
>;

export type ApiErrorCode = keyof typeof API_ERRORS;
export const ApiErrorCode = z.enum(Object.keys(API_ERRORS) as [ApiErrorCode, ...ApiErrorCode[]]);

/** The HTTP status of an error code. */
export const statusOf = (code: ApiErrorCode): number => API_ERRORS[code].status;

/** The headers an answer with this code carries (401: the bearer challenge). */
export const headersOf = (code: ApiErrorCode): Readonly<Record<string, string>> => {
  const entry = API_ERRORS[code] as { readonly headers?: Readonly<Record<string, string>> };
  return entry.headers ?? {};
};

/** One problem of a request: where (`limit`, `to`, `(root)` for the whole query or body), and what. */
export const ApiProblem = z.object({ path: z.string(), message: z.string() });
export type ApiProblem = z.infer<typeof ApiProblem>;
type Problem = Readonly<ApiProblem>;

/** Body of every 4xx/5xx answer: a stable code, a sentence, and for 400 each problem. */
export const ApiError = z
  .object({
    error: ApiErrorCode,
    message: z.string(),
    problems: z.array(ApiProblem).optional(),
  })
  .meta({ id: "ApiError" });
export type ApiError = z.infer<typeof ApiError>;

/** An error a route throws; the API's error handler answers it with `status` and `body`. */
export class ApiFailure extends Error {
  readonly statusCode: number;
  readonly body: ApiError;

  constructor(code: ApiErrorCode, message: string, problems?: readonly Problem[]) {
    super(message);
    this.name = "ApiFailure";
    this.statusCode = statusOf(code);
    this.body = {
      error: code,
      message,
      ...(problems === undefined ? {} : { problems: problems.map((p) => ({ ...p })) }),
    };
  }
}

/** The error to throw for `code`. */
export const apiFailure = (
  code: ApiErrorCode,
  message: string,
  problems?: readonly Problem[],
): ApiFailure => new ApiFailure(code, message, problems);

/** A 400 naming every problem; the message lists them as `path: message`, joined by `; `. */
export const badRequest = (problems: readonly Problem[]): ApiFailure =>
  new ApiFailure(
    "bad_request",
    problems.map((p) => `${p.path}: ${p.message}`).join("; "),
    problems,
  );

/** The error code a status stands for: the catalogue's, else bad_request (4xx) or unavailable. */
export function codeOfStatus(status: number): ApiErrorCode {
  const found = (Object.entries(API_ERRORS) as Array<[ApiErrorCode, { status: number }]>).find(
    ([, e]) => e.status === status,
  );
  if (found !== undefined) return found[0];
  return status >= 400 && status < 500 ? "bad_request" : "unavailable";
}

/**
 * The error answers of a route for its OpenAPI document: `{ status: ApiError described }` for
 * each code named, with the route's own words for when it happens.
 */
export function errorResponses(
  when: Partial<Record<ApiErrorCode, string>>,
): Record<number, typeof ApiError> {
  const out: Record<number, typeof ApiError> = {};
  for (const [code, description] of Object.entries(when) as Array<[ApiErrorCode, string]>)
    out[statusOf(code)] = ApiError.describe(`${code}: ${description}`);
  return out;
}
