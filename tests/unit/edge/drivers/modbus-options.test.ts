import { describe, expect, it } from "vitest";
import {
  ModbusDriverOptions,
  type ModbusDriverOptionsInput,
} from "../../../../edge/drivers/modbus-options.js";
import { planReads } from "../../../../edge/drivers/modbus-plan.js";

const TUNNEL: ModbusDriverOptionsInput = {
  connection: { transport: "tcp", host: "127.0.0.1", port: 5020 },
  devices: [
    {
      deviceId: "tunnel-a-gas-1",
      kind: "utility_tunnel",
      registers: [
        { quantity: "ch4", address: 0, scale: 0.1 },
        { quantity: "o2", address: 1, type: "float32", order: "CDAB" },
        { quantity: "h2s", address: 3, type: "float32" },
        { quantity: "sumpLevel", function: "input", address: 10 },
      ],
    },
  ],
};

function problems(input: unknown): string[] {
  const result = ModbusDriverOptions.safeParse(input);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("ModbusDriverOptions", () => {
  it("fills the defaults", () => {
    const options = ModbusDriverOptions.parse(TUNNEL);
    expect(options.timeoutMs).toBe(1_000);
    expect(options.backoff).toEqual({ minMs: 1_000, maxMs: 60_000 });
    const device = options.devices[0];
    expect(device?.unitId).toBe(1);
    expect(device?.pollIntervalMs).toBe(1_000);
    expect(device?.registers[0]).toEqual({
      quantity: "ch4",
      function: "holding",
      address: 0,
      type: "uint16",
      order: "ABCD",
      scale: 0.1,
      offset: 0,
    });
  });

  it("accepts the entry as written, with its type, and an RTU line", () => {
    const options = ModbusDriverOptions.parse({
      ...TUNNEL,
      type: "modbus",
      connection: { transport: "rtu", path: "/dev/ttyUSB0", baudRate: 19_200, parity: "even" },
    });
    expect(options.connection).toEqual({
      transport: "rtu",
      path: "/dev/ttyUSB0",
      baudRate: 19_200,
      dataBits: 8,
      stopBits: 1,
      parity: "even",
    });
  });

  it("gives coils and discrete inputs the bool type, and refuses bool on a register", () => {
    const withCoil = {
      ...TUNNEL,
      devices: [
        {
          deviceId: "restaurant-1-fume",
          kind: "cooking_fume",
          registers: [{ quantity: "fanOn", function: "coil", address: 3 }],
        },
      ],
    };
    expect(ModbusDriverOptions.parse(withCoil).devices[0]?.registers[0]?.type).toBe("bool");
    expect(
      problems({
        ...withCoil,
        devices: [
          { ...withCoil.devices[0], registers: [{ quantity: "fanOn", address: 3, type: "bool" }] },
        ],
      }),
    ).toEqual([
      "devices.0.registers.0.type: bool is the type of coils and discrete inputs; a register is int16, uint16, int32, uint32, float32 or float64",
    ]);
  });

  it("names every shape problem by its path", () => {
    expect(
      problems({
        connection: { transport: "tcp", host: "x", port: 70_000 },
        devices: [
          {
            deviceId: "d-1",
            kind: "utility_tunnel",
            registers: [{ quantity: "ch4", address: 0, type: "float128" }],
          },
        ],
      }),
    ).toEqual([
      "connection.port: must be 0..65535",
      'devices.0.registers.0.type: Invalid option: expected one of "int16"|"uint16"|"int32"|"uint32"|"float32"|"float64"|"bool"',
    ]);
  });

  it("checks quantities, duplicates, backoff and the address space once the shapes are right", () => {
    expect(
      problems({
        connection: { transport: "tcp", host: "x" },
        backoff: { minMs: 5_000, maxMs: 1_000 },
        devices: [
          {
            deviceId: "d-1",
            kind: "utility_tunnel",
            registers: [{ quantity: "LAeq", address: 0 }],
          },
          {
            deviceId: "d-1",
            kind: "utility_tunnel",
            registers: [
              { quantity: "ch4", address: 0 },
              { quantity: "ch4", address: 1 },
              { quantity: "o2", address: 65_535, type: "float32" },
            ],
          },
        ],
      }),
    ).toEqual([
      "backoff.maxMs: must be >= minMs",
      "devices.0.registers.0.quantity: LAeq is not a utility_tunnel quantity; known: ch4, o2, h2s, co, temperature, humidity, sumpLevel",
      "devices.1.deviceId: device d-1 appears twice",
      "devices.1.registers.1.quantity: ch4 is read by two registers",
      "devices.1.registers.2.address: float32 at 65535 runs past the last address 65535",
    ]);
  });
});

describe("planReads", () => {
  const options = ModbusDriverOptions.parse(TUNNEL);

  it("reads touching registers of one table in one request, each table on its own", () => {
    const reads = planReads(options.devices[0]?.registers ?? []);
    expect(
      reads.map((r) => [
        r.function,
        r.address,
        r.count,
        r.entries.map((e) => [e.register.quantity, e.at]),
      ]),
    ).toEqual([
      [
        "holding",
        0,
        5,
        [
          ["ch4", 0],
          ["o2", 1],
          ["h2s", 3],
        ],
      ],
      ["input", 10, 1, [["sumpLevel", 0]]],
    ]);
  });

  it("does not bridge a gap (the device may not have those addresses)", () => {
    const parsed = ModbusDriverOptions.parse({
      ...TUNNEL,
      devices: [
        {
          deviceId: "g",
          kind: "utility_tunnel",
          registers: [
            { quantity: "ch4", address: 0 },
            { quantity: "o2", address: 2 },
          ],
        },
      ],
    });
    expect(planReads(parsed.devices[0]?.registers ?? []).map((r) => [r.address, r.count])).toEqual([
      [0, 1],
      [2, 1],
    ]);
  });

  it("splits a run longer than one request may read (125 registers)", () => {
    // 32 float64 values back to back: 128 words, one more value than 125 words hold.
    const registers = Array.from({ length: 32 }, (_, i) => ({
      quantity: `q${i}`,
      function: "holding" as const,
      address: 1_000 + i * 4,
      type: "float64" as const,
      order: "ABCD" as const,
      scale: 1,
      offset: 0,
    }));
    const reads = planReads(registers);
    expect(reads.map((r) => [r.address, r.count, r.entries.length])).toEqual([
      [1_000, 124, 31],
      [1_124, 4, 1],
    ]);
    expect(reads[0]?.entries.at(-1)?.at).toBe(120);
  });
});
