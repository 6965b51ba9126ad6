import { rmSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import type { Rule } from "../../contracts/index.js";
import type { AlarmNotice, TaskSink } from "../../contracts/model/alarms.js";
import type { StoredReading } from "../../contracts/model/stored-readings.js";
import { AlarmStore } from "../../rules/alarm-store.js";
import { RulesDriver } from "../../rules/driver.js";
import { RuleSet } from "../../rules/rule-set.js";
import {
  type RefDecision,
  type RefDecisionType,
  type ReferenceInput,
  type RefReading,
  sortDecisions,
} from "./reference-evaluator.js";

/*
 * The differential harness: drives the production rules driver (rules/driver.ts, through its
 * public methods onStored, tick, start and stop) over a case's readings and ticks, delivered as a
 * plan of messages, ticks and restarts, and returns its decisions in the reference evaluator's
 * shape (tests/support/reference-evaluator.ts), so the two can be compared.
 *
 * The rules of delivery that make "the same decisions" well defined:
 * - the fake clock `now` is the newest data instant delivered so far (the data's own time);
 * - a tick happens only between deliveries, at a data instant T with now = T, and no message
 *   spans a tick: every reading at or before T is delivered before the tick, none after it;
 * - readings of one instant are never split between messages; messages come in time order;
 * - a restart happens between deliveries: the driver is stopped, its alarm store closed, and a
 *   new driver is started over the same SQLite file, its windows read back (backfill) from the
 *   readings delivered so far, with now going on.
 */

/** A case: what the reference evaluator is given. */
export type DifferentialCase = ReferenceInput;

/** One step of a delivery plan. */
export type Step =
  | { readonly type: "deliver"; readonly readings: readonly RefReading[] }
  | { readonly type: "tick"; readonly at: number }
  | { readonly type: "restart" };

/** How a case's readings are cut into messages, and where the driver restarts. */
export interface Partition {
  /** Readings per message (each one onStored call), taken in turn; at least 1 each. */
  readonly sizes: readonly number[];
  /** The driver restarts after these messages (0: the first). */
  readonly restarts: readonly number[];
}

/** One message per reading instant, no restart. */
export const ONE_BY_ONE: Partition = { sizes: [1], restarts: [] };

/**
 * The plan: the readings in time order, cut into messages of `sizes` readings (never splitting an
 * instant, never spanning a tick), the ticks between them, restarts after some messages. A
 * restart is planned only once every device of the case has reported: a device never heard is
 * watched from the process's start, and after a restart from the restart (docs/rules.md, known
 * limits), which the reference does not model.
 */
export function deliveryPlan(c: DifferentialCase, p: Partition): Step[] {
  const readings = [...c.readings].sort(
    (a, b) => a.t - b.t || (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0),
  );
  const ticks = [...new Set(c.ticks)].sort((a, b) => a - b);
  const instants: RefReading[][] = [];
  for (const r of readings) {
    const last = instants.at(-1);
    if (last !== undefined && (last[0] as RefReading).t === r.t) last.push(r);
    else instants.push([r]);
  }
  const steps: Step[] = [];
  const heard = new Set<string>();
  let message: RefReading[] = [];
  let messages = 0;
  let tick = 0;
  const size = () => Math.max(1, p.sizes[messages % Math.max(1, p.sizes.length)] ?? 1);
  const flush = () => {
    if (message.length === 0) return;
    steps.push({ type: "deliver", readings: message });
    for (const r of message) heard.add(r.deviceId);
    message = [];
    const restart = p.restarts.includes(messages);
    messages++;
    if (restart && c.devices.every((d) => heard.has(d.id))) steps.push({ type: "restart" });
  };
  for (const group of instants) {
    const t = (group[0] as RefReading).t;
    if (tick < ticks.length && (ticks[tick] as number) < t) {
      flush();
      while (tick < ticks.length && (ticks[tick] as number) < t) {
        steps.push({ type: "tick", at: ticks[tick++] as number });
      }
    }
    message.push(...group);
    if (message.length >= size()) flush();
  }
  flush();
  while (tick < ticks.length) steps.push({ type: "tick", at: ticks[tick++] as number });
  return steps;
}

/** The decision types the differential compares (attach-repeat and escalations on no ack aside). */
export const COMPARED: readonly RefDecisionType[] = ["raise", "escalate-level", "clear"];

/** A notice as a decision in the reference's shape (`~n`, a run's rule-id suffix, dropped). */
export function decisionOf(notice: AlarmNotice): RefDecision | undefined {
  const d = notice.decision;
  if (d.type === "escalate-unacknowledged") return undefined;
  return {
    ruleId: notice.rule.id.replace(/~\d+$/, ""),
    subject: `${notice.subjectType}:${notice.subjectId}`,
    type: d.type,
    level: d.type === "raise" || d.type === "escalate-level" ? d.level : undefined,
    at: d.at,
  };
}

/** Only the compared types, in the order sortDecisions gives. */
export function compared(decisions: readonly RefDecision[]): RefDecision[] {
  return sortDecisions(decisions.filter((d) => COMPARED.includes(d.type)));
}

const silent = pino({ level: "silent" });

/**
 * The alarm stores of many runs. A run that restarts gets a SQLite file in a directory, shared
 * by up to `runsPerFile` runs (creating a file costs tens of milliseconds of fsync; a run's rules
 * get ids of their own in it, so runs never see each other's alarms); a restart closes the file
 * and opens it again. A run that never restarts reads its store back never: it gets one in
 * memory (same code, no disk).
 */
export class AlarmFiles {
  #files = 0;
  #runs = 0;
  #file = "";
  #store: AlarmStore | undefined;

  constructor(
    readonly dir: string,
    private readonly runsPerFile = 100,
  ) {}

  /**
   * The store for a new run and the suffix its rule ids get: in memory unless the run restarts;
   * `fresh`: a file of its own.
   */
  next(restarts: boolean, fresh = false): { store: AlarmStore; suffix: string } {
    if (!restarts) return { store: new AlarmStore(":memory:"), suffix: `~${this.#runs++}` };
    if (fresh || this.#store === undefined || this.#runs % this.runsPerFile === 0) {
      this.#store?.close();
      this.#remove();
      this.#file = join(this.dir, `alarms-${process.pid}-${this.#files++}.db`);
      this.#store = new AlarmStore(this.#file);
    }
    return { store: this.#store, suffix: `~${this.#runs++}` };
  }

  /** The same file closed and opened again: a restart. */
  reopen(): AlarmStore {
    this.#store?.close();
    this.#store = new AlarmStore(this.#file);
    return this.#store;
  }

  close(): void {
    this.#store?.close();
    this.#store = undefined;
    this.#remove();
  }

  #remove(): void {
    if (this.#file === "") return;
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${this.#file}${suffix}`, { force: true });
  }
}

export interface ProductionOptions {
  /** Where the alarm store's SQLite files are. */
  readonly files: AlarmFiles;
  /**
   * The rules in force as they are (e.g. the pack, loaded as the app does); default: the case's
   * rules, renamed for the shared file.
   */
  readonly ruleSet?: RuleSet;
  /** Passed to the driver (rules/parts.ts is compared with judging every device). */
  readonly keepParts?: boolean;
  /** Passed to the driver (rules/quiet.ts: ticks that cannot decide anything skipped). */
  readonly quietTicks?: boolean;
}

/** A RuleSet holding exactly these rules, as if loaded from one file. */
export function ruleSetOf(rules: readonly Rule[]): RuleSet {
  const set = new RuleSet({
    load: () => ({
      ok: true,
      rules: rules.map((rule, index) => ({
        rule,
        file: "generated.yaml",
        index,
        hash: `${index}`,
      })),
    }),
  });
  const problems = set.reload();
  if (problems.length > 0) throw new Error(JSON.stringify(problems));
  return set;
}

/**
 * Run the production driver over a plan; every decision it hands the task sink, in the
 * reference's shape (all types; `compared` keeps the compared ones).
 */
export async function runProduction(
  c: DifferentialCase,
  steps: readonly Step[],
  options: ProductionOptions,
): Promise<RefDecision[]> {
  // Rules given as a RuleSet (the pack as the app loads it) run as they are, in a file of their
  // own; generated rules get the run's id suffix in a shared file.
  const given = options.ruleSet;
  const restarts = steps.some((s) => s.type === "restart");
  const next = options.files.next(restarts, given !== undefined);
  const suffix = next.suffix;
  let store = next.store;
  const ruleSet = given ?? ruleSetOf(c.rules.map((r) => ({ ...r, id: `${r.id}${suffix}` })));
  const kinds = new Map(c.devices.map((d) => [d.id as string, d.kind]));
  const out: RefDecision[] = [];
  const sink: TaskSink = {
    handleAlarm: (notice) => {
      const d = decisionOf(notice);
      if (d !== undefined) out.push(d);
    },
    onAcknowledged: () => () => {},
  };
  const delivered: StoredReading[] = [];
  let now = c.watchedFrom;
  const start = async (): Promise<RulesDriver> => {
    const driver = new RulesDriver({
      log: silent,
      rules: ruleSet,
      registry: { devices: () => [...c.devices], sites: () => [...c.sites] },
      region: c.region ?? "default",
      // The registry does not change during a run: read it at start only.
      registryRefreshMs: Number.MAX_SAFE_INTEGER,
      alarms: store,
      sink,
      // The timer start() sets never fires in a run (it is unref'd and cleared by stop()): the
      // plan's ticks call tick() with the fake clock.
      tickMs: 1_000_000_000,
      now: () => now,
      ...(options.keepParts === undefined ? {} : { keepParts: options.keepParts }),
      ...(options.quietTicks === undefined ? {} : { quietTicks: options.quietTicks }),
      backfill: (device, fromMs, toMs) =>
        Promise.resolve(
          delivered.filter(
            (r) => r.deviceId === device.id && r.timeMs >= fromMs && r.timeMs <= toMs,
          ),
        ),
    });
    await driver.start();
    return driver;
  };
  let driver = await start();
  try {
    for (const step of steps) {
      if (step.type === "deliver") {
        const stored = step.readings.map((r): StoredReading => ({
          deviceId: r.deviceId,
          kind: kinds.get(r.deviceId) ?? "noise",
          timeMs: r.t,
          quality: r.quality,
          values: r.values,
          replay: false,
        }));
        now = Math.max(now, ...stored.map((r) => r.timeMs));
        delivered.push(...stored);
        driver.onStored(stored);
      } else if (step.type === "tick") {
        now = Math.max(now, step.at);
        driver.tick();
      } else {
        driver.stop();
        store = options.files.reopen();
        driver = await start();
      }
    }
  } finally {
    driver.stop();
    if (!restarts) store.close();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cases as people read them

/** `hh:mm:ss` local time (Asia/Shanghai unless said), `+1d` when on the next local day of `base`. */
export function localTime(ms: number, timeZone = "Asia/Shanghai"): string {
  const f = new Intl.DateTimeFormat("en-CA", {
    timeZone,
    hourCycle: "h23",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  const p: Record<string, string> = {};
  for (const part of f.formatToParts(ms)) p[part.type] = part.value;
  const frac = ms % 1000 === 0 ? "" : `.${String(ms % 1000).padStart(3, "0")}`;
  return `${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}${frac}`;
}

/** A case, its plan and both sides' decisions, for a failure message. */
export function describeCase(
  c: DifferentialCase,
  steps?: readonly Step[],
  sides?: {
    readonly production: readonly RefDecision[];
    readonly reference: readonly RefDecision[];
  },
): string {
  const lines: string[] = [];
  for (const rule of c.rules) {
    const { id, subject, condition, schedule, permitExemption, timing, levels, taskKind } = rule;
    lines.push(
      `rule ${id} (${taskKind}, ${subject}): ${JSON.stringify(condition)}` +
        `${schedule.activeDuring === undefined ? "" : ` activeDuring ${schedule.activeDuring.join(",")}`}` +
        `${permitExemption === undefined ? "" : ` permitExemption ${permitExemption.types.join(",")}`}` +
        `${Object.keys(timing).length === 0 ? "" : ` timing ${JSON.stringify(timing)}`}` +
        `${levels === undefined ? "" : ` levels ${JSON.stringify(levels.map((l) => [l.level, l.raise]))}`}` +
        `${rule.limits === undefined ? "" : ` limits ${JSON.stringify(rule.limits.default ?? {})}`}`,
    );
  }
  for (const site of c.sites) {
    const permits = (site.permits ?? []).map(
      (p) => `${p.type} ${localTime(Date.parse(p.validFrom))}–${localTime(Date.parse(p.validTo))}`,
    );
    lines.push(
      `site ${site.id} (${site.type})${permits.length === 0 ? "" : ` permits ${permits.join("; ")}`}`,
    );
  }
  lines.push(`watched from ${localTime(c.watchedFrom)}`);
  for (const device of c.devices) {
    const rs = c.readings.filter((r) => r.deviceId === device.id).sort((a, b) => a.t - b.t);
    lines.push(
      `device ${device.id} (${device.kind}, every ${device.expectedIntervalS} s): ${rs.length} readings`,
    );
    for (const r of rs) {
      const values = Object.entries(r.values)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(" ");
      lines.push(`  ${localTime(r.t)} ${values}${r.quality === "normal" ? "" : ` [${r.quality}]`}`);
    }
  }
  lines.push(
    `ticks: ${
      [...c.ticks]
        .sort((a, b) => a - b)
        .map((t) => localTime(t))
        .join(", ") || "none"
    }`,
  );
  if (steps !== undefined) {
    lines.push(
      `plan: ${steps
        .map((s) =>
          s.type === "deliver"
            ? `msg(${s.readings.length})`
            : s.type === "tick"
              ? `tick@${localTime(s.at).slice(6)}`
              : "RESTART",
        )
        .join(" ")}`,
    );
  }
  if (sides !== undefined) {
    const show = (ds: readonly RefDecision[]) =>
      ds.map(
        (d) =>
          `  ${localTime(d.at)} ${d.ruleId} ${d.subject} ${d.type}${d.level === undefined ? "" : ` ${d.level}`}`,
      );
    lines.push("production:", ...show(sides.production), "reference:", ...show(sides.reference));
  }
  return lines.join("\n");
}
