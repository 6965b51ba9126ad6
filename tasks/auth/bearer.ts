import { timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { apiFailure } from "../../contracts/model/errors.js";
import { CITY_WIDE, type User, type UserScope } from "../../contracts/model/people.js";
import type { ApiRole } from "../../contracts/model/tasks.js";
import { mayRead } from "./roles.js";
import type { AsyncTokenStore } from "./store-port.js";
import type { TokenRecord } from "./tokens.js";
import type { ActiveSession, SessionLimits } from "./users.js";
import type { TokenWatch } from "./watch.js";

/*
 * Authentication of the API: the hook a plugin adds to its own (encapsulated) context. A caller
 * is a bearer token (a service account's, or one a user made) or a user's browser session (the
 * `cw_session` cookie, sessions.ts); a request with a session cookie that changes something
 * (POST, PUT, PATCH, DELETE) must also carry the session's CSRF token in `x-csrf-token`.
 * 401 when there is neither (the error catalogue adds WWW-Authenticate, RFC 6750 §3); roles and
 * scopes are checked by the routes (403).
 *
 * The store is asynchronous (store-port.ts: tokens.db, or PostgreSQL shared by the nodes). A
 * token's lookup (its record and its user) is cached for `cacheMs`, so a request with a known
 * token makes no round trip to the store. With a `watch` (watch.ts), a change of users or tokens
 * empties the cache: the embedded store is asked before every request, so a revoked token is
 * refused from its next request on; PostgreSQL is polled, so a revocation made on another node
 * is seen within the watch's interval, and one made through this API at once (`changed`). A
 * lookup that was under way when the cache emptied is not kept. A session is looked up in the
 * store on every request (its idle clock; a session ended on any node ends at once).
 */

export interface Caller {
  /** The token's id (streams and limits are counted per token). */
  readonly tokenId: string;
  /** The user behind the token: its name before `@` (`alice@laptop` → `alice`). */
  readonly user: string;
  readonly name: string;
  /** The token's role; for a session, the user's first role (see `roles`). */
  readonly role: ApiRole;
  /** Every role the caller acts with: the token's one, or all of a signed-in user's. */
  readonly roles: readonly ApiRole[];
  /** Where the caller acts: the user's scope; city-wide for service accounts' tokens. */
  readonly scope: UserScope;
  /** The user account behind the caller, if any. */
  readonly userId?: string | undefined;
  /** Staff or badge number of that user, if recorded. */
  readonly badge?: string | null | undefined;
  readonly via: "token" | "session";
  /** How the audit trail names the caller. */
  readonly actor: string;
}

/** The session cookie's name. */
export const SESSION_COOKIE = "cw_session";

/** One cookie's value from a Cookie header (RFC 6265 §5.4), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length > 8_192) return undefined;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    if (part.slice(0, at).trim() !== name) continue;
    let value = part.slice(at + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2)
      value = value.slice(1, -1);
    return value;
  }
  return undefined;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** How the audit trail names a signed-in user: name, login, badge, roles. */
export function userActor(
  session: Pick<ActiveSession, "user">,
  roles?: readonly ApiRole[],
): string {
  const u = session.user;
  return `${u.name} [${u.id}${u.badge === null ? "" : ` #${u.badge}`}] (${(roles ?? u.roles).join(", ")})`;
}

export interface BearerAuth {
  /** An `onRequest` hook: throws `unauthorized` without a valid token, else notes the caller. */
  readonly authenticate: (request: FastifyRequest) => Promise<void>;
  /** An `onRequest` hook: `authenticate`, and `forbidden` for a role that may not read tasks. */
  readonly reader: (request: FastifyRequest) => Promise<void>;
  /** An `onRequest` hook: `authenticate`, and `forbidden` for any role but admin. */
  readonly admin: (request: FastifyRequest) => Promise<void>;
  /** The session limits (the session routes start sessions with them). */
  readonly sessionLimits: SessionLimits;
  /**
   * Users or tokens were changed through this API: ask the watch now (on a change the cache
   * empties and revoked tokens' streams close); without a watch, empty the cache.
   */
  changed(): Promise<void>;
  /** The caller a hook of this auth found for the request (after `authenticate`, `reader` or `admin`). */
  callerOf(request: FastifyRequest): Caller;
}

/** The user a token name stands for: the part before `@`, or the whole name. */
export const userOf = (name: string): string => name.split("@", 1)[0] ?? name;

/** A promise-returning hook, so a refusal travels to the error handler as a rejection. */
const hook =
  (check: (request: FastifyRequest) => Promise<unknown>) =>
  async (request: FastifyRequest): Promise<void> => {
    try {
      await check(request);
    } catch (error) {
      throw error instanceof Error ? error : new Error(String(error));
    }
  };

/** A cached lookup: the token's record and, for a user's token, the user. */
interface Lookup {
  readonly at: number;
  readonly record: TokenRecord | undefined;
  readonly user: User | undefined;
}

export function bearerAuth(
  tokens: AsyncTokenStore,
  options: {
    cacheMs: number;
    now: () => number;
    watch?: TokenWatch | undefined;
    /** Browser sessions (default: 8 h idle, 12 h at most). */
    sessions?: SessionLimits | undefined;
  },
): BearerAuth {
  const sessionLimits = options.sessions ?? { idleMs: 8 * 3_600_000, maxMs: 12 * 3_600_000 };
  const cache = new Map<string, Lookup>();
  /** Advanced whenever the cache empties: a lookup begun before then is not kept. */
  let generation = 0;
  const forget = () => {
    generation++;
    cache.clear();
  };
  const callers = new WeakMap<FastifyRequest, Caller>();
  options.watch?.onChange(forget);
  const lookup = async (token: string): Promise<Lookup> => {
    await options.watch?.beforeUse();
    const now = options.now();
    const hit = cache.get(token);
    if (hit !== undefined && now - hit.at < options.cacheMs) return hit;
    const begun = generation;
    const record = await tokens.authenticate(token);
    const user = record?.userId === undefined ? undefined : await tokens.users.get(record.userId);
    const found = { at: now, record, user };
    // Emptied meanwhile (a revocation, say): what was read may be what it revoked.
    if (begun !== generation) return found;
    // A bounded cache: guessing tokens must not grow memory.
    if (cache.size >= 10_000) cache.clear();
    cache.set(token, found);
    return found;
  };
  const bySession = async (request: FastifyRequest, cookie: string): Promise<Caller> => {
    await options.watch?.beforeUse();
    const session = await tokens.users.session(cookie, sessionLimits);
    if (session === undefined) {
      throw apiFailure("unauthorized", "the session ended or is unknown: sign in again");
    }
    if (UNSAFE.has(request.method)) {
      const sent = request.headers["x-csrf-token"];
      if (typeof sent !== "string" || !sameText(sent, session.csrf)) {
        throw apiFailure(
          "forbidden",
          "a change made with a session cookie needs the session's CSRF token in the x-csrf-token header",
        );
      }
    }
    const u = session.user;
    return {
      tokenId: `session:${u.id}`,
      user: u.id,
      name: u.id,
      role: u.roles[0] ?? "viewer",
      roles: u.roles,
      scope: u.scope,
      userId: u.id,
      badge: u.badge,
      via: "session",
      actor: userActor(session),
    };
  };
  const byToken = async (token: string): Promise<Caller> => {
    const { record, user } = await lookup(token);
    if (record === undefined) throw apiFailure("unauthorized", "unknown or revoked token");
    if (record.userId !== undefined && (user === undefined || user.disabled)) {
      throw apiFailure("unauthorized", "the token's user is disabled");
    }
    return {
      tokenId: record.id,
      user: user?.id ?? userOf(record.name),
      name: record.name,
      role: record.role,
      roles: [record.role],
      scope: user?.scope ?? CITY_WIDE,
      userId: user?.id,
      badge: user?.badge,
      via: "token",
      actor:
        user === undefined
          ? `${record.name} (${record.role})`
          : `${userActor({ user }, [record.role])} via token ${record.name}`,
    };
  };
  const authenticate = async (request: FastifyRequest): Promise<Caller> => {
    const header = request.headers.authorization;
    let caller: Caller;
    if (header === undefined) {
      const cookie = cookieValue(request.headers.cookie, SESSION_COOKIE);
      if (cookie === undefined) {
        throw apiFailure(
          "unauthorized",
          "the API needs a bearer token (Authorization: Bearer <token>, citywatch tokens add) or a signed-in session (POST /api/v1/session)",
        );
      }
      caller = await bySession(request, cookie);
    } else {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (match?.[1] === undefined) {
        throw apiFailure(
          "unauthorized",
          "the task API needs a bearer token: Authorization: Bearer <token> (citywatch tokens add)",
        );
      }
      caller = await byToken(match[1]);
    }
    callers.set(request, caller);
    return caller;
  };
  return {
    authenticate: hook((request) => authenticate(request)),
    reader: hook(async (request) => {
      const caller = await authenticate(request);
      if (!mayRead(caller.role))
        throw apiFailure("forbidden", `role ${caller.role} may not read tasks`);
    }),
    sessionLimits,
    changed: async () => {
      if (options.watch === undefined) forget();
      else await options.watch.check();
    },
    admin: hook(async (request) => {
      const caller = await authenticate(request);
      if (!caller.roles.includes("admin"))
        throw apiFailure(
          "forbidden",
          `role ${caller.role} may not do this; it needs an admin token`,
        );
    }),
    callerOf: (request) => {
      const caller = callers.get(request);
      if (caller === undefined) throw new Error("callerOf: the request was not authenticated");
      return caller;
    },
  };
}
