import { describe, expect, it } from "vitest";
import { formatModbusCrc, modbusCrc } from "../../../../edge/hj212/crc.js";
import { Hj212Framer, type FramerEvent } from "../../../../edge/hj212/framer.js";
import { Hj212Mapping, toReadings } from "../../../../edge/hj212/mapping.js";
import { EXAMPLE_HJ212_MAPPING } from "../../../../edge/hj212/mapping-example.js";
import { QN_RTN, rejectionReply, replyFor } from "../../../../edge/hj212/reply.js";
import { parseSegment } from "../../../../edge/hj212/segment.js";
import { SplitReassembler } from "../../../../edge/hj212/split.js";
import { frameOf, seeded, VECTOR_1062_FRAME, VECTOR_2051_FRAME } from "./vectors.js";

/**
 * Fuzzing of the whole protocol layer: random bytes and mutated valid frames, fed in random chunk
 * sizes, through framer → parser → split reassembly → replies → readings. Nothing may throw, and
 * the framer's buffer stays within its bound. Every case has its own seed; a failure names it,
 * and HJ212_FUZZ_SEED=<seed> replays it as the first case.
 */
const BASE_SEED = Number(process.env["HJ212_FUZZ_SEED"] ?? 20_170_212);
const CASES = 10_000;
const MAPPING = Hj212Mapping.parse(EXAMPLE_HJ212_MAPPING);

const SEEDS: readonly string[] = [
  VECTOR_1062_FRAME,
  VECTOR_2051_FRAME,
  frameOf(
    "QN=20221127080000001;ST=39;CN=2011;PW=1;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20221127080000;a34002-Rtd=88,a34002-Flag=N;a50001-Rtd=67.4,a50001-Flag=M&&",
    { lowercase: true, tail: "" },
  ),
  frameOf(
    "ST=32;CN=2011;PW=1;MN=88888880000001;CP=&&DataTime=20040516020111000;yy01-Rtd=1.2;fj01-Rtd=1&&",
    {
      tail: "\n",
    },
  ),
  frameOf(
    "QN=1;ST=39;CN=2051;MN=010000A8900016F000169DC0;Flag=7;PNUM=2;PNO=1;CP=&&DataTime=20221127080000;a34002-Avg=1&&",
  ),
  frameOf(
    "QN=2;ST=39;CN=2051;MN=010000A8900016F000169DC0;Flag=7;PNUM=2;PNO=2;CP=&&DataTime=20221127080000;a34004-Avg=1&&",
    { tail: "\r" },
  ),
  frameOf(
    "QN=3;ST=22;CN=2061;MN=JLYP01_AIR01_0001;Flag=5;CP=&&DataTime=20221127080000;a34002-Avg=1&&",
    {
      crc: formatModbusCrc(
        modbusCrc(
          "QN=3;ST=22;CN=2061;MN=JLYP01_AIR01_0001;Flag=5;CP=&&DataTime=20221127080000;a34002-Avg=1&&",
        ),
      ),
    },
  ),
];

const PROTOCOLISH = Buffer.from(
  "##0123456789ABCDEFabcdef&&;;==,,--QNSTCPMNFlagPNUMPNODataTimeRtdAvg\r\n",
);

function int(rng: () => number, below: number): number {
  return Math.floor(rng() * below);
}

function randomBytes(rng: () => number, allowLineEnds: boolean): Uint8Array {
  const length = int(rng, 1_500);
  const protocolish = rng() < 0.5;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    let byte = protocolish ? (PROTOCOLISH[int(rng, PROTOCOLISH.length)] ?? 0) : int(rng, 256);
    if (!allowLineEnds && (byte === 0x0d || byte === 0x0a)) byte = 0x20;
    out[i] = byte;
  }
  return out;
}

function mutatedFrames(rng: () => number): Uint8Array {
  const parts: string[] = [];
  for (let n = 1 + int(rng, 5); n > 0; n--) parts.push(SEEDS[int(rng, SEEDS.length)] ?? "");
  let bytes = [...Buffer.from(parts.join(""))];
  for (let k = int(rng, 9); k > 0; k--) {
    const at = int(rng, bytes.length + 1);
    switch (int(rng, 7)) {
      case 0: // flip a byte
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = int(rng, 256);
        break;
      case 1: // insert random bytes
        bytes.splice(at, 0, ...randomBytes(rng, true).subarray(0, int(rng, 20)));
        break;
      case 2: // delete a range
        bytes.splice(at, int(rng, 30));
        break;
      case 3: // duplicate a range
        bytes.splice(at, 0, ...bytes.slice(at, at + int(rng, 200)));
        break;
      case 4: // a frame header with a random length
        bytes.splice(at, 0, ...Buffer.from(`##${String(int(rng, 10_000)).padStart(4, "0")}`));
        break;
      case 5: // rewrite a digit (often a length or a CRC digit)
        if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = 0x30 + int(rng, 10);
        break;
      default: // truncate
        bytes = bytes.slice(0, at);
    }
  }
  return Uint8Array.from(bytes);
}

