import { z } from "zod";
import { QueryDuration } from "./api.js";
import { RegionKey, RuleSubject } from "./rule-fields.js";
import { TaskKind } from "./topics.js";

/*
 * Backtest: replay stored history through the rules engine, filing nothing, and report what would
 * have been raised, escalated and cleared (`citywatch rules backtest`, `POST
 * /api/v1/rules/backtest`; docs/rules.md, Backtest). The request body and the report, validated
 * and documented from these schemas.
 */

/** How long the time-series store keeps readings, and in its own terms (an error names it). */
export interface StoreRetention {
  /** How far back readings are kept, ms; undefined: for ever. */
  readonly ms: number | undefined;
  readonly description: string;
}

/** Days one API request may cover at most; the CLI has no such bound. */
export const BACKTEST_API_MAX_DAYS = 7;
/** Readings one API request may replay at most (warm-up included); past it the request fails. */
export const BACKTEST_API_MAX_READINGS = 5_000_000;

const RULE_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(ya?ml|json)$/;

/** One rule file sent inline: its name (as in a rules directory) and its YAML or JSON text. */
export const BacktestRuleFile = z.strictObject({
  name: z
    .string()
    .regex(RULE_FILE_NAME, {
      error: "a rule file name is a plain file name ending .yaml, .yml or .json (no directories)",
    })
    .describe("file name as in a rules directory, e.g. noise-local.yaml"),
  text: z
    .string()
    .max(1_000_000, { error: "a rule file is at most 1,000,000 characters" })
    .describe("the file's YAML (or JSON) text"),
});
export type BacktestRuleFile = z.infer<typeof BacktestRuleFile>;

/**
 * Which rules a run judges with: the rule files the server's configuration names
 * (`ingest.rules`: the default pack when configured, then `ingest.rules.directories`), read from
 * disk now; or rule files sent inline, loaded after the default pack unless `defaultPack` is false.
 */
export const BacktestRuleSource = z.union(
  [
    z.strictObject({
      configured: z.literal(true).describe("the rule files the server's configuration names"),
    }),
    z.strictObject({
      files: z.array(BacktestRuleFile).min(1).max(100).describe("rule files, loaded in name order"),
      defaultPack: z
        .boolean()
        .default(true)
        .describe("load the default pack first (default true), as the ingest does"),
    }),
  ],
  { error: "rules are { configured: true } or { files: [{ name, text }], defaultPack? }" },
);
export type BacktestRuleSource = z.infer<typeof BacktestRuleSource>;

/** An instant in a body: RFC 3339 with an offset, or epoch milliseconds. */
export const BodyInstant = z.union(
  [
    z.number().int().nonnegative(),
    z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
  ],
  { error: "must be an RFC 3339 timestamp with offset or epoch milliseconds" },
);

/** Body of `POST /api/v1/rules/backtest`. */
export const BacktestRequest = z
  .strictObject({
    from: BodyInstant.describe("replay readings at or after: RFC 3339 with offset, or epoch ms"),
    to: BodyInstant.describe("replay readings before; at most 7 days after from"),
    site: z.string().min(1).optional().describe("only the devices of this site"),
    device: z
      .string()
      .min(1)
      .optional()
      .describe("only the subjects of this device (its site's devices are replayed too)"),
    region: RegionKey.optional().describe(
      "the regulatory region the rules judge under; default: the configured ingest.rules.region",
    ),
    ruleIds: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe("only these rules (each must be in the rules or the compared rules)"),
    rules: BacktestRuleSource.default({ configured: true }).describe(
      "the rules to backtest; default: those the configuration names",
    ),
    compare: BacktestRuleSource.optional().describe(
      "rules to compare with: the report says what `rules` would raise more and fewer than these",
    ),
    tick: QueryDuration.optional().describe(
      "clock tick in data time; default: the configured ingest.rules.tickMs",
    ),
    warmUp: z
      .union([z.literal(0), QueryDuration])
      .optional()
      .describe(
        "history replayed before from to fill the windows, its decisions not reported (0: none); default: the longest window the rules need",
      ),
  })
  .refine((b) => b.site === undefined || b.device === undefined, {
    error: "give site or device, not both",
    path: ["device"],
  });
export type BacktestRequest = z.infer<typeof BacktestRequest>;

/** What the evidence package of a raise or level escalation would have said, in short. */
export const BacktestEvidence = z.object({
  value: z.union([z.number(), z.boolean()]).nullable(),
  limit: z.number().nullable(),
  windowStart: z.string(),
  windowEnd: z.string(),
  /** Raw readings in the evidence window. */
  readings: z.number().int(),
  method: z.string(),
});
export type BacktestEvidence = z.infer<typeof BacktestEvidence>;

