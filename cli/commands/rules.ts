import { existsSync } from "node:fs";
import type { Writable } from "node:stream";
import { type Command, InvalidArgumentError } from "commander";
import { createLogUpdate } from "log-update";
import { QueryDuration, RegionKey } from "../../contracts/index.js";
import type { BacktestReport, BacktestRun } from "../../contracts/model/backtest.js";
import { InfluxQueryError } from "../../ingest/store/influxdb.js";
import { storeRetention } from "../../ingest/store/retention.js";
import { StoreUnavailableError } from "../../ingest/store/types.js";
import { RegistryStore } from "../../registry/store.js";
import {
  backtest,
  BacktestError,
  type BacktestProblem,
  type ReplayProgress,
} from "../../rules/backtest/index.js";
import { directoryRules } from "../../rules/backtest/sources.js";
import { formatRuleProblems } from "../../rules/load.js";
import { backtestDeps, historySpecOf } from "../runtime/backtest.js";
import { openHistorySpec } from "../runtime/history.js";
import { defaultBacktestWorkers, workerParts } from "../runtime/backtest-parts.js";
import {
  COMMON_OPTIONS,
  INGEST_OPTIONS,
  loadCitywatchConfig,
  type RunFlags,
  withOptions,
} from "../runtime/config.js";
import { createLogger } from "../runtime/logger.js";
import { registryPath } from "../runtime/registry-file.js";

/*
 * `citywatch rules backtest`: the configured store's history of a range replayed through a rules
 * directory (and a second one to compare with), filing nothing; a report of what would have been
 * raised, escalated and cleared. docs/rules.md, Backtest.
 */

interface BacktestFlags extends RunFlags {
  rules: string;
  from: number;
  to: number;
  site?: string;
  device?: string;
  region?: string;
  compare?: string;
  rule?: string[];
  tick?: number;
  warmUp?: number;
  defaultPack: boolean;
  json?: boolean;
  cases?: number;
  workers?: number;
}

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const INSTANT_HELP =
  "an RFC 3339 time with an offset (2026-11-27T00:00:00+08:00), epoch ms, now, or now-<n>(s|m|h|d)";

/** `--from`/`--to`: RFC 3339 with an offset, epoch ms, `now` or `now-7d`. */
export function parseInstant(text: string, now: number = Date.now()): number {
  const relative = /^now(?:-(\d+)([smhd]))?$/.exec(text.trim());
  if (relative !== null) {
    return relative[1] === undefined
      ? now
      : now - Number(relative[1]) * (UNITS[relative[2] ?? ""] ?? 0);
  }
  if (/^\d{1,15}$/.test(text)) return Number(text);
  const offset = /(Z|[+-]\d{2}:\d{2})$/i.test(text);
  const ms = Date.parse(text);
  if (!offset || !/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(ms)) {
    throw new InvalidArgumentError(`cannot read ${JSON.stringify(text)}: give ${INSTANT_HELP}`);
  }
  return ms;
}

function parseDuration(text: string): number {
  const parsed = QueryDuration.safeParse(text);
  if (parsed.success) return parsed.data;
  if (text === "0") return 0;
  throw new InvalidArgumentError(
    `cannot read ${JSON.stringify(text)}: give a duration like 5s, 1m, 2h or 1d`,
  );
}

function parseRegion(text: string): string {
  const parsed = RegionKey.safeParse(text);
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? "invalid");
  return parsed.data;
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError("must be a whole number");
  return Number(text);
}

function parsePositive(text: string): number {
  const n = parseCount(text);
  if (n < 1 || n > 256) throw new InvalidArgumentError("must be a whole number from 1 to 256");
  return n;
}

/** The flag a problem's path stands for. */
const FLAG: Record<string, string> = {
  from: "--from",
  to: "--to",
  site: "--site",
  device: "--device",
  rules: "--rules",
  compare: "--compare",
  ruleIds: "--rule",
  tick: "--tick",
  warmUp: "--warm-up",
  store: "--data-dir",
};

