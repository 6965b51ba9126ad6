import { z } from "zod";

/*
 * The public page's figures (信息公开; docs/console.md, Public page; docs/api.md section 19):
 * what a deployment may show anyone without signing in, when `console.public.enabled` is set.
 * Only aggregates by district and the places of the monitoring points, never a person, a party,
 * a site's name, a case number or a single device's readings:
 * - the environment of the last complete hour per district: the mean of the monitors' hourly
 *   values of noise (LAeq) and dust (PM10, PM2.5); a monitor counts only with valid readings
 *   covering at least 45 minutes of the hour (GB 3095-2012, clause 8, the validity of an hourly
 *   mean), readings flagged fault, maintenance or calibration left out;
 * - the monitoring points (kind, district, street, place), as the Administrative Penalty Law
 *   (2021) Art. 41 requires the places of the devices used for off-site enforcement to be public;
 * - the enforcement cases and environmental-quality alerts filed in the last days per district
 *   and topic: filed, closed, still open.
 * cli/runtime/public-api.ts computes them.
 */

/** What a public figure is about: the sensor kind of the readings or of the case's rule. */
export const PublicTopic = z.enum(["noise", "dust", "cooking_fume", "other"]);
export type PublicTopic = z.infer<typeof PublicTopic>;

/** A quantity the public page shows, with its unit and how a monitor's hour is averaged. */
export const PUBLIC_QUANTITIES = [
  { kind: "noise", quantity: "LAeq", unit: "dB(A)", fn: "energy_mean" },
  { kind: "dust", quantity: "pm10", unit: "µg/m³", fn: "mean" },
  { kind: "dust", quantity: "pm2_5", unit: "µg/m³", fn: "mean" },
] as const;

export const PublicQuantity = z.enum(["LAeq", "pm10", "pm2_5"]);

export const PublicReading = z.object({
  quantity: PublicQuantity,
  unit: z.string(),
  /** Mean of the monitors' hourly values (rounded to 0.1), null when no monitor had a valid hour. */
  value: z.number().nullable(),
  /** Monitors whose hour was valid and counted. */
  monitors: z.number().int(),
  /** Monitors of the district that measure it. */
  of: z.number().int(),
});

export const PublicCaseCounts = z.object({
  topic: PublicTopic,
  /** Enforcement cases filed in the period. */
  casesFiled: z.number().int(),
  /** Of them, closed by now. */
  casesClosed: z.number().int(),
  /** Environmental-quality alerts (ambient, not addressed to a party) filed in the period. */
  alertsFiled: z.number().int(),
});

export const PublicDistrict = z.object({
  district: z.string(),
  readings: z.array(PublicReading),
  cases: z.array(PublicCaseCounts),
});

export const PublicMonitor = z.object({
  kind: z.enum(["noise", "dust", "cooking_fume"]),
  district: z.string(),
  street: z.string().optional(),
  /** WGS-84, rounded to 4 decimals (about 10 m). */
  lat: z.number(),
  lon: z.number(),
});

export const PublicSummary = z.object({
  format: z.literal("citywatch-public/1"),
  /** `console.public.title`: who publishes (e.g. the city's bureau); empty when not set. */
  title: z.string(),
  generatedAt: z.string(),
  timeZone: z.string(),
  /** The hour the readings are of: [from, to). */
  hour: z.object({ from: z.string(), to: z.string() }),
  /** The period the case counts are of: [from, to). */
  cases: z.object({ from: z.string(), to: z.string(), days: z.number().int() }),
  districts: z.array(PublicDistrict),
  monitors: z.array(PublicMonitor),
});
export type PublicSummary = z.infer<typeof PublicSummary>;
