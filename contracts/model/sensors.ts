import { z } from "zod";

/** The five kinds of monitor citywatch ingests. */
export const SensorKind = z.enum(
  ["noise", "dust", "cooking_fume", "water_level", "utility_tunnel"],
  {
    error: (issue) =>
      `unknown sensor kind ${JSON.stringify(issue.input)}; expected one of noise, dust, cooking_fume, water_level, utility_tunnel`,
  },
);
export type SensorKind = z.infer<typeof SensorKind>;

/** A measured quantity: its unit and the physically plausible range a working instrument can report. */
export interface MeasuredQuantity {
  readonly type: "number";
  readonly unit: string;
  readonly min: number;
  readonly max: number;
  readonly description: string;
}

/** An on/off state (fan, purifier). */
export interface SwitchQuantity {
  readonly type: "boolean";
  readonly description: string;
}

export type QuantitySpec = MeasuredQuantity | SwitchQuantity;

const dBA = (description: string): MeasuredQuantity => ({
  type: "number",
  unit: "dB(A)",
  min: 0,
  max: 150,
  description,
});

/**
 * Every quantity of every kind, with its unit and plausible range.
 *
 * Ranges are physical plausibility, not limits: a value outside them is an instrument or
 * transmission fault and is dead-lettered; limits from the standards live in the rule pack.
 * Units follow the standards the rules cite (GB 3096 / GB 12523 dB(A); GB 18483 mg/m³;
 * GB 50838 %LEL; dust in µg/m³ as monitors send it, see docs/hj212.md, Factors).
 */
export const QUANTITIES = {
  noise: {
    LAeq: dBA("A-weighted equivalent continuous level over the reading's interval"),
    LAmax: dBA("maximum A-weighted level (fast) in the interval"),
    LAmin: dBA("minimum A-weighted level (fast) in the interval"),
    L10: dBA("level exceeded 10 % of the interval"),
    L50: dBA("level exceeded 50 % of the interval"),
    L90: dBA("level exceeded 90 % of the interval (background)"),
  },
  dust: {
    pm10: {
      type: "number",
      unit: "µg/m³",
      min: 0,
      max: 20_000,
      description: "PM10 mass concentration",
    },
    pm2_5: {
      type: "number",
      unit: "µg/m³",
      min: 0,
      max: 20_000,
      description: "PM2.5 mass concentration",
    },
    tsp: {
      type: "number",
      unit: "µg/m³",
      min: 0,
      max: 50_000,
      description: "total suspended particulate",
    },
    windSpeed: { type: "number", unit: "m/s", min: 0, max: 75, description: "wind speed" },
    windDirection: {
      type: "number",
      unit: "°",
      min: 0,
      max: 360,
      description: "wind direction, clockwise from north",
    },
    temperature: { type: "number", unit: "°C", min: -50, max: 70, description: "air temperature" },
    humidity: { type: "number", unit: "%", min: 0, max: 100, description: "relative humidity" },
  },
  cooking_fume: {
    oilFume: {
      type: "number",
      unit: "mg/m³",
      min: 0,
      max: 200,
      description: "oil-fume concentration in the exhaust duct (GB 18483)",
    },
    particulate: {
      type: "number",
      unit: "mg/m³",
      min: 0,
      max: 500,
      description: "particulate in the exhaust duct",
    },
    nmhc: {
      type: "number",
      unit: "mg/m³",
      min: 0,
      max: 1_000,
      description: "non-methane hydrocarbons in the exhaust duct",
    },
    fanOn: { type: "boolean", description: "exhaust fan running" },
    purifierOn: { type: "boolean", description: "fume purifier running" },
  },
  water_level: {
    stage: {
      type: "number",
      unit: "m",
      min: -100,
      max: 6_000,
      description: "river stage against the station datum",
    },
    ponding: {
      type: "number",
      unit: "cm",
      min: 0,
      max: 1_000,
      description: "ponding depth on the road or in the underpass",
    },
  },
  utility_tunnel: {
    ch4: {
      type: "number",
      unit: "%LEL",
      min: 0,
      max: 100,
      description: "methane, percent of the lower explosive limit",
    },
    o2: { type: "number", unit: "%vol", min: 0, max: 30, description: "oxygen by volume" },
    h2s: { type: "number", unit: "mg/m³", min: 0, max: 1_500, description: "hydrogen sulphide" },
    co: { type: "number", unit: "mg/m³", min: 0, max: 2_500, description: "carbon monoxide" },
    temperature: {
      type: "number",
      unit: "°C",
      min: -40,
      max: 100,
      description: "air temperature in the compartment",
    },
    humidity: {
      type: "number",
      unit: "%",
      min: 0,
      max: 100,
      description: "relative humidity in the compartment",
    },
    sumpLevel: {
      type: "number",
      unit: "cm",
      min: 0,
      max: 1_000,
      description: "water level in the sump pit",
    },
  },
} as const satisfies Record<SensorKind, Record<string, QuantitySpec>>;

