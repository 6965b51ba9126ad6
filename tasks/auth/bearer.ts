import type { FastifyReply, FastifyRequest } from "fastify";
import type { ApiRole, TaskApiError } from "../../contracts/model/tasks.js";
import type { TokenRecord, TokenStore } from "./tokens.js";

/*
 * Bearer authentication of the task API. 401 when there is no valid token (with
 * WWW-Authenticate, RFC 6750 §3), 403 when the token's role may not do what was asked. Lookups
 * are cached for `cacheMs`, so a revoked token stops working within that time.
 */

export interface Caller {
  readonly name: string;
  readonly role: ApiRole;
  /** How the audit trail names the caller. */
  readonly actor: string;
}

export function problem(reply: FastifyReply, status: number, body: TaskApiError) {
  if (status === 401) reply.header("www-authenticate", 'Bearer realm="citywatch"');
  return reply.code(status).type("application/json").send(body);
}

export function bearerAuth(tokens: TokenStore, options: { cacheMs: number; now: () => number }) {
  const cache = new Map<string, { at: number; record: TokenRecord | undefined }>();
  const lookup = (token: string): TokenRecord | undefined => {
    const now = options.now();
    const hit = cache.get(token);
    if (hit !== undefined && now - hit.at < options.cacheMs) return hit.record;
    const record = tokens.authenticate(token);
    // A bounded cache: guessing tokens must not grow memory.
    if (cache.size >= 10_000) cache.clear();
    cache.set(token, { at: now, record });
    return record;
  };
  /** The caller, or undefined after answering 401. */
  return (request: FastifyRequest, reply: FastifyReply): Caller | undefined => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match?.[1] === undefined) {
      void problem(reply, 401, {
        error: "unauthorized",
        message:
          "the task API needs a bearer token: Authorization: Bearer <token> (citywatch tokens add)",
      });
      return undefined;
    }
    const record = lookup(match[1]);
    if (record === undefined) {
      void problem(reply, 401, { error: "unauthorized", message: "unknown or revoked token" });
      return undefined;
    }
    return { name: record.name, role: record.role, actor: `${record.name} (${record.role})` };
  };
}
