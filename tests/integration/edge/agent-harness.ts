import { join } from "node:path";
import { pino } from "pino";
import {
  type EdgeConfigInput,
  loadEdgeConfig,
  type ResolvedEdgeConfig,
  type SensorKind,
} from "../../../contracts/index.js";
import type { Ingest } from "../../../ingest/app.js";
import type { StoredReading } from "../../../ingest/store/types.js";

/**
 * Helpers of the edge agent's integration tests: an agent configuration for devices of a test
 * broker with short timers, interval readings numbered by their timestamp, and the store's view.
 */

/** Readings are numbered: reading n is stamped T0 + n ms (inside the ingest's 30-day window). */
export const T0 = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000;

export function tsOf(n: number): number {
  return T0 + n;
}

export function numberOf(reading: StoredReading): number {
  return reading.timeMs - T0;
}

export interface TestDevice {
  readonly deviceId: string;
  readonly kind: SensorKind;
  readonly secret: string;
}

/** Agent configuration for `devices` on `url`, state under `dir`, fast timers for tests. */
export function edgeConfig(
  url: string,
  devices: readonly TestDevice[],
  dir: string,
  extra: Partial<EdgeConfigInput> = {},
): ResolvedEdgeConfig {
  return loadEdgeConfig({
    overrides: {
      log: { level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" },
      mqtt: { url, keepaliveS: 10, connectTimeoutMs: 2_000 },
      devices: devices.map((d) => ({ ...d })),
      wal: { file: join(dir, "wal.db"), maxReadingsPerMessage: 50 },
      remoteConfig: { dir: join(dir, "device-config") },
      uplink: {
        reconnectMinMs: 100,
        reconnectMaxMs: 400,
        commitWaitMs: 300,
        lingerMs: 10,
        resendTimeoutMs: 2_000,
        resendMaxMs: 4_000,
      },
      ...extra,
    },
  });
}

export const testLog = () => pino({ level: process.env["CITYWATCH_TEST_LOG"] ?? "silent" });

/** Every stored reading of the device (numbered readings only). */
export function storedReadings(ingest: Ingest, deviceId: string, kind: SensorKind) {
  return ingest.store.readings({
    deviceId,
    kind,
    fromMs: T0,
    toMs: T0 + 10_000_000,
    limit: 1_000_000,
  });
}

/** The value of one of the ingest's counters. */
export async function ingestCounter(
  ingest: Ingest,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = await ingest.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))
    .reduce((sum, v) => sum + v.value, 0);
}
