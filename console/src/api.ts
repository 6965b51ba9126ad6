import type { SessionInfo } from "../../contracts/model/people.js";

/*
 * The API as the console calls it: same origin, the session cookie (httpOnly, sent by the
 * browser), and the session's CSRF token in x-csrf-token on every change (tasks/auth/bearer.ts).
 * Every error answers { error, message, problems? } (contracts/model/errors.ts).
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems: ReadonlyArray<{ path: string; message: string }> = [],
  ) {
    super(message);
  }
}

let csrf: string | undefined;
let onUnauthorized: (() => void) | undefined;

export const setCsrf = (token: string | undefined): void => {
  csrf = token;
};
export const whenUnauthorized = (handler: () => void): void => {
  onUnauthorized = handler;
};

interface ErrorBody {
  error?: string;
  message?: string;
  problems?: Array<{ path: string; message: string }>;
}

export async function api<T>(
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  path: string,
  body?: unknown,
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  // A file (an attachment) goes as it is, with its own type; anything else as JSON.
  const file = body instanceof Blob ? body : undefined;
  if (body !== undefined)
    headers["content-type"] =
      file === undefined ? "application/json" : file.type || "application/octet-stream";
  if (method !== "GET" && csrf !== undefined) headers["x-csrf-token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    ...(body === undefined ? {} : { body: file ?? JSON.stringify(body) }),
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const e = (parsed ?? {}) as ErrorBody;
    if (response.status === 401 && !path.startsWith("/api/v1/session")) onUnauthorized?.();
    throw new ApiError(
      response.status,
      e.error ?? String(response.status),
      e.message ?? response.statusText,
      e.problems ?? [],
    );
  }
  return parsed as T;
}

export const getSession = () => api<SessionInfo>("GET", "/api/v1/session");
export const signIn = (username: string, password: string) =>
  api<SessionInfo>("POST", "/api/v1/session", { username, password });
export const signOut = () => api<null>("DELETE", "/api/v1/session");
