import { z } from "zod";
import { AdministrativeArea, GeoPoint } from "./registry.js";
import { QualityFlag } from "./quality.js";
import { SensorKind } from "./sensors.js";

/** An instant in a query string: RFC 3339 with offset, or epoch milliseconds. */
export const QueryInstant = z.union(
  [
    z
      .string()
      .regex(/^\d{1,15}$/)
      .transform(Number),
    z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
  ],
  { error: "must be an RFC 3339 timestamp with offset or epoch milliseconds" },
);

const DURATION_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration in a query string: `30s`, `1m`, `15m`, `1h`, `1d`, or milliseconds. */
export const QueryDuration = z
  .string()
  .regex(/^(\d+)(ms|s|m|h|d)?$/, {
    error: "must be a duration like 60s, 1m, 15m, 1h, 1d or milliseconds",
  })
  .transform((s) => {
    const match = /^(\d+)(ms|s|m|h|d)?$/.exec(s);
    const n = Number(match?.[1]);
    const unit = match?.[2];
    return unit === undefined || unit === "ms" ? n : n * (DURATION_MS[unit] ?? 1);
  })
  .pipe(z.number().int().min(1_000, { error: "must be at least 1s" }));

/** Query of `GET /api/v1/devices/{id}/readings`. */
export const ReadingsQueryParams = z
  .strictObject({
    from: QueryInstant.describe("readings at or after: RFC 3339 with offset, or epoch ms"),
    to: QueryInstant.optional().describe("readings before; default now"),
    limit: z
      .string()
      .regex(/^\d+$/, { error: "must be a whole number" })
      .transform(Number)
      .pipe(z.number().int().min(1).max(10_000, { error: "must be <= 10000" }))
      .optional()
      .describe("1..10000, default 1000"),
  })
  .refine((q) => q.to === undefined || q.to > q.from, {
    error: "to must be after from",
    path: ["to"],
  });

export const Aggregation = z.enum(["mean", "max", "energy_mean"], {
  error: "fn must be mean, max or energy_mean",
});

/** Query of `GET /api/v1/devices/{id}/aggregate`. */
export const AggregateQueryParams = z
  .strictObject({
    quantity: z
      .string()
      .min(1)
      .describe("a numeric quantity of the device's kind: LAeq, pm10, ch4…"),
    from: QueryInstant.describe("RFC 3339 with offset, or epoch ms"),
    to: QueryInstant.optional().describe("default now"),
    interval: QueryDuration.describe("60s, 1m, 15m, 1h, 1d or ms; at least 1s"),
    fn: Aggregation.default("mean").describe("mean (default), max, or energy_mean (dB(A) only)"),
  })
  .refine((q) => q.to === undefined || q.to > q.from, {
    error: "to must be after from",
    path: ["to"],
  });

/** Query of `GET /api/v1/dead-letters`. */
export const DeadLettersQueryParams = z.strictObject({
  limit: z
    .string()
    .regex(/^\d+$/, { error: "must be a whole number" })
    .transform(Number)
    .pipe(z.number().int().min(1).max(1_000, { error: "must be <= 1000" }))
    .optional()
    .describe("1..1000, default 100"),
  before: z
    .string()
    .regex(/^\d+$/, { error: "must be a dead-letter id" })
    .transform(Number)
    .optional()
    .describe("a dead-letter id: only older ones (paging)"),
  device: z.string().min(1).optional().describe("only this device id"),
  reason: z.string().min(1).optional().describe("only this reason code"),
});

export const ApiReading = z.object({
  ts: z.string(),
  quality: QualityFlag,
  seq: z.number().int(),
  values: z.record(z.string(), z.union([z.number(), z.boolean()])),
});

/** Query of `GET /api/v1/readings/latest`: the devices asked, by kind and/or ids. */
export const LatestQueryParams = z.strictObject({
  kind: SensorKind.optional().describe("only devices of this kind"),
  ids: z
    .string()
    .transform((s) => s.split(",").filter((id) => id !== ""))
    .pipe(
      z
        .array(z.string().min(1).max(64))
        .min(1, { error: "ids: name at least one device" })
        .max(1_000, { error: "ids: at most 1000 devices" }),
    )
    .optional()
    .describe("only these devices, comma-separated (at most 1000)"),
});

