import type { ByteOrder, ModbusRegister, RegisterType } from "./modbus-options.js";

/**
 * Register words → numbers (Modbus Application Protocol v1.1b3 §4.2: a register is 16 bits,
 * sent high byte first; how several registers form one value is the device's choice, hence
 * `order`).
 */

/** Registers (or bits) one value of each type takes. */
export const WORDS_OF: Readonly<Record<RegisterType, number>> = {
  bool: 1,
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  float32: 2,
  float64: 4,
};

/**
 * The raw value of `words` (16-bit unsigned each, as the device sent them, first register
 * first). Throws a RangeError when the count does not fit the type (a programming error: the
 * read plan asks for exactly the words needed).
 */
export function decodeWords(
  words: readonly number[],
  type: Exclude<RegisterType, "bool">,
  order: ByteOrder,
): number {
  const count = WORDS_OF[type];
  if (words.length !== count) {
    throw new RangeError(`${type} takes ${count} registers, got ${words.length}`);
  }
  const wordsReversed = order === "CDAB" || order === "DCBA";
  const bytesSwapped = order === "BADC" || order === "DCBA";
  const view = new DataView(new ArrayBuffer(count * 2));
  for (let i = 0; i < count; i++) {
    const word = (words[wordsReversed ? count - 1 - i : i] ?? 0) & 0xffff;
    view.setUint16(i * 2, bytesSwapped ? ((word & 0xff) << 8) | (word >>> 8) : word);
  }
  switch (type) {
    case "int16":
      return view.getInt16(0);
    case "uint16":
      return view.getUint16(0);
    case "int32":
      return view.getInt32(0);
    case "uint32":
      return view.getUint32(0);
    case "float32":
      // A float32 carries about 7 significant digits; 12.3 arrives as 12.300000190734863.
      return roundTo(view.getFloat32(0), 7);
    case "float64":
      return view.getFloat64(0);
  }
}

function roundTo(value: number, digits: number): number {
  return Number.isFinite(value) ? Number(value.toPrecision(digits)) : value;
}

/**
 * The value of one register entry in the quantity's unit: raw × scale + offset. Binary floating
 * point leaves noise (123 × 0.1 = 12.3000000001); 12 significant digits is beyond any sensor.
 * NaN or ±Infinity (a float register of a sensor not ready) comes back as it is, for the caller
 * to refuse.
 */
export function registerValue(
  register: Pick<ModbusRegister, "type" | "order" | "scale" | "offset">,
  words: readonly number[],
): number {
  const raw =
    register.type === "bool"
      ? (words[0] ?? 0) !== 0
        ? 1
        : 0
      : decodeWords(words, register.type, register.order);
  if (register.type === "bool") return raw;
  if (register.scale === 1 && register.offset === 0) return raw;
  return roundTo(raw * register.scale + register.offset, 12);
}
