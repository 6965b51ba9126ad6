import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  apiFailure,
  CreditRecordQuery,
  CreditRecordRow,
  errorResponses,
  Party,
  PartyInput,
  PartyKey,
  RepeatOffenderStatus,
} from "../../contracts/index.js";
import type { Caller } from "../auth/bearer.js";
import { inScope } from "../auth/scope.js";
import { creditRecord, creditRecordCsv, repeatOffender } from "../credit-record.js";
import { security, type TaskPluginOptions } from "./options.js";

/*
 * The regulated-party registry and the credit record over HTTP (issue #18 item 3):
 *   GET  /api/v1/parties                      every party (any role that reads tasks)
 *   GET  /api/v1/parties/{key}                one party, its sites, its repeat-offender status
 *   POST /api/v1/parties                      register a party (admin)
 *   PUT  /api/v1/parties/{key}                replace a party's record (admin)
 *   GET  /api/v1/parties/{key}/record         its credit record and repeat-offender status
 *   GET  /api/v1/credit-records               every party's outcomes in a period, JSON or CSV
 * The registry is the one in the task system's data directory (`{dataDir}/registry.db`, next to
 * `tasks.db`), opened by this plugin and closed with the server. A scoped caller's credit-record
 * rows are those of cases in their scope; the party records themselves are readable by all.
 */

/**
 * The party registry as this plugin uses it (registry/store.ts RegistryStore is one; tasks/ does
 * not import registry/, so the process hands it in).
 */
export interface PartyRegistry {
  listParties(): Party[];
  getParty(key: string): Party | undefined;
  putParty(
    input: unknown,
    options?: { replace?: boolean; now?: number },
  ): { party: Party; warnings: string[]; created: boolean };
  sitesOfParty(key: string): string[];
  partyKey(input: { readonly creditCode?: string | undefined; readonly name: string }): string;
  /** A registered site (its `site:<id>` record exists, empty, before its first case). */
  getSite?(id: string): unknown;
  close(): void;
}

export interface PartyPluginOptions extends TaskPluginOptions {
  /**
   * Opens the registry of the task store's data directory (given the task store's file); the
   * plugin closes it with the server.
   */
  readonly openRegistry: (dataDir: string) => PartyRegistry;
}

