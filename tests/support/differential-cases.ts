import fc from "fast-check";
import type { Device, QualityFlag, Rule, Site } from "../../contracts/index.js";
import { ThresholdCondition } from "../../contracts/index.js";
import type { DifferentialCase, Partition } from "./differential.js";
import {
  constructionSite,
  device,
  local,
  MIN,
  rule,
  SEC,
  tunnelSegment,
} from "./differential-fixtures.js";
import type { RefReading } from "./reference-evaluator.js";

/*
 * Generated cases for the differential tests: small series (20–120 readings a device) that cross
 * 22:00 or 06:00 in Asia/Shanghai, 1-min devices mostly (some 30-s, 5-min and 10-s ones), gaps,
 * quality flags, permits, values flapping around the limits, rules drawn from a few families, clock
 * ticks, and the partitions of the readings into messages with restarts between them.
 *
 * Each case is a recipe of small numbers (what fast-check shrinks and prints) built into rules,
 * registry and readings by `buildCase`.
 */

// ---------------------------------------------------------------------------------------------
// Recipes

export type Profile = "noise" | "gas";
export type Shape = "latest" | "rolling" | "clock";

export interface RuleRecipe {
  readonly profile: Profile;
  readonly type: "threshold" | "k_of_n" | "deadman" | "quality";
  readonly shape: Shape;
  readonly subject: "device" | "site";
  /** Indexes into the option lists below (taken modulo their length). */
  readonly quantity: number;
  readonly aggregate: number;
  readonly window: number;
  readonly op: number;
  readonly raise: number;
  readonly byPeriod: boolean;
  readonly hysteresis: boolean;
  readonly for: number;
  readonly activeDuring: number;
  readonly permit: boolean;
  readonly timing: number;
  readonly levels: boolean;
  readonly minCoverage: number;
  readonly k: number;
  readonly lowerK: boolean;
  readonly factor: number;
}

export interface DeviceRecipe {
  /** Index into INTERVALS_S. */
  readonly interval: number;
  /** Seconds the stamps sit after the minute (0: on the minute). */
  readonly jitterS: number;
  /** Intervals before the boundary the series starts. */
  readonly lead: number;
  /** Per reading: [value index, keep the previous value (0–9 < 6), flag index, intervals missed]. */
  readonly readings: ReadonlyArray<readonly [number, number, number, number]>;
}

export interface CaseRecipe {
  readonly boundary: "22:00" | "06:00";
  readonly profile: Profile;
  readonly rules: readonly RuleRecipe[];
  readonly devices: readonly DeviceRecipe[];
  /** Minutes the engine watched before the first reading. */
  readonly watchLeadMin: number;
  /** Tick spacing index into TICK_EVERY_S (0: none), offset seconds, tail minutes. */
  readonly ticks: readonly [number, number, number];
  /** A night_works permit from/to minutes after the boundary, or none. */
  readonly permit: readonly [number, number] | null;
}

const INTERVALS_S = [60, 60, 60, 30, 300, 10] as const;
const TICK_EVERY_S = [0, 60, 300, 780, 120, 600, 180] as const;
/** Mostly normal; one reading in five flagged. */
const FLAGS: readonly QualityFlag[] = [
  ...Array.from({ length: 12 }, () => "normal" as const),
  "fault",
  "maintenance",
  "calibration",
];

const NOISE_VALUES = [
  40, 45, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 65, 68, 69, 70, 71, 72, 75,
  80,
];
const CH4_VALUES = [0, 5, 10, 13, 14.5, 15, 15.5, 18, 19.5, 20, 20.5, 22, 24.5, 25, 25.5, 30, 40];
const O2_VALUES = [17, 17.5, 18, 18.5, 19, 19.5, 20, 20.5, 21, 21.5, 23.5, 24];

const pick = <T>(list: readonly T[], i: number): T => list[i % list.length] as T;

// ---------------------------------------------------------------------------------------------
// Arbitraries

const idx = fc.nat({ max: 11 });

