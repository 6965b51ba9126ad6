import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import {
  type Device,
  errorResponses,
  PUBLIC_QUANTITIES,
  type PublicSummary,
  PublicSummary as PublicSummarySchema,
  type PublicTopic,
  type Site,
  type Task,
} from "../../contracts/index.js";
import { fromOf } from "../../ingest/http/readings.js";
import type { StoredReading, TimeSeriesStore } from "../../ingest/store/types.js";
import type { RegistryView } from "../../ingest/app.js";

/*
 * GET /api/v1/public/summary: the public page's figures (信息公开; contracts/model/public.ts,
 * docs/api.md section 19), for anyone, without a token or session. Registered only when
 * `console.public.enabled` is set; otherwise the path is the API's 404.
 *
 * Only aggregates leave: per district the mean of the monitors' hourly values of the last
 * complete hour, the places of the monitoring points, and counts of cases and alerts by topic. No
 * party, person, site name, case number or single device's value. The answer is computed at most
 * once a minute (concurrent requests share one computation) and may be cached by proxies as long,
 * so an anonymous crowd costs the stores one query per monitor a minute, not one per visit.
 */

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** How long one computation serves (and `cache-control: max-age`). */
export const PUBLIC_CACHE_MS = 60_000;
/** GB 3095-2012 clause 8: an hourly mean needs at least 45 minutes of valid data. */
export const VALID_HOUR_MS = 45 * 60_000;
/** Readings of one monitor read for its hour at most (a reading a second is 3,600). */
const MAX_READINGS_PER_HOUR = 7_200;

export interface PublicApiOptions {
  readonly registry: RegistryView;
  readonly store: TimeSeriesStore;
  /** The tasks filed in a period (the task store); absent: no case counts (a readings-only API). */
  readonly tasks?:
    { filedTasks(fromMs: number, toMs: number): Task[] | Promise<Task[]> } | undefined;
  /** `console.public`. */
  readonly settings: { readonly title: string; readonly days: number };
  readonly timeZone: string;
  readonly now: () => number;
}

/** A monitor's value of one hour: the mean (energy mean for levels) of its valid readings. */
export function hourlyValue(
  readings: readonly StoredReading[],
  quantity: string,
  fn: "mean" | "energy_mean",
  expectedIntervalMs: number,
): number | undefined {
  let n = 0;
  let sum = 0;
  for (const r of readings) {
    if (r.quality !== "normal") continue;
    const v = r.values[quantity];
    if (typeof v !== "number" || !Number.isFinite(v)) continue;
    n += 1;
    sum += fn === "energy_mean" ? 10 ** (v / 10) : v;
  }
  // Coverage: each valid reading stands for the device's interval (readings are stamped at the
  // end of the interval they measure, docs/protocol.md).
  if (n === 0 || Math.min(HOUR_MS, n * expectedIntervalMs) < VALID_HOUR_MS) return undefined;
  const mean = sum / n;
  return fn === "energy_mean" ? 10 * Math.log10(mean) : mean;
}

const round1 = (v: number) => Math.round(v * 10) / 10;
/** About 10 m: enough to find the monitor, as Art. 41 asks, no more precise than that. */
const round4 = (v: number) => Math.round(v * 10_000) / 10_000;

const PUBLIC_KINDS = new Set(["noise", "dust", "cooking_fume"]);
const inService = (d: Device) => d.enabled && d.standby !== true;

function topicOf(task: Task, kinds: ReadonlyMap<string, string>): PublicTopic {
  for (const id of task.deviceIds) {
    const kind = kinds.get(id);
    if (kind === "noise" || kind === "dust" || kind === "cooking_fume") return kind;
  }
  return "other";
}

