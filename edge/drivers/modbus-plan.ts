import { WORDS_OF } from "./modbus-decode.js";
import type { ModbusRegister, RegisterFunction } from "./modbus-options.js";

/**
 * Which requests read a device's registers. Registers of one table that touch or overlap are
 * read in one request (a gas detector's seven quantities in one round trip instead of seven);
 * gaps are never bridged, since reading an address the device does not have gets an exception
 * for the whole request.
 */

/** Most registers one request may read (FC 3/4, MODBUS Application Protocol §6.3), and bits (FC 1/2, §6.1). */
export const MAX_READ: Readonly<Record<RegisterFunction, number>> = {
  holding: 125,
  input: 125,
  coil: 2_000,
  discrete: 2_000,
};

export interface PlannedRead {
  readonly function: RegisterFunction;
  readonly address: number;
  readonly count: number;
  /** The entries this request serves, each with where its words start in the response. */
  readonly entries: readonly { readonly register: ModbusRegister; readonly at: number }[];
}

export function planReads(registers: readonly ModbusRegister[]): PlannedRead[] {
  const sorted = [...registers].sort((a, b) =>
    a.function === b.function ? a.address - b.address : a.function < b.function ? -1 : 1,
  );
  const reads: Array<{
    function: RegisterFunction;
    address: number;
    count: number;
    entries: Array<{ register: ModbusRegister; at: number }>;
  }> = [];
  for (const register of sorted) {
    const end = register.address + WORDS_OF[register.type];
    const last = reads.at(-1);
    if (
      last !== undefined &&
      last.function === register.function &&
      register.address <= last.address + last.count &&
      Math.max(end, last.address + last.count) - last.address <= MAX_READ[register.function]
    ) {
      last.count = Math.max(end, last.address + last.count) - last.address;
      last.entries.push({ register, at: register.address - last.address });
      continue;
    }
    reads.push({
      function: register.function,
      address: register.address,
      count: end - register.address,
      entries: [{ register, at: 0 }],
    });
  }
  return reads;
}
