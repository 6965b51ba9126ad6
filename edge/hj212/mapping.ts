import { z } from "zod";
import {
  DeviceId,
  HJ212_FLAG_BY_QUALITY,
  QUANTITIES,
  QualityFlag,
  SensorKind,
  Timestamp,
  type QuantitySpec,
} from "../../contracts/index.js";
import type { DataSegment, Factor } from "./segment.js";

/**
 * From HJ 212 factors to citywatch readings (docs/hj212.md, Factors).
 *
 * Factor codes, the suffix to read and the unit differ by device model (the standard prints
 * dust in ng/m³, most devices send µg/m³; dust monitors send noise as the non-standard `a50001`;
 * oil fume has no standard code at all), so all of it is configuration: models map factor codes
 * to quantities, and MN → device(s) picks the model. A combined dust-and-noise monitor sends both
 * in one frame under one MN, while citywatch has one kind per device, so an MN may feed several
 * devices, one per kind.
 */

/** The data uploads turned into readings: real-time, minute, hourly and daily data. */
export const DataCn = z.enum(["2011", "2051", "2061", "2031"]);
export type DataCn = z.infer<typeof DataCn>;

/** A factor code as it appears before the first `-` of a CP field name. */
const FactorCode = z
  .string()
  .regex(/^[A-Za-z0-9_.]{1,32}$/, { error: "a factor code is 1-32 of A-Z a-z 0-9 _ ." });
const Suffix = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9]{0,31}$/, { error: "a suffix is a word such as Rtd, Avg, ZsRtd" });
const Scale = z
  .number()
  .positive({ error: "a unit scale is a positive factor" })
  .refine(Number.isFinite, { error: "a unit scale must be finite" });

export const FactorMapping = z.strictObject({
  /** The citywatch quantity of the model's kind (contracts/model/sensors.ts, QUANTITIES). */
  quantity: z.string().min(1),
  /** Suffix to read for some CNs instead of the model's `suffixByCn` (e.g. `ZsRtd`). */
  suffix: z.partialRecord(DataCn, Suffix).optional(),
  /**
   * Multiplier from the device's unit to the quantity's unit: ng/m³ → µg/m³ is 0.001,
   * mg/m³ → µg/m³ is 1000. Ignored for on/off quantities.
   */
  scale: Scale.default(1),
});
export type FactorMapping = z.infer<typeof FactorMapping>;

export const Hj212Model = z
  .strictObject({
    kind: SensorKind,
    /** The suffix read for each data CN: `Rtd` for real-time data, `Avg` for interval data. */
    suffixByCn: z
      .strictObject({
        "2011": Suffix.default("Rtd"),
        "2051": Suffix.default("Avg"),
        "2061": Suffix.default("Avg"),
        "2031": Suffix.default("Avg"),
      })
      .prefault({}),
    /**
     * The period of minute data (CN 2051). HJ 212 lets the platform set it (CN 1063); 1 minute
     * unless the model is configured otherwise.
     */
    minuteDataIntervalS: z.number().int().min(1).max(3_600).default(60),
    /**
     * Quality of a factor sent without a `-Flag` field (2005 devices often send none). Normal by
     * default, as such a device has no other way to say so; set it to e.g. `manual` to keep a
     * model's data out of enforcement.
     */
    qualityWithoutFlag: QualityFlag.default("normal"),
    /** Factor code → quantity. Codes not listed are reported as unmapped. */
    factors: z.record(FactorCode, FactorMapping),
  })
  .superRefine((model, ctx) => {
    const quantities: Readonly<Record<string, QuantitySpec>> = QUANTITIES[model.kind];
    for (const [code, mapping] of Object.entries(model.factors)) {
      if (!Object.hasOwn(quantities, mapping.quantity)) {
        ctx.addIssue({
          code: "custom",
          path: ["factors", code, "quantity"],
          message: `${mapping.quantity} is not a ${model.kind} quantity; known: ${Object.keys(quantities).join(", ")}`,
        });
      }
    }
  });
export type Hj212Model = z.infer<typeof Hj212Model>;

export const Hj212Device = z.strictObject({
  deviceId: DeviceId,
  /** Name of an entry of `models`. */
  model: z.string().min(1),
  /** Unit scale per factor code for this device, overriding the model's (units are set per device). */
  scale: z.record(FactorCode, Scale).optional(),
});
export type Hj212Device = z.infer<typeof Hj212Device>;