/** A plain check: `expect` in the inner loop would cost more than the framer itself. */
function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

interface Sink {
  readonly split: SplitReassembler;
  nowMs: number;
}

function consume(events: readonly FramerEvent[], sink: Sink): number {
  let bytes = 0;
  for (const event of events) {
    bytes += event.bytes;
    if (event.type === "error") {
      if (event.code === "HJ212_CRC_MISMATCH") rejectionReply(event.segment, QN_RTN.badCrc);
      continue;
    }
    const parsed = parseSegment(event.segment);
    if (!parsed.ok) {
      rejectionReply(event.segment, QN_RTN.unknown);
      continue;
    }
    replyFor(parsed.segment);
    sink.nowMs += 1_000;
    const { outcome } = sink.split.add(parsed.segment, sink.nowMs);
    if (outcome.status === "whole" || outcome.status === "complete") {
      toReadings(outcome.segment, MAPPING);
    }
    check(sink.split.pendingGroups <= sink.split.maxPendingGroups, "split groups beyond bound");
  }
  return bytes;
}

/** One case, determined by its seed alone, so a failure replays from the seed. */
function runCase(seed: number): void {
  const rng = seeded(seed);
  const sink: Sink = {
    split: new SplitReassembler({ maxPendingGroups: 2, timeoutMs: 3_000 }),
    nowMs: 0,
  };
  const random = rng() < 0.5;
  const lineEnds = rng() < 0.5;
  const input = random ? randomBytes(rng, lineEnds) : mutatedFrames(rng);
  const framer =
    rng() < 0.5
      ? new Hj212Framer({ crcMode: rng() < 0.5 ? "strict" : "lenient" })
      : new Hj212Framer({ maxFrameBytes: 300, maxBufferBytes: 300 + int(rng, 300) });
  const maxChunk = [1, 7, 64, 1_500][int(rng, 4)] ?? 1;
  let accounted = 0;
  for (let at = 0; at < input.length;) {
    const size = 1 + int(rng, maxChunk);
    accounted += consume(framer.push(input.subarray(at, at + size)), sink);
    at += size;
    check(
      framer.bufferedBytes < framer.maxFrameBytes && framer.bufferedBytes <= framer.maxBufferBytes,
      `buffer holds ${framer.bufferedBytes} bytes`,
    );
  }
  accounted += consume(framer.end(), sink);
  check(framer.bufferedBytes === 0, "end() left bytes in the buffer");
  // Only CR and LF are skipped without an event; without them every byte is accounted for.
  if (random && !lineEnds) {
    check(accounted === input.length, `${accounted} of ${input.length} bytes accounted for`);
  } else {
    check(accounted <= input.length, `${accounted} bytes accounted for, ${input.length} fed`);
  }
  // The parser alone, on text that is no frame at all.
  parseSegment(Buffer.from(input).toString("latin1"));
}

describe("HJ 212 fuzzing", () => {
  it(`never throws nor outgrows its buffer on ${CASES} random and mutated streams`, () => {
    for (let i = 0; i < CASES; i++) {
      const seed = BASE_SEED + i;
      try {
        runCase(seed);
      } catch (error) {
        throw new Error(
          `fuzz case ${i} failed; replay with HJ212_FUZZ_SEED=${seed}: ${String(error)}`,
          { cause: error },
        );
      }
    }
  }, 60_000); // a few seconds; the bound only keeps a loaded CI machine from failing it

  it("recovers every frame from garbage without '#', whatever the chunking", () => {
    for (let i = 0; i < 500; i++) {
      const seed = BASE_SEED + i;
      const rng = seeded(seed);
      const expected: string[] = [];
      const parts: Uint8Array[] = [];
      for (let n = 1 + int(rng, 6); n > 0; n--) {
        const junk = randomBytes(rng, true)
          .subarray(0, int(rng, 200))
          .map((b) => (b === 0x23 ? 0x24 : b));
        const frame = SEEDS[int(rng, SEEDS.length - 1)] ?? ""; // the last one needs lenient mode
        parts.push(junk, Buffer.from(frame));
        expected.push(frame.replace(/^##\d{4}/, "").replace(/[0-9A-Fa-f]{4}[\r\n]*$/, ""));
      }
      const wire = Buffer.concat(parts);
      const framer = new Hj212Framer();
      const frames: string[] = [];
      const maxChunk = 1 + int(rng, 500);
      for (let at = 0; at < wire.length;) {
        const size = 1 + int(rng, maxChunk);
        for (const event of framer.push(wire.subarray(at, at + size))) {
          if (event.type === "frame") frames.push(event.segment);
        }
        at += size;
      }
      expect(frames, `case ${i}; replay with HJ212_FUZZ_SEED=${seed}`).toEqual(expected);
    }
  });
});