function problemLines(problems: readonly BacktestProblem[]): string {
  return problems
    .map((p) =>
      p.ruleProblems === undefined
        ? `  ${FLAG[p.path] ?? p.path}: ${p.message}`
        : `  ${FLAG[p.path] ?? p.path}: ${formatRuleProblems(p.ruleProblems).replace(/\n/g, "\n  ")}`,
    )
    .join("\n");
}

const count = (n: number) => Math.round(n).toLocaleString("en-US");
const minute = (iso: string | null) => (iso === null ? "-" : `${iso.slice(0, 16)}Z`);

function bar(p: ReplayProgress, started: number): string {
  const span = p.toMs - p.warmUpFromMs;
  const done = span > 0 ? Math.min(1, (p.atMs - p.warmUpFromMs) / span) : 1;
  const width = 30;
  const filled = Math.round(done * width);
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? p.readings / seconds : 0;
  const phase = p.atMs < p.fromMs ? "warm-up" : "replay";
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(done * 100).toFixed(0).padStart(3)}% ${phase} ${new Date(p.atMs).toISOString().slice(0, 16)}Z ${count(p.readings)} readings ${count(rate)}/s`;
}

/** Progress on stderr: a bar redrawn in place on a terminal, elsewhere a line every 5 s and the last. */
function progressReporter(stream: Writable & { isTTY?: boolean }) {
  const started = performance.now();
  const draw = stream.isTTY === true ? createLogUpdate(stream) : undefined;
  let printedAt: number | undefined;
  let pending: ReplayProgress | undefined;
  return {
    update(p: ReplayProgress) {
      if (draw !== undefined) return draw(bar(p, started));
      pending = p;
      const now = performance.now();
      if (printedAt !== undefined && now - printedAt < 5_000) return;
      printedAt = now;
      pending = undefined;
      stream.write(`${bar(p, started)}\n`);
    },
    done() {
      if (pending !== undefined) stream.write(`${bar(pending, started)}\n`);
      pending = undefined;
      draw?.done();
    },
  };
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
        .join("  "),
    )
    .join("\n");
}

function runTable(run: BacktestRun): string {
  const rows = [["rule", "kind", "raised", "escalated", "cleared", "open at start", "open at end"]];
  for (const r of run.byRule) {
    rows.push([
      r.id,
      r.taskKind,
      String(r.raised),
      String(r.escalated),
      String(r.cleared),
      String(r.openAtStart),
      String(r.openAtEnd),
    ]);
  }
  const t = run.totals;
  rows.push([
    "total",
    "",
    ...[t.raised, t.escalated, t.cleared, t.openAtStart, t.openAtEnd].map(String),
  ]);
  return table(rows);
}

const shown = (v: number | boolean | null) =>
  v === null ? "-" : typeof v === "number" ? String(Math.round(v * 100) / 100) : String(v);

/** Each rule's cases per subject, at most `limit` per rule. */
function caseLines(run: BacktestRun, limit: number): string {
  const lines: string[] = [];
  for (const rule of run.byRule) {
    lines.push(`${rule.id} v${rule.version}: ${rule.title}`);
    let listed = 0;
    let total = 0;
    for (const subject of rule.subjects) {
      for (const c of subject.cases) {
        total += 1;
        if (listed >= limit) continue;
        listed += 1;
        const e = c.evidence;
        lines.push(
          `  ${subject.type}:${subject.id}  ${c.openAtStart ? "open at start, raised" : "raised"} ${minute(c.raisedAt)}${c.level === null ? "" : ` (${c.level})`}  ${c.clearedAt === null ? "still open" : `cleared ${minute(c.clearedAt)}`}` +
            `  value ${shown(e.value)} limit ${shown(e.limit)}, window ${minute(e.windowStart)} – ${minute(e.windowEnd)}, ${e.readings} reading${e.readings === 1 ? "" : "s"}` +
            (c.escalations.length > 0
              ? `; escalated ${c.escalations.map((x) => `to ${x.level ?? "?"} at ${minute(x.at)}`).join(", ")}`
              : "") +
            (c.unacknowledgedEscalations > 0
              ? `; ${c.unacknowledgedEscalations} unacknowledged escalations`
              : ""),
        );
      }
    }
    if (total > listed) lines.push(`  … ${total - listed} more (--cases, or --json for all)`);
  }
  return lines.join("\n");
}

function diffTable(report: BacktestReport): string {
  const diff = report.diff;
  if (diff === null) return "";
  const rows = [
    ["rule", "raised before", "raised after", "more", "fewer", "same", "earlier", "later"],
  ];
  for (const d of diff.byRule) {
    rows.push([
      d.ruleId,
      d.baseline === null ? "(absent)" : String(d.baseline.raised),
      d.candidate === null ? "(absent)" : String(d.candidate.raised),
      `+${d.more}`,
      `-${d.fewer}`,
      String(d.same),
      String(d.earlier),
      String(d.later),
    ]);
  }
  return `\n${diff.summary}\n${diff.byRule.length === 0 ? "(no rule's cases differ)" : table(rows)}`;
}

/** The report for a person. */
export function formatReport(report: BacktestReport, casesPerRule: number): string {
  const d = report.data;
  const out = [
    `Backtest ${report.from} – ${report.to} (region ${report.region}, tick ${report.tickMs / 1000} s, warm-up from ${report.warmUpFrom})`,
    `Replayed ${count(d.readings)} readings of ${d.devices} devices (and ${count(d.warmUpReadings)} of warm-up) in ${(report.elapsedMs / 1000).toFixed(1)} s, ${count(report.readingsPerSecond)} readings/s; nothing was filed`,
    `Rules: ${report.run.rules} (${report.run.ruleCount} rules, ${count(report.run.evaluations)} evaluations)`,
    ...report.warnings.map((w) => `warning: ${w}`),
    "",
    runTable(report.run),
  ];
  if (report.compare !== null) {
    out.push(
      "",
      `Compared with: ${report.compare.rules} (${report.compare.ruleCount} rules, ${count(report.compare.evaluations)} evaluations)`,
      runTable(report.compare),
    );
    out.push(diffTable(report));
  }
  if (casesPerRule > 0 && report.run.byRule.length > 0)
    out.push("", "Cases:", caseLines(report.run, casesPerRule));
  return `${out.join("\n")}\n`;
}

/** The data directory's registry; a directory without one is a mistake (--data-dir). */
function openRegistry(dataDir: string): RegistryStore {
  const file = registryPath(dataDir);
  if (!existsSync(file)) {
    throw new BacktestError([
      { path: "store", message: `no registry at ${file}: not a citywatch data directory` },
    ]);
  }
  return new RegistryStore(file);
}

/** The report, or every problem of the input on stderr (exit 1). */
async function runBacktest(flags: BacktestFlags): Promise<void> {
  const config = loadCitywatchConfig(flags);
  const log = createLogger({ ...config.log, level: "warn" });
  const progress = progressReporter(process.stderr);
  // The pack as the ingest loads it: unless the configuration or the flag leaves it out.
  const defaultPack = flags.defaultPack && config.ingest.rules.defaultPack;
  let registry: RegistryStore | undefined;
  try {
    registry = openRegistry(config.dataDir);
    const devices = registry;
    const history = historySpecOf(config);
    const store = openHistorySpec(history, log);
    const parts = workerParts(history, flags.workers ?? defaultBacktestWorkers());
    // The workers load their modules while this thread reads the registry and the rules.
    parts.prestart();
    try {
      const report = await backtest(
        backtestDeps({
          store,
          registry: devices.view(),
          log,
          now: Date.now,
          retention: () => storeRetention(config.ingest.store),
          parts,
        }),
        {
          fromMs: flags.from,
          toMs: flags.to,
          site: flags.site,
          device: flags.device,
          region: flags.region ?? config.ingest.rules.region,
          tickMs: flags.tick ?? config.ingest.rules.tickMs,
          warmUpMs: flags.warmUp,
          ruleIds: flags.rule,
          rules: directoryRules(flags.rules, defaultPack),
          compare:
            flags.compare === undefined ? undefined : directoryRules(flags.compare, defaultPack),
          onProgress: (p) => progress.update(p),
        },
      );
      progress.done();
      process.stdout.write(
        flags.json === true
          ? `${JSON.stringify(report, null, 2)}\n`
          : formatReport(report, flags.cases ?? 10),
      );
    } finally {
      await parts.close();
      await store.close();
    }
  } catch (error) {
    progress.done();
    if (error instanceof BacktestError) {
      process.stderr.write(
        `citywatch rules backtest: the backtest cannot run:\n${problemLines(error.problems)}\n`,
      );
    } else if (error instanceof StoreUnavailableError || error instanceof InfluxQueryError) {
      process.stderr.write(`citywatch rules backtest: the store cannot answer: ${error.message}\n`);
    } else throw error;
    process.exitCode = 1;
  } finally {
    registry?.close();
  }
}

/** `citywatch rules …`. */
export function rulesCommand(program: Command): void {
  const rules = program
    .command("rules")
    .description("work with rule files: backtest them on stored history");
  const common = COMMON_OPTIONS.filter((o) => /--config|--data-dir/.test(o.flags));
  const store = INGEST_OPTIONS.filter((o) => o.path?.[1] === "store");
  withOptions(rules.command("backtest"), common, store)
    .description(
      "replay the stored readings of a range through a rules directory (after the default pack), filing nothing: what would have been raised, escalated and cleared, per rule and subject; with --compare, what the change makes differ",
    )
    .requiredOption(
      "--rules <dir>",
      "the rule files to backtest, loaded after the default pack as the ingest loads ingest.rules.directories",
    )
    .requiredOption("--from <time>", `start of the range: ${INSTANT_HELP}`, (v) => parseInstant(v))
    .requiredOption("--to <time>", "end of the range (exclusive), as --from", (v) =>
      parseInstant(v),
    )
    .option("--site <id>", "only the devices of this site")
    .option(
      "--device <id>",
      "only the subjects of this device (its site's devices are replayed too, for the site's rules)",
    )
    .option(
      "--region <region>",
      "the regulatory region to judge under [default: ingest.rules.region]",
      parseRegion,
    )
    .option(
      "--compare <dir>",
      "a second rules directory (the rules as they are): report what --rules would raise more and fewer",
    )
    .option("--rule <id...>", "only these rule ids (each in --rules or --compare)")
    .option(
      "--tick <duration>",
      "clock tick in data time [default: ingest.rules.tickMs]; a coarser one (1m) is faster, with deadman and hold timers to that step",
      parseDuration,
    )
    .option(
      "--warm-up <duration>",
      "history replayed before --from to fill the windows, its decisions not reported [default: the longest window the rules need]; 0 for none",
      parseDuration,
    )
    .option(
      "--no-default-pack",
      "load --rules (and --compare) without the default pack (as does ingest.rules.defaultPack: false)",
    )
    .option("--cases <n>", "cases listed per rule (default 10; 0: none)", parseCount)
    .option(
      "--workers <n>",
      `worker threads the replay is split into by site, one CPU each [default: the CPUs, here ${defaultBacktestWorkers()}]; 1 on a host whose live system needs its CPUs`,
      parsePositive,
    )
    .option("--json", "print the report as JSON (docs/rules.md, Backtest)")
    .action((flags: BacktestFlags) => runBacktest(flags));
}
