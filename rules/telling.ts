import type { SubjectBatch } from "./batch.js";
import type { Slot, Subject } from "./subjects.js";

/*
 * The telling instants of a batch: where a subject evaluated per reading is evaluated. Each
 * evaluation walks the subject's windows, so one per reading of a long batch would cost the
 * ingest its throughput.
 */

/** Instants of one batch evaluated at most for one subject. */
const TELLING_INSTANTS = 4;

/** Where a subject's slots come from (read only for a batch with more than a few instants). */
export interface SubjectSlots {
  slotsOf(subject: Subject): readonly Slot[];
}

/** How much an instant (the i-th of the batch) can tell; -Infinity: it cannot move the alarm. */
type Score = (at: number, i: number) => number;

type Instants = ReadonlyArray<[number, boolean]>;

/**
 * The instants of a batch worth evaluating, in time order: all of them when few, otherwise the
 * newest and the ones that can decide — the most extreme values on the raising side (a spike),
 * the longest gaps (deadman), the changes of state or quality flag.
 */
export function telling(batch: SubjectBatch, slots: SubjectSlots): Instants {
  const instants = batch.instants();
  if (instants.length <= TELLING_INSTANTS) return instants;
  return newestAndBest(instants, scoreOf(batch, instants, slots.slotsOf(batch.subject)));
}

function scoreOf(batch: SubjectBatch, instants: Instants, slots: readonly Slot[]): Score {
  const c = batch.subject.rule.condition;
  // Only the batch's own span of each series is read (the windows can be long).
  const first = instants[0]?.[0] ?? 0;
  switch (c.type) {
    case "deadman":
      return gapScore(c.factor, instants, slots);
    case "threshold":
    case "k_of_n":
    case "rate_of_rise": {
      const values = valuesAt(slots, c.quantity, first);
      const sign = c.type !== "rate_of_rise" && (c.op === "<" || c.op === "<=") ? -1 : 1;
      return (at) => {
        const value = values.get(at);
        return value === undefined ? -Infinity : sign * value;
      };
    }
    case "quality": {
      // A reading whose flag differs from the device's reading before it can move the alarm.
      const changes = batch.qualityChanges();
      return (at) => (changes.has(at) ? 1 : -Infinity);
    }
    case "state":
      return stateScore(
        c.terms.map((t) => t.quantity),
        instants,
        slots,
        first,
      );
  }
}

/**
 * Only a silence longer than the limit can raise (the newest instant clears): the gap before each
 * instant within the batch. Not the one before its first: rounds are stored concurrently, so the
 * readings just before a batch may be in another round still in flight (the clock tick judges
 * silence between batches, in real time).
 */
function gapScore(factor: number, instants: Instants, slots: readonly Slot[]): Score {
  const interval = Math.min(...slots.map((slot) => slot.device.expectedIntervalS));
  const limit = factor * interval * 1_000;
  return (at, i) => {
    const gap = at - (instants[i - 1]?.[0] ?? at);
    return gap > limit ? gap : -Infinity;
  };
}

/** Each instant's highest value of a quantity over the slots, from `first` on. */
function valuesAt(slots: readonly Slot[], quantity: string, first: number): Map<number, number> {
  const byTime = new Map<number, number>();
  for (const slot of slots) {
    const series = slot.series[quantity];
    if (series === undefined) continue;
    for (let i = series.firstAtOrAfter(first); i < series.length; i++) {
      const at = series.atOf(i);
      byTime.set(at, Math.max(byTime.get(at) ?? -Infinity, series.numberOf(i)));
    }
  }
  return byTime;
}

/**
 * A change of switch states from the reading before: one pass over the batch's span of the
 * terms' series gives each instant's states, then neighbours are compared.
 */
function stateScore(
  quantities: readonly string[],
  instants: Instants,
  slots: readonly Slot[],
  first: number,
): Score {
  const keys = new Map<number, string>();
  for (const slot of slots) {
    for (const quantity of quantities) {
      const series = slot.series[quantity];
      if (series === undefined) continue;
      for (let i = series.firstAtOrAfter(first); i < series.length; i++) {
        const at = series.atOf(i);
        const part = `${slot.device.id}:${quantity}=${String(series.valueOf(i))}`;
        keys.set(at, `${keys.get(at) ?? ""}|${part}`);
      }
    }
  }
  return (at, i) => {
    const before = instants[i - 1]?.[0];
    return before === undefined || keys.get(before) !== keys.get(at) ? 1 : -Infinity;
  };
}

/**
 * The newest, and the TELLING_INSTANTS - 1 best scores of the others (earliest wins a tie); an
 * instant scored -Infinity cannot move the alarm and is never picked.
 */
function newestAndBest(instants: Instants, score: Score): Instants {
  const last = instants.length - 1;
  const best: number[] = [];
  const scores: number[] = [];
  for (let i = 0; i < last; i++) {
    const at = (instants[i] as [number, boolean])[0];
    const value = score(at, i);
    if (value === -Infinity) continue;
    let j = best.length;
    while (j > 0 && (scores[j - 1] as number) < value) j--;
    if (j >= TELLING_INSTANTS - 1) continue;
    best.splice(j, 0, i);
    scores.splice(j, 0, value);
    if (best.length > TELLING_INSTANTS - 1) {
      best.pop();
      scores.pop();
    }
  }
  best.sort((a, b) => a - b);
  best.push(last);
  return best.map((i) => instants[i] as [number, boolean]);
}