export function ruleRecipe(
  profile: Profile,
  types: ReadonlyArray<RuleRecipe["type"]>,
  shapes: readonly Shape[],
  subjects: ReadonlyArray<RuleRecipe["subject"]> = ["device", "site"],
): fc.Arbitrary<RuleRecipe> {
  return fc.record({
    profile: fc.constant(profile),
    type: fc.constantFrom(...types),
    shape: fc.constantFrom(...shapes),
    subject: fc.constantFrom(...subjects),
    quantity: idx,
    aggregate: idx,
    window: idx,
    op: idx,
    raise: idx,
    byPeriod: fc.boolean(),
    hysteresis: fc.boolean(),
    for: idx,
    activeDuring: idx,
    permit: fc.boolean(),
    timing: idx,
    levels: fc.boolean(),
    minCoverage: idx,
    k: fc.integer({ min: 1, max: 3 }),
    lowerK: fc.boolean(),
    factor: idx,
  });
}

const readingRecipe = fc.tuple(
  fc.nat({ max: 40 }),
  fc.nat({ max: 9 }),
  fc.nat({ max: FLAGS.length - 1 }),
  fc.oneof(
    { weight: 12, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 25 }) },
  ),
);

export function deviceRecipe(
  count: { min: number; max: number },
  intervals: { min: number; max: number } = { min: 0, max: INTERVALS_S.length - 1 },
): fc.Arbitrary<DeviceRecipe> {
  return fc.record({
    interval: fc.integer(intervals),
    jitterS: fc.oneof(
      { weight: 3, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 59 }) },
    ),
    lead: fc.nat({ max: 90 }),
    readings: fc.array(readingRecipe, { minLength: count.min, maxLength: count.max }),
  });
}

export function caseRecipe(
  profile: Profile,
  rules: fc.Arbitrary<RuleRecipe>,
  devices: fc.Arbitrary<DeviceRecipe[]>,
  options: { ruleCount?: { min: number; max: number }; ticks?: fc.Arbitrary<number> } = {},
): fc.Arbitrary<CaseRecipe> {
  return fc.record({
    boundary: fc.constantFrom("22:00" as const, "06:00" as const),
    profile: fc.constant(profile),
    rules: fc.array(rules, {
      minLength: options.ruleCount?.min ?? 1,
      maxLength: options.ruleCount?.max ?? 3,
    }),
    devices,
    watchLeadMin: fc.nat({ max: 20 }),
    ticks: fc.tuple(
      options.ticks ?? fc.nat({ max: TICK_EVERY_S.length - 1 }),
      fc.nat({ max: 59 }),
      fc.nat({ max: 20 }),
    ),
    permit: fc.option(
      fc.tuple(fc.integer({ min: -90, max: 60 }), fc.integer({ min: 1, max: 120 })),
      {
        nil: null,
      },
    ),
  });
}

/**
 * Message sizes 1–500 (mostly small, so messages end inside the interesting minutes) and up to
 * `restarts` restarts after random messages.
 */
export function partition(restarts = 1): fc.Arbitrary<Partition> {
  return fc.record({
    sizes: fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) },
        { weight: 2, arbitrary: fc.integer({ min: 9, max: 60 }) },
        { weight: 1, arbitrary: fc.integer({ min: 61, max: 500 }) },
      ),
      { minLength: 1, maxLength: 12 },
    ),
    restarts: fc.array(fc.nat({ max: 60 }), { maxLength: restarts }),
  });
}

// ---------------------------------------------------------------------------------------------
// Building a case

/** Whether the schema in force has `minCoverage` (the engine's rewrite adds it). */
const HAS_MIN_COVERAGE = ThresholdCondition.safeParse({
  type: "threshold",
  quantity: "LAeq",
  aggregate: "latest",
  op: ">",
  raise: 1,
  minCoverage: 0.5,
}).success;

const ROLLING = ["1m", "2m", "5m", "10m", "20m"];
const CLOCK = ["5m", "10m", "15m", "30m", "1h"];
const FOR = ["0s", "0s", "0s", "1m", "3m", "30s"];
const TIMING: ReadonlyArray<Record<string, string>> = [
  {},
  {},
  {},
  { minActive: "5m" },
  { clearHold: "2m" },
  { minActive: "10m", clearHold: "5m" },
];
const DURING: ReadonlyArray<string[] | undefined> = [undefined, undefined, ["night"], ["day"]];
const COVERAGE = [undefined, undefined, undefined, 0.5, 1];

