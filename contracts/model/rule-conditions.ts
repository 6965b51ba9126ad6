import { z } from "zod";
import { QualityFlag } from "./quality.js";

import { PeriodValue, Value } from "./rule-fields.js";
import { HoldDuration, Window } from "./rule-time.js";

/*
 * What must hold for a rule's alarm to raise: the condition types and their windows.
 */

// ---------------------------------------------------------------------------------------------
// Conditions

/** How the readings of a window are reduced to one number. */
export const Aggregate = z.enum(["latest", "mean", "max", "min", "energy_mean"], {
  error: "aggregate must be latest, mean, max, min or energy_mean",
});
export type Aggregate = z.infer<typeof Aggregate>;

/** Comparison of the aggregate with the threshold; `>`/`>=` raise above it, `<`/`<=` below it. */
export const Comparison = z.enum([">", ">=", "<", "<="], { error: "op must be >, >=, < or <=" });
export type Comparison = z.infer<typeof Comparison>;

/**
 * `rolling`: the window (t − window, t], evaluated on every reading and clock tick.
 * `clock`: complete intervals of length `window` aligned to local midnight in the schedule's time
 * zone (10-min means at :00, :10, …), each evaluated once when it ends.
 */
export const WindowAlign = z.enum(["rolling", "clock"], {
  error: "align must be rolling or clock",
});
export type WindowAlign = z.infer<typeof WindowAlign>;

const QuantityRef = z.string({ error: "quantity must be a string" }).min(1);

/**
 * Share of a window the readings must cover for the window to be judged, when the rule does not
 * say (docs/standards.md, Data coverage): the product default, by analogy with GB 3095-2012,
 * whose data-validity rule (§8) counts an hourly mean valid with at least 45 minutes of data.
 */
export const DEFAULT_MIN_COVERAGE = 0.75;

/** Minimum coverage of a window (0 < x <= 1): below it the window is a gap, not a verdict. */
const MinCoverage = z
  .number({ error: "minCoverage must be a number" })
  .gt(0, { error: "minCoverage must be > 0" })
  .max(1, { error: "minCoverage must be <= 1" });
const forField = HoldDuration.default(0);

const aggregateFields = {
  quantity: QuantityRef,
  aggregate: Aggregate,
  /** Required except for `latest`. Milliseconds. */
  window: Window.optional(),
  align: WindowAlign.default("rolling"),
  op: Comparison,
  /** The alarm raises when `aggregate op raise` holds. */
  raise: PeriodValue,
  /**
   * The alarm clears when `aggregate op clear` no longer holds. Absent: same as raise (no
   * hysteresis). Must be on the compliant side of raise.
   */
  clear: PeriodValue.optional(),
  /** How long the raise comparison must hold before the alarm is active (pending until then). */
  for: forField,
  /**
   * Share of the window its readings must cover (each reading covers the interval it measured,
   * its device's expectedIntervalS ending at its stamp). Absent: DEFAULT_MIN_COVERAGE. Windowless
   * `latest` judges one reading and ignores it.
   */
  minCoverage: MinCoverage.optional(),
};

/**
 * A windowed aggregate of one numeric quantity compared with a threshold.
 * `energy_mean` is `10·log10(mean(10^(Li/10)))`, the only correct mean of dB levels (GB 3096-2008, definition of LAeq; docs/standards.md, Noise).
 */
export const ThresholdCondition = z.strictObject({
  type: z.literal("threshold"),
  ...aggregateFields,
  /**
   * N-of-M: the condition holds when at least `n` of the last `m` complete clock intervals violate
   * (`{ n: 3, m: 3 }` = three consecutive 10-min means). Needs `align: clock`.
   */
  nOfM: z
    .strictObject({
      n: z.number().int().min(1, { error: "n must be >= 1" }),
      m: z.number().int().min(1, { error: "m must be >= 1" }).max(1_440),
    })
    .refine((x) => x.n <= x.m, { error: "n must not exceed m", path: ["n"] })
    .optional(),
  /**
   * Allowed violating intervals per local day (DB13/2934-2019: compliant with ≤ 2 exceedances).
   * The alarm raises on violating interval `allowedPerDay + 1` and clears when the day ends.
   * Needs `align: clock`.
   */
  exceedances: z
    .strictObject({
      allowedPerDay: z.number().int().min(0, { error: "allowedPerDay must be >= 0" }),
    })
    .optional(),
});
export type ThresholdCondition = z.infer<typeof ThresholdCondition>;

