/**
 * HJ 212 frame checksums (docs/hj212.md, CRC).
 *
 * The standard's "ANSI CRC16" is not CRC-16/MODBUS even though both use the reflected polynomial
 * 0xA001 and start at 0xFFFF: HJ 212 folds each byte in as `(crc >> 8) ^ byte`, Modbus as
 * `crc ^ byte`. A few field devices send the Modbus CRC anyway, printed low byte first; that is
 * accepted only in the explicit lenient mode.
 */

/** Whether a Modbus CRC (low byte first) is accepted in place of the HJ 212 CRC. */
export type CrcMode = "strict" | "lenient";

/** Which algorithm a frame's checksum matched. */
export type CrcAlgorithm = "hj212" | "modbus";

export type CrcCheck =
  | { readonly ok: true; readonly algorithm: CrcAlgorithm }
  | { readonly ok: false; readonly expected: string; readonly received: string };

const utf8 = new TextEncoder();

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? utf8.encode(data) : data;
}

function shiftOut(crc: number): number {
  let value = crc;
  for (let bit = 0; bit < 8; bit++) {
    const low = value & 1;
    value >>>= 1;
    if (low === 1) value ^= 0xa001;
  }
  return value;
}

/** The HJ 212 CRC of a data segment (a string is taken as its UTF-8 bytes). */
export function hj212Crc(data: Uint8Array | string): number {
  let crc = 0xffff;
  for (const byte of bytesOf(data)) crc = shiftOut((crc >>> 8) ^ byte);
  return crc;
}

/** CRC-16/MODBUS, for the devices that send it instead of the HJ 212 CRC. */
export function modbusCrc(data: Uint8Array | string): number {
  let crc = 0xffff;
  for (const byte of bytesOf(data)) crc = shiftOut(crc ^ byte);
  return crc;
}

function hex2(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, "0");
}

/** The HJ 212 CRC as a frame carries it: 4 uppercase hex digits, high byte first. */
export function formatHj212Crc(crc: number): string {
  return hex2((crc >>> 8) & 0xff) + hex2(crc & 0xff);
}

/** A Modbus CRC as the deviating devices print it: low byte first (its order on a Modbus wire). */
export function formatModbusCrc(crc: number): string {
  return hex2(crc & 0xff) + hex2((crc >>> 8) & 0xff);
}

/**
 * Checks the 4 hex digits a frame carries against its data segment. Hex digits are compared
 * case-insensitively (devices send lowercase). In lenient mode a Modbus CRC printed low byte
 * first is accepted too, and the result says so.
 */
export function checkCrc(
  segment: Uint8Array | string,
  printed: string,
  mode: CrcMode = "strict",
): CrcCheck {
  const bytes = bytesOf(segment);
  const received = printed.toUpperCase();
  const expected = formatHj212Crc(hj212Crc(bytes));
  if (received === expected) return { ok: true, algorithm: "hj212" };
  if (mode === "lenient" && received === formatModbusCrc(modbusCrc(bytes))) {
    return { ok: true, algorithm: "modbus" };
  }
  return { ok: false, expected, received: printed };
}
