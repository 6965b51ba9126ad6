import type { Condition, QualityFlag, Rule } from "../contracts/index.js";
import { formatDuration } from "../contracts/model/rules.js";
import type { EvidenceInput, EvidenceReading, EvidenceVote } from "../contracts/model/alarms.js";
import {
  type AlarmDecision,
  type Evaluation,
  isSilent,
  localMidnight,
  partOf,
  type Series,
  type SubjectView,
  type UsedWindow,
  usableDevices,
} from "./engine/index.js";
import { quantitiesOf, type Slot } from "./subjects.js";

/*
 * The evidence of a raise or a level escalation: every raw reading the decision rests on, from
 * the windows in memory, with its provenance (uplink seq, receive time, replay) and the reading
 * that tipped it marked, and how the deciding value was computed. Which readings, by condition:
 *
 * - threshold over a window: the deciding device's readings of the window it was computed over,
 *   in the window's period only (a night verdict holds no day reading); the gate's rejects too,
 *   marked by their flag. Trigger: the newest usable one. N-of-M and exceedances per day: the
 *   readings of every interval counted (the newest interval gives the value).
 * - threshold on the latest reading (a point rule): the reading judged (trigger), and the
 *   device's readings since the condition began to hold (`for`).
 * - k_of_n: each voting device's readings of its window (all trigger), and each device's vote.
 * - rate_of_rise: the deciding device's readings of the window; trigger: the oldest and the
 *   newest usable one (the rise is newest minus oldest).
 * - state: the deciding device's readings since the state began to hold; trigger: the newest
 *   reading of each term's quantity.
 * - deadman: the device's last reading before the silence (trigger); the silence itself, from
 *   that reading to the decision, is the evidence.
 * - quality: the flagged (newest) reading (trigger).
 *
 * Recomputing the value from the package's usable readings (tasks/evidence-recompute.ts) gives
 * the stated value.
 */

/** One line on how the deciding value is computed, for the evidence package. */
export function describeCondition(condition: Condition, timeZone: string): string {
  const over = (c: { window?: number | undefined; align: string }) =>
    c.window === undefined
      ? "the latest reading"
      : `${c.align === "clock" ? `clock-aligned ${formatDuration(c.window)} intervals (${timeZone})` : `a rolling ${formatDuration(c.window)} window`}`;
  switch (condition.type) {
    case "threshold": {
      const how =
        condition.aggregate === "energy_mean"
          ? "energy mean 10·log10(mean(10^(L/10)))"
          : condition.aggregate;
      const count =
        condition.nOfM !== undefined
          ? `; ${condition.nOfM.n} of the last ${condition.nOfM.m} intervals`
          : condition.exceedances !== undefined
            ? `; more than ${condition.exceedances.allowedPerDay} violating intervals per local day`
            : "";
      return `${how} of ${condition.quantity} over ${over(condition)}${count}`;
    }
    case "k_of_n":
      return `${condition.aggregate} of ${condition.quantity} over ${over(condition)} on each device; at least ${condition.k} devices voting`;
    case "rate_of_rise":
      return `rise of ${condition.quantity} (newest minus oldest) within ${formatDuration(condition.window)}`;
    case "state":
      return `latest ${condition.terms.map((t) => `${t.quantity} is ${String(t.is)}`).join(condition.match === "all" ? " and " : " or ")}`;
    case "deadman":
      return `no reading for more than ${condition.factor} expected intervals; the silence is the evidence: the package holds the device's last reading before it, and the silence runs from that reading to the decision`;
    case "quality":
      return `newest reading flagged ${condition.flags.join(" or ") || "(none)"}${condition.calibrationExpired ? " or calibration expired" : ""}`;
  }
}

/** A reading of one device as the package holds it, before it is written out. */
interface Row {
  at: number;
  quality: QualityFlag;
  values: Record<string, number>;
  trigger: boolean;
}

const iso = (t: number): string => new Date(t).toISOString();

/**
 * The device's readings of `quantities` with instants in `[from, to]` (`fromOpen`: `(from, to]`)
 * that `keep` accepts, one row per instant, oldest first.
 */
function rowsOf(
  slot: Slot | undefined,
  quantities: readonly string[],
  from: number,
  to: number,
  fromOpen: boolean,
  keep: (at: number) => boolean = () => true,
): Row[] {
  if (slot === undefined) return [];
  const byTime = new Map<number, Row>();
  for (const q of quantities) {
    const series = slot.series[q];
    if (series === undefined) continue;
    const start = fromOpen ? series.firstAfter(from) : series.firstAtOrAfter(from);
    for (let i = start; i < series.length && series.atOf(i) <= to; i++) {
      const at = series.atOf(i);
      if (!keep(at)) continue;
      let row = byTime.get(at);
      if (row === undefined) {
        row = { at, quality: series.qualityOf(i), values: {}, trigger: false };
        byTime.set(at, row);
      }
      // Switch states are recorded as 1 (on) and 0 (off).
      row.values[q] = series.numberOf(i);
    }
  }
  return [...byTime.values()].sort((a, b) => a.at - b.at);
}

