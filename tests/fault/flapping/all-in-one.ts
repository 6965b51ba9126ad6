import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { QualityFlag } from "../../../contracts/model/quality.js";
import { startTestBroker, type TestBroker } from "../../support/broker.js";
import { startLocalIngest, type TestIngest } from "../../support/ingest.js";

/*
 * What the fault tests of the revocation, readers, flapping and disk areas share: a noise
 * device's uplink of one reading, and the all-in-one process (broker with its publish gate, the
 * ingest, rules and tasks behind it) in a temporary data directory.
 */

/** One noise reading as a device's uplink message (seq `seq`, at `tsMs`). */
export function noiseUplink(
  deviceId: string,
  seq: number,
  tsMs: number,
  reading: { quality?: QualityFlag; LAeq?: number } = {},
): string {
  return JSON.stringify({
    v: 1,
    deviceId,
    seq,
    kind: "noise",
    readings: [
      {
        ts: new Date(tsMs).toISOString(),
        quality: reading.quality ?? "normal",
        values: { LAeq: reading.LAeq ?? 50 },
      },
    ],
  });
}

export const dataTopic = (deviceId: string) => `citywatch/v1/devices/${deviceId}/data`;

export interface AllInOne {
  readonly dir: string;
  readonly t: TestBroker;
  readonly ingest: TestIngest;
  stop(): Promise<void>;
}

/** The broker (publish rate limits out of the way) and the in-process ingest, in a temp dir. */
export async function startAllInOne(prefix: string, dataDir?: string): Promise<AllInOne> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), prefix));
  const t = await startTestBroker(
    { limits: { publishRatePerSecond: 10_000, publishBurst: 10_000 } },
    { dataDir: dir },
  );
  const ingest = await startLocalIngest(t, { dataDir: dir });
  return {
    dir,
    t,
    ingest,
    async stop() {
      await ingest.stop();
      await t.stop();
      if (dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
