import {
  combineParts,
  type Evaluation,
  localMidnight,
  type Part,
  partOf,
  SILENT_FACTOR,
  type SubjectView,
  usable,
  usableDevices,
} from "./engine/index.js";
import type { Slot, Subject, SubjectIndex } from "./subjects.js";

/*
 * The parts of a site or segment evaluation kept between instants. A segment of fifty detectors
 * is evaluated at every instant of every batch (docs/rules.md, Time), and at each instant only
 * the devices with a reading at it have moved: their parts are judged again, the others' kept.
 * Exact, not sampled: a kept part is one the engine would compute again from the same reading,
 * and every condition a part depends on is checked before it is kept — the newest reading at or
 * before the instant, a late reading (the series' epoch), the side of the alarm (raise or clear),
 * the registry, the local date (calibration expiry). The tests compare it with the full
 * evaluation (evaluateCondition) at every instant.
 */

interface Kept {
  readonly part: Part;
  /** The device's newest reading at or before the instant the part was computed at. */
  readonly newest: number | undefined;
  readonly epoch: number;
  /** k_of_n: silent (no vote) after this instant. */
  readonly silentAfter: number;
}

export class SubjectParts {
  /** Each device's kept part, by its place in #slots (undefined: none, or not usable). */
  #kept: Array<Kept | undefined> = [];
  /** The subject's devices (index.partSlots) when the parts were all computed. */
  #slots: readonly Slot[] = [];
  #previouslyActive = false;
  #generation = -1;
  /** Start of the next local day after the parts were all computed. */
  #dayEnd = Number.NEGATIVE_INFINITY;
  /** The last combination, valid until a part moves or a device falls silent. */
  #combined: Evaluation | undefined;
  #nextSilence = Number.POSITIVE_INFINITY;

  /** The subject's evaluation at `at`, recomputing only the parts that moved. */
  evaluate(
    index: SubjectIndex,
    subject: Subject,
    at: number,
    previouslyActive: boolean,
  ): Evaluation {
    const rule = subject.rule;
    const kOfN = rule.condition.type === "k_of_n";
    if (
      previouslyActive !== this.#previouslyActive ||
      index.generation !== this.#generation ||
      at >= this.#dayEnd
    ) {
      this.#all(index, subject, at, previouslyActive);
      this.#combined = undefined;
    } else {
      let view: SubjectView | undefined;
      const slots = this.#slots;
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[i] as Slot;
        const kept = this.#kept[i];
        if (kept !== undefined && unmoved(slot, kept, at)) continue;
        const d = index.deviceView(slot, at);
        this.#combined = undefined;
        if (!usable(rule, d, at)) {
          this.#kept[i] = undefined;
          continue;
        }
        view ??= index.subjectShell(subject);
        this.#kept[i] = keep(partOf(rule, d, view, at, previouslyActive), slot, d.lastSeenAt);
      }
    }
    if (this.#combined !== undefined && !(kOfN && at > this.#nextSilence)) return this.#combined;
    const parts: Part[] = [];
    this.#nextSilence = Number.POSITIVE_INFINITY;
    // In the subject's device order, as the full evaluation combines them.
    for (const kept of this.#kept) {
      if (kept === undefined) continue;
      if (kOfN && at > kept.silentAfter) continue;
      this.#nextSilence = Math.min(this.#nextSilence, kept.silentAfter);
      parts.push(kept.part);
    }
    this.#combined = combineParts(rule, parts);
    return this.#combined;
  }

  #all(index: SubjectIndex, subject: Subject, at: number, previouslyActive: boolean): void {
    const rule = subject.rule;
    this.#previouslyActive = previouslyActive;
    this.#generation = index.generation;
    const tz = rule.schedule.timeZone;
    this.#dayEnd = localMidnight(localMidnight(at, tz) + 30 * 3_600_000, tz);
    const view = index.subjectView(subject, at);
    this.#slots = index.partSlots(subject);
    this.#kept = new Array<Kept | undefined>(this.#slots.length);
    const places = new Map(this.#slots.map((slot, i) => [slot.device.id as string, i]));
    for (const d of usableDevices(rule, view, at)) {
      const i = places.get(d.device.id);
      if (i === undefined) continue;
      this.#kept[i] = keep(
        partOf(rule, d, view, at, previouslyActive),
        this.#slots[i] as Slot,
        d.lastSeenAt,
      );
    }
  }
}

function keep(part: Part, slot: Slot, newest: number | undefined): Kept {
  return {
    part,
    newest,
    epoch: slot.readings.epoch,
    silentAfter:
      newest === undefined
        ? Number.POSITIVE_INFINITY
        : newest + SILENT_FACTOR * slot.device.expectedIntervalS * 1_000,
  };
}

/** Whether the device's newest reading at or before `at` is still the one its part was judged on. */
function unmoved(slot: Slot, kept: Kept, at: number): boolean {
  if (slot.readings.epoch !== kept.epoch) return false;
  const newest = slot.lastSeenAt;
  if (newest === undefined || kept.newest === undefined) return newest === kept.newest;
  if (newest <= kept.newest) return true;
  const i = slot.readings.firstAfter(at) - 1;
  return i >= 0 && slot.readings.atOf(i) === kept.newest;
}
