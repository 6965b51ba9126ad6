import type { Slot } from "./subjects.js";

/*
 * A stored batch as the rules driver judges it: each device's readings in it (their instants and
 * replay marks), and the batch as one subject sees it. Every instant is judged, in time order
 * (docs/rules.md, Time): how a device batches its readings changes no decision.
 */

/** Distinct instants in time order, and whether each is replayed (parallel lists). */
export interface Instants {
  readonly at: readonly number[];
  readonly replayed: readonly boolean[];
}

/** Where a subject's instants come from: one device's batch, or several merged. */
export interface InstantSource {
  instants(): Instants;
}

/** One device's readings in a stored batch. */
export class DeviceBatch implements InstantSource {
  /** Instants in arrival order, with each reading's replay mark. */
  readonly #at: number[] = [];
  readonly #replayed: boolean[] = [];
  /** The instants arrived strictly in time order (the usual case: no sorting, no maps). */
  #ordered = true;
  #sorted: Instants | undefined;

  constructor(readonly slot: Slot) {}

  add(at: number, replayed: boolean): void {
    const last = this.#at[this.#at.length - 1];
    if (last !== undefined && at <= last) this.#ordered = false;
    this.#at.push(at);
    this.#replayed.push(replayed);
  }

  /**
   * The distinct instants in time order, each replayed only if every reading at it is (built
   * once, shared by the device's subjects; in arrival order as they came, when that is it).
   */
  instants(): Instants {
    if (this.#sorted !== undefined) return this.#sorted;
    if (this.#ordered) {
      this.#sorted = { at: this.#at, replayed: this.#replayed };
    } else {
      const merged = new Map<number, boolean>();
      this.#at.forEach((at, i) =>
        merged.set(at, (merged.get(at) ?? true) && this.#replayed[i] === true),
      );
      const sorted = [...merged].sort((x, y) => x[0] - y[0]);
      this.#sorted = { at: sorted.map((x) => x[0]), replayed: sorted.map((x) => x[1]) };
    }
    return this.#sorted;
  }
}

/** The batch as one subject sees it: its devices' readings together. */
export class SubjectBatch implements InstantSource {
  readonly #devices: InstantSource[];

  constructor(first: InstantSource, second: InstantSource) {
    this.#devices = [first, second];
  }

  add(batch: InstantSource): void {
    this.#devices.push(batch);
  }

  /** Every instant of the subject's readings, in time order. */
  instants(): Instants {
    let merged = (this.#devices[0] as InstantSource).instants();
    for (let i = 1; i < this.#devices.length; i++) {
      merged = mergeInstants(merged, (this.#devices[i] as InstantSource).instants());
    }
    return merged;
  }
}

/**
 * Two lists of distinct instants in time order merged into one, an instant replayed only if it is
 * in both lists where it is (a linear merge: a segment's detectors report at the same instants,
 * and a map and a sort per subject and batch cost more than the rest of the batching).
 */
function mergeInstants(a: Instants, b: Instants): Instants {
  const at: number[] = [];
  const replayed: boolean[] = [];
  let i = 0;
  let j = 0;
  while (i < a.at.length && j < b.at.length) {
    const x = a.at[i] as number;
    const y = b.at[j] as number;
    if (x < y) {
      at.push(x);
      replayed.push(a.replayed[i++] === true);
    } else if (y < x) {
      at.push(y);
      replayed.push(b.replayed[j++] === true);
    } else {
      at.push(x);
      replayed.push(a.replayed[i] === true && b.replayed[j] === true);
      i++;
      j++;
    }
  }
  while (i < a.at.length) {
    at.push(a.at[i] as number);
    replayed.push(a.replayed[i++] === true);
  }
  while (j < b.at.length) {
    at.push(b.at[j] as number);
    replayed.push(b.replayed[j++] === true);
  }
  return { at, replayed };
}
