import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import type { Logger } from "pino";
import { z } from "zod";
import { ConfigError, type RegistryFile, problemsOf } from "../../contracts/index.js";
import { RegistryStore } from "../../registry/store.js";
import {
  FleetError,
  type FleetRun,
  type FleetSummary,
  type Scenario,
  type Timeline,
  builtInScenarios,
  compileScenario,
  loadFleetLayout,
  loadScenario,
  runFleet,
  startProgress,
} from "../../simulators/index.js";
import { loadCitywatchConfig } from "../runtime/config.js";
import { createLogger } from "../runtime/logger.js";
import { registryPath } from "../runtime/registry-file.js";
import { putOnStandby } from "../runtime/standby.js";

/** The runner's credentials, beside the registry: device id → secret. */
const CREDENTIALS_FILE = "sim-credentials.json";
const Credentials = z.record(z.string(), z.string());

export function credentialsPath(dataDir: string): string {
  return join(resolve(dataDir), CREDENTIALS_FILE);
}

/**
 * Write a layout into the registry: sites are upserted; a new device is added, an existing one
 * (same kind) gets a new secret, since secrets are never stored in clear. Every device is left on
 * standby (cli/runtime/standby.ts) until the runner's CONNECT puts it in service, so devices
 * provisioned and not played are not watched. Returns the secrets.
 */
export function provisionLayout(
  registry: RegistryStore,
  layout: RegistryFile,
): Map<string, string> {
  const secrets = new Map<string, string>();
  for (const site of layout.sites) registry.putSite(site);
  for (const device of layout.devices) {
    const existing = registry.getDevice(device.id);
    if (existing !== undefined && existing.kind !== device.kind) {
      throw new ConfigError("provision", [
        {
          path: `devices.${device.id}`,
          message: `already registered as ${existing.kind}, the scenario has it as ${device.kind}`,
        },
      ]);
    }
    if (existing === undefined) {
      secrets.set(device.id, registry.addDevice({ ...device, standby: true }).secret);
    } else {
      secrets.set(device.id, registry.rotateSecret(device.id));
      registry.putOnStandby(device.id);
    }
  }
  return secrets;
}

/**
 * When a run ends its devices fall silent for good: put them back on standby, so the rules stop
 * watching them and no deadman opens for the end of a scenario. A later run's CONNECT puts them
 * in service again.
 */
function retire(registry: RegistryStore, timeline: Timeline, log: Logger): string[] {
  return putOnStandby(
    registry,
    timeline.layout.devices.map((d) => d.id),
    log,
    `scenario ${timeline.name} ended`,
  );
}

/**
 * Merge secrets into the credentials file, readable by its owner only (0600). Written to a
 * temporary file and renamed over the old one, so a reader (another `sim` provisioning at the
 * same time) sees the old file or the new one, never half of one.
 */
function saveCredentials(file: string, secrets: ReadonlyMap<string, string>): void {
  const merged = { ...readCredentials(file), ...Object.fromEntries(secrets) };
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(merged, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}

function readCredentials(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  const parsed = Credentials.safeParse(JSON.parse(readFileSync(file, "utf8")));
  if (!parsed.success) throw new ConfigError(file, problemsOf(parsed.error));
  return parsed.data;
}

interface SimFlags {
  scenario?: string;
  list?: boolean;
  config?: string;
  dataDir?: string;
  mqttUrl?: string;
  speed?: string;
  devices?: string;
  provision?: boolean;
  run?: boolean;
  json?: boolean;
  logLevel?: string;
  disconnectStorm?: string;
  duplicates?: string;
  malformed?: string;
  notJson?: string;
  oversized?: string;
  unknownDevices?: string;
  clockSkew?: string;
}

/** Fault flags become scenario events half-way through the run (validated with the file's own). */
function flagFaults(scenario: Scenario, flags: SimFlags): unknown[] {
  const half = `${Math.floor(scenario.duration / 2000)}s`;
  const extra: unknown[] = [];
  if (flags.disconnectStorm !== undefined)
    extra.push({ type: "disconnect_storm", at: half, fraction: Number(flags.disconnectStorm) });
  if (flags.duplicates !== undefined)
    extra.push({
      type: "duplicate_burst",
      at: half,
      fraction: 0.1,
      copies: Number(flags.duplicates),
    });
  if (flags.malformed !== undefined)
    extra.push({ type: "malformed", at: half, count: Number(flags.malformed), variant: "schema" });
  if (flags.notJson !== undefined)
    extra.push({ type: "malformed", at: half, count: Number(flags.notJson), variant: "not_json" });
  if (flags.oversized !== undefined)
    extra.push({ type: "oversized", at: half, count: Number(flags.oversized) });
  if (flags.unknownDevices !== undefined)
    extra.push({ type: "unknown_device", at: half, count: Number(flags.unknownDevices) });
  const first = scenario.layout.devices[0];
  if (flags.clockSkew !== undefined && first === undefined) {
    throw new ConfigError("citywatch sim", [
      { path: "--clock-skew", message: "the scenario has no device of its own to skew" },
    ]);
  }
  if (flags.clockSkew !== undefined && first !== undefined) {
    const tenth = `${Math.max(1, Math.floor(scenario.duration / 10_000))}s`;
    extra.push({
      type: "clock_skew",
      device: first.id,
      at: half,
      for: tenth,
      offset: flags.clockSkew,
    });
  }
  return extra;
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 20_000) {
    throw new ConfigError("citywatch sim", [
      { path: flag, message: `must be an integer 1..20000, got ${value}` },
    ]);
  }
  return n;
}