const KeyParams = z.object({ key: PartyKey.describe("credit code, or generated nocode-… key") });
/** The record's key: a party key, or `site:<id>`, the task store's key of a site's party without a code. */
const RecordParams = z.object({
  key: z
    .union([PartyKey, z.string().regex(/^site:[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)], {
      error: "a party key is a credit code, a generated nocode-… key or site:<site id>",
    })
    .describe("credit code, generated nocode-… key, or site:<site id>"),
});

const PartyDetail = z.object({
  party: Party,
  /** The party's sites: those its record lists and those whose inline party has its code. */
  sites: z.array(z.string()),
  status: RepeatOffenderStatus,
});
const PartyWritten = PartyDetail.extend({ warnings: z.array(z.string()) });
const PartyList = z.object({ parties: z.array(Party) });
const PartyRecord = z.object({
  party: Party.nullable(),
  key: z.string(),
  status: RepeatOffenderStatus,
  rows: z.array(CreditRecordRow),
});
const CreditRecords = z.object({ rows: z.array(CreditRecordRow) });

/** A registry refusal (registry/store.ts RegistryError, known by its name and code) as an API error. */
function registryProblem(error: unknown): never {
  if (error instanceof Error && error.name === "RegistryError" && "code" in error) {
    throw apiFailure(
      error.code === "REGISTRY_DUPLICATE" ? "conflict" : "bad_request",
      error.message,
    );
  }
  throw error;
}

function checkAdmin(caller: Caller): void {
  if (!caller.roles.includes("admin")) {
    throw apiFailure(
      "forbidden",
      `role ${caller.roles.join(", ")} may read parties; registering or changing one needs admin`,
    );
  }
}

export const partyApi: FastifyPluginAsyncZod<PartyPluginOptions> = (app, options) => {
  const { deps, auth } = options;
  const registry = options.openRegistry(deps.dataDir);
  app.addHook("onClose", () => {
    registry.close();
    return Promise.resolve();
  });
  app.addHook("onRequest", auth.reader);

  /**
   * The keys the task store files a party's cases under: its credit code, and `site:<id>` for
   * each of its sites (a case filed while the site's party carried no code).
   */
  const keysOf = (key: string): string[] => {
    if (key.startsWith("site:")) return [key];
    const sites = registry.sitesOfParty(key).map((site) => `site:${site}`);
    return key.startsWith("nocode-") ? sites : [key, ...sites];
  };
  const statusOf = (key: string) =>
    repeatOffender(deps.store, keysOf(key), {
      periodMs: deps.service.graduatedPeriodMs(),
      nowMs: deps.now(),
    });
  const include = (caller: Caller) =>
    caller.scope.cityWide
      ? undefined
      : (task: Parameters<typeof inScope>[1]) => inScope(caller.scope, task);

  app.get(
    "/api/v1/parties",
    {
      schema: {
        tags: ["parties"],
        summary: "Regulated parties, by name",
        security,
        response: {
          200: PartyList,
          ...errorResponses({
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller's role may not read tasks",
          }),
        },
      },
    },
    () => ({ parties: registry.listParties() }),
  );

  app.get(
    "/api/v1/parties/:key",
    {
      schema: {
        tags: ["parties"],
        summary: "One regulated party: its record, its sites, its repeat-offender status",
        security,
        params: KeyParams,
        response: {
          200: PartyDetail,
          ...errorResponses({
            bad_request: "the key is neither a credit code nor a generated key",
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller's role may not read tasks",
            not_found: "no party with this key",
          }),
        },
      },
    },
    async (request) => {
      const party = registry.getParty(request.params.key);
      if (party === undefined) throw apiFailure("not_found", `no party ${request.params.key}`);
      return { party, sites: registry.sitesOfParty(party.key), status: await statusOf(party.key) };
    },
  );

  const writeSchema = (summary: string, extra: Record<string, unknown>) => ({
    tags: ["parties"],
    summary,
    security,
    body: PartyInput,
    response: {
      200: PartyWritten,
      ...errorResponses({
        bad_request: "the body is not a party; every problem named",
        unauthorized: "no valid bearer token or session",
        forbidden: "the caller is not an admin",
        not_found: "no party with this key (PUT)",
        conflict: "the party is already registered (POST), or one of its sites is another party's",
        payload_too_large: "the body is larger than the API accepts",
        unsupported_media_type: "the body is not application/json",
      }),
    },
    ...extra,
  });

  app.post(
    "/api/v1/parties",
    {
      schema: writeSchema(
        "Register a regulated party (admin); without a credit code it gets a generated key and a warning",
        {},
      ),
    },
    async (request) => {
      checkAdmin(auth.callerOf(request));
      try {
        const { party, warnings } = registry.putParty(request.body, { now: deps.now() });
        return {
          party,
          sites: registry.sitesOfParty(party.key),
          status: await statusOf(party.key),
          warnings,
        };
      } catch (error) {
        return registryProblem(error);
      }
    },
  );

  app.put(
    "/api/v1/parties/:key",
    {
      schema: writeSchema("Replace a regulated party's record (admin)", { params: KeyParams }),
    },
    async (request) => {
      checkAdmin(auth.callerOf(request));
      const { key } = KeyParams.parse(request.params);
      if (registry.getParty(key) === undefined) throw apiFailure("not_found", `no party ${key}`);
      const named = registry.partyKey(request.body);
      if (named !== key) {
        throw apiFailure(
          "bad_request",
          request.body.creditCode === undefined
            ? `the body names a party without a credit code, keyed by its name (${named}), not ${key}: a party's key cannot change`
            : `the body's credit code ${request.body.creditCode} is not the party ${key}: a party's key cannot change`,
        );
      }
      try {
        const { party, warnings } = registry.putParty(request.body, {
          replace: true,
          now: deps.now(),
        });
        return {
          party,
          sites: registry.sitesOfParty(party.key),
          status: await statusOf(party.key),
          warnings,
        };
      } catch (error) {
        return registryProblem(error);
      }
    },
  );

  app.get(
    "/api/v1/parties/:key/record",
    {
      schema: {
        tags: ["parties"],
        summary:
          "A party's credit record: every outcome of its cases across its sites, and its repeat-offender status",
        security,
        params: RecordParams,
        response: {
          200: PartyRecord,
          ...errorResponses({
            bad_request: "the key is neither a credit code, a generated key nor site:<site id>",
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller's role may not read tasks",
            not_found:
              "neither a registered party, a registered site (site:<id>) nor cases under this key",
          }),
        },
      },
    },
    async (request) => {
      const key = request.params.key;
      const caller = auth.callerOf(request);
      const party = registry.getParty(key) ?? null;
      const keys = keysOf(key);
      const records = await Promise.all(
        keys.map((k) => creditRecord(deps.store, { partyKey: k, include: include(caller) })),
      );
      const rows = records
        .flat()
        .sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.taskId.localeCompare(b.taskId));
      // A registered site's party without a code has a record, empty until its first case.
      const site = key.startsWith("site:") && registry.getSite?.(key.slice(5)) !== undefined;
      if (
        party === null &&
        !site &&
        (await Promise.all(keys.map((k) => deps.store.partyCaseHistory(k)))).every(
          (cases) => cases.length === 0,
        )
      ) {
        throw apiFailure("not_found", `no party ${key} and no case addressed to it`);
      }
      return { party, key, status: await statusOf(key), rows };
    },
  );

  app.get(
    "/api/v1/credit-records",
    {
      schema: {
        tags: ["parties"],
        summary:
          "Every party's case outcomes in a period, one row per outcome, for the social credit system (JSON or CSV)",
        security,
        querystring: CreditRecordQuery,
        response: {
          200: {
            description: "The rows (JSON), or the same as RFC 4180 CSV with a header row",
            content: {
              "application/json": { schema: CreditRecords },
              "text/csv": { schema: z.string() },
            },
          },
          ...errorResponses({
            bad_request: "a query parameter is malformed or unknown, or to is not after from",
            unauthorized: "no valid bearer token or session",
            forbidden: "the caller's role may not read tasks",
          }),
        },
      },
    },
    async (request, reply) => {
      const caller = auth.callerOf(request);
      const { from, to, format } = request.query;
      const rows = await creditRecord(deps.store, {
        fromMs: from,
        toMs: to,
        include: include(caller),
      });
      void reply.header("cache-control", "private, no-store");
      if (format === "csv") {
        void reply
          .type("text/csv; charset=utf-8")
          .header("content-disposition", 'attachment; filename="credit-records.csv"');
        return creditRecordCsv(rows);
      }
      return { rows };
    },
  );
  return Promise.resolve();
};
