import modbusSerial from "modbus-serial";
import type { ModbusConnection, RegisterFunction } from "./modbus-options.js";

// A CommonJS package typed as `export default`: under NodeNext its class is `.default` (the
// package sets `module.exports.default = module.exports`, so this holds at run time too).
const ModbusClient = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusClient>;

/**
 * One line to the field, over modbus-serial (pure JavaScript for TCP; RTU loads the `serialport`
 * package's prebuilt binding only when a serial line is configured). Requests are issued one at
 * a time by the poller, as Modbus needs.
 *
 * After a transport failure (refused, reset, timed out) on TCP the connection is dropped and the
 * next read opens a new one, so a late answer can never be taken for the next request's. A
 * serial port is reopened only when it closed: on a shared RS-485 bus one silent unit must not
 * cut off the others.
 */

/** The device answered with a Modbus exception (illegal address…): the line itself is fine. */
export class ModbusExceptionError extends Error {
  constructor(
    readonly exceptionCode: number,
    message: string,
  ) {
    super(message);
    this.name = "ModbusExceptionError";
  }
}

export interface ModbusLink {
  /** Reads `count` registers (16-bit words) or bits (as 1/0). Rejects with ModbusExceptionError or a transport error. */
  read(fn: RegisterFunction, unitId: number, address: number, count: number): Promise<number[]>;
  close(): Promise<void>;
  /** Connections opened so far (reconnects are counted). */
  readonly opened: number;
}

function exceptionOf(error: unknown): ModbusExceptionError | undefined {
  if (typeof error !== "object" || error === null || !("modbusCode" in error)) return undefined;
  const code = error.modbusCode;
  if (typeof code !== "number") return undefined;
  return new ModbusExceptionError(
    code,
    error instanceof Error ? error.message : `Modbus exception ${code}`,
  );
}

export class SerialModbusLink implements ModbusLink {
  private client: ModbusClient | undefined;
  private openCount = 0;

  constructor(
    private readonly connection: ModbusConnection,
    private readonly timeoutMs: number,
  ) {}

  get opened(): number {
    return this.openCount;
  }

  async read(
    fn: RegisterFunction,
    unitId: number,
    address: number,
    count: number,
  ): Promise<number[]> {
    const client = await this.open();
    client.setID(unitId);
    try {
      switch (fn) {
        case "holding":
          return (await client.readHoldingRegisters(address, count)).data;
        case "input":
          return (await client.readInputRegisters(address, count)).data;
        case "coil":
          return bits((await client.readCoils(address, count)).data, count);
        case "discrete":
          return bits((await client.readDiscreteInputs(address, count)).data, count);
      }
    } catch (error) {
      const exception = exceptionOf(error);
      if (exception !== undefined) throw exception;
      if (this.connection.transport === "tcp" || !client.isOpen) await this.drop();
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.drop();
  }

  private async open(): Promise<ModbusClient> {
    if (this.client?.isOpen === true) return this.client;
    await this.drop();
    const client = new ModbusClient();
    // A client without a listener would throw a port error as an uncaught 'error' event.
    client.on("error", () => undefined);
    this.client = client;
    this.openCount++;
    client.setTimeout(this.timeoutMs);
    const connection = this.connection;
    try {
      if (connection.transport === "tcp") {
        await client.connectTCP(connection.host, {
          port: connection.port,
          timeout: this.timeoutMs,
        });
      } else {
        await client.connectRTUBuffered(connection.path, {
          baudRate: connection.baudRate,
          dataBits: connection.dataBits,
          stopBits: connection.stopBits,
          parity: connection.parity,
        });
      }
    } catch (error) {
      await this.drop();
      throw error;
    }
    return client;
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    await new Promise<void>((resolve) => client.destroy(() => resolve()));
  }
}

function bits(data: readonly boolean[], count: number): number[] {
  // A bit response is padded to whole bytes; only the bits asked for are kept.
  return data.slice(0, count).map((bit) => (bit ? 1 : 0));
}