interface QuantityOption {
  readonly quantity: string;
  readonly ops: readonly string[];
  readonly raises: readonly number[];
  /** Added to raise for the clear level (compliant side) and the second level. */
  readonly clearBy: number;
  readonly levelBy: number;
  readonly aggregates: readonly string[];
}

const NOISE_Q: readonly QuantityOption[] = [
  {
    quantity: "LAeq",
    ops: [">", ">="],
    raises: [55, 60, 50, 70],
    clearBy: -2,
    levelBy: 10,
    aggregates: ["energy_mean", "max", "min"],
  },
  {
    quantity: "LAmax",
    ops: [">", ">="],
    raises: [70, 60, 55],
    clearBy: -2,
    levelBy: 10,
    aggregates: ["max", "min", "energy_mean"],
  },
];
const GAS_Q: readonly QuantityOption[] = [
  {
    quantity: "ch4",
    ops: [">=", ">"],
    raises: [20, 15],
    clearBy: -5,
    levelBy: 5,
    aggregates: ["max", "mean", "min"],
  },
  {
    quantity: "o2",
    ops: ["<", "<="],
    raises: [19.5, 20.5],
    clearBy: 0.5,
    levelBy: -1.5,
    aggregates: ["min", "mean", "max"],
  },
];

const ruleCache = new Map<string, Rule>();

/** The rule a recipe stands for (parsed by the real schema, cached). */
export function buildRule(r: RuleRecipe, id: string): Rule {
  const key = `${id}|${JSON.stringify(r)}`;
  const cached = ruleCache.get(key);
  if (cached !== undefined) return cached;
  const built = rule(ruleInput(r, id));
  if (ruleCache.size > 50_000) ruleCache.clear();
  ruleCache.set(key, built);
  return built;
}

function ruleInput(r: RuleRecipe, id: string): Record<string, unknown> {
  const gas = r.profile === "gas";
  const kind = gas ? "utility_tunnel" : "noise";
  const siteSubject = r.subject === "site" || r.type === "k_of_n";
  const scope = gas
    ? { kinds: [kind], ...(siteSubject ? { siteTypes: ["tunnel_segment"] } : {}) }
    : { kinds: [kind] };
  const subject = siteSubject ? (gas ? "segment" : "site") : "device";
  const base = { id, scope, subject };
  if (r.type === "deadman") {
    return {
      ...base,
      subject: "device",
      scope: { kinds: [kind] },
      taskKind: "maintenance",
      condition: { type: "deadman", factor: pick([3, 1, 2, 5, 1.5], r.factor) },
    };
  }
  if (r.type === "quality") {
    const flags = pick(
      [["fault", "calibration", "maintenance"], ["fault"], ["maintenance", "calibration"]],
      r.factor,
    );
    return {
      ...base,
      subject: "device",
      scope: { kinds: [kind] },
      taskKind: "maintenance",
      condition: { type: "quality", flags, for: pick(FOR, r.for) },
    };
  }
  const q = pick(gas ? GAS_Q : NOISE_Q, r.quantity);
  const op = pick(q.ops, r.op);
  const raiseNumber = pick(q.raises, r.raise);
  const aggregate = r.shape === "latest" ? "latest" : pick(q.aggregates, r.aggregate);
  const window =
    r.shape === "rolling"
      ? { window: pick(ROLLING, r.window) }
      : r.shape === "clock"
        ? { window: pick(CLOCK, r.window), align: "clock" }
        : {};
  // Noise: by period (day, night) from the limit table, or one number; gas: one number.
  const byPeriod = !gas && r.byPeriod;
  const limits = byPeriod
    ? { limits: { default: { day: raiseNumber + 10, night: raiseNumber } } }
    : {};
  const raise = byPeriod
    ? { byPeriod: { day: { from: "limits.day" }, night: { from: "limits.night" } } }
    : raiseNumber;
  const clear = !r.hysteresis
    ? {}
    : byPeriod
      ? {
          clear: {
            byPeriod: {
              day: { from: "limits.day", plus: q.clearBy },
              night: { from: "limits.night", plus: q.clearBy },
            },
          },
        }
      : { clear: raiseNumber + q.clearBy };
  const coverage = pick(COVERAGE, r.minCoverage);
  const condition = {
    type: r.type,
    quantity: q.quantity,
    aggregate,
    ...window,
    op,
    raise,
    ...clear,
    for: pick(FOR, r.for),
    ...(r.type === "k_of_n" ? { k: r.k, degraded: r.lowerK ? "lower_k" : "keep_k" } : {}),
    ...(HAS_MIN_COVERAGE && coverage !== undefined && r.shape !== "latest"
      ? { minCoverage: coverage }
      : {}),
  };
  const during = gas ? undefined : pick(DURING, r.activeDuring);
  const second = raiseNumber + q.levelBy;
  const levels = gas
    ? {
        levels: [
          { level: "IV", actions: ["ventilate"] },
          { level: "III", raise: second, actions: ["cut the gas"] },
        ],
      }
    : r.levels && !byPeriod
      ? { levels: [{ level: "warning" }, { level: "case", raise: second }] }
      : {};
  return {
    ...base,
    taskKind: gas ? "emergency" : "enforcement",
    condition,
    ...limits,
    ...levels,
    ...(during === undefined ? {} : { schedule: { activeDuring: during } }),
    ...(!gas && r.permit ? { permitExemption: { types: ["night_works"] } } : {}),
    timing: pick(TIMING, r.timing),
  };
}

