import type { Condition, QualityFlag, Rule } from "../contracts/index.js";
import { formatDuration } from "../contracts/model/rules.js";
import type { EvidenceInput, EvidenceReading } from "../contracts/model/alarms.js";
import type { AlarmDecision, Evaluation, SubjectView } from "./engine/index.js";
import { quantitiesOf, type Slot } from "./subjects.js";

/*
 * The evidence package of a raise or a level escalation: the raw readings of the rule's evidence
 * window, from the windows in memory, and how the deciding value was computed.
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
      return `no reading for more than ${condition.factor} expected intervals`;
    case "quality":
      return `newest reading flagged ${condition.flags.join(" or ") || "(none)"}${condition.calibrationExpired ? " or calibration expired" : ""}`;
  }
}

/**
 * The raw readings behind a decision, from the windows in memory. A windowed value (threshold,
 * k_of_n) gets exactly the readings of the window it was computed over, in its period, each with
 * its quality flag (the gate's rejects are marked unusable by the task service): recomputing the
 * value from the usable ones gives the stated value. Other conditions get the rule's evidence
 * window.
 */
export function evidence(
  rule: Rule,
  view: SubjectView,
  evaluation: Evaluation,
  decision: Extract<AlarmDecision, { type: "raise" | "escalate-level" }>,
  /** The driver's slots, by device id: the windows the readings are read from. */
  slots: ReadonlyMap<string, Slot>,
): EvidenceInput {
  const used = evaluation.window;
  const from =
    used?.from ??
    (decision.type === "raise" ? decision.startedAt : decision.at) - rule.evidence.window;
  const to = used?.to ?? decision.at;
  const inPeriod = used?.inPeriod ?? (() => true);
  const quantities = quantitiesOf(rule.condition);
  const readings: EvidenceReading[] = [];
  for (const d of view.devices) {
    const byTime = new Map<number, { quality: QualityFlag; values: Record<string, number> }>();
    for (const q of quantities) {
      const series = slots.get(d.device.id)?.series[q];
      if (series === undefined) continue;
      for (let i = series.firstAfter(from); i < series.length && series.atOf(i) <= to; i++) {
        const at = series.atOf(i);
        if (!inPeriod(at)) continue;
        const row = byTime.get(at) ?? { quality: series.qualityOf(i), values: {} };
        // Switch states are recorded as 1 (on) and 0 (off).
        row.values[q] = series.numberOf(i);
        byTime.set(at, row);
      }
    }
    for (const [at, row] of [...byTime].sort((a, b) => a[0] - b[0])) {
      readings.push({
        deviceId: d.device.id,
        ts: new Date(at).toISOString(),
        quality: row.quality,
        values: row.values,
      });
    }
  }
  return {
    readings,
    method: `${describeCondition(rule.condition, rule.schedule.timeZone)}; ${evaluation.detail}${used === undefined ? "" : `; window (${new Date(from).toISOString()}, ${new Date(to).toISOString()}]${used.period === "" ? "" : `, ${used.period} readings only`}${evaluation.coverage === undefined ? "" : `, coverage ${Math.round(evaluation.coverage * 1000) / 10} %`}`}`,
    windowStart: new Date(from).toISOString(),
    windowEnd: new Date(to).toISOString(),
    value: decision.value,
    limit: decision.limit,
  };
}
