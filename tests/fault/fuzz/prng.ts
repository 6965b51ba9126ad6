/*
 * The fuzzers' seeded pseudo-random numbers (mulberry32): the same seed gives the same run, so a
 * failure is reproduced with CITYWATCH_FUZZ_SEED=<the printed seed>.
 */

export interface Prng {
  /** [0, 1) */
  next(): number;
  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** An index into `weights`, drawn in proportion to them. */
  weighted(weights: readonly number[]): number;
  bytes(n: number): Buffer;
}

export function prng(seed: number): Prng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => {
      if (items.length === 0) throw new Error("pick from nothing");
      return items[int(0, items.length - 1)] as (typeof items)[number];
    },
    weighted(weights) {
      const total = weights.reduce((s, w) => s + w, 0);
      let r = next() * total;
      for (let i = 0; i < weights.length; i++) {
        r -= weights[i] ?? 0;
        if (r < 0) return i;
      }
      return weights.length - 1;
    },
    bytes(n) {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = int(0, 255);
      return out;
    },
  };
}

/** The seed of a run without CITYWATCH_FUZZ_SEED: every CI run fuzzes the same inputs. */
const DEFAULT_SEED = 20_261_206;

/**
 * The run's seed (printed by the test, to replay it): CITYWATCH_FUZZ_SEED, a fresh one with
 * CITYWATCH_FUZZ_SEED=random (to explore; a failure names its seed), else DEFAULT_SEED, so a CI
 * run does not pass or fail by the draw.
 */
export function fuzzSeed(): number {
  const given = process.env["CITYWATCH_FUZZ_SEED"];
  if (given === "random") return Math.floor(Math.random() * 2 ** 32);
  if (given !== undefined && given !== "") {
    const seed = Number(given);
    if (!Number.isSafeInteger(seed))
      throw new Error(`CITYWATCH_FUZZ_SEED ${given} is not an integer`);
    return seed >>> 0;
  }
  return DEFAULT_SEED;
}

/** A positive integer from the environment, or the default. */
export function envCount(name: string, fallback: number): number {
  const given = process.env[name];
  if (given === undefined || given === "") return fallback;
  const n = Number(given);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`${name} ${given} is not a positive integer`);
  return n;
}
