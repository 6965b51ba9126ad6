import { describe, expect, it } from "vitest";
import { DeviceBatch, type Instants, SubjectBatch } from "../../../rules/batch.js";
import type { Slot } from "../../../rules/subjects.js";

/*
 * The instants a subject is judged at for one stored batch (rules/batch.ts): each distinct
 * instant once, in time order, replayed only where every reading at it is.
 */

const SLOT = {} as Slot;

function device(...readings: Array<[number, boolean]>): DeviceBatch {
  const batch = new DeviceBatch(SLOT);
  for (const [at, replayed] of readings) batch.add(at, replayed);
  return batch;
}

const pairs = (instants: Instants) => instants.at.map((at, i) => [at, instants.replayed[i]]);

describe("stored batch instants", () => {
  it("a device's readings in time order are its instants", () => {
    expect(pairs(device([10, false], [20, true]).instants())).toEqual([
      [10, false],
      [20, true],
    ]);
  });

  it("a device's readings out of order or at one instant are sorted and merged", () => {
    const batch = device([30, true], [10, false], [30, false], [20, true], [10, false]);
    expect(pairs(batch.instants())).toEqual([
      [10, false],
      [20, true],
      [30, false],
    ]);
  });

  it("a subject's devices at the same instants are judged once per instant", () => {
    const merged = new SubjectBatch(
      device([30, false], [60, true]),
      device([30, false], [60, true]),
    );
    expect(pairs(merged.instants())).toEqual([
      [30, false],
      [60, true],
    ]);
  });

  it("an instant is replayed for the subject only if it is for every device with it", () => {
    const merged = new SubjectBatch(
      device([10, true], [20, false], [30, true], [40, false]),
      device([10, false], [20, true], [30, true], [35, true]),
    );
    merged.add(device([5, true], [30, false], [50, true]));
    expect(pairs(merged.instants())).toEqual([
      [5, true],
      [10, false],
      [20, false],
      [30, false],
      [35, true],
      [40, false],
      [50, true],
    ]);
  });
});