/** The scenario (with the flags' faults) compiled for a run starting now. */
function timelineOf(flags: SimFlags & { scenario: string }): Timeline {
  let scenario = loadScenario(flags.scenario);
  const extra = flagFaults(scenario, flags);
  if (extra.length > 0) scenario = loadScenario(flags.scenario, { extraEvents: extra });
  const devices = positiveInt(flags.devices, "--devices");
  const speed = flags.speed === undefined ? undefined : Number(flags.speed);
  if (speed !== undefined && !(speed > 0)) {
    throw new ConfigError("citywatch sim", [
      { path: "--speed", message: `must be a positive number, got ${flags.speed}` },
    ]);
  }
  return compileScenario(scenario, {
    nowMs: Date.now(),
    ...(speed !== undefined ? { speed } : {}),
    ...(devices !== undefined ? { extra: loadFleetLayout(devices) } : {}),
  });
}

function summaryText(s: FleetSummary): string {
  const rate = (n: number) => (s.elapsedMs > 0 ? ((n * 1000) / s.elapsedMs).toFixed(0) : "-");
  return [
    "",
    `Scenario ${s.scenario}: ${s.complete ? "every message committed" : `${s.pending} message(s) NOT committed`}`,
    `  devices      ${s.devices} (${s.connected} connected at the end)`,
    `  published    ${s.published} messages, ${s.publishedReadings} readings in ${(s.elapsedMs / 1000).toFixed(1)} s (${rate(s.published)} msg/s, ${rate(s.publishedReadings)} readings/s)`,
    `  committed    ${s.committedMessages} messages, ${s.committedReadings} readings`,
    `  re-sent      ${s.resent}    reconnects ${s.reconnects}    cut ${s.cuts}    dropped at the log bound ${s.dropped}`,
    `  faults       duplicates ${s.duplicatesSent}, schema ${s.malformedSchema}, not JSON ${s.malformedNotJson}, oversized ${s.oversized}, unknown devices refused ${s.unknownRefused} (accepted ${s.unknownAccepted}), skewed messages ${s.skewed}`,
    `  errors       ${s.errors}${s.commitAhead > 0 ? `, commits ahead of the device ${s.commitAhead}` : ""}`,
    "",
  ].join("\n");
}

/** The run's devices back on standby in the data directory's registry, said on stderr. */
function retireIn(dataDir: string, timeline: Timeline, log: Logger): void {
  const file = registryPath(dataDir);
  if (!existsSync(file)) {
    process.stderr.write(
      `No registry at ${file}: the scenario's devices were not put back on standby; the rules will watch them until you do (citywatch devices disable, or a run with --data-dir).\n`,
    );
    return;
  }
  const registry = new RegistryStore(file);
  try {
    const retired = retire(registry, timeline, log);
    process.stderr.write(
      `Scenario ${timeline.name} ended: ${retired.length} device(s) back on standby in ${file} (not judged or watched by the rules until they connect again).\n`,
    );
  } finally {
    registry.close();
  }
}

