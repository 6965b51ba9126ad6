import { z } from "zod";
import { Identifier } from "./ids.js";
import { QualityFlag } from "./quality.js";

import {
  Clause,
  LimitContext,
  LimitValues,
  Period,
  PeriodName,
  RuleId,
  Value,
} from "./rule-fields.js";
import { Delay, HoldDuration } from "./rule-time.js";

/*
 * What a raised alarm means: severity (emergency or enforcement level), actions, timing, the
 * data-quality gate and overrides per city, district, site and device.
 */

// ---------------------------------------------------------------------------------------------
// Severity, actions, timing, quality gate, overrides

/** Emergency levels, least to most severe (National emergency plan; Emergency Response Law). */
export const EmergencyLevel = z.enum(["IV", "III", "II", "I"]);
export type EmergencyLevel = z.infer<typeof EmergencyLevel>;

/** Colour of each emergency level: IV 一般 blue · III 较大 yellow · II 重大 orange · I 特别重大 red. */
export const EMERGENCY_LEVEL_COLOUR = {
  IV: "blue",
  III: "yellow",
  II: "orange",
  I: "red",
} as const satisfies Record<EmergencyLevel, string>;

/**
 * Enforcement levels: `warning` notifies the regulated party (no case); `case` files the
 * enforcement case. A rule without levels is at `case` as soon as it raises.
 */
export const EnforcementLevel = z.enum(["warning", "case"]);
export type EnforcementLevel = z.infer<typeof EnforcementLevel>;

export const SEVERITY_ORDER: Readonly<Record<string, number>> = {
  IV: 0,
  III: 1,
  II: 2,
  I: 3,
  warning: 0,
  case: 1,
};

/** Who an emergency level's actions concern: the subject, or a tunnel segment and its neighbours. */
export const AffectedArea = z.enum(["subject", "subject_and_neighbours"], {
  error: "area must be subject or subject_and_neighbours",
});
export type AffectedArea = z.infer<typeof AffectedArea>;

export const ActionText = z.string().min(1).max(300);

/**
 * One severity level. The first level raises at `condition.raise` (omit `raise` here); each
 * further level has its own, strictly more severe `raise`, so severity can rise within one alarm.
 */
export const SeverityLevel = z.strictObject({
  level: z.enum([...EmergencyLevel.options, ...EnforcementLevel.options], {
    error: "level must be IV, III, II, I (emergency) or warning, case (enforcement)",
  }),
  raise: Value.optional(),
  /** Recommended actions, in order ("accident ventilation in the segment and its neighbours"). */
  actions: z.array(ActionText).default([]),
  area: AffectedArea.default("subject"),
});
export type SeverityLevel = z.infer<typeof SeverityLevel>;

/** Flap suppression and escalation. No defaults: no standard the pack cites sets them. Milliseconds. */
export const RuleTiming = z
  .strictObject({
    /** An active alarm stays active at least this long before it may clear. */
    minActive: HoldDuration.optional(),
    /** The clear comparison must hold this long before the alarm clears (recovering until then). */
    clearHold: HoldDuration.optional(),
    /** Emergency rules: escalate when the task is not acknowledged within this time. */
    escalateAfter: Delay.optional(),
  })
  .prefault({});
export type RuleTiming = z.infer<typeof RuleTiming>;

/**
 * Escalation of an unacknowledged emergency task when its rule names no `escalateAfter`: a
 * product default (no standard the pack cites sets one), so no emergency waits unseen.
 */
export const DEFAULT_EMERGENCY_ESCALATION_MS = 15 * 60_000;

/** When a rule's unacknowledged task escalates (emergency rules always; others never). */
export function escalationAfter(rule: {
  readonly taskKind: string;
  readonly timing: { readonly escalateAfter?: number | undefined };
}): number | undefined {
  if (rule.taskKind !== "emergency") return undefined;
  return rule.timing.escalateAfter ?? DEFAULT_EMERGENCY_ESCALATION_MS;
}

/**
 * Which readings a rule ignores. Readings flagged with one of `suppressFlags` are left out of
 * every aggregate, state and vote, and never become evidence; a device whose calibration has
 * expired contributes nothing while `suppressOnExpiredCalibration`. Defaults by task kind:
 * enforcement — every flag except `normal`, and expired calibration (HJ 212-2017 data flags;
 * Administrative Penalty Law 2021 Art. 41); emergency — `maintenance` and `calibration` only
 * (test gas must not evacuate a tunnel; a faulty or over-range gas reading still alarms);
 * maintenance — nothing.
 */
export const QualityGate = z.strictObject({
  suppressFlags: z.array(QualityFlag).optional(),
  suppressOnExpiredCalibration: z.boolean().optional(),
});

/** Where a file-level or in-rule override applies: the whole city, a district, a site, a device. */
export const OverrideLevel = z.enum(["city", "district", "site", "device"], {
  error: "at must be city, district, site or device",
});
export type OverrideLevel = z.infer<typeof OverrideLevel>;
export const OVERRIDE_LEVELS = OverrideLevel.options;

const overrideFields = {
  at: OverrideLevel,
  /** District name (`area.district`), site id or device id; absent for `city`. */
  id: z.string().min(1).max(64).optional(),
  /** Only where the subject's context matches (e.g. one zone class). */
  when: LimitContext.optional(),
  /** Replacement limit values; every name must exist in the rule's limit table. */
  values: LimitValues.optional(),
  /** Replacement schedule periods (night 23:00–07:00 in one county). */
  periods: z.record(PeriodName, Period).optional(),
  /** Switch the rule on or off here (a city turning a pack rule off, a site exempted). */
  enabled: z.boolean({ error: "enabled must be true or false" }).optional(),
  /** The local notice or decision that sets these numbers; evidence cites it. */
  clause: Clause.optional(),
  /** Set by the loader: the file the override was read from. */
  source: z.string().optional(),
};

function checkOverrideShape(
  o: {
    at: OverrideLevel;
    id?: string | undefined;
    values?: unknown;
    periods?: unknown;
    enabled?: boolean | undefined;
  },
  ctx: z.core.$RefinementCtx,
): void {
  if (o.at === "city" && o.id !== undefined) {
    ctx.addIssue({ code: "custom", path: ["id"], message: "a city override names no id" });
  }
  if (o.at !== "city" && o.id === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["id"],
      message: `a ${o.at} override needs the ${o.at}'s id`,
    });
  }
  if (
    (o.at === "site" || o.at === "device") &&
    o.id !== undefined &&
    !Identifier.safeParse(o.id).success
  ) {
    ctx.addIssue({
      code: "custom",
      path: ["id"],
      message: `${o.at} id ${JSON.stringify(o.id)} is not a valid id`,
    });
  }
  if (o.values === undefined && o.periods === undefined && o.enabled === undefined) {
    ctx.addIssue({
      code: "custom",
      path: [],
      message: "an override must set values, periods or enabled",
    });
  }
}

/** A number or period replaced for the city, a district, a site or a device. */
export const RuleOverride = z.strictObject(overrideFields).superRefine(checkOverrideShape);
export type RuleOverride = z.infer<typeof RuleOverride>;

/** An override in a rule file's `overrides:` list, aimed at a rule by id (usually a pack rule). */
export const FileOverride = z
  .strictObject({ rule: RuleId, ...overrideFields })
  .superRefine(checkOverrideShape);
export type FileOverride = z.infer<typeof FileOverride>;
