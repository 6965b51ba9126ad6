import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Device, Site } from "../../contracts/index.js";
import type { AlarmNotice } from "../../contracts/model/alarms.js";
import type {
  BacktestReport,
  BacktestRun,
  StoreRetention,
} from "../../contracts/model/backtest.js";
import { RulesDriver, type RulesDriverDeps, type RulesRegistry } from "../driver.js";
import { conditionRetention, holdFor, ruleApplies } from "../engine/index.js";
import type { RuleLoad, RuleProblem } from "../load.js";
import { RuleSet } from "../rule-set.js";
import { CaptureSink } from "./capture.js";
import { diffRuns } from "./diff.js";
import { guidedParts, mergeRuns } from "./partition.js";
import type { RuleSourceSpec } from "./sources.js";
import {
  type HistorySource,
  replay,
  type ReplayProgress,
  type Replayed,
  TooManyReadings,
} from "./replay.js";

export type { HistorySource, ReplayProgress } from "./replay.js";
export { diffRuns, diffSummary } from "./diff.js";

/*
 * Backtest: stored history replayed through the same rules engine as the live system — a
 * RulesDriver of its own per rule set, with fresh alarm states (kept nowhere) and a task sink that
 * files nothing — on the data's own clock. Reports what would have been raised, escalated and
 * cleared, per rule and subject, and with a second rule set the difference. docs/rules.md,
 * Backtest.
 */

export interface BacktestDeps {
  readonly log: Logger;
  readonly history: HistorySource;
  /** The registry as it is now: the devices and sites replayed. */
  readonly registry: RulesRegistry;
  readonly retention: () => Promise<StoreRetention>;
  readonly now: () => number;
  /**
   * Runs parts of the replay side by side (worker threads, cli/runtime/backtest-parts.ts);
   * absent, or one part, or a rule source without a spec: one replay in this thread.
   */
  readonly parts?: PartRunner | undefined;
}

/**
 * What a part of a split backtest is given, as data (a worker thread's input): its devices (a
 * site's devices are never split, partition.ts), the registry's sites, the rules as specs, and
 * the plan's range and ticks.
 */
export interface PartRequest extends ReplayPlan {
  /** The backtest the part belongs to (its parts share their rules: PartRules). */
  readonly backtestId: string;
  /** The scope's device (the report keeps its subjects and its site's). */
  readonly scopeDevice: string | undefined;
  readonly rules: readonly RuleSourceSpec[];
  readonly ruleIds: readonly string[] | undefined;
}

/** The devices and sites one replay covers, its range and its ticks (data, for a worker too). */
export interface ReplayPlan {
  readonly devices: readonly Device[];
  readonly sites: readonly Site[];
  readonly region: string;
  readonly warmUpFromMs: number;
  readonly fromMs: number;
  readonly toMs: number;
  readonly tickMs: number;
  readonly everyTick: boolean;
  readonly maxReadings: number | undefined;
}

/** A part's runs (one per rule set, in the request's order) and what it replayed. */
export interface PartResult {
  readonly runs: readonly BacktestRun[];
  readonly replayed: Replayed;
}

/** A part's progress: readings replayed so far and the data time reached. */
export interface PartProgress {
  readonly readings: number;
  readonly atMs: number;
}

/** Runs a part of a backtest elsewhere (a worker thread). */
export interface PartRunner {
  /**
   * Threads a split backtest runs in, this one among them (its parts are more: guidedParts):
   * `run` is called by parts-1 threads at most at once, each waiting for its part.
   */
  readonly parts: number;
  run(
    request: PartRequest,
    onProgress: (progress: PartProgress) => void,
    signal: AbortSignal,
  ): Promise<PartResult>;
}

/** Rules to judge with: a label for the report and the loader (a directory, inline files…). */
export interface RuleSource {
  readonly label: string;
  readonly load: () => RuleLoad;
  /** Where the rules come from, as data (sources.ts): without it the backtest is not split. */
  readonly spec?: RuleSourceSpec | undefined;
}

