import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { badRequest, errorResponses, type IngestConfig } from "../../contracts/index.js";
import {
  BACKTEST_API_MAX_DAYS,
  BACKTEST_API_MAX_READINGS,
  BacktestReport,
  BacktestRequest,
  type BacktestRuleSource,
} from "../../contracts/model/backtest.js";
import { backtest, BacktestError, type BacktestDeps, type RuleSource } from "../backtest/index.js";
import { configuredRules, inlineRules } from "../backtest/sources.js";

/*
 * POST /api/v1/rules/backtest: the stored history of a range replayed through the rules (and
 * through a second set to compare with), filing nothing; answered when the replay is done, so the
 * range is bounded (7 days, 5,000,000 readings). Admin tokens only: it reads every device's
 * history and runs rule files sent in the body. docs/api.md, docs/rules.md (Backtest).
 */

export interface BacktestApiOptions {
  readonly deps: BacktestDeps;
  /** The configured rules: the default rule source, the default region and tick. */
  readonly rules: IngestConfig["rules"];
  /** An onRequest hook that refuses (throws) anyone but an admin. */
  readonly admin: (request: FastifyRequest) => Promise<void>;
}

const security = [{ bearer: [] }, { session: [] }];

function sourceOf(
  label: "rules" | "compare",
  source: BacktestRuleSource,
  config: IngestConfig["rules"],
): RuleSource {
  return "configured" in source
    ? configuredRules(config)
    : inlineRules(label, source.files, source.defaultPack);
}

export const backtestApi: FastifyPluginAsyncZod<BacktestApiOptions> = (app, options) => {
  app.addHook("onRequest", options.admin);
  app.post(
    "/api/v1/rules/backtest",
    {
      schema: {
        tags: ["rules"],
        summary:
          "Replay stored history through rules (and a second set to compare), filing nothing: what would have been raised, escalated and cleared",
        security,
        body: BacktestRequest,
        response: {
          200: BacktestReport,
          ...errorResponses({
            bad_request:
              "the body failed validation; from not before to, to in the future, more than 7 days or 5,000,000 readings; an unknown site, device or rule id; rule files that do not load; from before the store's retention; every problem named",
            unauthorized: "no valid bearer token",
            forbidden: "the token's role is not admin",
            unavailable: "the time-series store could not answer",
            payload_too_large: "the body is larger than the API accepts",
            unsupported_media_type: "the body is not application/json",
          }),
        },
      },
    },
    async (request) => {
      const body = request.body;
      try {
        return await backtest(options.deps, {
          fromMs: body.from,
          toMs: body.to,
          site: body.site,
          device: body.device,
          region: body.region ?? options.rules.region,
          tickMs: body.tick ?? options.rules.tickMs,
          warmUpMs: body.warmUp,
          ruleIds: body.ruleIds,
          rules: sourceOf("rules", body.rules, options.rules),
          compare:
            body.compare === undefined
              ? undefined
              : sourceOf("compare", body.compare, options.rules),
          maxRangeMs: BACKTEST_API_MAX_DAYS * 86_400_000,
          maxReadings: BACKTEST_API_MAX_READINGS,
        });
      } catch (error) {
        if (!(error instanceof BacktestError)) throw error;
        throw badRequest(error.problems.map((p) => ({ path: p.path, message: p.message })));
      }
    },
  );
  return Promise.resolve();
};
