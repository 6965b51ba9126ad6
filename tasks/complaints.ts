import { createHmac, timingSafeEqual } from "node:crypto";
import type { TasksConfig } from "../contracts/config/tasks.js";
import type {
  ComplaintCategory,
  ComplaintLocation,
  Corroboration,
} from "../contracts/model/complaints.js";
import type { Device, Site } from "../contracts/model/registry.js";
import type { SensorKind } from "../contracts/model/sensors.js";
import type { Task, TaskEvent } from "../contracts/model/tasks.js";
import type { TaskKind } from "../contracts/model/topics.js";
import type { OutboxTarget } from "./notify/outbox.js";
import { postSigned, webhookSignature } from "./notify/webhook.js";

/*
 * Complaint intake (docs/tasks.md, Complaints and manual filing): the pure parts. A complaint's
 * category decides the task kind and the sensors that can corroborate it; the nearest site with a
 * location routes it; readings of the devices of the matching kind within `radiusM` and
 * ±`windowMs` of the complaint are summarised and compared with a limit, and the statement says
 * plainly what was compared. The outcome of a closed complaint task goes back to the platform
 * through the durable outbox (complaintTargets).
 */

export type ComplaintPlatform = TasksConfig["complaints"]["platforms"][number];

/**
 * The task kind of a category: noise, dust and cooking fume are a party's emissions (an
 * enforcement case for the team to inspect; no graduated response is applied automatically: a
 * complaint is not a measured violation); water (ponding, a blocked drain) is maintenance work
 * for the drainage operator, not an emergency (the water-level rules raise those from data);
 * anything else is an investigation by the grid (environmental).
 */
export function kindOfCategory(category: ComplaintCategory): TaskKind {
  switch (category) {
    case "noise":
    case "dust":
    case "cooking_fume":
      return "enforcement";
    case "water":
      return "maintenance";
    case "other":
      return "environmental";
  }
}

/** The rule domain of a category, as the rule pack names it (routing lines match domains). */
export function domainOfCategory(category: ComplaintCategory): string {
  switch (category) {
    case "noise":
    case "dust":
    case "water":
      return category;
    case "cooking_fume":
      return "cooking-fume";
    case "other":
      return "complaint";
  }
}

/**
 * The synthetic rule id of a complaint task: `<domain>.complaint/<platform>/<complaint id>`, one
 * per complaint (the task store keeps one open task per subject and rule, and several complaints
 * about one site may be open at once); its domain routes it as the rules' tasks of that domain.
 */
export const complaintRuleId = (
  category: ComplaintCategory,
  platform: string,
  complaintId: string,
): string => `${domainOfCategory(category)}.complaint/${platform}/${complaintId}`;

/** The sensors that can corroborate a category, and the quantity compared. */
export function sensorOfCategory(
  category: ComplaintCategory,
): { kind: SensorKind; quantity: string; decibels: boolean } | undefined {
  switch (category) {
    case "noise":
      return { kind: "noise", quantity: "LAeq", decibels: true };
    case "dust":
      return { kind: "dust", quantity: "pm10", decibels: false };
    case "cooking_fume":
      return { kind: "cooking_fume", quantity: "oilFume", decibels: false };
    case "water":
      return { kind: "water_level", quantity: "ponding", decibels: false };
    case "other":
      return undefined;
  }
}

const EARTH_M = 6_371_008.8;
const rad = (d: number) => (d * Math.PI) / 180;