export interface BacktestOptions {
  readonly fromMs: number;
  readonly toMs: number;
  readonly site?: string | undefined;
  readonly device?: string | undefined;
  readonly region: string;
  readonly tickMs: number;
  /** History replayed before `fromMs`; default: the longest window the rules in scope need. */
  readonly warmUpMs?: number | undefined;
  readonly ruleIds?: readonly string[] | undefined;
  readonly rules: RuleSource;
  readonly compare?: RuleSource | undefined;
  /** The longest range allowed (the API's bound). */
  readonly maxRangeMs?: number | undefined;
  readonly maxReadings?: number | undefined;
  readonly onProgress?: ((progress: ReplayProgress) => void) | undefined;
  /**
   * Judge every subject at every tick (default false: ticks that cannot decide anything are
   * skipped, rules/quiet.ts; the same decisions, fewer evaluations). For tests and doubt.
   */
  readonly everyTick?: boolean | undefined;
}

/** What is wrong with a backtest's input: which option (from, to, site, device, rules, compare, ruleIds, tick, warmUp) and why. */
export interface BacktestProblem {
  readonly path: string;
  readonly message: string;
  /** The rule files' own problems, for a source that does not load. */
  readonly ruleProblems?: readonly RuleProblem[];
}

export class BacktestError extends Error {
  readonly code = "BACKTEST_INVALID";
  constructor(readonly problems: readonly BacktestProblem[]) {
    super(problems.map((p) => `${p.path}: ${p.message}`).join("; "));
    this.name = "BacktestError";
  }
}

/** The registry is read once per run: it does not change under a replay. */
const NEVER = Number.POSITIVE_INFINITY;

const iso = (ms: number) => new Date(ms).toISOString();

/** "rule a.b (pack/noise.yaml): …" per problem, for one message. */
function describeRuleProblems(problems: readonly RuleProblem[]): string {
  const shown = problems.slice(0, 20).map((p) => {
    const where = p.line === undefined ? "" : ` (line ${p.line}, column ${p.column ?? 1})`;
    return `${p.file}: ${p.path}: ${p.message}${where}`;
  });
  const more = problems.length > shown.length ? `; … ${problems.length - shown.length} more` : "";
  return `the rules do not load: ${shown.join("; ")}${more}`;
}

export interface LoadedSet {
  readonly label: string;
  readonly ruleSet: RuleSet;
}

/** A source's rules in a RuleSet, only `ruleIds` when given; undefined with a problem. */
function loadSet(
  path: string,
  source: RuleSource,
  ruleIds: ReadonlySet<string> | undefined,
  problems: BacktestProblem[],
): { set: LoadedSet; ids: string[] } | undefined {
  let ids: string[] = [];
  const ruleSet = new RuleSet({
    load: () => {
      const result = source.load();
      if (!result.ok) return result;
      ids = result.rules.map((r) => r.rule.id);
      return ruleIds === undefined
        ? result
        : { ok: true, rules: result.rules.filter((r) => ruleIds.has(r.rule.id)) };
    },
  });
  const loadProblems = ruleSet.reload();
  if (loadProblems.length > 0) {
    problems.push({
      path,
      message: describeRuleProblems(loadProblems),
      ruleProblems: loadProblems,
    });
    return undefined;
  }
  return { set: { label: source.label, ruleSet }, ids };
}

interface Plan {
  readonly devices: Device[];
  readonly sites: Site[];
  readonly sets: LoadedSet[];
  readonly accept: (notice: AlarmNotice) => boolean;
  readonly warmUpFromMs: number;
  readonly warnings: string[];
}

/** A device scope's report: the device's own subjects and its site's (every subject: none). */
function acceptOf(device: Device | undefined): (notice: AlarmNotice) => boolean {
  if (device === undefined) return () => true;
  return (n) =>
    n.subjectType === "device" ? n.subjectId === device.id : n.subjectId === device.siteId;
}