/** One alarm (a case) of one (rule, subject). */
export const BacktestCase = z.object({
  alarmSeq: z.number().int(),
  /** Raised before `from`, during the warm-up: open when the range starts, not counted as raised. */
  openAtStart: z.boolean(),
  raisedAt: z.string(),
  /** The level raised at (for a case open at the start: the level it had reached by then). */
  level: z.string().nullable(),
  /** The raise's evidence (the warm-up's raise for a case open at the start). */
  evidence: BacktestEvidence,
  escalations: z.array(
    z.object({
      at: z.string(),
      from: z.string().nullable(),
      level: z.string().nullable(),
      evidence: BacktestEvidence,
    }),
  ),
  /** Escalations of an emergency nobody acknowledged (nobody acknowledges in a backtest). */
  unacknowledgedEscalations: z.number().int(),
  /** Times the condition held again while the alarm was recovering. */
  repeats: z.number().int(),
  /** null: still open at `to`. */
  clearedAt: z.string().nullable(),
});
export type BacktestCase = z.infer<typeof BacktestCase>;

const Counts = {
  raised: z.number().int(),
  escalated: z.number().int(),
  cleared: z.number().int(),
  openAtStart: z.number().int(),
  openAtEnd: z.number().int(),
};
export const BacktestCounts = z.object(Counts);
export type BacktestCounts = z.infer<typeof BacktestCounts>;

export const BacktestSubject = z.object({
  type: RuleSubject,
  id: z.string(),
  siteId: z.string().nullable(),
  ...Counts,
  cases: z.array(BacktestCase),
});
export type BacktestSubject = z.infer<typeof BacktestSubject>;

export const BacktestRule = z.object({
  id: z.string(),
  version: z.number().int(),
  title: z.string(),
  taskKind: TaskKind,
  ...Counts,
  subjects: z.array(BacktestSubject),
});
export type BacktestRule = z.infer<typeof BacktestRule>;

/** The outcome of one rule set over the range: every rule that decided something. */
export const BacktestRun = z.object({
  /** Where the rules came from (a directory, inline files, the configuration). */
  rules: z.string(),
  /** Rules judged (after --rule / ruleIds). */
  ruleCount: z.number().int(),
  /** Evaluations the engine made (every subject at each reading's instant and each tick). */
  evaluations: z.number().int(),
  totals: BacktestCounts,
  byRule: z.array(BacktestRule),
});
export type BacktestRun = z.infer<typeof BacktestRun>;

/** A case of one run without an overlapping case of the same rule and subject in the other. */
export const BacktestCaseRef = z.object({
  subject: z.string(),
  raisedAt: z.string(),
  clearedAt: z.string().nullable(),
});

export const BacktestRuleDiff = z.object({
  ruleId: z.string(),
  /** The rule's counts under the compared rules (`compare`) and under `rules`. */
  baseline: BacktestCounts.nullable(),
  candidate: BacktestCounts.nullable(),
  /** Cases `rules` would have had that the compared rules did not. */
  more: z.number().int(),
  /** Cases the compared rules had that `rules` would not have. */
  fewer: z.number().int(),
  /** Cases in both (same rule and subject, open at overlapping times). */
  same: z.number().int(),
  /** Of those, raised earlier / later under `rules`. */
  earlier: z.number().int(),
  later: z.number().int(),
  added: z.array(BacktestCaseRef),
  removed: z.array(BacktestCaseRef),
});
export type BacktestRuleDiff = z.infer<typeof BacktestRuleDiff>;

export const BacktestDiff = z.object({
  /** "this change would have raised 14 more cases and 3 fewer". */
  summary: z.string(),
  more: z.number().int(),
  fewer: z.number().int(),
  /** Rules whose cases differ, or that are in one set only. */
  byRule: z.array(BacktestRuleDiff),
});
export type BacktestDiff = z.infer<typeof BacktestDiff>;

export const BacktestReport = z
  .object({
    from: z.string(),
    to: z.string(),
    /** Where the warm-up began (history replayed to fill windows, decisions not reported). */
    warmUpFrom: z.string(),
    region: z.string(),
    tickMs: z.number().int(),
    scope: z.object({ site: z.string().nullable(), device: z.string().nullable() }),
    data: z.object({
      devices: z.number().int(),
      /** Readings replayed in [from, to). */
      readings: z.number().int(),
      warmUpReadings: z.number().int(),
      first: z.string().nullable(),
      last: z.string().nullable(),
    }),
    run: BacktestRun,
    compare: BacktestRun.nullable(),
    diff: BacktestDiff.nullable(),
    /** What the reader should know: no data, a warm-up cut short by retention, … */
    warnings: z.array(z.string()),
    elapsedMs: z.number(),
    readingsPerSecond: z.number(),
  })
  .meta({ id: "BacktestReport" });
export type BacktestReport = z.infer<typeof BacktestReport>;
