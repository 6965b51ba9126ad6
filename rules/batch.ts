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
    if (this.#devices.length === 1) return (this.#devices[0] as DeviceBatch).instants();
    const merged = new Map<number, boolean>();
    for (const d of this.#devices)
      for (const [at, replayed] of d.instants())
        merged.set(at, (merged.get(at) ?? true) && replayed);
    return [...merged].sort((a, b) => a[0] - b[0]);
  }
}