/** The devices the scope replays: every enabled one, a site's, or a device's whole site. */
function scopeOf(
  options: BacktestOptions,
  devices: readonly Device[],
  sites: readonly Site[],
  problems: BacktestProblem[],
): { devices: Device[]; accept: (notice: AlarmNotice) => boolean } {
  const enabled = devices.filter((d) => d.enabled);
  if (options.device !== undefined) {
    const device = devices.find((d) => d.id === options.device);
    if (device === undefined) {
      problems.push({ path: "device", message: `no device ${options.device} in the registry` });
    } else if (!device.enabled) {
      problems.push({
        path: "device",
        message: `device ${device.id} is disabled: the rules do not judge it`,
      });
    } else {
      // The device's whole site is replayed, so its site's rules see every device of the site;
      // the report keeps the device's own subjects and its site's.
      return {
        devices: enabled.filter((d) => d.siteId === device.siteId),
        accept: acceptOf(device),
      };
    }
  }
  if (options.site !== undefined) {
    if (!sites.some((s) => s.id === options.site)) {
      problems.push({ path: "site", message: `no site ${options.site} in the registry` });
    }
    return { devices: enabled.filter((d) => d.siteId === options.site), accept: () => true };
  }
  return { devices: enabled, accept: () => true };
}

/** The longest history any rule in force on a device in scope needs before an instant. */
function neededWarmUp(
  sets: readonly LoadedSet[],
  devices: readonly Device[],
  sites: readonly Site[],
  region: string,
): number {
  const siteOf = new Map(sites.map((s) => [s.id, s]));
  let longest = 0;
  for (const device of devices) {
    const site = siteOf.get(device.siteId);
    const view = {
      device,
      series: {},
      lastSeenAt: undefined,
      lastQuality: undefined,
      watchedSince: 0,
    };
    const subject = { site, devices: [view], region, permits: [] };
    for (const { ruleSet } of sets) {
      for (const rule of ruleSet.forKind(device.kind)) {
        if (!ruleApplies(rule, device.kind, view, subject)) continue;
        longest = Math.max(longest, conditionRetention(rule.condition) + holdFor(rule));
      }
    }
  }
  return longest;
}

async function plan(deps: BacktestDeps, options: BacktestOptions): Promise<Plan> {
  const problems: BacktestProblem[] = [];
  const warnings: string[] = [];
  const now = deps.now();
  const { fromMs, toMs, tickMs } = options;
  if (!Number.isSafeInteger(tickMs) || tickMs < 1_000) {
    problems.push({ path: "tick", message: "the tick must be at least 1 s" });
  }
  if (options.warmUpMs !== undefined && !(options.warmUpMs >= 0)) {
    problems.push({ path: "warmUp", message: "the warm-up must be 0 or more" });
  }
  if (!(fromMs < toMs)) {
    problems.push({
      path: "to",
      message: `to (${iso(toMs)}) must be after from (${iso(fromMs)})`,
    });
  } else if (options.maxRangeMs !== undefined && toMs - fromMs > options.maxRangeMs) {
    problems.push({
      path: "to",
      message: `at most ${options.maxRangeMs / 86_400_000} days per request (asked ${((toMs - fromMs) / 86_400_000).toFixed(1)}); narrow the range or run citywatch rules backtest`,
    });
  }
  if (toMs > now) {
    problems.push({ path: "to", message: `to (${iso(toMs)}) is in the future` });
  }
  if (options.site !== undefined && options.device !== undefined) {
    problems.push({ path: "device", message: "give site or device, not both" });
  }
  const devices = deps.registry.devices();
  const sites = deps.registry.sites();
  const scope = scopeOf(options, devices, sites, problems);

  const ruleIds = options.ruleIds === undefined ? undefined : new Set(options.ruleIds);
  const candidate = loadSet("rules", options.rules, ruleIds, problems);
  const baseline =
    options.compare === undefined
      ? undefined
      : loadSet("compare", options.compare, ruleIds, problems);
  if (
    ruleIds !== undefined &&
    candidate !== undefined &&
    (options.compare === undefined || baseline !== undefined)
  ) {
    const known = new Set([...candidate.ids, ...(baseline?.ids ?? [])]);
    const unknown = [...ruleIds].filter((id) => !known.has(id));
    if (unknown.length > 0) {
      problems.push({
        path: "ruleIds",
        message: `no rule ${unknown.join(", ")} in ${options.compare === undefined ? "the rules" : "either rule set"}`,
      });
    }
  }

  const retention = await deps.retention();
  const keptFrom = retention.ms === undefined ? undefined : now - retention.ms;
  if (keptFrom !== undefined && fromMs < keptFrom) {
    problems.push({
      path: "from",
      message: `from (${iso(fromMs)}) is before what the store keeps: ${retention.description}, nothing before ${iso(keptFrom)} remains`,
    });
  }
  if (problems.length > 0 || candidate === undefined) throw new BacktestError(problems);

  const sets = [candidate.set, ...(baseline === undefined ? [] : [baseline.set])];
  // Whole ticks before from, so the ticks of the range fall on from + k·tick.
  const wanted = options.warmUpMs ?? neededWarmUp(sets, scope.devices, sites, options.region);
  let warmUpFromMs = fromMs - Math.ceil(wanted / tickMs) * tickMs;
  if (keptFrom !== undefined && warmUpFromMs < keptFrom) {
    warmUpFromMs = fromMs - Math.floor((fromMs - keptFrom) / tickMs) * tickMs;
    warnings.push(
      `the warm-up starts at ${iso(warmUpFromMs)}, not ${iso(fromMs - wanted)}: ${retention.description}; windows that need more history are judged only once they have it`,
    );
  }
  if (scope.devices.length === 0) warnings.push("no enabled device in scope: nothing to replay");
  return {
    devices: scope.devices,
    sites,
    sets,
    accept: scope.accept,
    warmUpFromMs,
    warnings,
  };
}

