import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { modbusDriverFactory, type ModbusDriver } from "../../../../edge/drivers/modbus.js";
import { buildAgent, type EdgeAgent } from "../../../../edge/index.js";
import type { Ingest } from "../../../../ingest/app.js";
import { startTestBroker, type TestBroker, until } from "../../../support/broker.js";
import { startTestIngest } from "../../../support/ingest.js";
import { edgeConfig, testLog } from "../agent-harness.js";
import { type FieldServer, startFieldServer } from "./modbus-field.js";

/*
 * A Modbus TCP detector (the library's ServerTCP) → the Modbus driver → the edge agent, which
 * aggregates the polled samples into 1-s readings → the real aedes broker → the ingest → the
 * SQLite store.
 */

let dir: string;
let broker: TestBroker | undefined;
let ingest: Ingest | undefined;
let agent: EdgeAgent | undefined;
let driver: ModbusDriver | undefined;
let field: FieldServer | undefined;

afterEach(async () => {
  await driver?.stop();
  await agent?.stop();
  await ingest?.stop();
  await broker?.stop();
  await field?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Modbus detector → driver → edge agent → aedes → ingest → SQLite store", () => {
  it("stores readings aggregated from the polled registers, switches as booleans", async () => {
    dir = mkdtempSync(join(tmpdir(), "cw-modbus-agent-"));
    broker = await startTestBroker({}, { dataDir: join(dir, "broker") });
    ingest = await startTestIngest(broker, { dataDir: join(dir, "ingest"), clientId: "ingest-mb" });
    const devices = [
      { deviceId: "tunnel-gas-1", kind: "utility_tunnel" as const },
      { deviceId: "fume-1", kind: "cooking_fume" as const },
    ].map((d) => ({ ...d, secret: broker!.addDevice(d.deviceId, d.kind), reportIntervalS: 1 }));
    agent = buildAgent({ log: testLog(), config: edgeConfig(broker.url, devices, dir) });
    await agent.start();
    await until(() => devices.every((d) => agent!.connected(d.deviceId)), "agent connected");

    // Unit 1: CH4 in tenths of %LEL at 40001, O2 as float32 at 40002 (0x41A8 0000 = 21.0).
    // Unit 2: oil fume in hundredths of mg/m³ at 40011, fan and purifier on coils 1 and 2.
    field = await startFieldServer({
      1: { holding: { 0: 65, 1: 0x41a8, 2: 0x0000 } },
      2: { holding: { 10: 125 }, coils: { 0: true, 1: false } },
    });
    const port = field.port;

    driver = modbusDriverFactory.create(
      modbusDriverFactory.options.parse({
        connection: { transport: "tcp", host: "127.0.0.1", port },
        devices: [
          {
            deviceId: "tunnel-gas-1",
            kind: "utility_tunnel",
            unitId: 1,
            pollIntervalMs: 200,
            registers: [
              { quantity: "ch4", address: 0, scale: 0.1 },
              { quantity: "o2", address: 1, type: "float32" },
            ],
          },
          {
            deviceId: "fume-1",
            kind: "cooking_fume",
            unitId: 2,
            pollIntervalMs: 200,
            registers: [
              { quantity: "oilFume", address: 10, scale: 0.01 },
              { quantity: "fanOn", function: "coil", address: 0 },
              { quantity: "purifierOn", function: "coil", address: 1 },
            ],
          },
        ],
      }),
      { log: testLog(), devices },
    );
    const startedMs = Date.now();
    await driver.start(agent.sink);

    const readings = (deviceId: string, kind: "utility_tunnel" | "cooking_fume") =>
      ingest!.store.readings({
        deviceId,
        kind,
        fromMs: startedMs - 1_000,
        toMs: startedMs + 60_000,
        limit: 100,
      });
    await until(
      () => agent!.stats().devices.every((d) => d.readings >= 2 && d.log.pending === 0),
      "two aggregated readings of each device committed",
      20_000,
    );
    const tunnel = await readings("tunnel-gas-1", "utility_tunnel");
    const fume = await readings("fume-1", "cooking_fume");
    expect(tunnel[0]).toMatchObject({ quality: "normal", values: { ch4: 6.5, o2: 21 } });
    expect(fume[0]).toMatchObject({
      quality: "normal",
      values: { oilFume: 1.25, fanOn: true, purifierOn: false },
    });
    // 1-s readings, aligned to the wall clock.
    expect(tunnel.every((r) => r.timeMs % 1_000 === 0)).toBe(true);
    expect(driver.stats()["sinkRefused"]).toBe(0);
  });
});
