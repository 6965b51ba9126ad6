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
 * The devices in at most `parts` groups, a site's devices together, balanced by expected
 * readings (the heaviest site first to the lightest group). Each group keeps the devices' order;
 * empty groups are left out.
 */
export function partitionDevices(devices: readonly Device[], parts: number): Device[][] {
  const bySite = new Map<string, { weight: number; ids: Set<string> }>();
  for (const d of devices) {
    let site = bySite.get(d.siteId);
    if (site === undefined) bySite.set(d.siteId, (site = { weight: 0, ids: new Set() }));
    site.weight += rate(d);
    site.ids.add(d.id);
  }
  const groups = Array.from({ length: Math.max(1, parts) }, () => ({
    weight: 0,
    sites: new Set<string>(),
  }));
  const heaviestFirst = [...bySite.entries()].sort(
    (a, b) => b[1].weight - a[1].weight || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
  for (const [siteId, site] of heaviestFirst) {
    let lightest = groups[0] as (typeof groups)[number];
    for (const g of groups) if (g.weight < lightest.weight) lightest = g;
    lightest.weight += site.weight;
    lightest.sites.add(siteId);
  }
  return groups
    .map((g) => devices.filter((d) => g.sites.has(d.siteId)))
    .filter((group) => group.length > 0);
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
