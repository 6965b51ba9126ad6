import type { Device } from "../../contracts/index.js";
import type { BacktestRule, BacktestRun, BacktestSubject } from "../../contracts/model/backtest.js";
import { addCounts, ruleOut, zeroCounts } from "./capture.js";

/*
 * A backtest split into parts that run side by side (worker threads, one per CPU): the devices
 * grouped so that no subject spans two parts, and the parts' reports merged into the report one
 * replay of every device would have given.
 *
 * A subject is a device, or a site or tunnel segment judged over every device of the site
 * (rules/subjects.ts): a site's devices therefore go to one part, and a part's driver sees every
 * reading any of its subjects reads. What a driver decides for a subject depends only on that
 * subject's readings and the ticks (each device's batch is handed over with the clock at its own
 * newest reading, rules/backtest/replay.ts), so the parts decide what one replay decides.
 */

/** A device's readings per ms, by its expected interval: the weight of its part. */
const rate = (d: Device) => 1 / (d.expectedIntervalS * 1_000);

/**
 * The smallest part {@link guidedParts} makes, as a share of one thread's work: each part replays
 * every tick of the range, so parts too small cost more than the idle time they save.
 */
const SMALLEST_PART_OF_A_THREAD = 1 / 8;

/**
 * The devices in parts for `threads` threads that each take the next part when done with one
 * (guided self-scheduling): a site's devices together, the sites heaviest first, each part half
 * of what is left per thread, down to an eighth of a thread's share. The first parts are large
 * (few parts, little per-part cost) and the last small, so the threads finish within a small part
 * of each other. Each part keeps the devices' order.
 */
export function guidedParts(devices: readonly Device[], threads: number): Device[][] {
  const sites = new Map<string, number>();
  for (const d of devices) sites.set(d.siteId, (sites.get(d.siteId) ?? 0) + rate(d));
  const heaviestFirst = [...sites.entries()].sort(
    (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
  const n = Math.max(1, threads);
  let left = heaviestFirst.reduce((w, [, weight]) => w + weight, 0);
  const smallest = (left / n) * SMALLEST_PART_OF_A_THREAD;
  const partOf = new Map<string, number>();
  let parts = 0;
  for (let i = 0; i < heaviestFirst.length; parts++) {
    const target = Math.max(left / (2 * n), smallest);
    let weight = 0;
    // At least one site; then sites until the part weighs its target.
    do {
      const [siteId, w] = heaviestFirst[i++] as [string, number];
      partOf.set(siteId, parts);
      weight += w;
    } while (i < heaviestFirst.length && weight < target);
    left -= weight;
  }
  const out = Array.from({ length: parts }, (): Device[] => []);
  for (const d of devices) out[partOf.get(d.siteId) as number]?.push(d);
  return out;
}

const subjectKey = (s: BacktestSubject) => `${s.type}:${s.id}`;

/**
 * The parts' runs of one rule set as one run: rules by id, each rule's subjects by `type:id`,
 * counts and evaluations summed (the order and sums CaptureSink.run gives one replay).
 */
export function mergeRuns(runs: readonly BacktestRun[]): BacktestRun {
  const first = runs[0];
  if (first === undefined) throw new Error("mergeRuns: no run");
  if (runs.length === 1) return first;
  const rules = new Map<string, { rule: BacktestRule; subjects: BacktestSubject[] }>();
  for (const run of runs)
    for (const rule of run.byRule) {
      const into = rules.get(rule.id);
      if (into === undefined) rules.set(rule.id, { rule, subjects: [...rule.subjects] });
      else into.subjects.push(...rule.subjects);
    }
  const totals = zeroCounts();
  const byRule: BacktestRule[] = [];
  for (const { rule, subjects } of [...rules.values()].sort((a, b) =>
    a.rule.id.localeCompare(b.rule.id),
  )) {
    const sorted = subjects
      .map((s) => ({ key: subjectKey(s), s }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((x) => x.s);
    const counts = zeroCounts();
    for (const s of sorted) addCounts(counts, s);
    addCounts(totals, counts);
    byRule.push(ruleOut(rule, counts, sorted));
  }
  return {
    rules: first.rules,
    ruleCount: first.ruleCount,
    evaluations: runs.reduce((n, r) => n + r.evaluations, 0),
    totals,
    byRule,
  };
}
