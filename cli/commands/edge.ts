import { resolve } from "node:path";
import type { Command } from "commander";
import { loadEdgeConfig, type SensorKind } from "../../contracts/index.js";
import { buildAgent, deadLettersRoute, edgeMetrics } from "../../edge/index.js";
import type { SampleGenerator, SampleSource } from "../../edge/index.js";
import {
  cookingFumeModel,
  dustModel,
  noiseModel,
  secondLevels,
  type SignalModel,
  utilityTunnelModel,
  waterLevelModel,
} from "../../simulators/models/index.js";
import { startHttp } from "../runtime/http.js";
import { stopOnSignal } from "../runtime/lifecycle.js";
import { createLogger } from "../runtime/logger.js";

interface EdgeFlags {
  config?: string;
  logLevel?: string;
  pretty?: boolean;
  mqttUrl?: string;
  httpPort?: string;
}

/** Switches as 1 / 0, the way field devices report them (edge/drivers/simulated.ts). */
function asNumbers(values: object): Record<string, number> {
  return Object.fromEntries(
    Object.entries(values).map(([k, v]) => [k, typeof v === "boolean" ? (v ? 1 : 0) : Number(v)]),
  );
}

function fromModel(model: SignalModel<object>): SampleGenerator {
  return {
    at(ms) {
      const reading = model.at(ms);
      return { quality: reading.quality, values: asNumbers(reading.values) };
    },
  };
}

/**
 * The simulated driver's signals from simulators/models. Noise gives the 1-s levels a meter
 * measures (the agent aggregates them into LAeq, L10...); the other kinds sample their model.
 * A water-level device whose id mentions an underpass measures ponding, any other a river stage.
 */
export const simulationSource: SampleSource = (device, seed) => {
  const epochMs = Date.now();
  const kind: SensorKind = device.kind;
  switch (kind) {
    case "noise": {
      const params = { epochMs, construction: { phase: "earthwork" as const } };
      let minuteEnd = Number.NaN;
      let levels: number[] = [];
      const quality = noiseModel(seed, params);
      return {
        at(ms) {
          // The 1-s sample ending at ms lies in the minute ending at ceil(ms / 60 s).
          const end = Math.ceil(ms / 60_000) * 60_000;
          if (end !== minuteEnd) {
            minuteEnd = end;
            levels = secondLevels(seed, params, end);
          }
          const second = Math.floor(((ms - 1) % 60_000) / 1_000);
          const level = Math.round((levels[second] ?? 40) * 10) / 10;
          return { quality: quality.at(end).quality, values: { LAeq: level } };
        },
      };
    }
    case "dust":
      return fromModel(dustModel(seed, { epochMs, phase: "earthwork" }));
    case "cooking_fume":
      return fromModel(cookingFumeModel(seed, { epochMs, size: "medium" }));
    case "water_level":
      return fromModel(
        waterLevelModel(seed, {
          epochMs,
          station: /underpass|ponding/i.test(device.deviceId) ? "underpass" : "river",
        }),
      );
    case "utility_tunnel":
      return fromModel(utilityTunnelModel(seed, { epochMs }));
  }
};

/** `citywatch edge --config edge.yaml`: the edge agent (docs/edge.md). */
export function edgeCommand(program: Command): void {
  program
    .command("edge")
    .description(
      "run the edge agent: drivers, local aggregation and alarms, durable log, uplink (docs/edge.md)",
    )
    .option("-c, --config <file>", "edge configuration (YAML); also CITYWATCH_EDGE_CONFIG")
    .option("--mqtt-url <url>", "broker URL, e.g. mqtt://127.0.0.1:18830")
    .option("--http-port <port>", "serve /metrics and /healthz on this port (0 = any free one)")
    .option("--log-level <level>", "fatal | error | warn | info | debug | trace | silent")
    .option("--pretty", "human-readable logs")
    .action(async (flags: EdgeFlags) => {
      const file = flags.config ?? process.env.CITYWATCH_EDGE_CONFIG;
      const overrides: Record<string, unknown> = { log: {} };
      const logOverrides = overrides.log as Record<string, unknown>;
      if (flags.logLevel !== undefined) logOverrides.level = flags.logLevel;
      if (flags.pretty === true) logOverrides.pretty = true;
      if (flags.mqttUrl !== undefined) overrides.mqtt = { url: flags.mqttUrl };
      if (flags.httpPort !== undefined) overrides.http = { port: flags.httpPort };
      const path = file === undefined || file === "" ? undefined : resolve(file);
      const config = loadEdgeConfig({ file: path, env: process.env, overrides });
      const log = createLogger(config.log);
      const agent = buildAgent({
        log,
        config,
        simulation: simulationSource,
        ...(path !== undefined ? { source: path } : {}),
      });
      const stops = [{ name: "edge", stop: () => agent.stop() }];
      stopOnSignal(log, stops);
      await agent.start();
      if (config.http.port !== undefined) {
        const http = await startHttp({
          host: config.http.host,
          port: config.http.port,
          registries: [edgeMetrics(() => agent.stats())],
          routes: { "/dead-letters": deadLettersRoute(agent.deadLetters) },
          // The agent is healthy while it runs: an offline link is what its log is for.
          health: () => {
            const devices = agent.stats().devices;
            return {
              ok: true,
              detail: {
                connected: devices.filter((d) => d.link.connected).length,
                devices: devices.length,
                pending: devices.reduce((n, d) => n + d.log.pending, 0),
              },
            };
          },
          log,
        });
        stops.push({ name: "http", stop: () => http.close() });
        log.info({ url: `http://${config.http.host}:${http.port}/metrics` }, "metrics");
      }
    });
}
