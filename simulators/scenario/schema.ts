/**
 * The scenario file: a seeded city (the registry layout of contracts/model/registry.ts, so a scenario's
 * devices are provisioned exactly as `citywatch devices import` would), the instruments' model
 * parameters, timed events in simulated time, and the tasks the scenario must raise.
 */
import { z } from "zod";
import type { SensorKind } from "../../contracts/index.js";
import {
  ClockTime,
  QualityFlag,
  RegistryFile,
  TaskKind,
  Timestamp,
  formatDuration,
  parseDuration,
} from "../../contracts/index.js";
import { MODEL_PARAMS } from "./model-params.js";

const DURATION_HELP = 'a duration with units d, h, m, s, ms, e.g. "30s", "10m", "1h30m"';

/** A duration string in milliseconds after parsing, within [min, max]; `signed` allows a leading "-". */
export function durationString(bounds: { min: number; max: number; signed?: boolean }) {
  return z.string({ error: `must be ${DURATION_HELP}` }).transform((text, ctx) => {
    const negative = bounds.signed === true && text.startsWith("-");
    const ms = parseDuration(negative ? text.slice(1) : text.replace(/^\+/, ""));
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `${JSON.stringify(text)} is not ${DURATION_HELP}` });
      return z.NEVER;
    }
    const value = negative ? -ms : ms;
    if (value < bounds.min || value > bounds.max) {
      ctx.addIssue({
        code: "custom",
        message: `${text} is outside ${formatDuration(Math.abs(bounds.min))}..${formatDuration(bounds.max)}`,
      });
      return z.NEVER;
    }
    return value;
  });
}

const DAY = 86_400_000;
/** A scenario runs at most a week of simulated time: the models' memoised state stays small. */
const MAX_DURATION = 7 * DAY;
const Offset = durationString({ min: 0, max: MAX_DURATION });
const Span = durationString({ min: 1_000, max: MAX_DURATION });

const timed = { at: Offset, for: Span };
const SiteRef = z.string().min(1);
const DeviceRef = z.string().min(1);

/** Events that change what the instruments measure (the city misbehaving). */
const CityEvent = [
  z.strictObject({ type: z.literal("night_works"), site: SiteRef, ...timed }),
  z.strictObject({ type: z.literal("dust_episode"), site: SiteRef, ...timed }),
  z.strictObject({ type: z.literal("purifier_off"), site: SiteRef, ...timed }),
  z.strictObject({
    type: z.literal("rainstorm"),
    at: Offset,
    /** Rain duration of the Chicago design storm. */
    for: Span,
    totalMm: z.number().positive().max(1000),
    peakPosition: z.number().min(0.05).max(0.95).optional(),
    /** River and underpass sites it rains on; default every water-level site. */
    sites: z.array(SiteRef).optional(),
  }),
  z.strictObject({
    type: z.literal("gas_leak"),
    site: SiteRef,
    at: Offset,
    ramp: Span.optional(),
    for: Span.optional(),
    /** CH4 the leak would hold under normal ventilation, %LEL. */
    equilibriumLel: z.number().positive().max(100).optional(),
  }),
  z.strictObject({
    type: z.literal("water_ingress"),
    site: SiteRef,
    ...timed,
    cmPerH: z.number().positive().max(1000),
  }),
] as const;

/** Events of one device's instrument or link. */
const DeviceEvent = [
  /** The instrument is off: no readings at all (the deadman's case). */
  z.strictObject({ type: z.literal("power_off"), device: DeviceRef, ...timed }),
  /** The link is down: readings are logged and sent afterwards with `replay: true`. */
  z.strictObject({ type: z.literal("link_down"), device: DeviceRef, ...timed }),
  /** Readings carry a quality flag other than normal. */
  z.strictObject({
    type: z.literal("sensor_fault"),
    device: DeviceRef,
    ...timed,
    flag: QualityFlag.exclude(["normal"]).default("fault"),
  }),
  /** The device clock is off by `offset` (e.g. "+2h", "-1d"): readings carry the wrong time. */
  z.strictObject({
    type: z.literal("clock_skew"),
    device: DeviceRef,
    ...timed,
    offset: durationString({ min: -30 * DAY, max: 30 * DAY, signed: true }),
  }),
] as const;