const parsed = new Map<string, Site | Device>();

/** Registry entries parsed once (the schema's parse costs more than a case's evaluation). */
function once<T extends Site | Device>(key: string, make: () => T): T {
  let known = parsed.get(key);
  if (known === undefined) parsed.set(key, (known = make()));
  return known as T;
}

/** The case a recipe stands for. */
export function buildCase(recipe: CaseRecipe): DifferentialCase {
  const gas = recipe.profile === "gas";
  const boundary = local(recipe.boundary);
  const permit = gas ? null : recipe.permit;
  const site: Site = once(`site|${recipe.boundary}|${String(permit)}|${String(gas)}`, () =>
    gas
      ? tunnelSegment("seg-1")
      : constructionSite(
          "cs-1",
          permit === null
            ? []
            : [
                {
                  type: "night_works",
                  from: boundary + permit[0] * MIN,
                  to: boundary + (permit[0] + permit[1]) * MIN,
                },
              ],
        ),
  );
  const devices: Device[] = [];
  const readings: RefReading[] = [];
  recipe.devices.forEach((d, i) => {
    const id = `${gas ? "gas" : "noise"}-${i + 1}`;
    const intervalS = pick(INTERVALS_S, d.interval);
    const kind = gas ? "utility_tunnel" : "noise";
    devices.push(
      once(`device|${id}|${kind}|${intervalS}`, () => device(id, kind, site.id, intervalS)),
    );
    const step = intervalS * SEC;
    let t = boundary - d.lead * step + (d.jitterS % intervalS) * SEC;
    let prev: readonly number[] = [0, 0];
    for (const [v, keep, flag, missed] of d.readings) {
      t += (missed + 1) * step;
      const values = keep < 6 ? prev : [v, (v * 7 + keep) % 41];
      prev = values;
      readings.push({
        deviceId: id,
        t,
        quality: pick(FLAGS, flag),
        values: gas
          ? {
              ch4: pick(CH4_VALUES, values[0] as number),
              o2: pick(O2_VALUES, values[1] as number),
            }
          : {
              LAeq: pick(NOISE_VALUES, values[0] as number),
              LAmax: pick(NOISE_VALUES, values[1] as number),
            },
      });
    }
  });
  const first = Math.min(...readings.map((r) => r.t), boundary);
  const last = Math.max(...readings.map((r) => r.t), boundary);
  const watchedFrom = first - recipe.watchLeadMin * MIN;
  const every = pick(TICK_EVERY_S, recipe.ticks[0]) * SEC;
  const ticks: number[] = [];
  if (every > 0) {
    const end = last + recipe.ticks[2] * MIN;
    for (let t = watchedFrom + recipe.ticks[1] * SEC; t <= end; t += every) ticks.push(t);
  }
  return {
    rules: recipe.rules.map((r, i) => buildRule(r, `gen.${r.type}.${i}`)),
    devices,
    sites: [site],
    readings,
    ticks,
    watchedFrom,
  };
}