/**
 * A backtest's alarm states: fresh, and never read back (the driver is not started and never
 * restarts), so not written anywhere either.
 */
const FRESH_ALARMS: RulesDriverDeps["alarms"] = { all: () => [], save: () => undefined };

/** What one replay covers (a part's devices, or every device in scope), and what it reports. */
interface ReplayScope extends ReplayPlan {
  readonly accept: (notice: AlarmNotice) => boolean;
  readonly onProgress?: ((progress: ReplayProgress) => void) | undefined;
}

/**
 * The scope's history replayed through a driver per rule set (fresh alarm states, a task sink
 * that files nothing): each set's run, in order, and what was replayed.
 */
async function replayThrough(
  log: Logger,
  history: HistorySource,
  scope: ReplayScope,
  sets: readonly LoadedSet[],
): Promise<PartResult> {
  let now = scope.warmUpFromMs;
  const registry: RulesRegistry = {
    devices: () => [...scope.devices],
    sites: () => [...scope.sites],
  };
  const judges = sets.map((set) => {
    const sink = new CaptureSink(scope.fromMs, scope.accept);
    const driver = new RulesDriver({
      log,
      rules: set.ruleSet,
      registry,
      registryRefreshMs: NEVER,
      quietTicks: !scope.everyTick,
      arrivalAtReading: true,
      region: scope.region,
      alarms: FRESH_ALARMS,
      sink,
      tickMs: scope.tickMs,
      now: () => now,
    });
    return {
      driver,
      run: (): BacktestRun => sink.run(set.label, set.ruleSet.rules.length, driver.evaluationCount),
    };
  });
  const replayed = await replay({
    history,
    devices: scope.devices,
    targets: judges.map((j) => j.driver),
    setNow: (ms) => {
      now = ms;
    },
    warmUpFromMs: scope.warmUpFromMs,
    fromMs: scope.fromMs,
    toMs: scope.toMs,
    tickMs: scope.tickMs,
    maxReadings: scope.maxReadings,
    onProgress: scope.onProgress,
  });
  return { runs: judges.map((j) => j.run()), replayed };
}

/**
 * The rule sets a thread loaded for the parts of one backtest (`PartRequest.backtestId`): a
 * thread that takes several parts of it loads its rules once (about 0.1 s a load).
 */
export interface PartRules {
  backtestId?: string;
  sets?: readonly LoadedSet[];
}

/** A part of a split backtest, in the thread that runs it: its rules loaded, its replay. */
export async function runPart(
  log: Logger,
  history: HistorySource,
  request: PartRequest,
  ruleSourceOf: (spec: RuleSourceSpec) => RuleSource,
  onProgress: (progress: ReplayProgress) => void,
  loaded: PartRules = {},
): Promise<PartResult> {
  if (loaded.backtestId !== request.backtestId || loaded.sets === undefined) {
    const problems: BacktestProblem[] = [];
    const ruleIds = request.ruleIds === undefined ? undefined : new Set(request.ruleIds);
    const sets = request.rules.map(
      (spec, i) =>
        loadSet(i === 0 ? "rules" : "compare", ruleSourceOf(spec), ruleIds, problems)?.set,
    );
    // The thread that split the backtest loaded the same files a moment ago.
    if (problems.length > 0) throw new BacktestError(problems);
    loaded.backtestId = request.backtestId;
    loaded.sets = sets as LoadedSet[];
  }
  return replayThrough(
    log,
    history,
    {
      ...request,
      accept: acceptOf(request.devices.find((d) => d.id === request.scopeDevice)),
      onProgress,
    },
    loaded.sets,
  );
}

