import type net from "node:net";
import modbusSerial, { type IServiceVector } from "modbus-serial";

/**
 * A Modbus TCP field server for the driver's tests: the library's own ServerTCP on 127.0.0.1,
 * answering for units whose registers a test lays out by hand.
 */

export interface Unit {
  holding?: Record<number, number>;
  input?: Record<number, number>;
  coils?: Record<number, boolean>;
  /** Holding addresses answered with exception 2 (illegal data address). */
  illegal?: readonly number[];
  /** Holding addresses never answered (a unit that went silent). */
  silent?: readonly number[];
  /** Holding registers answered after this many ms (a slow line). */
  delayMs?: number;
}

export interface FieldServer {
  readonly port: number;
  close(): Promise<void>;
}

function illegalAddress(): Error {
  return Object.assign(new Error("illegal data address"), { modbusErrorCode: 0x02 });
}

/** A Modbus TCP server answering for the given units; `port` 0 lets the OS choose. */
export async function startFieldServer(
  units: Record<number, Unit>,
  port = 0,
): Promise<FieldServer> {
  const unit = (id: number): Unit => {
    const found = units[id];
    if (found === undefined) throw illegalAddress();
    return found;
  };
  const vector: IServiceVector = {
    getHoldingRegister: (addr: number, unitId: number) => {
      const u = unit(unitId);
      if (u.silent?.includes(addr) === true) return new Promise<number>(() => undefined);
      if (u.illegal?.includes(addr) === true) throw illegalAddress();
      const value = u.holding?.[addr] ?? 0;
      if (u.delayMs === undefined) return value;
      return new Promise<number>((resolve) => setTimeout(() => resolve(value), u.delayMs));
    },
    getInputRegister: (addr: number, unitId: number) => unit(unitId).input?.[addr] ?? 0,
    getCoil: (addr: number, unitId: number) => unit(unitId).coils?.[addr] ?? false,
  };
  const server = new modbusSerial.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 255 });
  await new Promise<void>((resolve, reject) => {
    server.once("initialized", () => resolve());
    server.once("serverError", reject);
  });
  // ServerTCP keeps its net.Server private; the OS-chosen port is only there.
  const listening = (server as unknown as { _server: net.Server })._server.address();
  if (listening === null || typeof listening !== "object") throw new Error("no port");
  const field = {
    port: listening.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of server.socks.keys()) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return field;
}
