import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, it } from "vitest";
import {
  AlarmFiles,
  compared,
  type DifferentialCase,
  deliveryPlan,
  describeCase,
  ONE_BY_ONE,
  type Partition,
  runProduction,
  type Step,
} from "../../support/differential.js";
import {
  buildCase,
  type CaseRecipe,
  caseRecipe,
  deviceRecipe,
  partition,
  type Profile,
  ruleRecipe,
} from "../../support/differential-cases.js";
import { type RefDecision, referenceDecisions } from "../../support/reference-evaluator.js";

/*
 * Differential property tests: the production rules driver against the reference evaluator
 * (tests/support/reference-evaluator.ts, docs/rules.md restated), on generated series that cross
 * 22:00 or 06:00 in Asia/Shanghai, delivered in random partitions with random restarts. The
 * property: the production's decisions (raise with its level, escalate-level, clear; each with
 * its data instant) are the reference's, whatever the partition.
 *
 * Runs: CITYWATCH_PROPERTY_RUNS in all (default 10,000, shared by the properties by weight), from
 * CITYWATCH_PROPERTY_SEED (default fixed: every run is the same). A failure prints fast-check's
 * seed and path and the case as local times; replay one property with
 * CITYWATCH_PROPERTY_REPLAY="<property title>@<seed>:<path>". CITYWATCH_PROPERTY_KEEP_PARTS=0
 * runs the driver without its kept per-device parts (rules/parts.ts), judging every device at
 * every instant: a failure that goes away with it is in parts.ts. CITYWATCH_PROPERTY_QUIET=1 (or 0)
 * skips quiet ticks (rules/quiet.ts) in every case (or none); by default in every other case.
 */

const TOTAL = Number(process.env.CITYWATCH_PROPERTY_RUNS ?? 10_000);
const SEED = Number(process.env.CITYWATCH_PROPERTY_SEED ?? 20_261_126);
const REPLAY = /^(.*)@(-?\d+):(.*)$/.exec(process.env.CITYWATCH_PROPERTY_REPLAY ?? "");
const KEEP_PARTS = process.env.CITYWATCH_PROPERTY_KEEP_PARTS !== "0";
const QUIET = process.env.CITYWATCH_PROPERTY_QUIET;

const dir = mkdtempSync(join(tmpdir(), "cw-differential-"));
const files = new AlarmFiles(dir);
afterAll(() => {
  files.close();
  rmSync(dir, { recursive: true, force: true });
});

type Arb = fc.Arbitrary<[CaseRecipe, Partition]>;

const same = (a: readonly RefDecision[], b: readonly RefDecision[]) =>
  JSON.stringify(a) === JSON.stringify(b);

/** Production against the reference on one case and partition; throws with the case when they differ. */
async function check(c: DifferentialCase, steps: readonly Step[]): Promise<void> {
  const quietTicks = quietTicksFor(steps);
  const production = compared(
    await runProduction(c, steps, { files, keepParts: KEEP_PARTS, quietTicks }),
  );
  const reference = compared(referenceDecisions(c));
  if (!same(production, reference)) {
    throw new Error(
      `production (quiet ticks ${quietTicks ? "skipped" : "judged"}) and reference differ\n${describeCase(c, steps, { production, reference })}`,
    );
  }
}

/**
 * Whether the driver skips quiet ticks (rules/quiet.ts, the backtest's replay): in every other
 * case by default (by the plan, so a replayed case runs the same way); CITYWATCH_PROPERTY_QUIET=1
 * or 0 for all cases.
 */
function quietTicksFor(steps: readonly Step[]): boolean {
  if (QUIET === "1") return true;
  if (QUIET === "0") return false;
  return steps.length % 2 === 1;
}

/** Weights of the properties in TOTAL. */
const WEIGHTS = {
  latest: 2,
  rolling: 2,
  clock: 1.5,
  kOfN: 2,
  clock_deadman: 1.5,
  restarts: 0.5,
  partitions: 0.5,
} as const;
const WEIGHT_SUM = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
const runsOf = (name: keyof typeof WEIGHTS) =>
  Math.max(1, Math.round((TOTAL * WEIGHTS[name]) / WEIGHT_SUM));

/** One property: fast-check over `arb`, seeded, with the runs of its weight. */
function property(
  title: string,
  weight: keyof typeof WEIGHTS,
  arb: Arb,
  body: (recipe: CaseRecipe, part: Partition) => Promise<void>,
) {
  const replay = REPLAY !== null && REPLAY[1] === title ? REPLAY : null;
  const skip = REPLAY !== null && replay === null;
  // Generous: a failure shrinks, and a nightly run may ask for a hundred times the runs.
  const timeout = 300_000 + runsOf(weight) * 100;
  it.skipIf(skip)(title, { timeout }, async () => {
    await fc.assert(
      fc.asyncProperty(arb, ([recipe, part]) => body(recipe, part)),
      replay === null
        ? { numRuns: runsOf(weight), seed: SEED + Object.keys(WEIGHTS).indexOf(weight) }
        : { seed: Number(replay[2]), path: replay[3] ?? "", endOnFailure: true },
    );
  });
}