/** The parts' results as one replay's: runs merged per rule set, counts summed. */
function mergeParts(results: readonly PartResult[], sets: readonly LoadedSet[]): PartResult {
  const runs = sets.map((set, i) => ({
    ...mergeRuns(results.map((r) => r.runs[i] as BacktestRun)),
    rules: set.label,
    ruleCount: set.ruleSet.rules.length,
  }));
  let firstMs: number | undefined;
  let lastMs: number | undefined;
  for (const { replayed } of results) {
    if (replayed.firstMs !== undefined) firstMs = Math.min(firstMs ?? Infinity, replayed.firstMs);
    if (replayed.lastMs !== undefined) lastMs = Math.max(lastMs ?? -Infinity, replayed.lastMs);
  }
  const sum = (f: (r: Replayed) => number) => results.reduce((n, r) => n + f(r.replayed), 0);
  return {
    runs,
    replayed: {
      readings: sum((r) => r.readings),
      warmUpReadings: sum((r) => r.warmUpReadings),
      firstMs,
      lastMs,
    },
  };
}

/** The plan's range and ticks over `devices` (every device in scope, or a part's). */
function replayPlanOf(p: Plan, options: BacktestOptions, devices: readonly Device[]): ReplayPlan {
  return {
    devices,
    sites: p.sites,
    region: options.region,
    warmUpFromMs: p.warmUpFromMs,
    fromMs: options.fromMs,
    toMs: options.toMs,
    tickMs: options.tickMs,
    everyTick: options.everyTick === true,
    maxReadings: options.maxReadings,
  };
}

/**
 * The plan's devices split by site into parts (groups, largest first: guidedParts), taken in turn
 * by the threads: this one (its modules and rules are loaded already) and the runner's (worker
 * threads), each thread taking the next part when it finishes one, so a worker's late start
 * (about a second loading its modules) or a part heavier than its weight leaves no thread idle
 * while another still works. Progress summed (data time: the parts' own, weighted by their
 * devices' expected readings); the reading budget counts every part.
 */
