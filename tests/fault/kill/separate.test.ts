import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { until } from "../../support/broker.js";
import { type CliProcess, startCli } from "../../support/cli-process.js";
import {
  every,
  killRandom,
  PlainFleet,
  registerDevices,
  scrapeMetric,
  sqliteStoredSeqs,
  tally,
  writeKillConfig,
} from "../../support/kill-fleet.js";
import { freePort } from "../../support/ports.js";

/**
 * Issue #16, the fault suite: separate mode (`citywatch broker` + `citywatch ingest`, two
 * processes, docs/deploy.md), plain QoS 1 devices that trust the PUBACK (no commit protocol, no
 * log), and the ingest killed with SIGKILL mid-stream, then started again. The broker
 * acknowledges a device's data only once the ingest's persistent session holds it and keeps it
 * for that session across the ingest's crash (broker/durable.ts, docs/protocol.md 6.1, 6.8), so
 * every PUBACKed reading must end up stored exactly once.
 */

const DEVICES = 4;
const PERIOD_MS = 25; // 40 messages/s per device

const dir = mkdtempSync(join(tmpdir(), "cw-fault-kill-separate-"));
const processes: CliProcess[] = [];
let fleet: PlainFleet | undefined;
let producer: { stop(): void } | undefined;

afterAll(async () => {
  producer?.stop();
  await fleet?.stop();
  for (const p of processes.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

it("the ingest killed mid-stream in separate mode: every PUBACKed reading stored exactly once", async () => {
  const ids = Array.from({ length: DEVICES }, (_, i) => `noise-sep-${i}`);
  const { secrets, ingestSecret } = registerDevices(dir, ids);
  const config = writeKillConfig(dir);
  const [mqttPort, brokerHttp, ingestHttp] = [await freePort(), await freePort(), await freePort()];
  const random = killRandom();

  const broker = startCli(
    [
      "broker",
      "--data-dir",
      dir,
      "--config",
      config,
      "--mqtt-port",
      String(mqttPort),
      "--http-port",
      String(brokerHttp),
    ],
    { CITYWATCH_WS_ENABLED: "false", CITYWATCH_LOG_LEVEL: "warn" },
  );
  processes.push(broker);
  await broker.waitFor(/citywatch broker is up/, 60_000);
  const startIngest = async () => {
    const proc = startCli(
      ["ingest", "--data-dir", dir, "--config", config, "--http-port", String(ingestHttp)],
      {
        CITYWATCH_INGEST_MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`,
        CITYWATCH_INGEST_MQTT_PASSWORD: ingestSecret,
        CITYWATCH_LOG_LEVEL: "warn",
      },
    );
    processes.push(proc);
    await proc.waitFor(/citywatch ingest is up/, 60_000);
    return proc;
  };
  const first = await startIngest();

  fleet = new PlainFleet(`mqtt://127.0.0.1:${mqttPort}`, secrets);
  await fleet.connect();
  const devices = fleet;
  producer = every(PERIOD_MS, () => devices.produce());

  await until(() => devices.ackedTotal >= 400, "acknowledged before the kill", 20_000);
  const delay = random.between(500, 3_000);
  await new Promise((r) => setTimeout(r, delay));
  const exited = new Promise((r) => first.child.once("exit", r));
  first.child.kill("SIGKILL");
  await exited;
  const ackedAtKill = devices.ackedTotal;
  await startIngest();
  await until(
    () => devices.ackedTotal >= ackedAtKill + 400,
    "acknowledged after the restart",
    30_000,
  );
  producer.stop();
  producer = undefined;
  // The last PUBACKs in flight.
  await new Promise((r) => setTimeout(r, 1_000));
  const ackedCount = devices.ackedTotal;
  const acked = new Map([...devices.acked].map(([id, s]) => [id, [...s]]));

  // The ingest has stored everything once the store holds every acknowledged reading (or the
  // deadline passes and the tally says what is missing).
  const storeFile = join(dir, "timeseries.db");
  const deadline = Date.now() + 30_000;
  let result = tally(acked, sqliteStoredSeqs(storeFile));
  while (result.lost > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    result = tally(acked, sqliteStoredSeqs(storeFile));
  }
  const held = await scrapeMetric(brokerHttp, "citywatch_broker_data_held_total");
  const refused = await scrapeMetric(brokerHttp, "citywatch_broker_data_refused_total");
  await devices.stop();
  fleet = undefined;
  // Stop the ingest then the broker; read the store once more after the ingest is down.
  for (const p of processes.slice(1)) await p.stop(10_000);
  result = tally(acked, sqliteStoredSeqs(storeFile));
  console.log(
    `[fault] separate ingest killed: sent=${devices.sentTotal}, acked=${ackedCount}, stored=${result.stored}, duplicates=${result.duplicates}, lost=${result.lost} (seed=${random.seed}, kill_after_ms=${delay}, acked_at_kill=${ackedAtKill}, held=${held}, refused=${refused})`,
  );
  expect(result.lostExamples).toEqual([]);
  expect(result.duplicates).toBe(0);
  // Whatever was stored beyond the acknowledged was sent (a PUBACK lost with the connection).
  expect(result.stored).toBeGreaterThanOrEqual(ackedCount);
  expect(result.stored).toBeLessThanOrEqual(devices.sentTotal);
}, 120_000);
