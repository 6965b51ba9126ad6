import type { Slot, Subject } from "./subjects.js";

/*
 * A stored batch as the rules driver judges it: each device's readings in it (their instants and
 * replay marks), and the batch as one subject sees it. Every instant is judged, in time order
 * (docs/rules.md, Time): how a device batches its readings changes no decision.
 */

type Instants = ReadonlyArray<readonly [number, boolean]>;

/** One device's readings in a stored batch. */
export class DeviceBatch {
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
   * once, shared by the device's subjects).
   */
  instants(): Instants {
    if (this.#sorted !== undefined) return this.#sorted;
    if (this.#ordered) {
      this.#sorted = this.#at.map((at, i) => [at, this.#replayed[i] === true] as const);
    } else {
      const merged = new Map<number, boolean>();
      this.#at.forEach((at, i) =>
        merged.set(at, (merged.get(at) ?? true) && this.#replayed[i] === true),
      );
      this.#sorted = [...merged].sort((x, y) => x[0] - y[0]);
    }
    return this.#sorted;
  }
}

/** The batch as one subject sees it: its devices' readings together. */
export class SubjectBatch {
  readonly #devices: DeviceBatch[];

  constructor(
    readonly subject: Subject,
    first: DeviceBatch,
  ) {
    this.#devices = [first];
  }

  add(batch: DeviceBatch): void {
    this.#devices.push(batch);
  }

  /** Every instant of the subject's readings, in time order. */
  instants(): Instants {
    let merged = (this.#devices[0] as DeviceBatch).instants();
    for (let i = 1; i < this.#devices.length; i++) {
      merged = mergeInstants(merged, (this.#devices[i] as DeviceBatch).instants());
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
  const out: Array<readonly [number, boolean]> = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as readonly [number, boolean];
    const y = b[j] as readonly [number, boolean];
    if (x[0] < y[0]) {
      out.push(x);
      i++;
    } else if (y[0] < x[0]) {
      out.push(y);
      j++;
    } else {
      out.push(x[1] && !y[1] ? y : x);
      i++;
      j++;
    }
  }
  while (i < a.length) out.push(a[i++] as readonly [number, boolean]);
  while (j < b.length) out.push(b[j++] as readonly [number, boolean]);
  return out;
}
