import { describe, expect, it } from "vitest";
import { fnv1a32, partitionOf } from "../../../cluster/partition.js";

describe("partitionOf", () => {
  it("is 32-bit FNV-1a: the reference vectors", () => {
    // From the FNV reference test suite (fnv1a_32 of "", "a", "foobar").
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  it("hashes the UTF-8 bytes, so any language computes the same partition", () => {
    // Computed independently (Python, over str.encode("utf-8")).
    expect(fnv1a32("深圳-站点-7")).toBe(0x7c9aef63);
    expect(partitionOf("深圳-站点-7", 64)).toBe(35);
    expect(partitionOf("device-0042", 64)).toBe(56);
  });

  it("spreads many keys over all partitions", () => {
    const counts = new Array<number>(64).fill(0);
    for (let i = 0; i < 64_000; i++) {
      const p = partitionOf(`device-${i}`, 64);
      counts[p] = (counts[p] ?? 0) + 1;
    }
    // 1,000 expected per partition; a usable hash stays well within ±20 %.
    expect(Math.min(...counts)).toBeGreaterThan(800);
    expect(Math.max(...counts)).toBeLessThan(1_200);
  });

  it("refuses a partition count that is not a positive integer", () => {
    expect(() => partitionOf("x", 0)).toThrow(RangeError);
    expect(() => partitionOf("x", 2.5)).toThrow(RangeError);
  });
});