/** A single device (noise on a construction site, or a tunnel detector on a segment). */
function single(
  types: Parameters<typeof ruleRecipe>[1],
  shapes: Parameters<typeof ruleRecipe>[2],
  options: {
    ticks?: fc.Arbitrary<number>;
    restarts?: number;
    intervals?: { min: number; max: number };
  } = {},
): Arb {
  const of = (profile: Profile) =>
    caseRecipe(
      profile,
      ruleRecipe(profile, types, shapes),
      fc.tuple(deviceRecipe({ min: 20, max: 120 }, options.intervals)),
      options.ticks === undefined ? {} : { ticks: options.ticks },
    );
  return fc.tuple(fc.oneof(of("noise"), of("gas")), partition(options.restarts ?? 0));
}

const reference = async (recipe: CaseRecipe, part: Partition) => {
  const c = buildCase(recipe);
  await check(c, deliveryPlan(c, part));
};

describe("rules engine against the reference evaluator (differential)", () => {
  property(
    "threshold on the latest reading: periods by the reading's interval, activeDuring, permits, levels, hysteresis, for",
    "latest",
    single(["threshold"], ["latest"]),
    reference,
  );

  property(
    "threshold over a rolling window: (T − W, T], per-period readings, coverage",
    "rolling",
    single(["threshold"], ["rolling"]),
    reference,
  );

  property(
    "threshold over clock intervals: (from, to] aligned to local midnight, placed by the midpoint",
    "clock",
    single(["threshold"], ["clock"], { intervals: { min: 0, max: 4 } }),
    reference,
  );

  property(
    "k_of_n over the devices of a segment or site (keep_k, lower_k, silent devices, flagged votes)",
    "kOfN",
    fc.tuple(
      fc.oneof(
        caseRecipe(
          "gas",
          ruleRecipe(
            "gas",
            ["k_of_n", "k_of_n", "threshold"],
            ["latest", "latest", "rolling", "clock"],
            ["site"],
          ),
          fc.array(deviceRecipe({ min: 15, max: 60 }, { min: 0, max: 5 }), {
            minLength: 2,
            maxLength: 4,
          }),
          { ruleCount: { min: 1, max: 2 } },
        ),
        caseRecipe(
          "noise",
          ruleRecipe("noise", ["k_of_n"], ["latest", "rolling", "clock"], ["site"]),
          fc.array(deviceRecipe({ min: 15, max: 60 }, { min: 0, max: 4 }), {
            minLength: 2,
            maxLength: 3,
          }),
          { ruleCount: { min: 1, max: 2 } },
        ),
      ),
      partition(0),
    ),
    reference,
  );

  property(
    "deadman and quality flags, on the clock ticks (devices heard late, never heard, silent)",
    "clock_deadman",
    single(["deadman", "deadman", "quality"], ["latest"], {
      ticks: fc.integer({ min: 1, max: 6 }),
    }),
    reference,
  );

  property(
    "a restart changes nothing: every rule family with frequent restarts",
    "restarts",
    single(["threshold", "deadman", "quality"], ["latest", "rolling", "clock"], {
      restarts: 4,
      ticks: fc.integer({ min: 0, max: 6 }),
    }),
    reference,
  );

  property(
    "the same decisions however the readings are partitioned (production against itself)",
    "partitions",
    fc.tuple(
      fc.oneof(
        caseRecipe(
          "noise",
          ruleRecipe("noise", ["threshold", "deadman"], ["latest", "rolling", "clock"]),
          fc.tuple(deviceRecipe({ min: 20, max: 120 })),
        ),
        caseRecipe(
          "gas",
          ruleRecipe("gas", ["k_of_n", "threshold"], ["latest", "rolling"], ["site"]),
          fc.array(deviceRecipe({ min: 15, max: 60 }, { min: 0, max: 5 }), {
            minLength: 2,
            maxLength: 3,
          }),
        ),
      ),
      partition(0),
    ),
    async (recipe, part) => {
      const c = buildCase(recipe);
      const steps = deliveryPlan(c, part);
      const one = deliveryPlan(c, ONE_BY_ONE);
      const batched = compared(await runProduction(c, steps, { files, keepParts: KEEP_PARTS }));
      const single = compared(await runProduction(c, one, { files, keepParts: KEEP_PARTS }));
      if (!same(batched, single)) {
        throw new Error(
          `one reading per message and the partition differ\n${describeCase(c, steps, {
            production: batched,
            reference: single,
          })}\n(reference = production one reading per message)`,
        );
      }
    },
  );
});
