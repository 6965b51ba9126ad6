import type { FastifyRequest } from "fastify";
import { apiFailure } from "../../contracts/model/errors.js";
import type { ApiRole } from "../../contracts/model/tasks.js";
import { mayRead } from "./roles.js";
import type { TokenRecord, TokenStore } from "./tokens.js";
import type { TokenWatch } from "./watch.js";

/*
 * Bearer authentication of the API: the hook a plugin adds to its own (encapsulated) context.
 * 401 when there is no valid token (the error catalogue adds WWW-Authenticate, RFC 6750 §3);
 * roles are checked by the routes (403). Lookups are cached for `cacheMs`; with a `watch`, every
 * lookup first asks whether the token file changed and a change empties the cache, so a revoked
 * token is refused from the next request on.
 */

export interface Caller {
  /** The token's id (streams and limits are counted per token). */
  readonly tokenId: string;
  /** The user behind the token: its name before `@` (`alice@laptop` → `alice`). */
  readonly user: string;
  readonly name: string;
  readonly role: ApiRole;
  /** How the audit trail names the caller. */
  readonly actor: string;
}

export interface BearerAuth {
  /** An `onRequest` hook: throws `unauthorized` without a valid token, else notes the caller. */
  readonly authenticate: (request: FastifyRequest) => Promise<void>;
  /** An `onRequest` hook: `authenticate`, and `forbidden` for a role that may not read tasks. */
  readonly reader: (request: FastifyRequest) => Promise<void>;
  /** An `onRequest` hook: `authenticate`, and `forbidden` for any role but admin. */
  readonly admin: (request: FastifyRequest) => Promise<void>;
  /** The caller a hook of this auth found for the request (after `authenticate`, `reader` or `admin`). */
  callerOf(request: FastifyRequest): Caller;
}

/** The user a token name stands for: the part before `@`, or the whole name. */
export const userOf = (name: string): string => name.split("@", 1)[0] ?? name;

/** A promise-returning hook, so a refusal travels to the error handler as a rejection. */
const hook =
  (check: (request: FastifyRequest) => unknown) =>
  (request: FastifyRequest): Promise<void> => {
    try {
      check(request);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };

export function bearerAuth(
  tokens: TokenStore,
  options: { cacheMs: number; now: () => number; watch?: TokenWatch | undefined },
): BearerAuth {
  const cache = new Map<string, { at: number; record: TokenRecord | undefined }>();
  const callers = new WeakMap<FastifyRequest, Caller>();
  options.watch?.onChange(() => cache.clear());
  const lookup = (token: string): TokenRecord | undefined => {
    options.watch?.check();
    const now = options.now();
    const hit = cache.get(token);
    if (hit !== undefined && now - hit.at < options.cacheMs) return hit.record;
    const record = tokens.authenticate(token);
    // A bounded cache: guessing tokens must not grow memory.
    if (cache.size >= 10_000) cache.clear();
    cache.set(token, { at: now, record });
    return record;
  };
  const authenticate = (request: FastifyRequest): Caller => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1] === undefined) {
      throw apiFailure(
        "unauthorized",
        "the task API needs a bearer token: Authorization: Bearer <token> (citywatch tokens add)",
      );
    }
    const record = lookup(match[1]);
    if (record === undefined) throw apiFailure("unauthorized", "unknown or revoked token");
    const caller = {
      tokenId: record.id,
      user: userOf(record.name),
      name: record.name,
      role: record.role,
      actor: `${record.name} (${record.role})`,
    };
    callers.set(request, caller);
    return caller;
  };
  return {
    authenticate: hook((request) => authenticate(request)),
    reader: hook((request) => {
      const caller = authenticate(request);
      if (!mayRead(caller.role))
        throw apiFailure("forbidden", `role ${caller.role} may not read tasks`);
    }),
    admin: hook((request) => {
      const caller = authenticate(request);
      if (caller.role !== "admin")
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
