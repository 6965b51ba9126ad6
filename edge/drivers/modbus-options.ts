import { z } from "zod";
import {
  DeviceId,
  Port,
  QUANTITIES,
  SensorKind,
  type QuantitySpec,
} from "../../contracts/index.js";
import { WORDS_OF } from "./modbus-decode.js";

/**
 * Options of the Modbus polling driver: the driver entry of an edge config,
 * `drivers: [{ type: modbus, connection: { transport: tcp, host, port }, devices: [...] }]`
 * (docs/edge-drivers.md). One entry is one line to the field: a Modbus TCP server (a gateway or
 * a detector) or one RS-485 bus (RTU); the devices on it are told apart by unit id and polled
 * one request at a time, as the protocol requires.
 */

const whole = (min: number, max: number) =>
  z
    .number({ error: "must be a whole number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` });

const finite = z
  .number({ error: "must be a number" })
  .refine(Number.isFinite, { error: "must be a finite number" });

/**
 * The Modbus table read: holding registers (FC 3), input registers (FC 4), coils (FC 1),
 * discrete inputs (FC 2).
 */
export const RegisterFunction = z.enum(["holding", "input", "coil", "discrete"]);
export type RegisterFunction = z.infer<typeof RegisterFunction>;

/** How registers hold a value. `bool` is the only type of coils and discrete inputs. */
export const RegisterType = z.enum([
  "int16",
  "uint16",
  "int32",
  "uint32",
  "float32",
  "float64",
  "bool",
]);
export type RegisterType = z.infer<typeof RegisterType>;

/**
 * Byte order of a multi-register value, named by where the bytes of the big-endian value
 * `A B C D` land in the registers (as Modbus tools name it):
 * - `ABCD` big-endian: high word first, high byte first in each word (the Modbus default);
 * - `CDAB` word-swapped: low word first (many meters and PLCs);
 * - `BADC` byte-swapped within each word, high word first;
 * - `DCBA` little-endian: low word first, low byte first.
 * For 64-bit values the same rule extends to four words (`CDAB` reverses all four). For 16-bit
 * values only the byte swap matters (`ABCD` = `CDAB`, `BADC` = `DCBA`).
 */
export const ByteOrder = z.enum(["ABCD", "CDAB", "BADC", "DCBA"]);
export type ByteOrder = z.infer<typeof ByteOrder>;

export const ModbusRegister = z
  .strictObject({
    /** The citywatch quantity of the device's kind (contracts/model/sensors.ts, QUANTITIES). */
    quantity: z.string().min(1),
    function: RegisterFunction.default("holding"),
    /** Protocol address, 0-based: register 40001 of a vendor sheet is holding address 0. */
    address: whole(0, 65_535),
    /** Default: `uint16` for registers, `bool` for coils and discrete inputs. */
    type: RegisterType.optional(),
    order: ByteOrder.default("ABCD"),
    /** value = raw × scale + offset, into the quantity's unit (e.g. 0.1 for a register in tenths). */
    scale: finite.refine((n) => n !== 0, { error: "must not be 0" }).default(1),
    offset: finite.default(0),
  })
  .transform((register) => ({
    ...register,
    type:
      register.type ??
      (register.function === "coil" || register.function === "discrete" ? "bool" : "uint16"),
  }));
export type ModbusRegister = z.infer<typeof ModbusRegister>;

export const ModbusDevice = z.strictObject({
  deviceId: DeviceId,
  kind: SensorKind,
  /** Unit (slave) id: 1-247 on RTU; TCP devices usually answer 1 or 255. */
  unitId: whole(0, 255).default(1),
  /** Time between polls, from the start of one to the start of the next. */
  pollIntervalMs: whole(100, 3_600_000).default(1_000),
  registers: z.array(ModbusRegister).min(1).max(64),
});
export type ModbusDevice = z.infer<typeof ModbusDevice>;

export const ModbusConnection = z.discriminatedUnion("transport", [
  z.strictObject({
    transport: z.literal("tcp"),
    host: z.string().min(1),
    port: Port.default(502),
  }),
  /** RTU over a local serial port (an RS-485 adapter); uses the `serialport` package's prebuilt binding. */
  z.strictObject({
    transport: z.literal("rtu"),
    path: z.string().min(1),
    baudRate: whole(300, 921_600).default(9_600),
    dataBits: z.union([z.literal(7), z.literal(8)]).default(8),
    stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
    parity: z.enum(["none", "even", "odd"]).default("none"),
  }),
]);
export type ModbusConnection = z.infer<typeof ModbusConnection>;

export const ModbusDriverOptions = z
  .strictObject({
    /** The entry's own `type`, accepted so the config entry can be parsed as it is written. */
    type: z.literal("modbus").optional(),
    connection: ModbusConnection,
    /** How long one request may take (connect included) before it counts as a failure. */
    timeoutMs: whole(50, 60_000).default(1_000),
    /**
     * After a failed poll, a device is next polled after this delay instead of its interval,
     * doubling with each failure in a row up to `maxMs`, with jitter (so devices behind one
     * gateway do not retry in step).
     */
    backoff: z
      .strictObject({
        minMs: whole(100, 600_000).default(1_000),
        maxMs: whole(100, 3_600_000).default(60_000),
      })
      .prefault({}),
    devices: z.array(ModbusDevice).min(1).max(247),
  })
  .superRefine((options, ctx) => {
    if (options.backoff.maxMs < options.backoff.minMs) {
      ctx.addIssue({ code: "custom", path: ["backoff", "maxMs"], message: "must be >= minMs" });
    }
    const ids = new Set<string>();
    options.devices.forEach((device, d) => {
      if (ids.has(device.deviceId)) {
        ctx.addIssue({
          code: "custom",
          path: ["devices", d, "deviceId"],
          message: `device ${device.deviceId} appears twice`,
        });
      }
      ids.add(device.deviceId);
      const specs: Readonly<Record<string, QuantitySpec>> = QUANTITIES[device.kind];
      const quantities = new Set<string>();
      device.registers.forEach((register, r) => {
        const path = ["devices", d, "registers", r];
        if (!Object.hasOwn(specs, register.quantity)) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "quantity"],
            message: `${register.quantity} is not a ${device.kind} quantity; known: ${Object.keys(specs).join(", ")}`,
          });
        }
        if (quantities.has(register.quantity)) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "quantity"],
            message: `${register.quantity} is read by two registers`,
          });
        }
        quantities.add(register.quantity);
        if (register.address + WORDS_OF[register.type] > 65_536) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "address"],
            message: `${register.type} at ${register.address} runs past the last address 65535`,
          });
        }
        const bits = register.function === "coil" || register.function === "discrete";
        if (bits !== (register.type === "bool")) {
          ctx.addIssue({
            code: "custom",
            path: [...path, "type"],
            message: bits
              ? `${register.function}s hold bits: the type is bool`
              : "bool is the type of coils and discrete inputs; a register is int16, uint16, int32, uint32, float32 or float64",
          });
        }
      });
    });
  });
export type ModbusDriverOptions = z.infer<typeof ModbusDriverOptions>;
export type ModbusDriverOptionsInput = z.input<typeof ModbusDriverOptions>;
