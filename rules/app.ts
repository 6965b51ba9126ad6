import { join } from "node:path";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Device, IngestConfig, TaskSink } from "../contracts/index.js";
import type { StoredBatch, StoredReading } from "../contracts/model/stored-readings.js";
import { AlarmStore } from "./alarm-store.js";
import { type RulesRegistry, RulesDriver } from "./driver.js";
import { formatRuleProblems } from "./load.js";
import {
  logPlaceholders,
  placeholderGauge,
  placeholderPlace,
  type PlaceholderReport,
  placeholderReport,
} from "./placeholders.js";
import { RuleSet } from "./rule-set.js";

/*
 * The rules engine as a component: the rule files in force, the alarm store and the driver that
 * runs the pure engine on what the ingest stored. The composition root hands it the stored
 * batches (`onStored`) and the task sink its decisions go to.
 */

/** The rule files could not be loaded: every problem, by file and path. */
export class RulesError extends Error {
  readonly code = "RULES_INVALID";
  constructor(readonly problems: string) {
    super(`the rule files have problems:\n${problems}`);
    this.name = "RulesError";
  }
}

export interface RulesDeps {
  readonly log: Logger;
  readonly config: IngestConfig["rules"];
  readonly dataDir: string;
  readonly registry: RulesRegistry;
  /** Where decisions go: the task service. */
  readonly sink: TaskSink;
  readonly now: () => number;
  /** The process's metrics registry (one /metrics per process). */
  readonly metricsRegistry: Registry;
  /** Past readings of a device, read back from the time-series store after a restart. */
  readonly backfill: (device: Device, fromMs: number, toMs: number) => Promise<StoredReading[]>;
}

export interface Rules {
  /** The rules in force (reload() swaps them only when every file is valid). */
  readonly ruleSet: RuleSet;
  /** The driver; undefined when rules.enabled is false (the files are still checked). */
  readonly driver: RulesDriver | undefined;
  /** The one entry point from the ingest: readings the store acknowledged. */
  onStored(batch: StoredBatch): void;
  /**
   * The rules in force in the configured region that are a disabled placeholder or run on
   * unverified numbers, as found at start (empty before start and when rules.enabled is false).
   */
  placeholders(): PlaceholderReport;
  start(): void;
  /** Stop the clock, save the states waiting for their decisions (store()), close the store. */
  stop(): Promise<void>;
}

export function build(deps: RulesDeps): Rules {
  const log = deps.log.child({ module: "rules" });
  const ruleSet = new RuleSet({
    defaultPack: deps.config.defaultPack,
    directories: deps.config.directories,
  });
  const problems = ruleSet.reload();
  if (problems.length > 0) throw new RulesError(formatRuleProblems(problems));
  const alarms = deps.config.enabled ? new AlarmStore(join(deps.dataDir, "alarms.db")) : undefined;
  const driver =
    alarms === undefined
      ? undefined
      : new RulesDriver({
          log,
          rules: ruleSet,
          registry: deps.registry,
          alarms,
          sink: deps.sink,
          region: deps.config.region,
          tickMs: deps.config.tickMs,
          now: deps.now,
          metricsRegistry: deps.metricsRegistry,
          backfill: deps.backfill,
        });
  const region = deps.config.region;
  let placeholders: PlaceholderReport = { region, dustRegions: [], rules: [] };
  placeholderGauge(deps.metricsRegistry, () => placeholders);
  return {
    ruleSet,
    driver,
    onStored: (batch) => driver?.onStoredBatch(batch),
    placeholders: () => placeholders,
    start() {
      if (driver !== undefined) {
        // Said once at start, so a placeholder in force is never silent.
        const place = placeholderPlace(region, deps.registry.sites());
        placeholders = placeholderReport(ruleSet.rules, place);
        logPlaceholders(log, placeholders);
      }
      // Windows are read back from the store in the background; alarms hold on missing data.
      driver?.start().catch((error: unknown) => {
        log.warn({ err: (error as Error).message }, "rules backfill failed");
      });
    },
    async stop() {
      driver?.stop();
      // The task service is still running: the decisions these states wait for get applied.
      await driver?.saved();
      alarms?.close();
    },
  };
}
