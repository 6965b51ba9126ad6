import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { FastifyReply } from "fastify";
import { z } from "zod";
import {
  apiFailure,
  badRequest,
  errorResponses,
  LoginRequest,
  SessionInfo,
  User,
  UserId,
  UserInput,
} from "../../contracts/index.js";
import { cookieValue, SESSION_COOKIE, type BearerAuth } from "../auth/bearer.js";
import type { LoginLimiter } from "../auth/login-limit.js";
import { PasswordPolicyError } from "../auth/password.js";
import type { AsyncTokenStore } from "../auth/store-port.js";
import { UserError } from "../auth/users.js";

/*
 * People on the API: sign-in and sign-out of the browser (a session cookie, httpOnly,
 * SameSite=Strict, Secure behind HTTPS, and a CSRF token to send back on changes), who is signed
 * in, a user's own password, and the user accounts (admins only).
 */

export interface SessionPluginOptions {
  /** Users and sessions (tokens.db, or PostgreSQL shared by the nodes). */
  readonly tokens: AsyncTokenStore;
  readonly auth: BearerAuth;
  readonly limiter: LoginLimiter;
  /** Mark the cookie Secure (the deployment is reached over HTTPS). */
  readonly secureCookie: boolean;
}

const security = [{ bearer: [] }, { session: [] }];

const PasswordChange = z.strictObject({
  current: z.string().min(1).max(1_024),
  password: z.string().min(1).max(1_024),
});
const PasswordSet = z.strictObject({ password: z.string().min(1).max(1_024) });
const UserParams = z.object({ id: UserId.describe("user name") });
const UserChange = UserInput.omit({ id: true })
  .partial()
  .extend({ disabled: z.boolean().optional() });
const UserCreate = UserInput.extend({
  password: z.string().min(1).max(1_024).optional().describe("absent: set later"),
});

function cookie(value: string, maxAgeS: number, secure: boolean): string {
  return [
    `${SESSION_COOKIE}=${value}`,
    "Path=/",
    "HttpOnly",
    "SameSite=Strict",
    `Max-Age=${Math.max(0, Math.floor(maxAgeS))}`,
    ...(secure ? ["Secure"] : []),
  ].join("; ");
}

/** A user-facing refusal of the user store or the password policy as a 400/409/404. */
function userFailure(error: unknown): never {
  if (error instanceof PasswordPolicyError)
    throw badRequest([{ path: "password", message: error.message }]);
  if (error instanceof UserError) {
    if (/exists/.test(error.message)) throw apiFailure("conflict", error.message);
    if (/^no user/.test(error.message)) throw apiFailure("not_found", error.message);
    throw apiFailure("bad_request", error.message);
  }
  throw error;
}