/** The HJ 212 data flag letters (HJ 212-2017 §6.6.3), from the contracts' table. */
export const QUALITY_BY_HJ212_FLAG: Readonly<Record<string, QualityFlag>> = Object.fromEntries(
  Object.entries(HJ212_FLAG_BY_QUALITY).map(([quality, letter]) => [letter, quality]),
) as Record<string, QualityFlag>;

const FlagLetter = z.string().regex(/^[A-Za-z]$/, { error: "a data flag is one letter" });

export const Hj212Mapping = z
  .strictObject({
    models: z.record(z.string().min(1).max(64), Hj212Model),
    /** MN as the device sends it → the citywatch device(s) its data goes to (one per kind). */
    devices: z.record(
      z.string().min(1).max(64),
      z.union([Hj212Device.transform((device) => [device]), z.array(Hj212Device).min(1).max(5)]),
    ),
    /**
     * Data-flag letters added to or overriding the standard ones (N, M, C, D, T, B, F, S).
     * A letter known to neither is read as `fault`.
     */
    qualityByFlag: z
      .record(FlagLetter, QualityFlag)
      .default({})
      .transform((custom): Readonly<Record<string, QualityFlag>> => ({
        ...QUALITY_BY_HJ212_FLAG,
        ...custom,
      })),
  })
  .superRefine((mapping, ctx) => {
    const owner = new Map<string, string>();
    for (const [mn, devices] of Object.entries(mapping.devices)) {
      const kinds = new Set<string>();
      devices.forEach((device, i) => {
        const model = mapping.models[device.model];
        if (model === undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["devices", mn, i, "model"],
            message: `unknown model ${JSON.stringify(device.model)}; known: ${Object.keys(mapping.models).join(", ")}`,
          });
          return;
        }
        if (kinds.has(model.kind)) {
          ctx.addIssue({
            code: "custom",
            path: ["devices", mn, i],
            message: `MN ${mn} feeds two ${model.kind} devices; one device per kind`,
          });
        }
        kinds.add(model.kind);
        const previous = owner.get(device.deviceId);
        if (previous !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["devices", mn, i, "deviceId"],
            message: `device ${device.deviceId} is already fed by MN ${previous}`,
          });
        }
        owner.set(device.deviceId, mn);
      });
    }
  });
export type Hj212Mapping = z.infer<typeof Hj212Mapping>;
export type Hj212MappingInput = z.input<typeof Hj212Mapping>;

/** A citywatch reading of one device (contracts/model/uplink.ts); values are checked against the kind's ranges by the ingest. */
export interface Hj212Reading {
  readonly ts: Timestamp;
  readonly quality: QualityFlag;
  readonly values: Readonly<Record<string, number | boolean>>;
}

/** The readings one frame gives one device: one reading per distinct quality, all with the same ts. */
export interface DeviceReadings {
  readonly deviceId: DeviceId;
  readonly kind: SensorKind;
  readonly readings: readonly Hj212Reading[];
}

/** A mapped factor whose value could not be used, with the reason. */
export interface RejectedFactor {
  readonly deviceId: DeviceId;
  readonly code: string;
  readonly reason: string;
}

/**
 * A mapped factor kept with a changed value: outside its quantity's plausible range under a flag
 * that already says the value is not a measurement (T over range, D fault, …), so it is stored
 * at the range's bound (the instrument's full scale, docs/protocol.md 4.4) with its quality.
 */
export interface ClampedFactor {
  readonly deviceId: DeviceId;
  readonly code: string;
  readonly quality: QualityFlag;
  readonly sent: number;
  readonly stored: number;
  readonly reason: string;
}

export interface Hj212ReadingsError {
  readonly code: "HJ212_UNKNOWN_MN" | "HJ212_UNSUPPORTED_CN" | "HJ212_BAD_DATATIME";
  readonly reason: string;
}

export type ToReadingsResult =
  | {
      readonly ok: true;
      readonly cn: DataCn;
      /** Devices that got at least one reading. */
      readonly devices: readonly DeviceReadings[];
      /** Factors no model of this MN maps (kept, not an error). */
      readonly unmapped: readonly Factor[];
      readonly rejected: readonly RejectedFactor[];
      /** Implausible values kept at their range's bound because their flag marks them (T, D…). */
      readonly clamped: readonly ClampedFactor[];
    }
  | { readonly ok: false; readonly error: Hj212ReadingsError };

