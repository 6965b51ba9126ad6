import type { Logger } from "pino";
import { z } from "zod";
import { DeviceId, type QualityFlag, type SensorKind } from "../../contracts/index.js";
import type { Driver, DriverSink } from "./types.js";

/**
 * The simulated driver: samples from signal models instead of a field device, for demos, tests
 * and load. edge/ may not import simulators/, so the models come in through `SampleSource`,
 * filled by the composition root (cli/commands/edge.ts) from simulators/models.
 *
 * Every `sampleIntervalMs` (aligned to the wall clock) it takes one sample per device and hands
 * it to the agent as a `sample`, which the agent aggregates into interval readings.
 */

/** One sampled set of values in the device kind's units; switches as 1 / 0 like field devices. */
export interface SimulatedSample {
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number>>;
}

/** A device's signal: a pure function of time (same seed, same time, same sample). */
export interface SampleGenerator {
  at(ms: number): SimulatedSample;
}

export type SampleSource = (
  device: { readonly deviceId: string; readonly kind: SensorKind },
  seed: number,
) => SampleGenerator;

export const SimulatedOptions = z.strictObject({
  type: z.literal("simulated"),
  /** The agent's devices this driver feeds; all of them when left out. */
  devices: z.array(DeviceId).min(1).optional(),
  /** Sampling period; 1000 gives the 1-s samples a noise meter takes. */
  sampleIntervalMs: z.number().int().min(100).max(3_600_000).default(1_000),
  /** Seed of the models; device i uses seed + i. */
  seed: z.number().int().default(1),
});
export type SimulatedOptions = z.infer<typeof SimulatedOptions>;

export interface SimulatedDeps {
  readonly log: Logger;
  readonly devices: readonly { readonly deviceId: string; readonly kind: SensorKind }[];
  readonly now: () => number;
  readonly source: SampleSource;
}

export function createSimulatedDriver(options: SimulatedOptions, deps: SimulatedDeps): Driver {
  const wanted = options.devices;
  const unknown = (wanted ?? []).filter((id) => !deps.devices.some((d) => d.deviceId === id));
  if (unknown.length > 0) {
    throw new Error(`devices not configured in the agent: ${unknown.join(", ")}`);
  }
  const devices = deps.devices
    .filter((d) => wanted === undefined || wanted.includes(d.deviceId as DeviceId))
    .map((d, i) => ({ ...d, generator: deps.source(d, options.seed + i) }));
  const counters = { samples: 0, refused: 0 };
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  const interval = options.sampleIntervalMs;

  const sampleAll = (sink: DriverSink) => {
    const ts = Math.floor(deps.now() / interval) * interval;
    if (ts <= last) return;
    last = ts;
    for (const device of devices) {
      try {
        const sample = device.generator.at(ts);
        sink({ deviceId: device.deviceId, kind: device.kind, ts, ...sample, form: "sample" });
        counters.samples++;
      } catch (error) {
        counters.refused++;
        deps.log.warn({ deviceId: device.deviceId, err: error }, "simulated sample refused");
      }
    }
  };

  return {
    name: "simulated",
    start(sink) {
      // Wake a little after each period starts; `last` keeps one sample per period.
      timer = setInterval(() => sampleAll(sink), Math.max(50, Math.floor(interval / 4)));
      return Promise.resolve();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      return Promise.resolve();
    },
    stats: () => ({ ...counters }),
  };
}