/** Faults of the fleet as a whole: what the ingest and broker must survive. */
const FleetFault = [
  z.strictObject({
    type: z.literal("disconnect_storm"),
    at: Offset,
    /** Share of the connected devices whose TCP connection is cut at once. */
    fraction: z.number().gt(0).max(1),
  }),
  z.strictObject({
    type: z.literal("duplicate_burst"),
    at: Offset,
    fraction: z.number().gt(0).max(1),
    /** Extra copies of each chosen device's last message. */
    copies: z.number().int().min(1).max(20),
  }),
  z.strictObject({
    type: z.literal("malformed"),
    at: Offset,
    count: z.number().int().min(1).max(10_000),
    /** not_json: unparseable text; schema: JSON with a readable seq and an out-of-range value. */
    variant: z.enum(["not_json", "schema"]).default("schema"),
  }),
  z.strictObject({
    type: z.literal("oversized"),
    at: Offset,
    count: z.number().int().min(1).max(1_000),
  }),
  z.strictObject({
    type: z.literal("unknown_device"),
    at: Offset,
    count: z.number().int().min(1).max(10_000),
  }),
] as const;

export const ScenarioEvent = z.discriminatedUnion("type", [
  ...CityEvent,
  ...DeviceEvent,
  ...FleetFault,
]);
export type ScenarioEvent = z.infer<typeof ScenarioEvent>;
export type FleetFaultEvent = Extract<
  ScenarioEvent,
  { type: "disconnect_storm" | "duplicate_burst" | "malformed" | "oversized" | "unknown_device" }
>;
export const FLEET_FAULTS: ReadonlySet<string> = new Set(FleetFault.map((f) => f.shape.type.value));

/** A task the scenario must raise: rule, subject (site or device id), task kind, highest level. */
export const ExpectedTask = z.strictObject({
  rule: z.string().min(1),
  subject: z.string().min(1),
  kind: TaskKind,
  /** The highest level the task reaches (emergency levels IV…I, or a rule's named level). */
  level: z.string().min(1).optional(),
});
export type ExpectedTask = z.infer<typeof ExpectedTask>;

const ScenarioShape = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, {
    error: "name must be 1-64 characters of a-z 0-9 - (it names the run and its files)",
  }),
  description: z.string().min(1).max(2000),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
  /**
   * Simulated start: "HH:MM" local time on the latest day on which the whole run lies in the
   * past (the ingest refuses readings from the future), or an absolute RFC 3339 instant.
   */
  start: z.union([ClockTime, Timestamp], {
    error: 'start must be a local time "HH:MM" or an RFC 3339 timestamp',
  }),
  /** The models compute local time in China Standard Time (UTC+8, no daylight saving). */
  timeZone: z
    .literal("Asia/Shanghai", {
      error: "timeZone must be Asia/Shanghai: the signal models run on China Standard Time",
    })
    .default("Asia/Shanghai"),
  duration: Span,
  /** Simulated seconds per real second (1440: a day in a minute). */
  speed: z.number().min(0.1).max(100_000).default(60),
  /** Simulated time one uplink message covers: readings are batched per span, not per tick. */
  batch: Span.default(600_000),
  layout: RegistryFile,
  /** Model parameters per device id (validated against the device's kind). */
  models: z.record(z.string(), z.unknown()).default({}),
  events: z.array(ScenarioEvent).default([]),
  expect: z.strictObject({ tasks: z.array(ExpectedTask) }),
});

type Shape = z.infer<typeof ScenarioShape>;

