import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WakeHeap } from "../../../rules/wake-heap.js";

describe("WakeHeap", () => {
  it("pops in wake order, whatever the order of pushes and pops", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: -1_000, max: 1_000 }), fc.constant(null)), {
          maxLength: 300,
        }),
        (ops) => {
          const heap = new WakeHeap<number>();
          const model: number[] = [];
          for (const op of ops) {
            if (op === null) {
              model.sort((a, b) => a - b);
              expect(heap.peek()).toBe(model[0] ?? Number.POSITIVE_INFINITY);
              expect(heap.pop()).toBe(model.shift());
            } else {
              heap.push(op, op);
              model.push(op);
            }
            expect(heap.size).toBe(model.length);
          }
        },
      ),
      { seed: 20_261_206, numRuns: 300 },
    );
  });

  it("is empty after clear", () => {
    const heap = new WakeHeap<string>();
    heap.push(3, "c");
    heap.push(1, "a");
    heap.clear();
    expect(heap.size).toBe(0);
    expect(heap.pop()).toBeUndefined();
    expect(heap.peek()).toBe(Number.POSITIVE_INFINITY);
  });
});
