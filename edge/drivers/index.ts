import type { Logger } from "pino";
import type { z } from "zod";
import {
  ConfigError,
  type EdgeDriver,
  type Problem,
  problemsOf,
  type SensorKind,
} from "../../contracts/index.js";
import { hj212DriverFactory } from "./hj212-server.js";
import { modbusDriverFactory } from "./modbus.js";
import { createSimulatedDriver, type SampleSource, SimulatedOptions } from "./simulated.js";
import type { DeadLetterSink, Driver } from "./types.js";

/**
 * The table of field drivers. A driver is a factory: its own zod schema for its entry in the
 * configuration's `drivers` list (the second stage of validation: contracts/config/edge.ts checks
 * only `type`), and `create`, which builds the Driver the agent starts and stops.
 */

/** What every driver may use. */
export interface DriverDeps {
  readonly log: Logger;
  /** The agent's devices; a driver maps its field devices onto these ids. */
  readonly devices: readonly { readonly deviceId: string; readonly kind: SensorKind }[];
  readonly now: () => number;
  /** Signal models for the simulated driver, from the composition root (cli/). */
  readonly simulation?: SampleSource;
  /** The edge's dead-letter log, where drivers record what they refuse (edge/agent/dead-letters.ts). */
  readonly deadLetters?: DeadLetterSink;
}

export interface DriverFactory<S extends z.ZodType = z.ZodType> {
  /** The `type` of its configuration entries (the table's key). */
  readonly type: string;
  /** The schema of the driver's whole configuration entry, `type` included. */
  readonly options: S;
  /** May throw an Error whose message is a configuration problem (e.g. an unknown device). */
  create(options: z.infer<S>, deps: DriverDeps): Driver;
}

const simulated: DriverFactory<typeof SimulatedOptions> = {
  type: "simulated",
  options: SimulatedOptions,
  create(options, deps) {
    if (deps.simulation === undefined) {
      throw new Error("the simulated driver needs signal models (run it through `citywatch edge`)");
    }
    return createSimulatedDriver(options, { ...deps, source: deps.simulation });
  },
};

export const DRIVERS: ReadonlyMap<EdgeDriver["type"], DriverFactory> = new Map<
  EdgeDriver["type"],
  DriverFactory
>([
  ["simulated", simulated],
  ["hj212", hj212DriverFactory],
  ["modbus", modbusDriverFactory],
]);

/**
 * Builds the configured drivers, each entry checked by its driver's own schema. Throws one
 * ConfigError naming every problem by path (`drivers.1.port`), like the configuration loader.
 */
export function createDrivers(
  entries: readonly EdgeDriver[],
  deps: DriverDeps,
  source = "configuration",
): Driver[] {
  const problems: Problem[] = [];
  const drivers: Driver[] = [];
  entries.forEach((entry, i) => {
    const factory = DRIVERS.get(entry.type);
    if (factory === undefined) {
      problems.push({
        path: `drivers.${i}.type`,
        message: `driver ${entry.type} is not available in this version`,
      });
      return;
    }
    const parsed = factory.options.safeParse(entry);
    if (!parsed.success) {
      problems.push(...problemsOf(parsed.error, `drivers.${i}`));
      return;
    }
    try {
      drivers.push(factory.create(parsed.data, deps));
    } catch (error) {
      problems.push({ path: `drivers.${i}`, message: (error as Error).message });
    }
  });
  if (problems.length > 0) throw new ConfigError(source, problems);
  return drivers;
}