/** Which site types each city event needs, and the sensor kind it acts on. */
const EVENT_SITE: Partial<Record<ScenarioEvent["type"], { site: string; kind: SensorKind }>> = {
  night_works: { site: "construction_site", kind: "noise" },
  dust_episode: { site: "construction_site", kind: "dust" },
  purifier_off: { site: "restaurant", kind: "cooking_fume" },
  gas_leak: { site: "tunnel_segment", kind: "utility_tunnel" },
  water_ingress: { site: "tunnel_segment", kind: "utility_tunnel" },
};

function checkReferences(s: Shape, ctx: z.RefinementCtx): void {
  const sites = new Map(s.layout.sites.map((site) => [site.id as string, site]));
  const devices = new Map(s.layout.devices.map((d) => [d.id as string, d]));
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });

  for (const [id, params] of Object.entries(s.models)) {
    const device = devices.get(id);
    if (device === undefined) {
      issue(["models", id], `device ${id} is not in layout.devices`);
      continue;
    }
    const parsed = MODEL_PARAMS[device.kind].safeParse(params);
    if (!parsed.success) {
      for (const i of parsed.error.issues)
        issue(
          ["models", id, ...i.path.map((p) => (typeof p === "symbol" ? String(p) : p))],
          i.message,
        );
    }
  }

  s.events.forEach((event, i) => {
    const end = event.at + ("for" in event && event.for !== undefined ? event.for : 0);
    if (end > s.duration) {
      issue(
        ["events", i, "at"],
        `the event ends ${formatDuration(end)} after the start, past the duration ${formatDuration(s.duration)}`,
      );
    }
    if ("site" in event) {
      const site = sites.get(event.site);
      const need = EVENT_SITE[event.type];
      if (site === undefined)
        issue(["events", i, "site"], `site ${event.site} is not in layout.sites`);
      else if (need !== undefined && site.type !== need.site)
        issue(
          ["events", i, "site"],
          `${event.type} needs a ${need.site}; ${event.site} is a ${site.type}`,
        );
      else if (
        need !== undefined &&
        !s.layout.devices.some((d) => d.siteId === event.site && d.kind === need.kind)
      )
        issue(
          ["events", i, "site"],
          `${event.type} acts on ${need.kind} devices; site ${event.site} has none`,
        );
    }
    if ("device" in event && !devices.has(event.device)) {
      issue(["events", i, "device"], `device ${event.device} is not in layout.devices`);
    }
    if (event.type === "rainstorm") {
      (event.sites ?? []).forEach((id, j) => {
        const type = sites.get(id)?.type;
        if (type !== "river_station" && type !== "underpass" && type !== "drain")
          issue(
            ["events", i, "sites", j],
            `${id} is not a river_station, underpass or drain in layout.sites`,
          );
      });
    }
  });

  s.expect.tasks.forEach((task, i) => {
    if (!sites.has(task.subject) && !devices.has(task.subject))
      issue(
        ["expect", "tasks", i, "subject"],
        `${task.subject} is neither a site nor a device of the layout`,
      );
  });

  const batchReadings = (d: { expectedIntervalS: number }) =>
    s.batch / (d.expectedIntervalS * 1000);
  s.layout.devices.forEach((d, i) => {
    if (batchReadings(d) > 500)
      issue(
        ["batch"],
        `batch ${formatDuration(s.batch)} holds more than 500 readings of ${d.id} (layout.devices.${i})`,
      );
  });
  const pace = paceProblem(s.speed, s.batch);
  if (pace !== undefined) issue(["batch"], pace);
}

/**
 * Why `speed` and `batch` together are too fast for the broker, or undefined. The broker allows
 * 20 PUBLISH/s per connection (docs/protocol.md §8); a device keeps half of it for re-sends.
 */
export function paceProblem(speed: number, batchMs: number): string | undefined {
  return (speed * 1000) / batchMs > 10
    ? `at speed ${speed} a batch of ${formatDuration(batchMs)} is more than 10 messages/s per device; lengthen the batch or lower the speed`
    : undefined;
}

export const Scenario = ScenarioShape.superRefine(checkReferences);
export type Scenario = z.infer<typeof Scenario>;
export type ScenarioInput = z.input<typeof Scenario>;