const SHANGHAI_OFFSET_MS = 8 * 3_600_000; // Asia/Shanghai is UTC+8 all year (no DST since 1991)
const PERIOD_MS: Readonly<Record<Exclude<DataCn, "2051">, number>> = {
  "2011": 0,
  "2061": 3_600_000,
  "2031": 86_400_000,
};
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** `YYYYMMDDhhmmss` in Asia/Shanghai → epoch ms, or undefined for an impossible date or time. */
function shanghaiEpochMs(dataTime: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(dataTime);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const wall = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(wall);
  const same =
    back.getUTCFullYear() === year &&
    back.getUTCMonth() === month - 1 &&
    back.getUTCDate() === day &&
    back.getUTCHours() === hour &&
    back.getUTCMinutes() === minute &&
    back.getUTCSeconds() === second;
  return same ? wall - SHANGHAI_OFFSET_MS : undefined;
}

function pad(value: number, width = 2): string {
  return String(value).padStart(width, "0");
}

/** RFC 3339 with the +08:00 offset, as the devices' local time reads. */
export function formatShanghai(epochMs: number): string {
  const d = new Date(epochMs + SHANGHAI_OFFSET_MS);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}+08:00`
  );
}

/** Scaling in binary floating point leaves noise (1.1 × 1000 = 1100.0000000000002); 12 significant digits is beyond any monitor. */
function scaled(value: number, scale: number): number {
  return scale === 1 ? value : Number((value * scale).toPrecision(12));
}

function valueOf(
  spec: QuantitySpec,
  text: string,
  scale: number,
): { ok: true; value: number | boolean } | { ok: false; reason: string } {
  if (spec.type === "boolean") {
    if (text === "1" || text === "0") return { ok: true, value: text === "1" };
    return { ok: false, reason: `value ${JSON.stringify(text)} is not 1 or 0` };
  }
  const value = NUMBER.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(value)) {
    return { ok: false, reason: `value ${JSON.stringify(text.slice(0, 40))} is not a number` };
  }
  return { ok: true, value: scaled(value, scale) };
}

/**
 * Turns a parsed (and, if split, reassembled) 2011/2051/2061/2031 frame into citywatch readings.
 *
 * The reading's ts is the end of its interval (contracts/model/uplink.ts), while HJ 212's DataTime is
 * the start of the period for minute, hour and day data; so ts = DataTime + the period (for
 * real-time data, DataTime itself), DataTime being local time in Asia/Shanghai.
 */
export function toReadings(segment: DataSegment, mapping: Hj212Mapping): ToReadingsResult {
  const devices = Object.hasOwn(mapping.devices, segment.mn)
    ? mapping.devices[segment.mn]
    : undefined;
  if (devices === undefined) {
    return {
      ok: false,
      error: { code: "HJ212_UNKNOWN_MN", reason: `MN ${segment.mn} is not mapped to a device` },
    };
  }
  const cnCheck = DataCn.safeParse(segment.cn);
  if (!cnCheck.success) {
    return {
      ok: false,
      error: {
        code: "HJ212_UNSUPPORTED_CN",
        reason: `CN ${segment.cn} carries no readings (expected one of ${DataCn.options.join(", ")})`,
      },
    };
  }
  const cn = cnCheck.data;
  const dataTime = segment.cp.dataTime;
  const startMs = dataTime === undefined ? undefined : shanghaiEpochMs(dataTime);
  if (dataTime === undefined || startMs === undefined) {
    return {
      ok: false,
      error: {
        code: "HJ212_BAD_DATATIME",
        reason:
          dataTime === undefined
            ? "the CP has no DataTime"
            : `DataTime ${dataTime} is not a valid date and time`,
      },
    };
  }

  const mapped = new Set<string>();
  const rejected: RejectedFactor[] = [];
  const clamped: ClampedFactor[] = [];
  const out: DeviceReadings[] = [];
  for (const device of devices) {
    const model = Object.hasOwn(mapping.models, device.model)
      ? mapping.models[device.model]
      : undefined;
    if (model === undefined) continue; // refused by the schema; kept total for hand-built mappings
    const periodMs = cn === "2051" ? model.minuteDataIntervalS * 1_000 : PERIOD_MS[cn];
    const ts = formatShanghai(startMs + periodMs);
    if (!Timestamp.safeParse(ts).success) {
      return {
        ok: false,
        error: {
          code: "HJ212_BAD_DATATIME",
          reason: `DataTime ${dataTime} gives ${ts}, outside 2000-2099 (device clock not set?)`,
        },
      };
    }
    const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[model.kind];
    const byQuality = new Map<QualityFlag, Record<string, number | boolean>>();
    const setBy = new Map<string, string>();
    for (const factor of segment.cp.factors) {
      const rule = Object.hasOwn(model.factors, factor.code)
        ? model.factors[factor.code]
        : undefined;
      if (rule === undefined) continue;
      mapped.add(factor.code);
      const spec = Object.hasOwn(specs, rule.quantity) ? specs[rule.quantity] : undefined;
      const reject = (reason: string) =>
        rejected.push({ deviceId: device.deviceId, code: factor.code, reason });
      if (spec === undefined) {
        reject(`${rule.quantity} is not a ${model.kind} quantity`);
        continue;
      }
      const suffix = rule.suffix?.[cn] ?? model.suffixByCn[cn];
      const text = Object.hasOwn(factor.fields, suffix) ? factor.fields[suffix] : undefined;
      if (text === undefined) {
        reject(`no ${factor.code}-${suffix} value in CN ${cn} data`);
        continue;
      }
      const earlier = setBy.get(rule.quantity);
      if (earlier !== undefined) {
        reject(`${rule.quantity} is already given by factor ${earlier} in this frame`);
        continue;
      }
      const scale = device.scale?.[factor.code] ?? rule.scale;
      const value = valueOf(spec, text, scale);
      if (!value.ok) {
        reject(value.reason);
        continue;
      }
      const quality = qualityOf(factor, mapping, model.qualityWithoutFlag);
      const plausible = withinRange(rule.quantity, spec, value.value, quality);
      if (!plausible.ok) {
        reject(plausible.reason);
        continue;
      }
      if (plausible.value !== value.value) {
        clamped.push({
          deviceId: device.deviceId,
          code: factor.code,
          quality,
          sent: value.value as number,
          stored: plausible.value as number,
          reason: plausible.reason,
        });
      }
      setBy.set(rule.quantity, factor.code);
      const values = byQuality.get(quality) ?? {};
      values[rule.quantity] = plausible.value;
      byQuality.set(quality, values);
    }
    if (byQuality.size === 0) continue;
    out.push({
      deviceId: device.deviceId,
      kind: model.kind,
      readings: [...byQuality].map(([quality, values]) => ({ ts, quality, values })),
    });
  }
  const unmapped = segment.cp.factors.filter((factor) => !mapped.has(factor.code));
  return { ok: true, cn, devices: out, unmapped, rejected, clamped };
}

/** Qualities under which a value is claimed to be a good measurement: an implausible one is refused, not kept. */
const CLAIMED_GOOD: ReadonlySet<QualityFlag> = new Set(["normal", "manual"]);

/**
 * The value checked against the quantity's plausible range (contracts/model/sensors.ts). Out of
 * range under N or S, the factor is refused with the reason (the frame's other factors are kept).
 * Out of range under a flag that marks it (T over range, D fault with a sentinel such as -9999,
 * M, C, B, F), the value is kept at the nearest bound with its quality, so the flag reaches the
 * rules (`device.quality-flag`) instead of the whole sample being refused.
 */
function withinRange(
  quantity: string,
  spec: QuantitySpec,
  value: number | boolean,
  quality: QualityFlag,
): { ok: true; value: number | boolean; reason: string } | { ok: false; reason: string } {
  if (spec.type !== "number" || typeof value !== "number") return { ok: true, value, reason: "" };
  if (value >= spec.min && value <= spec.max) return { ok: true, value, reason: "" };
  const range = `${spec.min}..${spec.max} ${spec.unit}`;
  const side = value < spec.min ? "below" : "above";
  const flag = HJ212_FLAG_BY_QUALITY[quality];
  if (CLAIMED_GOOD.has(quality)) {
    return {
      ok: false,
      reason: `${quantity} ${value} is ${side} the plausible range ${range} (flag ${flag})`,
    };
  }
  const bound = value < spec.min ? spec.min : spec.max;
  return {
    ok: true,
    value: bound,
    reason: `${quantity} ${value} is ${side} the plausible range ${range}; kept as ${bound} with flag ${flag} (${quality})`,
  };
}

/**
 * The factor's data flag as a quality. A letter the mapping does not know reads as fault, so it
 * is never taken as evidence; a lowercase letter is read as its uppercase one.
 */
function qualityOf(factor: Factor, mapping: Hj212Mapping, withoutFlag: QualityFlag): QualityFlag {
  const letter = Object.hasOwn(factor.fields, "Flag") ? factor.fields["Flag"] : undefined;
  if (letter === undefined) return withoutFlag;
  const table = mapping.qualityByFlag;
  return (
    (Object.hasOwn(table, letter) ? table[letter] : undefined) ??
    (Object.hasOwn(table, letter.toUpperCase()) ? table[letter.toUpperCase()] : undefined) ??
    "fault"
  );
}