/** Great-circle distance in metres (haversine). */
export function distanceM(
  a: { lat: number; lon: number },
  b: { lat: number; lon: number },
): number {
  const dLat = rad(b.lat - a.lat);
  const dLon = rad(b.lon - a.lon);
  const h =
    Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/**
 * The site a complaint is about: the nearest site to its point; without a point, a site whose
 * district (and street, when given) match and whose name or address occurs in the complaint's
 * address. Undefined: no site (the task is routed by the default department).
 */
export function nearestSite(
  sites: readonly Site[],
  location: ComplaintLocation,
): { site: Site; distanceM: number | undefined } | undefined {
  const { lat, lon } = location;
  if (lat !== undefined && lon !== undefined) {
    let best: { site: Site; distanceM: number } | undefined;
    for (const site of sites) {
      const d = distanceM({ lat, lon }, site.location);
      if (best === undefined || d < best.distanceM) best = { site, distanceM: d };
    }
    return best === undefined
      ? undefined
      : { site: best.site, distanceM: Math.round(best.distanceM) };
  }
  const address = location.address ?? "";
  const found = sites.find(
    (s) =>
      (location.district === undefined || s.area.district === location.district) &&
      (location.street === undefined || s.area.street === location.street) &&
      (address.includes(s.name) ||
        ("address" in s && typeof s.address === "string" && address.includes(s.address))),
  );
  return found === undefined ? undefined : { site: found, distanceM: undefined };
}

/** Devices of a kind within `radiusM` of a point, nearest first. */
export function nearbyDevices(
  devices: readonly Device[],
  kind: SensorKind,
  point: { lat: number; lon: number },
  radiusM: number,
): Array<{ device: Device; distanceM: number }> {
  return devices
    .filter((d) => d.kind === kind && d.enabled)
    .map((device) => ({ device, distanceM: distanceM(point, device.location) }))
    .filter((d) => d.distanceM <= radiusM)
    .sort((a, b) => a.distanceM - b.distanceM);
}

/** Energy mean of levels in dB: 10·log10(mean(10^(L/10))) (never the mean of dB values). */
export function energyMean(levels: readonly number[]): number | null {
  if (levels.length === 0) return null;
  const sum = levels.reduce((s, l) => s + 10 ** (l / 10), 0);
  return 10 * Math.log10(sum / levels.length);
}

const round1 = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);

/** One reading as the store gives it. */
export interface ReadingLike {
  readonly timeMs: number;
  readonly quality: string;
  readonly values: Readonly<Record<string, number | boolean>>;
}

/** A reading usable for corroboration: a good one (flagged maintenance, fault… are left out). */
const usable = (r: ReadingLike) => r.quality === "normal";

/** GB 3096-2008 Table 1 (environmental noise, dB(A)): day 06-22, night 22-06. */
const GB3096: Readonly<Record<string, { day: number; night: number }>> = {
  "0": { day: 50, night: 40 },
  "1": { day: 55, night: 45 },
  "2": { day: 60, night: 50 },
  "3": { day: 65, night: 55 },
  "4a": { day: 70, night: 55 },
  "4b": { day: 70, night: 60 },
};

/** The local hour of an ISO instant written with its zone offset (the platform's own clock). */
function localHour(iso: string): number {
  const m = /T(\d{2}):/.exec(iso);
  return m === null ? 12 : Number(m[1]);
}

/**
 * The limit a complaint's readings are compared with: the linked open case's own limit when it is
 * of the same quantity; else, for noise, the site type's default (construction sites GB 12523-2011
 * boundary limits 70 / 55 dB(A); other sites GB 3096-2008 by the site's zone class, day or night
 * by the complaint's local time); for cooking fume GB 18483-2001's 2.0 mg/m³. Null otherwise.
 */
export function limitFor(input: {
  category: ComplaintCategory;
  site: Site | undefined;
  receivedAt: string;
  linked: Pick<Task, "id" | "rule" | "limit"> | undefined;
}): Corroboration["limit"] {
  const sensor = sensorOfCategory(input.category);
  if (sensor === undefined) return null;
  const { linked, site } = input;
  if (
    linked?.limit !== undefined &&
    linked.rule.id.startsWith(`${domainOfCategory(input.category)}.`) &&
    !linked.rule.id.includes(".complaint/")
  ) {
    return {
      value: linked.limit,
      quantity: sensor.quantity,
      source: `the limit of open case ${linked.id} (${linked.rule.id})`,
    };
  }
  const hour = localHour(input.receivedAt);
  const night = hour >= 22 || hour < 6;
  if (input.category === "noise" && site !== undefined) {
    if (site.type === "construction_site") {
      return {
        value: night ? 55 : 70,
        quantity: "LAeq",
        source: `GB 12523-2011 construction site boundary limit, ${night ? "night" : "day"}`,
      };
    }
    const zone = site.zoneClass === undefined ? undefined : GB3096[site.zoneClass];
    if (zone !== undefined) {
      return {
        value: night ? zone.night : zone.day,
        quantity: "LAeq",
        source: `GB 3096-2008 zone class ${site.zoneClass ?? "?"}, ${night ? "night" : "day"}`,
      };
    }
  }
  if (input.category === "cooking_fume") {
    return { value: 2, quantity: "oilFume", source: "GB 18483-2001 oil-fume emission limit" };
  }
  return null;
}

