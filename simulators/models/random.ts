/**
 * Seeded randomness for the signal models. Everything is counter-based: the numbers drawn for
 * a given (seed, stream, index) never depend on what else was drawn before, so a model can be
 * asked for any instant in any order and still give the same answer.
 */

/** A small, fast seeded generator (mulberry32) with the draws the models need. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform in [min, max). */
  uniform(min: number, max: number): number;
  /** Standard normal (Box–Muller), scaled: mean + sd · N(0, 1). */
  normal(mean?: number, sd?: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
}

/** mulberry32: 32-bit state, period 2^32, good enough for simulation and tiny. */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    uniform: (min, max) => min + (max - min) * next(),
    normal: (mean = 0, sd = 1) => {
      // 1 - next() is in (0, 1], so the logarithm is finite.
      const u = 1 - next();
      const v = next();
      return mean + sd * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
    chance: (p) => next() < p,
  };
}

/** Mixes integers into one 32-bit seed (murmur3 finaliser over each part). */
export function hashSeed(...parts: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    // Split into two 32-bit halves so millisecond timestamps and negative indices mix fully.
    const lo = part >>> 0;
    const hi = Math.floor(part / 4_294_967_296) >>> 0;
    for (const word of [lo, hi]) {
      let k = Math.imul(word, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      h ^= Math.imul(k, 0x1b873593);
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Streams keep a model's independent random choices apart (one number per purpose). */
export const STREAM = {
  samples: 1,
  events: 2,
  drift: 3,
  fault: 4,
  wind: 5,
  weather: 6,
  background: 7,
  activity: 8,
  measurement: 9,
} as const;

/** The generator for one (seed, stream, index) cell: same inputs, same numbers. */
export function rngAt(seed: number, stream: number, index: number): Rng {
  return mulberry32(hashSeed(seed, stream, index));
}

function smoothstep(x: number): number {
  return x * x * (3 - 2 * x);
}

/**
 * Smooth random drift, N(0, 1) at knots `periodMs` apart and interpolated between them:
 * a pure function of time with the look of a slowly wandering signal.
 */
export function valueNoise(seed: number, stream: number, ms: number, periodMs: number): number {
  const x = ms / periodMs;
  const k = Math.floor(x);
  const a = rngAt(seed, stream, k).normal();
  const b = rngAt(seed, stream, k + 1).normal();
  return a + (b - a) * smoothstep(x - k);
}

/**
 * One step of an AR(1) process x' = φ·x + σ·√(1−φ²)·ε, stationary with standard deviation σ.
 * For step-by-step processes (see `steppedProcess`).
 */
export function ar1Step(previous: number, phi: number, sigma: number, rng: Rng): number {
  return phi * previous + sigma * Math.sqrt(1 - phi * phi) * rng.normal();
}

/** A spike: with probability `rate`, an exponentially distributed bump of mean `magnitude`. */
export function spike(rng: Rng, rate: number, magnitude: number): number {
  return rng.chance(rate) ? -magnitude * Math.log(1 - rng.next()) : 0;
}

/** Steps a stepped process keeps at most: four years of minutes. */
export const MAX_PROCESS_STEPS = 4 * 366 * 24 * 60;

/**
 * A process advanced in fixed steps from an epoch, memoised: `at(ms)` returns the state of the
 * step that contains `ms`. Pure from the outside (the cache only saves recomputation); before
 * the epoch the initial state holds. The cache holds one state per step up to the latest instant
 * asked for, bounded by `maxSteps`; asking beyond it is a programmer error (a wrong epoch) and throws.
 */
export function steppedProcess<S>(
  epochMs: number,
  stepMs: number,
  initial: S,
  step: (previous: S, index: number) => S,
  maxSteps: number = MAX_PROCESS_STEPS,
): { at(ms: number): S } {
  const states: S[] = [initial];
  return {
    at(ms) {
      if (ms < epochMs) return initial;
      const index = Math.floor((ms - epochMs) / stepMs);
      if (index >= maxSteps) {
        throw new RangeError(
          `instant ${new Date(ms).toISOString()} is ${index} steps after the epoch; at most ${maxSteps} are kept`,
        );
      }
      while (states.length <= index) {
        const previous = states[states.length - 1] as S;
        states.push(step(previous, states.length));
      }
      return states[index] as S;
    },
  };
}