export async function publicSummary(options: PublicApiOptions): Promise<PublicSummary> {
  const nowMs = options.now();
  const hourTo = Math.floor(nowMs / HOUR_MS) * HOUR_MS;
  const hourFrom = hourTo - HOUR_MS;
  const devices = options.registry.devices().filter(inService);
  const sites = new Map<string, Site>(options.registry.sites().map((s) => [s.id, s]));
  const districtOf = (siteId: string | undefined) =>
    siteId === undefined ? undefined : sites.get(siteId)?.area.district;

  type Acc = { sum: number; monitors: number; of: number };
  const readings = new Map<string, Map<string, Acc>>();
  const districtReadings = (district: string) => {
    let m = readings.get(district);
    if (m === undefined) {
      m = new Map(PUBLIC_QUANTITIES.map((q) => [q.quantity, { sum: 0, monitors: 0, of: 0 }]));
      readings.set(district, m);
    }
    return m;
  };
  // One query per monitor, one after the other: the store's own bounds (query-limits.ts) apply.
  for (const device of devices) {
    const quantities = PUBLIC_QUANTITIES.filter((q) => q.kind === device.kind);
    if (quantities.length === 0) continue;
    const acc = districtReadings(device.area.district);
    // Readings are stamped at the end of the interval they measure (docs/protocol.md): the hour
    // holds those stamped in (from, to].
    const fromMs = fromOf(device, hourFrom + 1);
    const rows =
      fromMs > hourTo
        ? []
        : await options.store.readings({
            deviceId: device.id,
            kind: device.kind,
            fromMs,
            toMs: hourTo + 1,
            limit: MAX_READINGS_PER_HOUR,
          });
    for (const q of quantities) {
      const a = acc.get(q.quantity);
      if (a === undefined) continue;
      a.of += 1;
      const v = hourlyValue(rows, q.quantity, q.fn, device.expectedIntervalS * 1_000);
      if (v === undefined) continue;
      a.sum += v;
      a.monitors += 1;
    }
  }

  type Counts = { casesFiled: number; casesClosed: number; alertsFiled: number };
  const cases = new Map<string, Map<PublicTopic, Counts>>();
  const casesFrom = nowMs - options.settings.days * DAY_MS;
  if (options.tasks !== undefined) {
    const kinds = new Map(options.registry.devices().map((d) => [d.id, d.kind]));
    for (const task of await options.tasks.filedTasks(casesFrom, nowMs + 1)) {
      if (task.kind !== "enforcement" && task.kind !== "environmental") continue;
      const district = task.routing.district ?? districtOf(task.siteId) ?? "—";
      let byTopic = cases.get(district);
      if (byTopic === undefined) cases.set(district, (byTopic = new Map<PublicTopic, Counts>()));
      const topic = topicOf(task, kinds);
      const c = byTopic.get(topic) ?? { casesFiled: 0, casesClosed: 0, alertsFiled: 0 };
      if (task.kind === "environmental") c.alertsFiled += 1;
      else {
        c.casesFiled += 1;
        if (task.state === "closed") c.casesClosed += 1;
      }
      byTopic.set(topic, c);
    }
  }

  const monitors = devices
    .filter((d) => PUBLIC_KINDS.has(d.kind))
    .map((d) => ({
      kind: d.kind as "noise" | "dust" | "cooking_fume",
      district: d.area.district,
      ...(d.area.street === undefined ? {} : { street: d.area.street }),
      lat: round4(d.location.lat),
      lon: round4(d.location.lon),
    }))
    .sort(
      (a, b) =>
        a.district.localeCompare(b.district, "zh-CN") ||
        a.kind.localeCompare(b.kind) ||
        a.lat - b.lat ||
        a.lon - b.lon,
    );
  const districts = [...new Set([...readings.keys(), ...cases.keys()])]
    .sort((a, b) => a.localeCompare(b, "zh-CN"))
    .map((district) => ({
      district,
      readings: PUBLIC_QUANTITIES.map((q) => {
        const a = readings.get(district)?.get(q.quantity) ?? { sum: 0, monitors: 0, of: 0 };
        return {
          quantity: q.quantity,
          unit: q.unit,
          value: a.monitors === 0 ? null : round1(a.sum / a.monitors),
          monitors: a.monitors,
          of: a.of,
        };
      }).filter((r) => r.of > 0),
      cases: [...(cases.get(district) ?? new Map<PublicTopic, Counts>())]
        .map(([topic, c]) => ({ topic, ...c }))
        .sort((a, b) => a.topic.localeCompare(b.topic)),
    }));
  return {
    format: "citywatch-public/1",
    title: options.settings.title,
    generatedAt: new Date(nowMs).toISOString(),
    timeZone: options.timeZone,
    hour: { from: new Date(hourFrom).toISOString(), to: new Date(hourTo).toISOString() },
    cases: {
      from: new Date(casesFrom).toISOString(),
      to: new Date(nowMs).toISOString(),
      days: options.settings.days,
    },
    districts,
    monitors,
  };
}

export const publicApi: FastifyPluginAsyncZod<PublicApiOptions> = (app, options) => {
  let cached: { atMs: number; summary: Promise<PublicSummary> } | undefined;
  const current = () => {
    const nowMs = options.now();
    if (cached === undefined || nowMs - cached.atMs >= PUBLIC_CACHE_MS || nowMs < cached.atMs) {
      const summary = publicSummary(options);
      cached = { atMs: nowMs, summary };
      // A failed computation is not kept: the next request tries again.
      summary.catch(() => {
        if (cached?.summary === summary) cached = undefined;
      });
    }
    return cached.summary;
  };

  app.get(
    "/api/v1/public/summary",
    {
      schema: {
        tags: ["public"],
        // Anyone: no token, no session.
        security: [],
        summary:
          "The public page's figures: readings per district of the last hour, the monitoring points, case counts (no sign-in, no personal data)",
        response: {
          200: PublicSummarySchema,
          ...errorResponses({
            unavailable: "the time-series store did not answer",
          }),
        },
      },
    },
    async (_request, reply) => {
      const summary = await current();
      void reply.header(
        "cache-control",
        `public, max-age=${String(Math.round(PUBLIC_CACHE_MS / 1000))}`,
      );
      return summary;
    },
  );
  return Promise.resolve();
};
