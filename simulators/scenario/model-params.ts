/**
 * What a scenario may set of each signal model's parameters (simulators/models), per sensor kind.
 * Only the instrument's own settings live here; what comes from the layout (a construction site's
 * phase, a restaurant's size, river or underpass) and from timed events (night works, storms,
 * leaks…) is filled in by the compiler, so a scenario cannot contradict its own layout.
 */
import { z } from "zod";
import type { SensorKind } from "../../contracts/index.js";

const HourRange = z
  .tuple([z.number().min(0).max(24), z.number().min(0).max(24)])
  .refine(([from, to]) => from !== to, { error: "an hour range needs from != to" });

/** Settings every instrument has. Faults default to 0 so that a scenario's tasks are exact. */
const instrument = {
  /** Probability that a reading carries quality "fault" (HJ 212 flag D). */
  faultRate: z.number().min(0).max(1).default(0),
  /** Calibration drift of the main quantity, fraction of reading per day. */
  driftPerDay: z.number().min(-0.1).max(0.1).optional(),
};

export const NoiseModelParams = z.strictObject({
  ...instrument,
  trafficDayLevel: z.number().min(20).max(90).optional(),
  floorLevel: z.number().min(10).max(70).optional(),
  eventRate: z.number().min(0).max(1).optional(),
  /** Machinery at a construction site's monitor; the phase comes from the site. */
  construction: z
    .strictObject({
      level: z.number().min(30).max(110).optional(),
      workingHours: z.array(HourRange).max(4).optional(),
    })
    .optional(),
});

export const DustModelParams = z.strictObject({
  ...instrument,
  backgroundPm10: z.number().min(0).max(1000).optional(),
  emissionFactor: z.number().min(0).max(10).optional(),
  workingHours: HourRange.optional(),
  meanWindSpeed: z.number().min(0).max(30).optional(),
  prevailingDirection: z.number().min(0).max(360).optional(),
  meanTemperature: z.number().min(-40).max(50).optional(),
  temperatureRange: z.number().min(0).max(30).optional(),
});

export const CookingFumeModelParams = z.strictObject({
  ...instrument,
  purifierOn: z.boolean().optional(),
  purifierEfficiency: z.number().min(0).max(1).optional(),
});

export const WaterLevelModelParams = z.strictObject({
  ...instrument,
  river: z
    .strictObject({
      baseStage: z.number().min(-100).max(1000).optional(),
      catchmentKm2: z.number().positive().max(1_000_000).optional(),
      curveNumber: z.number().min(30).max(100).optional(),
      reservoirs: z.number().int().min(1).max(10).optional(),
      reservoirHours: z.number().positive().max(240).optional(),
      baseflow: z.number().positive().max(100_000).optional(),
      rating: z.number().positive().max(10_000).optional(),
    })
    .optional(),
  underpass: z
    .strictObject({
      catchmentM2: z.number().positive().max(10_000_000).optional(),
      runoffCoefficient: z.number().min(0).max(1).optional(),
      pumpM3PerMin: z.number().min(0).max(1000).optional(),
      pitM3: z.number().min(0).max(100_000).optional(),
      pondAreaM2: z.number().positive().max(1_000_000).optional(),
    })
    .optional(),
});

export const UtilityTunnelModelParams = z.strictObject({
  ...instrument,
  normalAch: z.number().positive().max(100).optional(),
  accidentAch: z.number().positive().max(100).optional(),
  seepageCmPerH: z.number().min(0).max(100).optional(),
  pumpStartCm: z.number().min(0).max(500).optional(),
  pumpStopCm: z.number().min(0).max(500).optional(),
  pumpCmPerH: z.number().min(0).max(1000).optional(),
  meanTemperature: z.number().min(-20).max(60).optional(),
});

/** The parameter schema of each kind's model. */
export const MODEL_PARAMS = {
  noise: NoiseModelParams,
  dust: DustModelParams,
  cooking_fume: CookingFumeModelParams,
  water_level: WaterLevelModelParams,
  utility_tunnel: UtilityTunnelModelParams,
} as const satisfies Record<SensorKind, z.ZodType>;

export type ModelParamsOf<K extends SensorKind> = z.infer<(typeof MODEL_PARAMS)[K]>;