export type Quantities = typeof QUANTITIES;
export type QuantityName<K extends SensorKind> = keyof Quantities[K] & string;

type ValueSchema<S> = S extends { type: "boolean" } ? z.ZodBoolean : z.ZodNumber;
type ValuesShape<K extends SensorKind> = {
  [Q in QuantityName<K>]: z.ZodOptional<ValueSchema<Quantities[K][Q]>>;
};

function valueSchema(name: string, spec: QuantitySpec): z.ZodBoolean | z.ZodNumber {
  if (spec.type === "boolean") {
    return z.boolean({ error: `${name} must be true or false` });
  }
  const range = `${spec.min}..${spec.max} ${spec.unit}`;
  return z
    .number({ error: `${name} must be a number in ${spec.unit}` })
    .min(spec.min, {
      error: (issue) => `${name} ${String(issue.input)} is below the plausible range ${range}`,
    })
    .max(spec.max, {
      error: (issue) => `${name} ${String(issue.input)} is above the plausible range ${range}`,
    });
}

/** The values object of a reading of kind `K`: any non-empty subset of the kind's quantities, nothing else. */
export function valuesSchema<K extends SensorKind>(kind: K) {
  const specs: Record<string, QuantitySpec> = QUANTITIES[kind];
  const shape: Record<string, z.ZodOptional<z.ZodBoolean | z.ZodNumber>> = {};
  for (const [name, spec] of Object.entries(specs)) {
    shape[name] = valueSchema(name, spec).optional();
  }
  const known = Object.keys(specs).join(", ");
  return z
    .strictObject(shape as ValuesShape<K>, {
      error: (issue) =>
        issue.code === "unrecognized_keys"
          ? `unknown quantity ${issue.keys.map((k) => JSON.stringify(k)).join(", ")} for kind ${kind}; known: ${known}`
          : `values must be an object of ${kind} quantities (${known})`,
    })
    .refine((values) => Object.keys(values).length > 0, {
      error: `values must hold at least one ${kind} quantity (${known})`,
      // Only when the object is otherwise valid: an unknown key already says what is wrong.
      when: (payload) => payload.issues.length === 0,
    });
}

export const NoiseValues = valuesSchema("noise");
export const DustValues = valuesSchema("dust");
export const CookingFumeValues = valuesSchema("cooking_fume");
export const WaterLevelValues = valuesSchema("water_level");
export const UtilityTunnelValues = valuesSchema("utility_tunnel");
export type NoiseValues = z.infer<typeof NoiseValues>;
export type DustValues = z.infer<typeof DustValues>;
export type CookingFumeValues = z.infer<typeof CookingFumeValues>;
export type WaterLevelValues = z.infer<typeof WaterLevelValues>;
export type UtilityTunnelValues = z.infer<typeof UtilityTunnelValues>;
