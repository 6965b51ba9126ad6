import type { CrcMode } from "../hj212/crc.js";
import { Hj212Framer, type FramerEvent, type FramingError } from "../hj212/framer.js";
import { QN_RTN, rejectionReply } from "../hj212/reply.js";
import type { Hj212Counter, Hj212Counts } from "./hj212-counts.js";
import type { Hj212Intake } from "./hj212-intake.js";
import type { ProblemLog } from "./hj212-problems.js";

/**
 * One monitor's connection, without the socket: bytes in, reply frames out. The framer cuts
 * frames by the length field with a fixed buffer (edge/hj212/framer.ts), so half frames across
 * reads wait for the next read and garbage costs a counter; nothing here throws on input.
 */

export interface Hj212SessionOptions {
  readonly crc: CrcMode;
  readonly maxFrameBytes: number;
  readonly maxBufferBytes: number;
}

export interface Hj212SessionDeps {
  readonly intake: Hj212Intake;
  readonly counts: Hj212Counts;
  readonly problems: ProblemLog;
  /** The peer, for log lines. */
  readonly remote: string;
}

const COUNTER_BY_ERROR: Readonly<
  Record<Exclude<FramingError["code"], "HJ212_CRC_MISMATCH">, Hj212Counter>
> = {
  HJ212_GARBAGE: "garbage",
  HJ212_BAD_LENGTH: "badLength",
  HJ212_FRAME_TOO_LONG: "frameTooLong",
  HJ212_TRUNCATED: "truncated",
  HJ212_BUFFER_OVERFLOW: "bufferOverflows",
};

export class Hj212Session {
  private readonly framer: Hj212Framer;
  /** Frames completed (verified or refused for their CRC): the server's frame timeout watches it. */
  framesSeen = 0;

  constructor(
    options: Hj212SessionOptions,
    private readonly deps: Hj212SessionDeps,
  ) {
    this.framer = new Hj212Framer({
      crcMode: options.crc,
      maxFrameBytes: options.maxFrameBytes,
      maxBufferBytes: options.maxBufferBytes,
    });
  }

  /** Bytes of a partial frame held for the next read. */
  get bufferedBytes(): number {
    return this.framer.bufferedBytes;
  }

  /** One read from the socket; returns the replies to write, in order. */
  receive(chunk: Uint8Array): string[] {
    this.deps.counts.bytesIn += chunk.length;
    const replies: string[] = [];
    for (const event of this.framer.push(chunk)) {
      const reply = this.handle(event);
      if (reply !== undefined) replies.push(reply);
    }
    return replies;
  }

  /** The connection closed: a cut frame or trailing garbage is counted. */
  end(): void {
    for (const event of this.framer.end()) this.handle(event);
  }

  private handle(event: FramerEvent): string | undefined {
    const { counts, problems, remote } = this.deps;
    if (event.type === "frame") {
      this.framesSeen++;
      counts.frames++;
      if (event.crcAlgorithm === "modbus") counts.lenientCrcFrames++;
      return this.deps.intake.frame(event.segment, remote);
    }
    if (event.code === "HJ212_CRC_MISMATCH") {
      this.framesSeen++;
      counts.crcMismatches++;
      problems.refuse(
        event.code,
        { remote, reason: event.reason, segment: event.segment.slice(0, 200) },
        "HJ 212 frame refused: CRC mismatch",
        { payload: event.segment },
      );
      const reply = rejectionReply(event.segment, QN_RTN.badCrc);
      if (reply !== undefined) counts.replies9011++;
      return reply;
    }
    counts[COUNTER_BY_ERROR[event.code]]++;
    if (event.code === "HJ212_GARBAGE") counts.garbageBytes += event.bytes;
    problems.refuse(
      event.code,
      { remote, reason: event.reason, bytes: event.bytes, preview: event.preview },
      "HJ 212 bytes refused",
      { payload: event.preview },
    );
    // A frame whose length field lies, and whose CRC verified where the segment really ends
    // (`segment` set): the monitor is told at once instead of waiting for bytes that never come.
    if (event.code === "HJ212_BAD_LENGTH" && event.segment !== undefined) {
      const reply = rejectionReply(event.segment, QN_RTN.unknown);
      if (reply !== undefined) counts.replies9011++;
      return reply;
    }
    return undefined;
  }
}
