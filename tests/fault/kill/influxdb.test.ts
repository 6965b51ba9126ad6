import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliProcess, startSystem, systemPorts } from "../../support/cli-process.js";
import {
  childPidsOf,
  every,
  groupSeqs,
  PlainFleet,
  registerDevices,
  scrapeMetric,
  tally,
  writeKillConfig,
} from "../../support/kill-fleet.js";
import { provideInfluxDB } from "../../support/services.js";
import { requireService } from "../../support/suite.js";

/**
 * Issue #16, the fault suite: `citywatch start` storing in a local InfluxDB 1.x under a steady
 * QoS 1 stream from plain devices (all in one process, a PUBACK means the message is in the
 * ingest's durable inbox, docs/protocol.md 6.1). influxd is frozen with SIGSTOP for 8 s (writes
 * hang, then time out) and thawed with SIGCONT; later it is killed with SIGKILL and started again
 * on the same directory and port. Every acknowledged reading must end up in InfluxDB exactly once
 * (6.7: the inbox holds them while the store is down, then they are worked through in order).
 */

const influx = await requireService("kill tests: InfluxDB SIGSTOP and SIGKILL", provideInfluxDB);

// SIGSTOP needs the pid of an influxd this process started: an InfluxDB given by URL or run in a
// container has none here.
if (influx !== undefined && influx.outage === undefined) {
  const why = `kill tests: InfluxDB SIGSTOP and SIGKILL need a local influxd binary (this one is ${influx.source})`;
  if (process.env["CITYWATCH_REQUIRE_SERVICES"] === "1") throw new Error(why);
  process.stderr.write(`[skip] ${why}\n`);
}

const DEVICES = 4;
const PERIOD_MS = 25; // 40 messages/s per device
const STOP_MS = 8_000;

const dir = mkdtempSync(join(tmpdir(), "cw-fault-kill-influx-"));
const database = `kill_${Date.now()}`;
let system: CliProcess | undefined;
let fleet: PlainFleet | undefined;
let producer: { stop(): void } | undefined;
let frozen: number | undefined;

afterAll(async () => {
  producer?.stop();
  if (frozen !== undefined) process.kill(frozen, "SIGCONT");
  await fleet?.stop();
  await system?.stop();
  await influx?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Stored seqs per device, by InfluxQL over HTTP. */
async function influxSeqs(url: string): Promise<Map<string, number[]>> {
  const q = encodeURIComponent('SELECT "seq" FROM "noise" GROUP BY "device"');
  const response = await fetch(`${url}/query?db=${database}&epoch=ms&q=${q}`, {
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await response.json()) as {
    results: Array<{
      series?: Array<{ tags: { device: string }; values: Array<[number, number]> }>;
      error?: string;
    }>;
  };
  const result = body.results[0];
  if (result?.error !== undefined) throw new Error(`InfluxQL: ${result.error}`);
  return groupSeqs(
    (result?.series ?? []).flatMap((s) =>
      s.values.map(([, seq]) => ({ device: s.tags.device, seq })),
    ),
  );
}

describe.runIf(influx?.outage)("InfluxDB frozen and killed under a stream", () => {
  it("SIGSTOP then SIGKILL of influxd: every acknowledged reading stored exactly once", async () => {
    const url = influx?.url ?? "";
    const outage = influx?.outage;
    if (outage === undefined) throw new Error("no local influxd");
    const ids = Array.from({ length: DEVICES }, (_, i) => `noise-influx-${i}`);
    const { secrets } = registerDevices(dir, ids);
    const config = writeKillConfig(
      dir,
      `ingest:\n  store:\n    type: influxdb\n    url: ${url}\n    database: ${database}\n    timeoutMs: 2000\n    maxRetries: 1\n`,
    );
    const ports = await systemPorts();
    system = startSystem(dir, ports, ["--config", config, "--log-level", "warn"]);
    await system.waitFor(/citywatch broker is up/, 60_000);

    fleet = new PlainFleet(`mqtt://127.0.0.1:${ports.mqtt}`, secrets);
    await fleet.connect();
    const devices = fleet;
    producer = every(PERIOD_MS, () => devices.produce());
    const storedNow = async () => tally(new Map(), await influxSeqs(url)).stored;
    const storedGrows = async (what: string) => {
      const from = await storedNow();
      const deadline = Date.now() + 40_000;
      while ((await storedNow()) < from + 200) {
        if (Date.now() > deadline) throw new Error(`stored readings did not grow: ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await storedGrows("before SIGSTOP");

    const [pid, ...others] = childPidsOf("influxd");
    expect(others).toEqual([]);
    if (pid === undefined) throw new Error("the local influxd's pid was not found");
    process.kill(pid, "SIGSTOP");
    frozen = pid;
    const ackedAtStop = devices.ackedTotal;
    await new Promise((r) => setTimeout(r, STOP_MS));
    process.kill(pid, "SIGCONT");
    frozen = undefined;
    // The devices were acknowledged all along: the inbox took what the store could not.
    const ackedWhileFrozen = devices.ackedTotal - ackedAtStop;
    expect(ackedWhileFrozen).toBeGreaterThan(100);
    await storedGrows("after SIGCONT");

    await outage.kill();
    const ackedAtKill = devices.ackedTotal;
    await new Promise((r) => setTimeout(r, 2_000));
    await outage.restart();
    const ackedWhileDead = devices.ackedTotal - ackedAtKill;
    await storedGrows("after the restart");
    producer.stop();
    producer = undefined;
    await new Promise((r) => setTimeout(r, 1_000)); // the last PUBACKs in flight
    const acked = new Map([...devices.acked].map(([id, s]) => [id, [...s]]));
    const ackedCount = devices.ackedTotal;

    const deadline = Date.now() + 45_000;
    let result = tally(acked, await influxSeqs(url));
    while (result.lost > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      result = tally(acked, await influxSeqs(url));
    }
    const retries = await scrapeMetric(ports.http, "citywatch_ingest_store_errors_total");
    console.log(
      `[fault] influxdb stop/kill: sent=${devices.sentTotal}, stored=${result.stored}, duplicates=${result.duplicates}, lost=${result.lost} (acked=${ackedCount}, acked_while_stopped=${ackedWhileFrozen}, acked_while_killed=${ackedWhileDead}, store_errors=${retries})`,
    );
    expect(result.lostExamples).toEqual([]);
    expect(result.duplicates).toBe(0);
    expect(result.stored).toBeGreaterThanOrEqual(ackedCount);
    expect(result.stored).toBeLessThanOrEqual(devices.sentTotal);
  }, 150_000);
});
