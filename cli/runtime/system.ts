import { ConfigError, type IngestConfig } from "../../contracts/index.js";
import { build as buildIngest, type Ingest, type IngestDeps } from "../../ingest/app.js";
import { build as buildRules, type Rules } from "../../rules/app.js";
import { buildTaskSystem, type TaskSystem } from "../../tasks/app.js";
import { EvidenceKeyError, EvidenceKeyring, evidenceKeyFile } from "../../tasks/evidence-keys.js";
import { EvidenceLinkError } from "../../tasks/evidence-links.js";
import type { Publisher } from "../../tasks/notify/mqtt.js";
import { rulesRegistry } from "./standby.js";
import { readBack } from "./history.js";

/*
 * The back office of one process, wired in one place: ingest → rules → tasks → notify.
 *
 *   ingest (stores a round, then) ──onStored(batch)──▶ rules ──handleAlarm(notice)──▶ tasks
 *   tasks ──recheck(task) at a rectification deadline──▶ rules (the data after the deadline)
 *   tasks ──task topics (QoS 1)──▶ the ingest's MQTT connection
 *
 * The two arrows back (re-check, publish) are calls made only after start(), so the closures
 * below name components built further down.
 */

export interface SystemDeps extends Pick<
  IngestDeps,
  "log" | "dataDir" | "registry" | "mqtt" | "local" | "now"
> {
  readonly config: IngestConfig;
  /** Publishes task events on the MQTT task topics; absent: on the ingest's own connection. */
  readonly publishTask?: Publisher | undefined;
  /** `http://{http.host}:{http.port}`: the base of signed evidence links without `tasks.evidence.publicUrl`. */
  readonly httpBase?: string | undefined;
}

export interface System {
  readonly ingest: Ingest;
  readonly rules: Rules;
  readonly tasks: TaskSystem;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The evidence signing keys, created with a first key on the first start; a key file that cannot
 * be used stops the start with a configuration error naming it (never the keys).
 */
export function evidenceKeyring(
  deps: Pick<SystemDeps, "config" | "dataDir" | "log">,
  now: () => number,
): EvidenceKeyring {
  const file = evidenceKeyFile(deps.config.tasks, deps.dataDir);
  try {
    return EvidenceKeyring.open(file, { log: deps.log, now, create: true });
  } catch (error) {
    if (!(error instanceof EvidenceKeyError)) throw error;
    throw new ConfigError("evidence signing keys", [
      { path: "ingest.tasks.evidence.keyFile", message: error.message },
    ]);
  }
}

/** A file the evidence links need that cannot be used stops the start as a configuration error. */
export function asConfigError<T>(what: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof EvidenceLinkError)) throw error;
    throw new ConfigError(what, [{ path: "ingest.tasks.evidence", message: error.message }]);
  }
}

export function buildSystem(deps: SystemDeps): System {
  const now = deps.now ?? Date.now;
  const keyring = evidenceKeyring(deps, now);
  const ingest: Ingest = buildIngest({
    ...deps,
    now,
    onStored: (batch) => rules.onStored(batch),
  });
  const tasks: TaskSystem = asConfigError("evidence links", () =>
    buildTaskSystem({
      log: deps.log,
      config: deps.config.tasks,
      dataDir: deps.dataDir,
      registry: deps.registry,
      metricsRegistry: ingest.metrics.registry,
      now,
      publish: deps.publishTask ?? ((topic, payload) => ingest.publish(topic, payload)),
      recheck: (task) =>
        rules.driver?.recheck(task.rule.id, task.subject.type, task.subject.id) ?? "no_data",
      keyring,
      httpBase: deps.httpBase,
    }),
  );
  const rules: Rules = buildRules({
    log: deps.log,
    config: deps.config.rules,
    dataDir: deps.dataDir,
    // Devices on standby are not in service: no rule judges or watches them (standby.ts).
    registry: rulesRegistry(deps.registry),
    sink: tasks.service,
    now,
    metricsRegistry: ingest.metrics.registry,
    backfill: (device, fromMs, toMs) => readBack(ingest.store)(device, fromMs, toMs, 10_000),
  });
  return {
    ingest,
    rules,
    tasks,
    async start() {
      // The store first (the rules read their windows back from it), then what consumes
      // decisions, then the rules, and only then the flow of messages.
      await ingest.open();
      tasks.start();
      rules.start();
      await ingest.start();
    },
    async stop() {
      // The last round still hands its readings to the rules and publishes its commits, so the
      // ingest drains first; deliveries in flight may publish on the ingest's connection, so the
      // tasks stop before the ingest closes it.
      await ingest.drain();
      await rules.stop();
      await tasks.stop();
      await ingest.stop();
    },
  };
}
