import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { hj212DriverFactory } from "../../../../edge/drivers/hj212-server.js";
import type { DriverFactory } from "../../../../edge/drivers/index.js";
import { modbusDriverFactory } from "../../../../edge/drivers/modbus.js";
import { driverOptions } from "./hj212-fixtures.js";

const log = pino({ level: "silent" });

// Both factories fit the agent's driver table as they are.
const FACTORIES: readonly DriverFactory[] = [hj212DriverFactory, modbusDriverFactory];

const MODBUS_ENTRY = {
  type: "modbus",
  connection: { transport: "tcp", host: "127.0.0.1", port: 5020 },
  devices: [
    {
      deviceId: "tunnel-a-gas-1",
      kind: "utility_tunnel",
      registers: [{ quantity: "ch4", address: 0, scale: 0.1 }],
    },
  ],
};

describe("driver factories", () => {
  it("parse their config entry with its type, as the agent passes it", () => {
    expect(FACTORIES.map((f) => f.type)).toEqual(["hj212", "modbus"]);
    expect(
      hj212DriverFactory.options.safeParse({ ...driverOptions(), type: "hj212" }).success,
    ).toBe(true);
    expect(modbusDriverFactory.options.safeParse(MODBUS_ENTRY).success).toBe(true);
    expect(modbusDriverFactory.options.safeParse({ ...MODBUS_ENTRY, type: "hj212" }).success).toBe(
      false,
    );
  });

  it("refuse an HJ 212 mapping that feeds a device the agent does not serve, or serves as another kind", () => {
    const options = driverOptions();
    const all = Object.values(options.mapping.devices)
      .flat()
      .map((d) => ({
        deviceId: d.deviceId,
        kind: options.mapping.models[d.model]?.kind ?? "dust",
      }));
    expect(() => hj212DriverFactory.create(options, { log, devices: all })).not.toThrow();
    expect(() =>
      hj212DriverFactory.create(options, {
        log,
        devices: all.filter((d) => d.deviceId !== "noise-3"),
      }),
    ).toThrow(
      "mapping.devices.NOISE000000000000000001: device noise-3 (noise) is not one of the agent's devices",
    );
    expect(() =>
      hj212DriverFactory.create(options, {
        log,
        devices: all.map((d) => (d.deviceId === "air-1" ? { ...d, kind: "noise" as const } : d)),
      }),
    ).toThrow(
      "device air-1 (dust) is not one of the agent's devices (the agent serves it as noise)",
    );
  });

  it("refuse a Modbus device the agent does not serve", () => {
    const options = modbusDriverFactory.options.parse(MODBUS_ENTRY);
    expect(() =>
      modbusDriverFactory.create(options, {
        log,
        devices: [{ deviceId: "tunnel-a-gas-1", kind: "utility_tunnel" }],
      }),
    ).not.toThrow();
    expect(() => modbusDriverFactory.create(options, { log, devices: [] })).toThrow(
      "devices.0: device tunnel-a-gas-1 (utility_tunnel) is not one of the agent's devices",
    );
  });
});
