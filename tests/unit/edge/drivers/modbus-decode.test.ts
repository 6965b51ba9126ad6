import { describe, expect, it } from "vitest";
import { decodeWords, registerValue } from "../../../../edge/drivers/modbus-decode.js";
import type { ByteOrder } from "../../../../edge/drivers/modbus-options.js";

/*
 * Register words worked out by hand from the IEEE 754 / two's complement bytes of each value
 * (A B C D = the value's bytes, most significant first), then laid out in each byte order.
 */

type Case = readonly [
  type: Parameters<typeof decodeWords>[1],
  value: number,
  byOrder: Record<ByteOrder, number[]>,
];

const CASES: readonly Case[] = [
  // -123 = 0xFF85
  ["int16", -123, { ABCD: [0xff85], CDAB: [0xff85], BADC: [0x85ff], DCBA: [0x85ff] }],
  // 4660 = 0x1234
  ["uint16", 4660, { ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412] }],
  // 65535 = 0xFFFF: unsigned, not -1
  ["uint16", 65_535, { ABCD: [0xffff], CDAB: [0xffff], BADC: [0xffff], DCBA: [0xffff] }],
  // -123456789 = 0xF8A4 32EB
  [
    "int32",
    -123_456_789,
    {
      ABCD: [0xf8a4, 0x32eb],
      CDAB: [0x32eb, 0xf8a4],
      BADC: [0xa4f8, 0xeb32],
      DCBA: [0xeb32, 0xa4f8],
    },
  ],
  // 3000000000 = 0xB2D0 5E00: above int32, so unsigned
  [
    "uint32",
    3_000_000_000,
    {
      ABCD: [0xb2d0, 0x5e00],
      CDAB: [0x5e00, 0xb2d0],
      BADC: [0xd0b2, 0x005e],
      DCBA: [0x005e, 0xd0b2],
    },
  ],
  // -12.5 = sign 1, exponent 130 (0x82), mantissa 0x480000 → 0xC148 0000
  [
    "float32",
    -12.5,
    {
      ABCD: [0xc148, 0x0000],
      CDAB: [0x0000, 0xc148],
      BADC: [0x48c1, 0x0000],
      DCBA: [0x0000, 0x48c1],
    },
  ],
  // 23.4 ≈ 0x41BB 3333 in float32 (23.399999618530273), read back as 23.4
  [
    "float32",
    23.4,
    {
      ABCD: [0x41bb, 0x3333],
      CDAB: [0x3333, 0x41bb],
      BADC: [0xbb41, 0x3333],
      DCBA: [0x3333, 0xbb41],
    },
  ],
  // 1013.25 = exponent 1032 (0x408), mantissa 0xFAA00000000000 >> 4 → 0x408F AA00 0000 0000
  [
    "float64",
    1013.25,
    {
      ABCD: [0x408f, 0xaa00, 0x0000, 0x0000],
      CDAB: [0x0000, 0x0000, 0xaa00, 0x408f],
      BADC: [0x8f40, 0x00aa, 0x0000, 0x0000],
      DCBA: [0x0000, 0x0000, 0x00aa, 0x8f40],
    },
  ],
];

describe("decodeWords", () => {
  for (const [type, value, byOrder] of CASES) {
    for (const [order, words] of Object.entries(byOrder) as Array<[ByteOrder, number[]]>) {
      it(`${type} ${value} in ${order} order`, () => {
        expect(decodeWords(words, type, order)).toBe(value);
      });
    }
  }

  it("reads a float32 NaN as NaN for the poller to refuse", () => {
    expect(decodeWords([0x7fc0, 0x0000], "float32", "ABCD")).toBeNaN();
  });

  it("throws on a word count that does not fit the type (a planning error)", () => {
    expect(() => decodeWords([1], "int32", "ABCD")).toThrow(RangeError);
  });
});

describe("registerValue", () => {
  it("applies scale and offset without binary noise", () => {
    // A temperature register in tenths with a -40 °C offset: 650 → 25 °C.
    expect(registerValue({ type: "uint16", order: "ABCD", scale: 0.1, offset: -40 }, [650])).toBe(
      25,
    );
    expect(registerValue({ type: "uint16", order: "ABCD", scale: 0.1, offset: 0 }, [123])).toBe(
      12.3,
    );
    expect(registerValue({ type: "int16", order: "ABCD", scale: 0.01, offset: 0 }, [0xff85])).toBe(
      -1.23,
    );
  });

  it("reads a bit as 1 or 0 and ignores scale", () => {
    expect(registerValue({ type: "bool", order: "ABCD", scale: 5, offset: 1 }, [1])).toBe(1);
    expect(registerValue({ type: "bool", order: "ABCD", scale: 5, offset: 1 }, [0])).toBe(0);
  });
});
