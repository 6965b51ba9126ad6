import type { QualityFlag } from "../contracts/index.js";
import type { Slot, Subject } from "./subjects.js";

/*
 * A stored batch as the rules driver judges it: each device's readings in it (their instants,
 * replay marks and quality flags, or only the newest), and the batch as one subject sees it.
 */

/** One device's readings in a stored batch: the instants, or only the newest. */
export class DeviceBatch {
  newest = Number.NEGATIVE_INFINITY;
  /** Every reading at `newest` is replayed. */
  newestReplayed = true;
  /** Whether every instant is kept (a subject of the device evaluates per reading). */
  readonly #keep: boolean;
  /** Instants in arrival order, with each reading's replay mark and quality flag. */
  readonly #at: number[] = [];
  readonly #replayed: boolean[] = [];
  readonly #quality: QualityFlag[] = [];
  /** The instants arrived strictly in time order (the usual case: no sorting, no maps). */
  #ordered = true;
  /** The device's quality flag before the batch. */
  readonly #qualityBefore: QualityFlag | undefined;
  #sorted: Array<[number, boolean]> | undefined;
  #changes: Set<number> | undefined;

  constructor(
    readonly slot: Slot,
    keepInstants: boolean,
  ) {
    this.#keep = keepInstants;
    this.#qualityBefore = slot.lastQuality;
  }

  add(at: number, replayed: boolean, quality: QualityFlag): void {
    if (at > this.newest) {
      this.newest = at;
      this.newestReplayed = replayed;
    } else if (at === this.newest) this.newestReplayed &&= replayed;
    if (!this.#keep) return;
    const last = this.#at[this.#at.length - 1];
    if (last !== undefined && at <= last) this.#ordered = false;
    this.#at.push(at);
    this.#replayed.push(replayed);
    this.#quality.push(quality);
  }

  /**
   * The distinct instants in time order, each replayed only if every reading at it is (built
   * once, shared by the device's subjects).
   */
  instants(): ReadonlyArray<[number, boolean]> {
    if (this.#sorted !== undefined) return this.#sorted;
    if (this.#ordered) {
      this.#sorted = this.#at.map((at, i) => [at, this.#replayed[i] === true]);
    } else {
      const merged = new Map<number, boolean>();
      this.#at.forEach((at, i) =>
        merged.set(at, (merged.get(at) ?? true) && this.#replayed[i] === true),
      );
      this.#sorted = [...merged].sort((x, y) => x[0] - y[0]);
    }
    return this.#sorted;
  }

  /**
   * Instants whose quality flag differs from the device's reading before (in time order); built
   * once, shared by the device's quality rules.
   */
  qualityChanges(): ReadonlySet<number> {
    if (this.#changes !== undefined) return this.#changes;
    const into = (this.#changes = new Set<number>());
    let before = this.#qualityBefore;
    if (this.#ordered) {
      this.#at.forEach((at, i) => {
        const quality = this.#quality[i];
        if (quality !== before) into.add(at);
        before = quality;
      });
      return into;
    }
    // Out of order: the last reading to arrive at an instant is the one kept (Series.insert).
    const byTime = new Map<number, QualityFlag>();
    this.#at.forEach((at, i) => byTime.set(at, this.#quality[i] as QualityFlag));
    for (const [at] of this.instants()) {
      const quality = byTime.get(at);
      if (quality !== before) into.add(at);
      before = quality;
    }
    return into;
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

  get newest(): number {
    let newest = Number.NEGATIVE_INFINITY;
    for (const d of this.#devices) newest = Math.max(newest, d.newest);
    return newest;
  }

  /** Every reading at the newest instant is replayed. */
  get newestReplayed(): boolean {
    const newest = this.newest;
    return this.#devices.every((d) => d.newest !== newest || d.newestReplayed);
  }

  /** Instants at which a device's quality flag changed. */
  qualityChanges(): ReadonlySet<number> {
    if (this.#devices.length === 1) return (this.#devices[0] as DeviceBatch).qualityChanges();
    const changes = new Set<number>();
    for (const d of this.#devices) for (const at of d.qualityChanges()) changes.add(at);
    return changes;
  }

  /** Every instant of the subject's readings, in time order. */
  instants(): ReadonlyArray<[number, boolean]> {
    if (this.#devices.length === 1) return (this.#devices[0] as DeviceBatch).instants();
    const merged = new Map<number, boolean>();
    for (const d of this.#devices)
      for (const [at, replayed] of d.instants())
        merged.set(at, (merged.get(at) ?? true) && replayed);
    return [...merged].sort((a, b) => a[0] - b[0]);
  }
}
