import { z } from "zod";
import { QualityFlag } from "./quality.js";
import { TaskKind } from "./topics.js";

import { ruleProblems } from "./rule-checks.js";
import { Condition } from "./rule-conditions.js";
import {
  Clause,
  Confidence,
  LimitTable,
  PermitType,
  RuleId,
  RuleLegalBasis,
  RuleScope,
  RuleSubject,
  Schedule,
  UnverifiedParameter,
} from "./rule-fields.js";
import {
  ActionText,
  FileOverride,
  QualityGate,
  RuleOverride,
  RuleTiming,
  SeverityLevel,
} from "./rule-severity.js";
import { DAY_MS, HoldDuration } from "./rule-time.js";

export * from "./rule-time.js";
export * from "./rule-fields.js";
export * from "./rule-conditions.js";
export * from "./rule-severity.js";
export { overrideProblems, resolvedRuleProblems } from "./rule-limit-checks.js";
/*
 * Rule definitions: what a rule file may say and what each field means, with defaults filled in,
 * durations in milliseconds and every cross-field constraint checked at load (rule-checks.ts).
 * The parts are in rule-time.ts, rule-fields.ts, rule-conditions.ts and rule-severity.ts, and are
 * exported from here too. docs/rules.md is the user-facing description of the same format.
 */

// ---------------------------------------------------------------------------------------------
// The rule

export const RuleFields = z.strictObject({
  id: RuleId,
  /** Raised on every change of meaning; evidence cites id and version. */
  version: z
    .number({ error: "version must be a whole number >= 1" })
    .int({ error: "version must be a whole number >= 1" })
    .min(1, { error: "version must be a whole number >= 1" }),
  title: z.string().min(1, { error: "title must not be empty" }).max(200),
  description: z.string().max(2_000).optional(),
  clause: Clause,
  /** The law articles the penalty or duty rests on (evidence prints them); default none. */
  legalBasis: z.array(RuleLegalBasis).max(10).default([]),
  confidence: Confidence,
  /** Required for placeholders: what is unverified and where the real number would come from. */
  note: z.string().min(1).max(1_000).optional(),
  unverified: z.array(UnverifiedParameter).default([]),
  taskKind: TaskKind,
  enabled: z.boolean({ error: "enabled must be true or false" }).default(true),
  scope: RuleScope,
  subject: RuleSubject,
  condition: Condition,
  limits: LimitTable.optional(),
  overrides: z.array(RuleOverride).default([]),
  schedule: Schedule,
  /** The rule does not raise for a site holding a valid permit of one of these types (time-bound exemption). */
  permitExemption: z.strictObject({ types: z.array(PermitType).min(1) }).optional(),
  /** Emergency: required (IV … I). Enforcement: optional (warning, case). Maintenance: none. */
  levels: z.array(SeverityLevel).min(1).optional(),
  /** Recommended actions of enforcement and maintenance rules (emergency rules put them on levels). */
  actions: z.array(ActionText).default([]),
  evidence: z
    .strictObject({
      /** Raw readings from this long before the raise to the clear go into the evidence package. */
      window: HoldDuration.optional(),
      /** Printed in the evidence package (e.g. "an online exceedance is a lead for inspection"). */
      statement: z.string().min(1).max(1_000).optional(),
    })
    .optional(),
  timing: RuleTiming,
  qualityGate: QualityGate.optional(),
});
export type RuleFields = z.infer<typeof RuleFields>;

/**
 * A rule: identity and clause, scope and subject, condition, context-dependent limits and their
 * overrides, schedule, severity levels and actions, timing, quality gate. Durations are in
 * milliseconds; `schedule`, `timing`, `qualityGate` and `evidence` are always present after parsing.
 */
export const Rule = RuleFields.superRefine((rule, ctx) => {
  for (const problem of ruleProblems(rule)) {
    ctx.addIssue({ code: "custom", path: problem.path, message: problem.message });
  }
}).transform((rule) => ({
  ...rule,
  qualityGate: {
    suppressFlags: rule.qualityGate?.suppressFlags ?? defaultSuppressFlags(rule.taskKind),
    suppressOnExpiredCalibration:
      rule.qualityGate?.suppressOnExpiredCalibration ??
      (rule.taskKind === "enforcement" || rule.taskKind === "environmental"),
  },
  evidence: {
    window: rule.evidence?.window ?? conditionSpan(rule.condition),
    ...(rule.evidence?.statement === undefined ? {} : { statement: rule.evidence.statement }),
  },
}));
export type Rule = z.infer<typeof Rule>;
/** A rule as written in a file. */
export type RuleInput = z.input<typeof Rule>;

/** A rule file: rules, and overrides of rules defined here or in other files (the pack). */
export const RuleFile = z.strictObject({
  rules: z.array(Rule).default([]),
  overrides: z.array(FileOverride).default([]),
});
export type RuleFile = z.infer<typeof RuleFile>;

function defaultSuppressFlags(kind: TaskKind): QualityFlag[] {
  switch (kind) {
    case "enforcement":
    case "environmental":
      return QualityFlag.options.filter((f) => f !== "normal");
    case "emergency":
      return ["maintenance", "calibration"];
    case "maintenance":
      return [];
  }
}

/** The span of readings a condition decides on; the default evidence window. 0 = the triggering readings. */
function conditionSpan(c: Condition): number {
  switch (c.type) {
    case "threshold":
      if (c.exceedances !== undefined) return DAY_MS;
      return (c.window ?? 0) * (c.nOfM?.m ?? 1) + c.for;
    case "k_of_n":
      return (c.window ?? 0) + c.for;
    case "rate_of_rise":
      return c.window + c.for;
    case "state":
    case "quality":
      return c.for;
    case "deadman":
      return 0;
  }
}
