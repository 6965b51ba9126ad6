import { z } from "zod";
import { TaskKind } from "./topics.js";

/*
 * GET /api/v1/rules: the rules the running process evaluates, read-only, for the console's rules
 * page and anyone signed in (docs/api.md). Each rule's clause, confidence and unverified parts
 * (contracts/model/rule-confidence.ts), its condition in one line and its limits per context and
 * period. The query takes no parameters.
 */

export const RuleListQuery = z.strictObject({});

const Limits = z.record(z.string(), z.number());

export const RuleListLimitRow = z.object({
  /** Where the row applies (zoneClass, phase, restaurantSize, region, dustRegion); {}: everywhere. */
  when: z.record(z.string(), z.string()),
  values: Limits,
  /** The row's own clause (a local standard); null: the rule's. */
  clause: z.object({ standard: z.string(), section: z.string() }).nullable(),
});

export const RuleListPeriod = z.object({
  name: z.string(),
  from: z.string(),
  to: z.string(),
  days: z.array(z.string()).nullable(),
});

export const RuleListItem = z.object({
  id: z.string(),
  version: z.number().int(),
  title: z.string(),
  description: z.string().nullable(),
  /** The rule file it was loaded from, e.g. `pack/noise.yaml` (the console groups by it). */
  file: z.string(),
  clause: z.object({ standard: z.string(), section: z.string() }),
  taskKind: TaskKind,
  subject: z.string(),
  kinds: z.array(z.string()),
  siteTypes: z.array(z.string()).nullable(),
  regions: z.array(z.string()).nullable(),
  enabled: z.boolean(),
  confidence: z.enum(["verified", "placeholder"]),
  /** The placeholder's note (what is unverified and where the real number would come from). */
  note: z.string().nullable(),
  /** The unverified parts: the rule's list, or for a placeholder the numbers it stands for. */
  unverified: z.array(z.object({ path: z.string(), note: z.string() })),
  condition: z.object({
    type: z.string(),
    /** The condition in one line, e.g. `energy_mean(noise.laeq) over 1 h (clock) > limits.day | night: limits.night`. */
    summary: z.string(),
  }),
  /** The limit table as rows (`default` first, `when: {}`); empty: the rule has none. */
  limits: z.array(RuleListLimitRow),
  /** The schedule's periods the condition or the rule names (byPeriod, activeDuring). */
  periods: z.array(RuleListPeriod),
  timeZone: z.string(),
  activeDuring: z.array(z.string()).nullable(),
  levels: z.array(z.string()).nullable(),
});
export type RuleListItem = z.infer<typeof RuleListItem>;

export const RuleList = z
  .object({
    /** The deployment's regulatory region (`ingest.rules.region`). */
    region: z.string(),
    rules: z.array(RuleListItem),
  })
  .meta({ id: "RuleList" });
export type RuleList = z.infer<typeof RuleList>;