/** The corroboration record of a complaint from the readings found (one entry per device). */
export function corroboration(input: {
  category: ComplaintCategory;
  fromMs: number;
  toMs: number;
  radiusM: number;
  devices: ReadonlyArray<{
    deviceId: string;
    siteId: string;
    distanceM: number;
    readings: readonly ReadingLike[];
  }>;
  limit: Corroboration["limit"];
  located: boolean;
}): Corroboration {
  const sensor = sensorOfCategory(input.category);
  const base = {
    from: new Date(input.fromMs).toISOString(),
    to: new Date(input.toMs).toISOString(),
    radiusM: input.radiusM,
    limit: input.limit,
  };
  if (sensor === undefined) {
    return {
      ...base,
      devices: [],
      exceedance: null,
      statement: "no sensor measures this category: not corroborated by readings",
    };
  }
  if (!input.located) {
    return {
      ...base,
      devices: [],
      exceedance: null,
      statement: "the complaint has no coordinates: no nearby devices searched",
    };
  }
  const devices = input.devices.map((d) => {
    const good = d.readings.filter(usable);
    const values = good
      .map((r) => r.values[sensor.quantity])
      .filter((v): v is number => typeof v === "number");
    const mean = sensor.decibels
      ? energyMean(values)
      : values.length === 0
        ? null
        : values.reduce((s, v) => s + v, 0) / values.length;
    const lamax = good
      .map((r) => r.values["LAmax"])
      .filter((v): v is number => typeof v === "number");
    return {
      deviceId: d.deviceId,
      siteId: d.siteId,
      distanceM: Math.round(d.distanceM),
      readings: values.length,
      quantity: sensor.quantity,
      mean: round1(mean),
      max: values.length === 0 ? null : Math.max(...values),
      ...(sensor.kind === "noise"
        ? { maxLAmax: lamax.length === 0 ? null : Math.max(...lamax) }
        : {}),
    };
  });
  const measured = devices.filter((d) => d.mean !== null);
  const what = sensor.decibels ? `energy-mean ${sensor.quantity}` : `mean ${sensor.quantity}`;
  if (devices.length === 0) {
    return {
      ...base,
      devices,
      exceedance: null,
      statement: `no ${sensor.kind} device within ${input.radiusM} m: not corroborated by readings`,
    };
  }
  if (measured.length === 0) {
    return {
      ...base,
      devices,
      exceedance: null,
      statement: `${devices.length} ${sensor.kind} device(s) within ${input.radiusM} m have no usable readings from ${base.from} to ${base.to}`,
    };
  }
  const summary = measured
    .map(
      (d) => `${d.deviceId} ${what} ${String(d.mean)} (${d.readings} readings, ${d.distanceM} m)`,
    )
    .join("; ");
  if (input.limit === null) {
    return {
      ...base,
      devices,
      exceedance: null,
      statement: `${summary}; no applicable limit known to compare with`,
    };
  }
  const limit = input.limit;
  const over = measured.filter((d) => (d.mean ?? 0) > limit.value);
  return {
    ...base,
    devices,
    exceedance: over.length > 0,
    statement: `${summary}; compared with ${limit.value} (${limit.source}): ${
      over.length > 0
        ? `exceeded at ${over.map((d) => d.deviceId).join(", ")}`
        : "no device's mean exceeds it"
    }`,
  };
}

