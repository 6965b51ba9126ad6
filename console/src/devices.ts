import type {
  DeviceState,
  LatestResponse,
  ReadingsResponse,
  SiteSummary,
} from "../../contracts/model/api.js";
import type { Task } from "../../contracts/model/tasks.js";
import { api, ApiError } from "./api.js";
import { localParts } from "./time.js";

/*
 * Devices and sites as the devices page, the emergency board and the map read them: the registry
 * with each device's delivery state (GET /api/v1/devices), the sites (GET /api/v1/sites), the
 * devices' newest readings (GET /api/v1/readings/latest), and the status a device or site is
 * drawn in.
 */

export type Reading = ReadingsResponse["readings"][number];
export type DeviceStatus = "alarm" | "maintenance" | "offline" | "online" | "standby" | "disabled";

export const loadDevices = () =>
  api<{ devices: DeviceState[] }>("GET", "/api/v1/devices").then((r) => r.devices);
export const loadSites = () =>
  api<{ sites: SiteSummary[] }>("GET", "/api/v1/sites").then((r) => r.sites);

/** Ids asked of GET /api/v1/readings/latest at most per request (the API's bound). */
const LATEST_IDS_MAX = 1_000;

/**
 * The newest readings of many devices: GET /api/v1/readings/latest, one request per 1,000 ids
 * (one store query per kind behind it). A 429 (the readers' bound, cli/runtime/query-limits.ts)
 * is asked again after a pause, twice.
 */
export async function latestReadings(ids: readonly string[]): Promise<Map<string, Reading>> {
  const out = new Map<string, Reading>();
  for (let at = 0; at < ids.length; at += LATEST_IDS_MAX) {
    const chunk = ids.slice(at, at + LATEST_IDS_MAX);
    const answer = await latestOf(chunk.join(","));
    for (const r of answer.readings) out.set(r.deviceId, r.reading);
  }
  return out;
}

async function latestOf(ids: string, attempt = 0): Promise<LatestResponse> {
  try {
    return await api<LatestResponse>(
      "GET",
      `/api/v1/readings/latest?ids=${encodeURIComponent(ids)}`,
    );
  } catch (error) {
    if (error instanceof ApiError && error.status === 429 && attempt < 2) {
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      return latestOf(ids, attempt + 1);
    }
    throw error;
  }
}

/** Calibration: expired, due within 30 days, fine, or not recorded (local dates). */
export function calibration(
  due: string | undefined,
  now: number,
): "expired" | "soon" | "ok" | "none" {
  if (due === undefined) return "none";
  const today = localParts(now).date;
  if (due < today) return "expired";
  return due < localParts(now + 30 * 86_400_000).date ? "soon" : "ok";
}

const OPEN = (task: Task) => task.state !== "closed";

/**
 * A device's status on the map and the lists: alarm while an open emergency, enforcement or
 * environmental task concerns it or its site; maintenance while an open maintenance task does;
 * else disabled, standby, online or offline from the registry and its delivery.
 */
export function deviceStatus(device: DeviceState, tasks: readonly Task[]): DeviceStatus {
  const mine = tasks.filter(
    (t) => OPEN(t) && (t.deviceIds.includes(device.id) || t.siteId === device.siteId),
  );
  if (mine.some((t) => t.kind !== "maintenance")) return "alarm";
  if (mine.some((t) => t.kind === "maintenance" && t.deviceIds.includes(device.id)))
    return "maintenance";
  if (!device.enabled) return "disabled";
  if (device.standby) return "standby";
  return device.online ? "online" : "offline";
}

const RANK: Record<DeviceStatus, number> = {
  alarm: 5,
  maintenance: 4,
  offline: 3,
  disabled: 2,
  online: 1,
  standby: 0,
};

/** A site's status: the worst of its devices' (alarm first), or alarm by its own open tasks. */
export function siteStatus(
  site: SiteSummary,
  devices: readonly DeviceState[],
  tasks: readonly Task[],
): DeviceStatus {
  if (tasks.some((t) => OPEN(t) && t.kind !== "maintenance" && t.siteId === site.id))
    return "alarm";
  let worst: DeviceStatus = "standby";
  for (const d of devices) {
    if (d.siteId !== site.id) continue;
    const s = deviceStatus(d, tasks);
    if (RANK[s] > RANK[worst]) worst = s;
  }
  return worst;
}

/** A reading's values on one line: `ch4 27 · o2 20.9 …` (the first few). */
export const valuesLine = (reading: Reading, most = 4): string =>
  Object.entries(reading.values)
    .slice(0, most)
    .map(
      ([k, v]) => `${k} ${typeof v === "number" ? String(Math.round(v * 100) / 100) : String(v)}`,
    )
    .join(" · ");

/** A sample reading per kind for the mosquitto_pub line (docs/protocol.md). */
const SAMPLE: Record<string, Record<string, number>> = {
  noise: { LAeq: 55.2, LAmax: 68.4 },
  dust: { pm10: 80, pm2_5: 45 },
  cooking_fume: { particulate: 1.2, nmhc: 3.4 },
  water_level: { stage: 1.85 },
  utility_tunnel: { ch4: 0.2, o2: 20.9 },
};

/** The mosquitto_pub command that sends one reading as the device (docs/protocol.md 11.1). */
export function mosquittoPub(input: {
  host: string;
  port: number;
  deviceId: string;
  kind: string;
  secret: string;
  topic: string;
  now: number;
}): string {
  const payload = JSON.stringify({
    v: 1,
    deviceId: input.deviceId,
    seq: 1,
    kind: input.kind,
    readings: [
      {
        ts: new Date(Math.floor(input.now / 60_000) * 60_000).toISOString(),
        quality: "normal",
        values: SAMPLE[input.kind] ?? {},
      },
    ],
  });
  return [
    `mosquitto_pub -h ${input.host} -p ${input.port} -V mqttv311 -q 1 \\`,
    `  -i ${input.deviceId} -u ${input.deviceId} -P '${input.secret}' \\`,
    `  -t ${input.topic} \\`,
    `  -m '${payload}'`,
  ].join("\n");
}