/** The newest reading of the device at or before `at`, with the values the slot holds then. */
function newestRow(slot: Slot | undefined, at: number): Row[] {
  if (slot === undefined) return [];
  const i = slot.readings.firstAfter(at) - 1;
  if (i < 0) return [];
  const t = slot.readings.atOf(i);
  const values: Record<string, number> = {};
  for (const q in slot.series) {
    const series = slot.series[q] as Series;
    const j = series.firstAtOrAfter(t);
    if (j < series.length && series.atOf(j) === t) values[q] = series.numberOf(j);
  }
  return [{ at: t, quality: slot.readings.qualityOf(i), values, trigger: true }];
}

/** Rows with their provenance from the slot's reading series (seq, receive time, replay). */
function written(
  slot: Slot | undefined,
  deviceId: string,
  rows: readonly Row[],
): EvidenceReading[] {
  return rows.map((row) => {
    const readings = slot?.readings;
    const i = readings === undefined ? -1 : readings.firstAfter(row.at) - 1;
    const held = readings !== undefined && i >= 0 && readings.atOf(i) === row.at;
    const seq = held ? readings.seqOf(i) : undefined;
    const received = held ? readings.receivedOf(i) : undefined;
    return {
      deviceId,
      ts: iso(row.at),
      quality: row.quality,
      values: row.values,
      ...(received === undefined ? {} : { receivedAt: iso(received) }),
      ...(seq === undefined ? {} : { seq }),
      replay: held ? readings.replayedOf(i) : false,
      trigger: row.trigger,
    };
  });
}

/** Marks the newest row whose quality the gate lets through (and that has `quantity`). */
function markNewestUsable(rows: Row[], suppress: readonly QualityFlag[], quantity?: string): void {
  for (let i = rows.length - 1; i >= 0; i--) {
    const row = rows[i] as Row;
    if (suppress.includes(row.quality)) continue;
    if (quantity !== undefined && !(quantity in row.values)) continue;
    row.trigger = true;
    return;
  }
}

/** How far a decision's hold reaches back: its start (a raise), else the decision itself. */
const heldSince = (decision: Extract<AlarmDecision, { type: "raise" | "escalate-level" }>) =>
  decision.type === "raise" ? decision.startedAt : decision.at;

/**
 * The raw readings behind a decision and how its value was computed (see the top of this file).
 * Built only for a raise or a level escalation; reads the driver's windows in place.
 */