export const sessionApi: FastifyPluginAsyncZod<SessionPluginOptions> = (app, options) => {
  const { tokens, auth, limiter, secureCookie } = options;
  const limits = auth.sessionLimits;
  const users = tokens.users;
  const noStore = (reply: FastifyReply) => void reply.header("cache-control", "no-store");

  app.post(
    "/api/v1/session",
    {
      schema: {
        tags: ["people"],
        summary: "Sign in: sets the session cookie and answers the CSRF token",
        security: [],
        body: LoginRequest,
        response: {
          200: SessionInfo,
          ...errorResponses({
            bad_request: "the body is not a sign-in request",
            unauthorized: "wrong user name or password, or the user is disabled",
            too_many_requests: "too many failed sign-ins for this user name or address; wait",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request, reply) => {
      const username = request.body.username.trim().toLowerCase();
      const wait = limiter.waitMs(username, request.ip);
      if (wait > 0) {
        void reply.header("retry-after", String(Math.ceil(wait / 1_000)));
        throw apiFailure(
          "too_many_requests",
          `too many failed sign-ins; try again in ${Math.ceil(wait / 1_000)} s`,
        );
      }
      const user = await users.checkPassword(username, request.body.password);
      if (user === undefined) {
        limiter.failed(username, request.ip);
        request.log.warn({ user: username }, "sign-in refused");
        // One answer for an unknown name, a wrong password and a disabled user.
        throw apiFailure("unauthorized", "wrong user name or password");
      }
      limiter.succeeded(username);
      const { cookie: value, session } = await users.startSession(user.id, limits);
      request.log.info({ user: user.id }, "signed in");
      noStore(reply);
      void reply.header("set-cookie", cookie(value, limits.maxMs / 1_000, secureCookie));
      return { user: session.user, csrfToken: session.csrf, expiresAt: session.expiresAt };
    },
  );

  app.get(
    "/api/v1/session",
    {
      onRequest: auth.authenticate,
      schema: {
        tags: ["people"],
        summary: "Who is signed in (a session cookie), with the CSRF token",
        security: [{ session: [] }],
        response: {
          200: SessionInfo,
          ...errorResponses({ unauthorized: "no session, or it ended" }),
        },
      },
    },
    async (request, reply) => {
      const value = cookieValue(request.headers.cookie, SESSION_COOKIE);
      const session = value === undefined ? undefined : await users.session(value, limits);
      if (session === undefined) {
        throw apiFailure("unauthorized", "no session: sign in with POST /api/v1/session");
      }
      noStore(reply);
      return { user: session.user, csrfToken: session.csrf, expiresAt: session.expiresAt };
    },
  );

  app.delete(
    "/api/v1/session",
    {
      onRequest: auth.authenticate,
      schema: {
        tags: ["people"],
        summary: "Sign out: ends the session and clears the cookie",
        security: [{ session: [] }],
        response: {
          204: z.null().describe("signed out"),
          ...errorResponses({
            unauthorized: "no session",
            forbidden: "the x-csrf-token header is missing or wrong",
          }),
        },
      },
    },
    async (request, reply) => {
      const value = cookieValue(request.headers.cookie, SESSION_COOKIE);
      if (value !== undefined) await users.endSession(value);
      void reply.header("set-cookie", cookie("", 0, secureCookie));
      void reply.code(204);
      return null;
    },
  );

  app.put(
    "/api/v1/session/password",
    {
      onRequest: auth.authenticate,
      schema: {
        tags: ["people"],
        summary: "Change your own password (every session of yours ends)",
        security,
        body: PasswordChange,
        response: {
          204: z.null().describe("changed"),
          ...errorResponses({
            bad_request: "the new password is refused by the policy",
            unauthorized: "not signed in, or the current password is wrong",
            forbidden: "the caller is not a user, or the CSRF token is missing",
          }),
        },
      },
    },
    async (request, reply) => {
      const caller = auth.callerOf(request);
      if (caller.userId === undefined)
        throw apiFailure("forbidden", "a service account's token has no password");
      const ok = await users.checkPassword(caller.userId, request.body.current);
      if (ok === undefined) throw apiFailure("unauthorized", "the current password is wrong");
      try {
        await users.setPassword(caller.userId, request.body.password);
      } catch (error) {
        userFailure(error);
      }
      void reply.header("set-cookie", cookie("", 0, secureCookie));
      void reply.code(204);
      return null;
    },
  );

  const adminOnly = { onRequest: auth.admin };
  const adminErrors = {
    unauthorized: "no valid bearer token or session",
    forbidden: "the caller is not an admin (or the CSRF token is missing)",
  };

  app.get(
    "/api/v1/users",
    {
      ...adminOnly,
      schema: {
        tags: ["people"],
        summary: "The user accounts (admin)",
        security,
        response: { 200: z.object({ users: z.array(User) }), ...errorResponses(adminErrors) },
      },
    },
    async () => ({ users: await users.list() }),
  );

  app.post(
    "/api/v1/users",
    {
      ...adminOnly,
      schema: {
        tags: ["people"],
        summary: "Add a user (admin)",
        security,
        body: UserCreate,
        response: {
          201: User,
          ...errorResponses({
            ...adminErrors,
            bad_request: "the body is not a user; every problem named",
            conflict: "a user with that name exists",
          }),
        },
      },
    },
    async (request, reply) => {
      const { password, ...input } = request.body;
      try {
        const user = await users.add(input, password);
        request.log.info({ user: user.id, by: auth.callerOf(request).actor }, "user added");
        return reply.code(201).send(user);
      } catch (error) {
        userFailure(error);
      }
    },
  );

  app.patch(
    "/api/v1/users/:id",
    {
      ...adminOnly,
      schema: {
        tags: ["people"],
        summary: "Change a user's name, badge, roles, scope or team, or disable them (admin)",
        security,
        params: UserParams,
        body: UserChange,
        response: {
          200: User,
          ...errorResponses({
            ...adminErrors,
            bad_request: "the change is not valid; every problem named",
            not_found: "no such user",
          }),
        },
      },
    },
    async (request) => {
      const { disabled, ...change } = request.body;
      try {
        let user = await users.update(request.params.id, change);
        if (disabled !== undefined) user = await users.setDisabled(request.params.id, disabled);
        return user;
      } catch (error) {
        userFailure(error);
      } finally {
        // A role, scope or disabling changed here is refused here from the next request on.
        await auth.changed();
      }
    },
  );

  app.put(
    "/api/v1/users/:id/password",
    {
      ...adminOnly,
      schema: {
        tags: ["people"],
        summary: "Set a user's password (admin; the user's sessions end)",
        security,
        params: UserParams,
        body: PasswordSet,
        response: {
          204: z.null().describe("set"),
          ...errorResponses({
            ...adminErrors,
            bad_request: "the password is refused by the policy",
            not_found: "no such user",
          }),
        },
      },
    },
    async (request, reply) => {
      try {
        await users.setPassword(request.params.id, request.body.password);
      } catch (error) {
        userFailure(error);
      }
      void reply.code(204);
      return null;
    },
  );
  return Promise.resolve();
};