/** The newest reading of each device asked that has one (registered, in its registration). */
export const LatestResponse = z.object({
  readings: z.array(z.object({ deviceId: z.string(), kind: SensorKind, reading: ApiReading })),
  /** Ids asked that are not registered (a removed device on an old task). */
  unknown: z.array(z.string()),
});
export type LatestResponse = z.infer<typeof LatestResponse>;

export const ReadingsResponse = z.object({
  deviceId: z.string(),
  kind: SensorKind,
  readings: z.array(ApiReading),
});
export const AggregateResponse = z.object({
  deviceId: z.string(),
  kind: SensorKind,
  quantity: z.string(),
  fn: Aggregation,
  intervalMs: z.number().int(),
  buckets: z.array(z.object({ ts: z.string(), value: z.number().nullable() })),
});
export const DeviceState = z.object({
  id: z.string(),
  kind: SensorKind,
  siteId: z.string(),
  area: AdministrativeArea,
  location: GeoPoint,
  enabled: z.boolean(),
  /** On standby: not in service, so no rule judges or watches it (registry `standby`). */
  standby: z.boolean(),
  lastSeen: z.string().nullable(),
  online: z.boolean(),
  committedSeq: z.number().int().nullable(),
  lastSeq: z.number().int().nullable(),
  /** The instrument model (registry). */
  model: z.string().optional(),
  /** When the calibration expires, YYYY-MM-DD (registry); absent when not recorded. */
  calibrationDueOn: z.string().optional(),
});
export const DevicesResponse = z.object({ devices: z.array(DeviceState) });

/**
 * A device registered or its secret rotated over the API (docs/api.md section 17): the secret is
 * in this answer only (the registry keeps a salted hash), with what a device needs to connect.
 */
export const DeviceCredentials = z.object({
  deviceId: z.string(),
  secret: z.string(),
  mqtt: z.object({
    /** The broker's MQTT port (the host is the one the console was opened at). */
    port: z.number().int(),
    /** The device's data topic (docs/protocol.md): citywatch/v1/devices/{id}/data. */
    dataTopic: z.string(),
  }),
});
/** PATCH /api/v1/devices/{id}: enable or disable the device. */
export const DevicePatch = z.strictObject({ enabled: z.boolean() });

/** A registered site as the console's map and device form need it. */
export const SiteSummary = z.object({
  id: z.string(),
  name: z.string(),
  type: z.string(),
  area: AdministrativeArea,
  location: GeoPoint,
  /**
   * The regulated party, as the party records resolve it: its name, its credit code when it has
   * one, and the key of its credit record (GET /api/v1/parties/{key}/record: the credit code, or
   * `site:<id>` for a party without one). Absent for a site without a party (a river gauge).
   */
  party: z
    .object({ name: z.string(), creditCode: z.string().optional(), recordKey: z.string() })
    .optional(),
});
export const SitesResponse = z.object({ sites: z.array(SiteSummary) });

/**
 * The console's map (GET /api/v1/map): the configured tile layer, if any, and the base drawn
 * from the GeoJSON of districts and grid cells (`console.map.areas`).
 */
export const MapSettings = z.object({
  tiles: z
    .object({
      url: z.string(),
      attribution: z.string(),
      subdomains: z.string(),
      maxZoom: z.number().int(),
    })
    .nullable(),
  areas: z.looseObject({ type: z.literal("FeatureCollection"), features: z.array(z.unknown()) }),
});
export const ApiDeadLetter = z.object({
  id: z.number().int(),
  receivedAt: z.string(),
  topic: z.string(),
  deviceId: z.string().nullable(),
  seq: z.number().int().nullable(),
  reason: z.string(),
  detail: z.string(),
  /** The raw payload as UTF-8 text when it is valid UTF-8, else null (see payloadBase64). */
  payload: z.string().nullable(),
  payloadBase64: z.string(),
});
export const DeadLettersResponse = z.object({ deadLetters: z.array(ApiDeadLetter) });

/** Body of every 4xx/5xx answer: the error catalogue (contracts/model/errors.ts). */
export { ApiError } from "./errors.js";

export type DeviceState = z.infer<typeof DeviceState>;
export type DeviceCredentials = z.infer<typeof DeviceCredentials>;
export type SiteSummary = z.infer<typeof SiteSummary>;
export type MapSettings = z.infer<typeof MapSettings>;
export type ReadingsResponse = z.infer<typeof ReadingsResponse>;
