import { describe, expect, it } from "vitest";
import {
  checkCrc,
  formatHj212Crc,
  formatModbusCrc,
  hj212Crc,
  modbusCrc,
} from "../../../../edge/hj212/crc.js";
import { VECTOR_1062, VECTOR_2051 } from "./vectors.js";

describe("HJ 212 CRC", () => {
  it("matches the standard's Appendix A vector (1C80, not the 1C08 typo)", () => {
    expect(formatHj212Crc(hj212Crc(VECTOR_1062))).toBe("1C80");
  });

  it("matches the air-quality minute-data vector (D641)", () => {
    expect(formatHj212Crc(hj212Crc(VECTOR_2051))).toBe("D641");
  });

  it("is not CRC-16/MODBUS", () => {
    // CRC-16/MODBUS check value over "123456789" is 0x4B37 (reveng catalogue).
    expect(modbusCrc("123456789")).toBe(0x4b37);
    expect(hj212Crc("123456789")).not.toBe(0x4b37);
    expect(hj212Crc(VECTOR_1062)).not.toBe(modbusCrc(VECTOR_1062));
  });

  it("covers the UTF-8 bytes of a segment, so a string and its bytes agree", () => {
    const text = "ST=22;CN=2011;MN=工地-7;CP=&&&&";
    expect(hj212Crc(text)).toBe(hj212Crc(Buffer.from(text, "utf8")));
    expect(hj212Crc(text)).not.toBe(hj212Crc(Buffer.from(text, "latin1")));
  });

  it("prints 4 uppercase hex digits, high byte first; Modbus low byte first", () => {
    expect(formatHj212Crc(0x0a1b)).toBe("0A1B");
    expect(formatModbusCrc(0x0a1b)).toBe("1B0A");
    expect(formatModbusCrc(0x4b37)).toBe("374B");
  });

  it("accepts lowercase hex", () => {
    expect(checkCrc(VECTOR_2051, "d641")).toEqual({ ok: true, algorithm: "hj212" });
  });

  it("accepts a Modbus CRC (low byte first) only in lenient mode", () => {
    const printed = formatModbusCrc(modbusCrc(VECTOR_2051));
    expect(checkCrc(VECTOR_2051, printed, "strict")).toEqual({
      ok: false,
      expected: "D641",
      received: printed,
    });
    expect(checkCrc(VECTOR_2051, printed, "lenient")).toEqual({ ok: true, algorithm: "modbus" });
    // High byte first is not what those devices send, and stays refused.
    const swapped = formatHj212Crc(modbusCrc(VECTOR_2051));
    expect(checkCrc(VECTOR_2051, swapped, "lenient").ok).toBe(false);
  });
});
