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
}

/** Rules to judge with: a label for the report and the loader (a directory, inline files…). */
export interface RuleSource {
  readonly label: string;
  readonly load: () => RuleLoad;
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

interface LoadedSet {
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
        accept: (n) =>
          n.subjectType === "device" ? n.subjectId === device.id : n.subjectId === device.siteId,
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

/** One rule set's driver over the replay, its decisions captured, nothing filed. */
function judge(
  deps: BacktestDeps,
  p: Plan,
  set: LoadedSet,
  options: BacktestOptions,
  clock: () => number,
) {
  const sink = new CaptureSink(options.fromMs, p.accept);
  const registry: RulesRegistry = { devices: () => p.devices, sites: () => p.sites };
  const driver = new RulesDriver({
    log: deps.log,
    rules: set.ruleSet,
    registry,
    registryRefreshMs: NEVER,
    quietTicks: options.everyTick !== true,
    region: options.region,
    alarms: FRESH_ALARMS,
    sink,
    tickMs: options.tickMs,
    now: clock,
  });
  return {
    driver,
    run: (): BacktestRun => sink.run(set.label, set.ruleSet.rules.length, driver.evaluationCount),
  };
}

/** Replay the range through the rules (and the compared rules), filing nothing. */
export async function backtest(
  deps: BacktestDeps,
  options: BacktestOptions,
): Promise<BacktestReport> {
  const started = performance.now();
  const p = await plan(deps, options);
  let now = p.warmUpFromMs;
  const judges = p.sets.map((set) => judge(deps, p, set, options, () => now));
  let replayed: Replayed;
  try {
    replayed = await replay({
      history: deps.history,
      devices: p.devices,
      targets: judges.map((j) => j.driver),
      setNow: (ms) => {
        now = ms;
      },
      warmUpFromMs: p.warmUpFromMs,
      fromMs: options.fromMs,
      toMs: options.toMs,
      tickMs: options.tickMs,
      maxReadings: options.maxReadings,
      onProgress: options.onProgress,
    });
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
  const [candidate, baseline] = judges.map((j) => j.run());
  const run = candidate as BacktestRun;
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