/** Run a timeline with a progress display until it ends or a signal stops it. */
async function play(
  log: Logger,
  timeline: Timeline,
  options: { url: string; credentials: ReadonlyMap<string, string>; stream: NodeJS.WriteStream },
): Promise<FleetSummary> {
  const run: FleetRun = await runFleet({ log }, timeline, {
    url: options.url,
    credentials: options.credentials,
  });
  const stopProgress = startProgress({
    stream: options.stream,
    counters: run.counters,
    simNow: () => run.simNow(),
  });
  const onSignal = () => void run.stop();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await run.done;
  } finally {
    stopProgress();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/**
 * The demo city, played in-process by `citywatch start --demo`: provisions the demo scenario into
 * the running system's registry and plays it once against its broker. Returns at once; the run
 * goes on in the background and `stop()` ends it.
 */
export async function startDemo(deps: {
  log: Logger;
  registry: RegistryStore;
  mqttUrl: string;
}): Promise<{ stop: () => Promise<void> }> {
  const timeline = compileScenario(loadScenario("demo"), { nowMs: Date.now() });
  const credentials = provisionLayout(deps.registry, timeline.layout);
  const run = await runFleet({ log: deps.log }, timeline, { url: deps.mqttUrl, credentials });
  deps.log.info(
    {
      scenario: "demo",
      devices: timeline.devices.length,
      simulatedHours: (timeline.endMs - timeline.startMs) / 3_600_000,
    },
    "demo city running: readings arrive now, tasks as the rules raise them",
  );
  const ended = run.done.then((s) => {
    try {
      retire(deps.registry, timeline, deps.log);
    } catch (error) {
      deps.log.warn({ err: (error as Error).message }, "could not put the demo devices on standby");
    }
    deps.log.info(
      { published: s.published, committed: s.committedMessages, pending: s.pending },
      "demo scenario played; play it again with: citywatch sim --scenario demo --provision",
    );
  });
  return {
    stop: async () => {
      await run.stop();
      await ended;
    },
  };
}

/** `citywatch sim`: play a scenario (and an optional load fleet) against a running system. */
export function simCommand(program: Command): void {
  program
    .command("sim")
    .description(
      "play a simulated city (a scenario, plus an optional load fleet) against a running citywatch",
    )
    .option(
      "-s, --scenario <name|file>",
      `built-in scenario or a scenario file (${builtInScenarios().join(", ")})`,
    )
    .option("--list", "list the built-in scenarios and their expected tasks")
    .option("-c, --config <file>", "configuration file (YAML); also CITYWATCH_CONFIG")
    .option(
      "--data-dir <dir>",
      "data directory of the running system (registry, sim-credentials.json)",
    )
    .option("--mqtt-url <url>", "broker to publish to; default mqtt://127.0.0.1:<broker.mqtt.port>")
    .option("--speed <factor>", "simulated seconds per real second (overrides the scenario)")
    .option("--devices <n>", "add a load fleet of n devices on ambient sites (no tasks)")
    .option(
      "--provision",
      "write the layout into the registry with new secrets (kept in sim-credentials.json, mode 0600), then run",
    )
    .option("--no-run", "with --provision: only provision")
    .option("--json", "print the summary as JSON")
    .option("--log-level <level>", "log level (default warn, so the progress line stays readable)")
    .option("--disconnect-storm <fraction>", "cut this share of the connections half-way through")
    .option(
      "--duplicates <copies>",
      "re-send 10 % of the devices' last message this many times half-way through",
    )
    .option(
      "--malformed <count>",
      "send this many schema-invalid messages (dead-lettered, committed)",
    )
    .option("--not-json <count>", "send this many payloads that are not JSON")
    .option("--oversized <count>", "send this many payloads over the broker's packet limit")
    .option("--unknown-devices <count>", "try to connect this many unregistered device ids")
    .option(
      "--clock-skew <offset>",
      'skew the first device\'s clock by this much (e.g. "+2h") for a tenth of the run',
    )
    .action(async (flags: SimFlags) => {
      if (flags.list === true) {
        for (const name of builtInScenarios()) {
          const s = loadScenario(name);
          process.stdout.write(`${name}: ${s.description}\n`);
          for (const t of s.expect.tasks)
            process.stdout.write(
              `    ${t.kind.padEnd(12)} ${t.rule.padEnd(32)} ${t.subject}${t.level !== undefined ? ` (${t.level})` : ""}\n`,
            );
          if (s.expect.tasks.length === 0) process.stdout.write("    (no tasks)\n");
        }
        return;
      }
      if (flags.scenario === undefined) {
        throw new ConfigError("citywatch sim", [
          {
            path: "--scenario",
            message: `required; one of ${builtInScenarios().join(", ")} or a file`,
          },
        ]);
      }
      const config = loadCitywatchConfig({
        ...(flags.config !== undefined ? { config: flags.config } : {}),
        ...(flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {}),
        logLevel: flags.logLevel ?? "warn",
      });
      const log = createLogger(config.log);
      const timeline = timelineOf({ ...flags, scenario: flags.scenario });
      const file = credentialsPath(config.dataDir);
      let credentials: ReadonlyMap<string, string> | undefined;
      if (flags.provision === true) {
        const registry = new RegistryStore(registryPath(config.dataDir));
        try {
          // Run with the secrets just issued: another provisioning run may rewrite the file meanwhile.
          credentials = provisionLayout(registry, timeline.layout);
          saveCredentials(file, credentials);
        } finally {
          registry.close();
        }
        process.stderr.write(
          `Provisioned ${timeline.layout.devices.length} devices into ${registryPath(config.dataDir)}; secrets in ${file} (0600).\n`,
        );
        if (flags.run === false) return;
      }
      const host =
        config.broker.host === "0.0.0.0" || config.broker.host === "::"
          ? "127.0.0.1"
          : config.broker.host;
      const url = flags.mqttUrl ?? `mqtt://${host}:${config.broker.mqtt.port}`;
      credentials ??= new Map(Object.entries(readCredentials(file)));
      let summary: FleetSummary;
      try {
        summary = await play(log, timeline, { url, credentials, stream: process.stdout });
      } catch (error) {
        if (!(error instanceof FleetError)) throw error;
        process.stderr.write(`citywatch sim: ${error.message}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        flags.json === true ? `${JSON.stringify(summary, null, 2)}\n` : summaryText(summary),
      );
      retireIn(config.dataDir, timeline, log);
      if (!summary.complete || summary.unknownAccepted > 0) process.exitCode = 1;
      // Thousands of sockets were closed with a bounded wait each; leave even if one lingers.
      setTimeout(() => process.exit(), 200).unref();
    });
}