export function evidence(
  rule: Rule,
  view: SubjectView,
  evaluation: Evaluation,
  decision: Extract<AlarmDecision, { type: "raise" | "escalate-level" }>,
  /** The driver's slots, by device id: the windows the readings are read from. */
  slots: ReadonlyMap<string, Slot>,
): EvidenceInput {
  const c = rule.condition;
  const at = decision.at;
  const suppress = rule.qualityGate.suppressFlags;
  const used = evaluation.window;
  const deviceId = evaluation.deviceId ?? used?.deviceId ?? view.devices[0]?.device.id;
  const slot = deviceId === undefined ? undefined : slots.get(deviceId);
  const base = {
    method: "",
    value: decision.value,
    limit: decision.limit,
    ...(deviceId === undefined ? {} : { deviceId }),
  };
  const account = (extra: string) =>
    `${describeCondition(c, rule.schedule.timeZone)}; ${evaluation.detail}${extra}`;
  const windowText = (w: UsedWindow) =>
    `; window (${iso(w.from)}, ${iso(w.to)}]${w.period === "" ? "" : `, ${w.period} readings only`}${evaluation.coverage === undefined ? "" : `, coverage ${Math.round(evaluation.coverage * 1000) / 10} %`}`;

  switch (c.type) {
    case "threshold": {
      if (used === undefined) break;
      if (c.window === undefined) {
        // A point rule: the reading judged, and the readings since the condition held.
        const since = Math.min(heldSince(decision), used.to);
        const rows = rowsOf(slot, [c.quantity], since, used.to, false, (t) => used.inPeriod(t));
        markNewestUsable(rows, suppress, c.quantity);
        return {
          ...base,
          readings: written(slot, used.deviceId, rows),
          method: account(
            `; the reading judged is the one of ${iso(used.to)} (measured over (${iso(used.from)}, ${iso(used.to)}])${used.period === "" ? "" : `, ${used.period}`}`,
          ),
          windowStart: iso(used.from),
          windowEnd: iso(used.to),
          period: used.period,
        };
      }
      const counted = c.nOfM !== undefined || c.exceedances !== undefined;
      const spanFrom = !counted
        ? used.from
        : c.nOfM !== undefined
          ? used.to - c.nOfM.m * c.window
          : Math.min(used.from, localMidnight(used.to, rule.schedule.timeZone));
      // The newest interval's readings of its own period; earlier intervals' as they were counted.
      const rows = rowsOf(
        slot,
        [c.quantity],
        spanFrom,
        used.to,
        true,
        (t) => t <= used.from || used.inPeriod(t),
      );
      markNewestUsable(rows, suppress, c.quantity);
      return {
        ...base,
        readings: written(slot, used.deviceId, rows),
        method: account(
          `${windowText(used)}${counted ? `; the readings of the intervals counted since ${iso(spanFrom)} are included, the value is the newest interval's` : ""}`,
        ),
        windowStart: iso(used.from),
        windowEnd: iso(used.to),
        windowMs: c.window,
        align: c.align,
        period: used.period,
        ...(evaluation.coverage === undefined ? {} : { coverage: evaluation.coverage }),
      };
    }
    case "k_of_n": {
      const open = decision.type === "escalate-level";
      const usable = new Set(usableDevices(rule, view, at).filter((d) => !isSilent(d, at)));
      const votes: EvidenceVote[] = [];
      const readings: EvidenceReading[] = [];
      let n = 0;
      let threshold: number | null = null;
      for (const d of view.devices) {
        const id = d.device.id;
        const part = usable.has(d) ? partOf(rule, d, view, at, open) : undefined;
        if (part === undefined || !("violates" in part)) {
          votes.push({ deviceId: id, value: null, quality: null, votes: false });
          continue;
        }
        n++;
        threshold ??= part.limit;
        const own = slots.get(id);
        const w = part.used;
        const rows =
          c.window === undefined
            ? rowsOf(own, [c.quantity], w.to, w.to, false)
            : rowsOf(own, [c.quantity], w.from, w.to, true, (t) => w.inPeriod(t));
        for (const row of rows) row.trigger = true;
        readings.push(...written(own, id, rows));
        const newest = rows[rows.length - 1];
        votes.push({
          deviceId: id,
          value: part.value,
          quality: part.flagged ?? newest?.quality ?? null,
          votes: part.violates,
        });
      }
      const k = n < c.k && c.degraded !== "keep_k" ? n : c.k;
      return {
        ...base,
        readings,
        method: account(used === undefined ? "" : windowText(used)),
        windowStart: iso(used?.from ?? at),
        windowEnd: iso(used?.to ?? at),
        ...(c.window === undefined ? {} : { windowMs: c.window, align: c.align }),
        ...(used === undefined ? {} : { period: used.period }),
        ...(evaluation.coverage === undefined ? {} : { coverage: evaluation.coverage }),
        vote: { k, n, threshold, devices: votes },
      };
    }
    case "rate_of_rise": {
      const from = at - c.window;
      const rows = rowsOf(slot, [c.quantity], from, at, true);
      const usableRows = rows.filter((r) => !suppress.includes(r.quality));
      if (usableRows[0] !== undefined) usableRows[0].trigger = true;
      const last = usableRows[usableRows.length - 1];
      if (last !== undefined) last.trigger = true;
      return {
        ...base,
        readings: deviceId === undefined ? [] : written(slot, deviceId, rows),
        method: account(`; window (${iso(from)}, ${iso(at)}]`),
        windowStart: iso(from),
        windowEnd: iso(at),
        windowMs: c.window,
        align: "rolling",
      };
    }
    case "state": {
      const quantities = quantitiesOf(c);
      // Since the state began to hold, and at least each term's newest reading (judged then).
      let since = heldSince(decision);
      for (const q of quantities) {
        const series = slot?.series[q];
        const i = series === undefined ? -1 : series.firstAfter(at) - 1;
        if (series !== undefined && i >= 0) since = Math.min(since, series.atOf(i));
      }
      const rows = rowsOf(slot, quantities, since, at, false);
      for (const q of quantities) markNewestUsable(rows, suppress, q);
      return {
        ...base,
        readings: deviceId === undefined ? [] : written(slot, deviceId, rows),
        method: account(`; the readings since the state began to hold (${iso(since)})`),
        windowStart: iso(since),
        windowEnd: iso(at),
      };
    }
    case "deadman":
    case "quality": {
      const rows = newestRow(slot, at);
      const last = rows[0]?.at;
      return {
        ...base,
        readings: deviceId === undefined ? [] : written(slot, deviceId, rows),
        method: account(""),
        windowStart: iso(last ?? at),
        windowEnd: iso(at),
      };
    }
  }
  // No window to read (not expected for an applicable threshold): the rule's evidence window.
  const from = heldSince(decision) - rule.evidence.window;
  const readings: EvidenceReading[] = [];
  for (const d of view.devices) {
    const own = slots.get(d.device.id);
    readings.push(...written(own, d.device.id, rowsOf(own, quantitiesOf(c), from, at, true)));
  }
  return {
    ...base,
    readings,
    method: account(""),
    windowStart: iso(from),
    windowEnd: iso(at),
  };
}