async function runInParts(
  deps: BacktestDeps,
  runner: PartRunner,
  groups: readonly Device[][],
  p: Plan,
  specs: readonly RuleSourceSpec[],
  options: BacktestOptions,
): Promise<PartResult> {
  const abort = new AbortController();
  const backtestId = randomUUID();
  const progress = groups.map(() => ({ readings: 0, atMs: p.warmUpFromMs }));
  // Each part's share of the readings (by its devices' expected rates): the data time reported
  // is the parts' own, weighted, so it moves on as parts are started and finished in turn.
  const weights = groups.map((g) => g.reduce((w, d) => w + 1 / d.expectedIntervalS, 0));
  const totalWeight = weights.reduce((a, b) => a + b, 0) || 1;
  const update = (i: number, x: PartProgress) => {
    progress[i] = x;
    const readings = progress.reduce((n, y) => n + y.readings, 0);
    if (options.maxReadings !== undefined && readings > options.maxReadings) {
      abort.abort(new TooManyReadings(options.maxReadings));
    }
    options.onProgress?.({
      atMs: Math.round(
        progress.reduce((t, y, k) => t + (y.atMs * (weights[k] ?? 0)) / totalWeight, 0),
      ),
      warmUpFromMs: p.warmUpFromMs,
      fromMs: options.fromMs,
      toMs: options.toMs,
      readings,
    });
  };
  const runHere = (i: number): Promise<PartResult> =>
    replayThrough(
      deps.log,
      deps.history,
      {
        ...replayPlanOf(p, options, groups[i] as Device[]),
        accept: p.accept,
        onProgress: (x) => {
          update(i, x);
          // Another part failed or the budget is spent: this one stops at its next yield.
          if (abort.signal.aborted) throw abort.signal.reason as Error;
        },
      },
      p.sets,
    );
  const runThere = (i: number): Promise<PartResult> =>
    runner.run(
      {
        ...replayPlanOf(p, options, groups[i] as Device[]),
        backtestId,
        scopeDevice: options.device,
        rules: specs,
        ruleIds: options.ruleIds,
      },
      (x) => update(i, x),
      abort.signal,
    );
  const results: PartResult[] = new Array<PartResult>(groups.length);
  let next = 0;
  /** One thread: the next part not taken, until none is left or a part failed. */
  const thread = async (run: (i: number) => Promise<PartResult>) => {
    while (next < groups.length && !abort.signal.aborted) {
      const i = next++;
      const result = await run(i);
      update(i, {
        readings: result.replayed.readings + result.replayed.warmUpReadings,
        atMs: options.toMs,
      });
      results[i] = result;
    }
  };
  const threads = Math.min(runner.parts, groups.length);
  await Promise.all(
    Array.from({ length: threads }, (_, t) => thread(t === 0 ? runHere : runThere)),
  ).catch((error: unknown) => {
    // One part failed: the others are stopped, and the budget's error wins over their aborts.
    const reason: unknown = abort.signal.aborted ? abort.signal.reason : error;
    abort.abort(reason);
    throw reason;
  });
  if (abort.signal.aborted) throw abort.signal.reason as Error;
  const merged = mergeParts(results, p.sets);
  const total = merged.replayed.readings + merged.replayed.warmUpReadings;
  if (options.maxReadings !== undefined && total > options.maxReadings) {
    throw new TooManyReadings(options.maxReadings);
  }
  return merged;
}

/** Replay the range through the rules (and the compared rules), filing nothing. */
export async function backtest(
  deps: BacktestDeps,
  options: BacktestOptions,
): Promise<BacktestReport> {
  const started = performance.now();
  const p = await plan(deps, options);
  const specs = [options.rules.spec, options.compare?.spec].filter(
    (spec): spec is RuleSourceSpec => spec !== undefined,
  );
  const groups =
    deps.parts !== undefined && deps.parts.parts > 1 && specs.length === p.sets.length
      ? guidedParts(p.devices, deps.parts.parts)
      : [];
  let result: PartResult;
  try {
    result =
      deps.parts !== undefined && groups.length > 1
        ? await runInParts(deps, deps.parts, groups, p, specs, options)
        : await replayThrough(
            deps.log,
            deps.history,
            {
              ...replayPlanOf(p, options, p.devices),
              accept: p.accept,
              onProgress: options.onProgress,
            },
            p.sets,
          );
  } catch (error) {
    if (error instanceof TooManyReadings) {
      throw new BacktestError([
        {
          path: "to",
          message: `more than ${error.limit} readings to replay (warm-up included); narrow the range, name a site or device, or run citywatch rules backtest`,
        },
      ]);
    }
    throw error;
  }
  const { replayed } = result;
  const [run, baseline] = result.runs as [BacktestRun, BacktestRun | undefined];
  if (replayed.readings === 0)
    p.warnings.push("no stored readings in the range for the devices in scope");
  const elapsedMs = performance.now() - started;
  const total = replayed.readings + replayed.warmUpReadings;
  return {
    from: iso(options.fromMs),
    to: iso(options.toMs),
    warmUpFrom: iso(p.warmUpFromMs),
    region: options.region,
    tickMs: options.tickMs,
    scope: { site: options.site ?? null, device: options.device ?? null },
    data: {
      devices: p.devices.length,
      readings: replayed.readings,
      warmUpReadings: replayed.warmUpReadings,
      first: replayed.firstMs === undefined ? null : iso(replayed.firstMs),
      last: replayed.lastMs === undefined ? null : iso(replayed.lastMs),
    },
    run,
    compare: baseline ?? null,
    diff: baseline === undefined ? null : diffRuns(baseline, run, options.toMs),
    warnings: p.warnings,
    elapsedMs: Math.round(elapsedMs),
    readingsPerSecond: elapsedMs > 0 ? Math.round(total / (elapsedMs / 1000)) : 0,
  };
}