/** Whether a post's timestamp is within the allowed skew of the clock (unix seconds). */
export function freshTimestamp(timestamp: string, nowMs: number, maxSkewMs: number): boolean {
  if (!/^\d{1,12}$/.test(timestamp)) return false;
  return Math.abs(Number(timestamp) * 1000 - nowMs) <= maxSkewMs;
}

/** Constant-time check of `sha256=hex(HMAC(secret, timestamp + "." + body))`. */
export function validSignature(
  secret: string,
  timestamp: string,
  body: string,
  given: string,
): boolean {
  const expected = Buffer.from(webhookSignature(secret, timestamp, body));
  const sent = Buffer.from(given);
  return sent.length === expected.length && timingSafeEqual(sent, expected);
}

/** The outcome a platform receives once its complaint's task closes. */
export interface ComplaintOutcome {
  readonly complaintId: string;
  readonly taskId: string;
  readonly outcome: string;
  readonly note: string | null;
  readonly closedAt: string;
}

/** The closing event of a platform's complaint task, or undefined for any other event. */
function closingOf(event: TaskEvent, platform: string): ComplaintOutcome | undefined {
  const { task } = event;
  const source = task.source;
  if (source?.type !== "complaint" || source.platform !== platform) return undefined;
  if (task.state !== "closed" || !event.entries.some((e) => e.to === "closed")) return undefined;
  return {
    complaintId: source.complaintId,
    taskId: task.id,
    outcome: task.closure?.reason ?? "closed",
    note: task.closure?.note ?? null,
    closedAt: task.closedAt ?? event.at,
  };
}

/**
 * One outbox target per platform with a callback URL: it takes only the closing event of that
 * platform's complaint tasks (one per task: closed is terminal) and POSTs the outcome, signed as
 * webhooks are, with `Idempotency-Key: <task id>-closed` (the same on every attempt: the outbox
 * retries until a 2xx, the platform drops repeats). Nothing else of the task is sent.
 */
export function complaintTargets(
  platforms: readonly ComplaintPlatform[],
  options: { readonly timeoutMs: number; readonly now: () => number },
): OutboxTarget[] {
  return platforms.flatMap((platform) => {
    const url = platform.callbackUrl;
    if (url === undefined) return [];
    return [
      {
        name: `complaint:${platform.name}`,
        accepts: (event: TaskEvent) => closingOf(event, platform.name) !== undefined,
        async deliver(event: TaskEvent): Promise<void> {
          const outcome = closingOf(event, platform.name);
          if (outcome === undefined) return;
          await postSigned(
            { name: platform.name, url, secret: platform.secret },
            {
              event: "complaint.closed",
              key: `${outcome.taskId}-closed`,
              body: JSON.stringify(outcome),
            },
            options,
          );
        },
      },
    ];
  });
}

/** An HMAC for tests and platform integrators: the header value of a body. */
export const signComplaint = (secret: string, timestamp: string, body: string): string =>
  `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`, "utf8").digest("hex")}`;

/** Where contact retention erases: the task store. */
export interface ContactStore {
  eraseComplaintContacts(closedBeforeMs: number): Promise<number>;
}

/**
 * Erases complainants' contacts `retentionMs` after their complaint's task closed
 * (`tasks.complaints.contactRetentionMs`), at start and then every `intervalMs`; each erasure is
 * logged with its count. The complaint record (platform, complaint id, task) stays.
 */
export class ContactRetention {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      readonly store: ContactStore;
      readonly retentionMs: number;
      readonly intervalMs: number;
      readonly now: () => number;
      readonly log: { info(o: object, msg: string): void; error(o: object, msg: string): void };
    },
  ) {}

  /** Erase what is due now; the count erased. */
  async erase(): Promise<number> {
    const erased = await this.deps.store.eraseComplaintContacts(
      this.deps.now() - this.deps.retentionMs,
    );
    if (erased > 0)
      this.deps.log.info({ erased }, "complainants' contacts erased after the retention period");
    return erased;
  }

  start(): void {
    const run = () => {
      this.erase().catch((error: unknown) => {
        this.deps.log.error(
          { err: (error as Error).message },
          "complainants' contacts not erased; the next run retries",
        );
      });
    };
    run();
    this.timer = setInterval(run, this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
