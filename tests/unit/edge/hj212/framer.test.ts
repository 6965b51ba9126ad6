import { describe, expect, it } from "vitest";
import { formatModbusCrc, modbusCrc } from "../../../../edge/hj212/crc.js";
import { Hj212Framer, type FramerEvent } from "../../../../edge/hj212/framer.js";
import {
  frameOf,
  VECTOR_1062,
  VECTOR_1062_FRAME,
  VECTOR_2051,
  VECTOR_2051_FRAME,
} from "./vectors.js";

function feed(framer: Hj212Framer, ...chunks: (string | Uint8Array)[]): FramerEvent[] {
  return chunks.flatMap((chunk) => framer.push(chunk));
}

function summary(events: readonly FramerEvent[]): string[] {
  return events.map((e) => (e.type === "frame" ? `frame ${e.segment.slice(0, 24)}` : e.code));
}

const MINUTE = (mn: string, minute: string) =>
  `QN=202205131626083${minute};ST=22;CN=2051;PW=123456;MN=${mn};Flag=4;CP=&&DataTime=2022051316${minute}00;a34002-Avg=31,a34002-Flag=N&&`;

describe("Hj212Framer", () => {
  it("emits both public test vectors from one read", () => {
    const events = feed(new Hj212Framer(), VECTOR_1062_FRAME + VECTOR_2051_FRAME);
    expect(events).toEqual([
      { type: "frame", segment: VECTOR_1062, crc: "1C80", crcAlgorithm: "hj212", bytes: 111 },
      { type: "frame", segment: VECTOR_2051, crc: "D641", crcAlgorithm: "hj212", bytes: 421 },
    ]);
  });

  it("reassembles frames split at every possible point", () => {
    const wire = Buffer.from(VECTOR_1062_FRAME + VECTOR_2051_FRAME);
    for (let cut = 1; cut < wire.length; cut++) {
      const framer = new Hj212Framer();
      const events = feed(framer, wire.subarray(0, cut), wire.subarray(cut));
      expect(summary(events), `cut at ${cut}`).toEqual([
        `frame ${VECTOR_1062.slice(0, 24)}`,
        `frame ${VECTOR_2051.slice(0, 24)}`,
      ]);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  it("reassembles a frame fed one byte at a time", () => {
    const framer = new Hj212Framer();
    const events = [...Buffer.from(VECTOR_2051_FRAME)].flatMap((byte) =>
      framer.push(Uint8Array.of(byte)),
    );
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "frame", segment: VECTOR_2051 });
  });

  it("frames by the length field: no CR, no LF, or neither, back to back", () => {
    const a = MINUTE("A", "01");
    const b = MINUTE("B", "02");
    const c = MINUTE("C", "03");
    const d = MINUTE("D", "04");
    const wire =
      frameOf(a, { tail: "" }) +
      frameOf(b, { tail: "\r" }) +
      frameOf(c, { tail: "\n" }) +
      frameOf(d, { tail: "\n\r" });
    const events = feed(new Hj212Framer(), wire);
    expect(events.map((e) => (e.type === "frame" ? e.segment : e.code))).toEqual([a, b, c, d]);
  });

  it("emits a frame as soon as its CRC arrives, without waiting for CR LF", () => {
    const framer = new Hj212Framer();
    const events = framer.push(frameOf(VECTOR_2051, { tail: "" }));
    expect(summary(events)).toEqual([`frame ${VECTOR_2051.slice(0, 24)}`]);
    // The CR LF that follows in the next read is not garbage.
    expect(framer.push("\r\n")).toEqual([]);
    expect(framer.bufferedBytes).toBe(0);
  });

  it("accepts a lowercase CRC and reports it as printed", () => {
    const events = feed(new Hj212Framer(), frameOf(VECTOR_2051, { lowercase: true }));
    expect(events).toEqual([expect.objectContaining({ type: "frame", crc: "d641" })]);
  });

  it("accepts segments over 1024 bytes, counting UTF-8 bytes", () => {
    const factors = Array.from({ length: 120 }, (_, i) => `x${i}-Rtd=${i}.5,x${i}-Flag=N`);
    const segment = `QN=1;ST=22;CN=2011;MN=工地-1;Flag=4;CP=&&DataTime=20220513162600;${factors.join(";")}&&`;
    expect(Buffer.byteLength(segment)).toBeGreaterThan(2048);
    const events = feed(new Hj212Framer(), frameOf(segment));
    expect(events).toEqual([expect.objectContaining({ type: "frame", segment })]);
  });

  it("reports garbage between frames with its size, and keeps the frames", () => {
    const events = feed(
      new Hj212Framer(),
      `AT+OK\r\n${VECTOR_1062_FRAME}\x00\xff junk ${VECTOR_2051_FRAME}#`,
    );
    expect(summary(events)).toEqual([
      "HJ212_GARBAGE",
      `frame ${VECTOR_1062.slice(0, 24)}`,
      "HJ212_GARBAGE",
      `frame ${VECTOR_2051.slice(0, 24)}`,
    ]);
    expect(events[0]).toMatchObject({ bytes: 7, preview: "AT+OK\\x0d\\x0a" });
    // "\x00\xff junk " is 8 characters, the \xff one 2 bytes in UTF-8.
    expect(events[2]).toMatchObject({ bytes: 9 });
  });

  it("treats the extra # of ### as garbage", () => {
    const events = feed(new Hj212Framer(), `#${VECTOR_1062_FRAME}`);
    expect(summary(events)).toEqual(["HJ212_GARBAGE", `frame ${VECTOR_1062.slice(0, 24)}`]);
  });

  it("resyncs after a length field that is not 4 digits", () => {
    const events = feed(new Hj212Framer(), `##01x1QN=1;${VECTOR_1062_FRAME}`);
    expect(summary(events)).toEqual([
      "HJ212_BAD_LENGTH",
      "HJ212_GARBAGE",
      `frame ${VECTOR_1062.slice(0, 24)}`,
    ]);
  });

  it("resyncs after a length field that does not match the frame", () => {
    const wrong = `##0105${VECTOR_1062}1C80\r\n`; // 4 bytes too long: the "CRC" lands on "\r\n##"
    const events = feed(new Hj212Framer(), wrong + VECTOR_2051_FRAME);
    expect(summary(events)).toEqual([
      "HJ212_BAD_LENGTH",
      "HJ212_GARBAGE",
      `frame ${VECTOR_2051.slice(0, 24)}`,
    ]);
    expect(events[0]).toMatchObject({
      reason: expect.stringContaining("no 4 hex digits of CRC") as unknown,
    });
  });

  it("rejects a CRC mismatch with the segment, and keeps going", () => {
    const events = feed(
      new Hj212Framer(),
      frameOf(VECTOR_2051, { crc: "D642" }) + VECTOR_1062_FRAME,
    );
    expect(events[0]).toMatchObject({
      type: "error",
      code: "HJ212_CRC_MISMATCH",
      segment: VECTOR_2051,
      expectedCrc: "D641",
      receivedCrc: "D642",
      bytes: 421,
    });
    expect(summary(events.slice(1))).toEqual([`frame ${VECTOR_1062.slice(0, 24)}`]);
  });

  it("rejects a frame whose segment was altered in transit", () => {
    const altered = VECTOR_2051_FRAME.replace("a34002-Avg=31", "a34002-Avg=91");
    const events = feed(new Hj212Framer(), altered + VECTOR_2051_FRAME);
    expect(summary(events)).toEqual(["HJ212_CRC_MISMATCH", `frame ${VECTOR_2051.slice(0, 24)}`]);
  });

  it("resumes at a frame start found inside a frame that fails its CRC", () => {
    // A header from a cut frame, whose declared length swallows the next, complete frame.
    const cut = "##0120QN=2022;ST=22;";
    const events = feed(new Hj212Framer(), cut + VECTOR_1062_FRAME + "\r\n".repeat(10));
    expect(summary(events)).toContain(`frame ${VECTOR_1062.slice(0, 24)}`);
  });

  it("accepts a Modbus CRC only in lenient mode", () => {
    const wire = frameOf(VECTOR_2051, { crc: formatModbusCrc(modbusCrc(VECTOR_2051)) });
    expect(summary(feed(new Hj212Framer(), wire))).toEqual(["HJ212_CRC_MISMATCH"]);
    expect(feed(new Hj212Framer({ crcMode: "lenient" }), wire)).toEqual([
      expect.objectContaining({ type: "frame", segment: VECTOR_2051, crcAlgorithm: "modbus" }),
    ]);
    // Lenient mode still refuses a CRC that is neither.
    expect(
      summary(feed(new Hj212Framer({ crcMode: "lenient" }), frameOf(VECTOR_2051, { crc: "0000" }))),
    ).toEqual(["HJ212_CRC_MISMATCH"]);
  });

  it("refuses a frame longer than maxFrameBytes without buffering it, then resyncs", () => {
    const framer = new Hj212Framer({ maxFrameBytes: 200, maxBufferBytes: 400 });
    const events = feed(framer, VECTOR_2051_FRAME, VECTOR_1062_FRAME);
    expect(summary(events)).toEqual([
      "HJ212_FRAME_TOO_LONG",
      "HJ212_GARBAGE",
      `frame ${VECTOR_1062.slice(0, 24)}`,
    ]);
    expect(events[0]).toMatchObject({ declaredSegmentBytes: 411, maxFrameBytes: 200 });
  });

  it("holds a half frame, and nothing of endless garbage", () => {
    const framer = new Hj212Framer({ maxFrameBytes: 1_024, maxBufferBytes: 2_048 });
    const junk = Buffer.alloc(10_000, "x");
    for (let i = 0; i < 100; i++) {
      const events = framer.push(junk);
      expect(events).toEqual([expect.objectContaining({ code: "HJ212_GARBAGE" })]);
      expect(framer.bufferedBytes).toBe(0);
    }
    framer.push(VECTOR_2051_FRAME.slice(0, 300));
    expect(framer.bufferedBytes).toBe(300);
    expect(summary(framer.push(VECTOR_2051_FRAME.slice(300)))).toEqual([
      `frame ${VECTOR_2051.slice(0, 24)}`,
    ]);
  });

  it("takes a read larger than its buffer holding many frames", () => {
    const framer = new Hj212Framer({ maxFrameBytes: 1_024, maxBufferBytes: 1_024 });
    const wire = VECTOR_2051_FRAME.repeat(50);
    expect(wire.length).toBeGreaterThan(20 * 1_024);
    const events = framer.push(wire);
    expect(events).toHaveLength(50);
    expect(events.every((e) => e.type === "frame")).toBe(true);
  });

  it("reports a frame cut by the end of the connection, and garbage left over", () => {
    const framer = new Hj212Framer();
    framer.push(VECTOR_2051_FRAME.slice(0, 100));
    expect(framer.end()).toEqual([
      expect.objectContaining({ code: "HJ212_TRUNCATED", bytes: 100 }),
    ]);
    expect(framer.bufferedBytes).toBe(0);
    framer.push("#");
    expect(framer.end()).toEqual([expect.objectContaining({ code: "HJ212_TRUNCATED", bytes: 1 })]);
    expect(framer.end()).toEqual([]);
  });

  it("refuses inconsistent options", () => {
    expect(() => new Hj212Framer({ maxFrameBytes: 2_000, maxBufferBytes: 1_000 })).toThrow(
      RangeError,
    );
    expect(() => new Hj212Framer({ maxFrameBytes: 0 })).toThrow(RangeError);
    expect(() => new Hj212Framer({ maxBufferBytes: 1.5 })).toThrow(RangeError);
  });
});

describe("length fields that claim more than the frame holds (issue 16 item 7)", () => {
  const good = frameOf(VECTOR_1062);
  it("refuses the frame at its line end, with its segment when its CRC verifies, and takes the next frame at once", () => {
    const framer = new Hj212Framer();
    const lying = good.replace("##0101", "##0999");
    const events = framer.push(lying + good);
    expect(events.map((e) => (e.type === "frame" ? "frame" : e.code))).toEqual([
      "HJ212_BAD_LENGTH",
      "frame",
    ]);
    const refused = events[0];
    expect(
      refused?.type === "error" && refused.code === "HJ212_BAD_LENGTH" && refused.segment,
    ).toBe(VECTOR_1062);
    expect(framer.bufferedBytes).toBe(0);
  });

  it("does not lose the frame that follows a frame cut short", () => {
    const framer = new Hj212Framer();
    // Cut where the next frame's line end falls inside the declared segment, and where it does not.
    for (const cut of [good.slice(0, 60), good.replace("##0101", "##0999").slice(0, 60)]) {
      const events = framer.push(cut + good);
      expect(events.filter((e) => e.type === "frame")).toHaveLength(1);
      expect(events.at(-1)?.type).toBe("frame");
    }
  });

  it("finds the lie one byte at a time without rescanning (a 9999 header dribbled in)", () => {
    const framer = new Hj212Framer();
    const wire = good.replace("##0101", "##9999") + good;
    const events = [...wire].flatMap((ch) => framer.push(ch));
    expect(events.map((e) => (e.type === "frame" ? "frame" : e.code))).toEqual([
      "HJ212_BAD_LENGTH",
      "frame",
    ]);
  });
});