/**
 * Rise of a quantity within a window: newest reading minus the oldest reading in (t − window, t],
 * in the quantity's unit. Raises when the rise is `>= raise`; clears when it is below `clear`.
 */
export const RateOfRiseCondition = z.strictObject({
  type: z.literal("rate_of_rise"),
  quantity: QuantityRef,
  window: Window,
  raise: Value,
  clear: Value.optional(),
  for: forField,
});
export type RateOfRiseCondition = z.infer<typeof RateOfRiseCondition>;

/** One term of a state condition: the latest reported value of a switch quantity. */
export const StateTerm = z.strictObject({
  quantity: QuantityRef,
  is: z.boolean({ error: "is must be true or false" }),
});
export type StateTerm = z.infer<typeof StateTerm>;

/**
 * Switch states: `all` terms hold (AND) or `any` holds (OR), each on the latest reported value of
 * its quantity. A quantity never reported makes its term false.
 */
export const StateCondition = z.strictObject({
  type: z.literal("state"),
  match: z.enum(["all", "any"], { error: "match must be all or any" }).default("all"),
  terms: z.array(StateTerm).min(1, { error: "terms must hold at least one term" }),
  for: forField,
});
export type StateCondition = z.infer<typeof StateCondition>;

/**
 * No data: the device sent no reading for longer than `factor` × its `expectedIntervalS`.
 * Evaluated on the clock tick. Clears on the next reading.
 */
export const DeadmanCondition = z.strictObject({
  type: z.literal("deadman"),
  factor: z
    .number({ error: "factor must be a number" })
    .min(1, { error: "factor must be >= 1" })
    .max(1_000),
});
export type DeadmanCondition = z.infer<typeof DeadmanCondition>;

/**
 * The device's own state: the newest reading carries one of `flags`, or (`calibrationExpired`)
 * the local date is after the device's `calibrationDueOn`. Opens maintenance tasks only.
 */
export const QualityCondition = z.strictObject({
  type: z.literal("quality"),
  flags: z.array(QualityFlag).default([]),
  calibrationExpired: z.boolean().default(false),
  for: forField,
});
export type QualityCondition = z.infer<typeof QualityCondition>;

/**
 * Voting across the subject's devices: the condition holds when at least `k` of the `n` voting
 * devices have `aggregate op raise`. Voting devices are the subject's enabled devices of the
 * scope's kinds that are neither silent (deadman) nor suppressed by the quality gate.
 * `degraded`: when fewer than `k` vote, `lower_k` votes with k = n (n ≥ 1), `keep_k` cannot raise.
 */
export const KOfNCondition = z.strictObject({
  type: z.literal("k_of_n"),
  k: z.number().int().min(1, { error: "k must be >= 1" }).max(64),
  ...aggregateFields,
  degraded: z
    .enum(["lower_k", "keep_k"], { error: "degraded must be lower_k or keep_k" })
    .default("keep_k"),
});
export type KOfNCondition = z.infer<typeof KOfNCondition>;

const CONDITION_TYPES = ["threshold", "rate_of_rise", "state", "deadman", "quality", "k_of_n"];

/** What must hold for the alarm to raise. Discriminated by `type`. */
export const Condition = z.discriminatedUnion(
  "type",
  [
    ThresholdCondition,
    RateOfRiseCondition,
    StateCondition,
    DeadmanCondition,
    QualityCondition,
    KOfNCondition,
  ],
  {
    error: (issue) => {
      const code: string = issue.code;
      if (code !== "invalid_union") return undefined;
      const type = (issue.input as { type?: unknown } | undefined)?.type;
      const expected = `expected one of ${CONDITION_TYPES.join(", ")}`;
      return type === undefined
        ? `condition type is required; ${expected}`
        : `unknown condition type ${JSON.stringify(type)}; ${expected}`;
    },
  },
);
export type Condition = z.infer<typeof Condition>;
