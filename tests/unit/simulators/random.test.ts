import { describe, expect, it } from "vitest";
import {
  ar1Step,
  hashSeed,
  mulberry32,
  rngAt,
  spike,
  steppedProcess,
  valueNoise,
} from "../../../simulators/models/index.js";
import { mean } from "./fixtures.js";

describe("seeded randomness", () => {
  it("the same seed gives the same numbers, a different seed different ones", () => {
    const draw = (seed: number) => {
      const rng = mulberry32(seed);
      return Array.from({ length: 20 }, () => rng.next());
    };
    const a = mulberry32(7);
    const b = mulberry32(7);
    const xs = Array.from({ length: 20 }, () => a.next());
    expect(Array.from({ length: 20 }, () => b.next())).toEqual(xs);
    expect(draw(8)).not.toEqual(xs);
  });

  it("normal() has mean 0 and standard deviation 1", () => {
    const rng = mulberry32(42);
    const xs = Array.from({ length: 20_000 }, () => rng.normal());
    const m = mean(xs);
    const sd = Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
  });

  it("counter-based cells do not depend on the order they are asked in", () => {
    const forward = [1, 2, 3].map((i) => rngAt(5, 1, i).next());
    const backward = [3, 2, 1].map((i) => rngAt(5, 1, i).next()).reverse();
    expect(backward).toEqual(forward);
    expect(hashSeed(1, 2)).not.toBe(hashSeed(2, 1));
  });

  it("valueNoise is continuous in time", () => {
    const a = valueNoise(3, 1, 1_000_000, 60_000);
    const b = valueNoise(3, 1, 1_000_001, 60_000);
    expect(Math.abs(a - b)).toBeLessThan(0.01);
  });

  it("a stepped process gives the same state however it is queried", () => {
    const make = () => steppedProcess(0, 10, 0, (x, i) => x + i);
    const p = make();
    expect(make().at(95)).toBe(p.at(95));
    expect(p.at(35)).toBe(0 + 1 + 2 + 3);
    expect(p.at(-5)).toBe(0);
    const bounded = steppedProcess(0, 10, 0, (x) => x + 1, 100);
    expect(bounded.at(999)).toBe(99);
    expect(() => bounded.at(1000)).toThrow(RangeError);
  });

  it("ar1Step is stationary with the given standard deviation; spike fires at its rate", () => {
    const rng = mulberry32(9);
    let x = 0;
    const xs: number[] = [];
    for (let i = 0; i < 20_000; i++) xs.push((x = ar1Step(x, 0.9, 2, rng)));
    const m = mean(xs);
    expect(Math.sqrt(mean(xs.map((v) => (v - m) ** 2)))).toBeGreaterThan(1.8);
    expect(Math.sqrt(mean(xs.map((v) => (v - m) ** 2)))).toBeLessThan(2.2);
    const spikes = Array.from({ length: 10_000 }, () => spike(rng, 0.01, 5)).filter((v) => v > 0);
    expect(spikes.length).toBeGreaterThan(60);
    expect(spikes.length).toBeLessThan(140);
  });
});
