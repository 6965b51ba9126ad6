import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { deviceTopic } from "../../../contracts/index.js";
import type { Ingest } from "../../../ingest/app.js";
import { collect, startTestBroker, type TestBroker, until } from "../../support/broker.js";
import { type CliProcess, startCli } from "../../support/cli-process.js";
import { startTestIngest } from "../../support/ingest.js";

const DEVICE = "tunnel-cli";

describe("citywatch edge --config", () => {
  let dir: string;
  let broker: TestBroker | undefined;
  let ingest: Ingest | undefined;
  let cli: CliProcess | undefined;

  afterEach(async () => {
    await cli?.stop();
    await ingest?.stop();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the simulated driver into the store, raises local alarms, and says shutdown on SIGTERM", async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-edge-cli-"));
    broker = await startTestBroker({}, { dataDir: join(dir, "broker") });
    const live = await startTestIngest(broker, {
      dataDir: join(dir, "ingest"),
      clientId: "ingest-cli",
    });
    ingest = live;
    const secret = broker.addDevice(DEVICE, "utility_tunnel");
    const watcherSecret = broker.addService("watcher", "monitor");
    const watcher = await broker.connect({ username: "watcher", password: watcherSecret });
    const statuses = collect(watcher);
    await watcher.subscribeAsync(deviceTopic(DEVICE, "status"), { qos: 1 });
    const config = join(dir, "edge.yaml");
    writeFileSync(
      config,
      [
        `mqtt: { url: "${broker.url}" }`,
        "devices:",
        `  - deviceId: ${DEVICE}`,
        "    kind: utility_tunnel",
        "    secretEnv: TUNNEL_SECRET",
        "    reportIntervalS: 1",
        // Tunnel air holds about 20.9 % O2: below 25 %vol is crossed at once.
        "    localThresholds: [{ quantity: o2, below: 25 }]",
        `wal: { file: "${join(dir, "edge", "wal.db")}" }`,
        `remoteConfig: { dir: "${join(dir, "edge", "device-config")}" }`,
        "uplink: { commitWaitMs: 200, lingerMs: 20 }",
        "drivers: [{ type: simulated, sampleIntervalMs: 200 }]",
      ].join("\n"),
    );
    cli = startCli(["edge", "--config", config, "--http-port", "0"], { TUNNEL_SECRET: secret });
    await cli.waitFor(/edge agent started/);
    const [, metricsUrl] = await cli.waitFor(/"url":"(http:\/\/[^"]+\/metrics)"/);
    await cli.waitFor(/local alarm raised/, 10_000);
    const from = Date.now() - 60_000;
    const stored = () =>
      live.store.readings({
        deviceId: DEVICE,
        kind: "utility_tunnel",
        fromMs: from,
        toMs: from + 600_000,
        limit: 100,
      });
    let readings = await stored();
    await until(
      () => {
        void stored().then((r) => (readings = r));
        return readings.length >= 3;
      },
      "three 1-s readings stored",
      15_000,
    );
    // One reading per second, on the second, with every tunnel quantity aggregated.
    for (const r of readings) {
      expect(r.timeMs % 1_000).toBe(0);
      expect(Object.keys(r.values).sort()).toEqual([
        "ch4",
        "co",
        "h2s",
        "humidity",
        "o2",
        "sumpLevel",
        "temperature",
      ]);
    }
    const metrics = await (await fetch(metricsUrl ?? "")).text();
    expect(metrics).toMatch(new RegExp(`citywatch_edge_connected\\{device="${DEVICE}"\\} 1`));
    const logged = metrics.match(
      new RegExp(`citywatch_edge_readings\\{device="${DEVICE}"\\} (\\d+)`),
    );
    expect(Number(logged?.[1])).toBeGreaterThanOrEqual(3);
    expect(metrics).toMatch(/^citywatch_edge_dead_letters 0$/m);
    // The edge's dead-letter log is served beside /metrics (nothing refused in this run).
    const deadLetters = await fetch((metricsUrl ?? "").replace(/\/metrics$/, "/dead-letters"));
    expect(deadLetters.status).toBe(200);
    expect(await deadLetters.json()).toMatchObject({ deadLetters: [], entries: 0, failures: 0 });
    expect(await cli.stop()).toBe(0);
    await until(() => statuses.some((s) => s.payload.includes('"shutdown"')), "shutdown status");
    const last = JSON.parse(statuses.at(-1)?.payload ?? "{}") as Record<string, unknown>;
    expect(last).toMatchObject({
      state: "offline",
      reason: "shutdown",
      agent: { name: "citywatch-edge" },
    });
    await watcher.endAsync();
  }, 60_000);

  it("refuses a broken configuration with every problem named, before connecting anywhere", async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-edge-cli-"));
    const config = join(dir, "edge.yaml");
    writeFileSync(
      config,
      [
        "devices:",
        "  - { deviceId: n1, kind: noise, secretEnv: MISSING_SECRET_VAR }",
        "  - { deviceId: n2, kind: noise, secret: s, reportIntervalS: 0 }",
        "drivers: [{ type: simulated, sampleIntervalMs: 5 }]",
      ].join("\n"),
    );
    cli = startCli(["edge", "--config", config]);
    const code = await new Promise<number | null>((resolve) => cli?.child.once("exit", resolve));
    expect(code).toBe(1);
    expect(cli.output()).toMatch(/devices\.1\.reportIntervalS: /);
    // Secrets are read once the file is valid; fixing the interval shows the next problems.
    writeFileSync(
      config,
      [
        "devices:",
        "  - { deviceId: n1, kind: noise, secretEnv: MISSING_SECRET_VAR }",
        "drivers: [{ type: simulated, sampleIntervalMs: 5 }]",
      ].join("\n"),
    );
    cli = startCli(["edge", "--config", config]);
    expect(await new Promise<number | null>((resolve) => cli?.child.once("exit", resolve))).toBe(1);
    expect(cli.output()).toMatch(
      /devices\.0\.secretEnv: environment variable MISSING_SECRET_VAR is not set/,
    );
  }, 60_000);
});
