import { checkCrc, type CrcAlgorithm, type CrcMode } from "./crc.js";

/**
 * Streaming HJ 212 framer for a TCP connection (docs/hj212.md, Frame).
 *
 * A frame is `##` + 4 decimal digits (the data segment's length in bytes) + the data segment +
 * 4 hex digits of CRC + CR LF. Frames are cut by the length field, never by the CR LF tail: some
 * devices omit CR, LF or both, and a frame is emitted as soon as its CRC has arrived (a device
 * that waits for our reply sends nothing more). CR and LF between frames are skipped silently;
 * any other byte outside a frame is reported as garbage.
 *
 * Bounds: the buffer is allocated once with `maxBufferBytes` and never grows. A header declaring
 * a frame longer than `maxFrameBytes` is refused before its body is buffered. Since the buffer
 * holds at least one frame of the maximum size, what is left after parsing always fits.
 *
 * `push` never throws: every problem is returned as a typed error event, and the framer
 * resynchronises by scanning for the next `##`.
 */

export interface FramerOptions {
  /** Longest frame accepted, header + segment + CRC (CR LF not counted). Default 10 240. */
  readonly maxFrameBytes?: number;
  /** Bytes held between reads at most; must be at least `maxFrameBytes`. Default 65 536. */
  readonly maxBufferBytes?: number;
  /** `lenient` also accepts a Modbus CRC printed low byte first. Default `strict`. */
  readonly crcMode?: CrcMode;
}

export const FRAMER_DEFAULTS = {
  maxFrameBytes: 10_240,
  maxBufferBytes: 65_536,
  crcMode: "strict",
} as const satisfies Required<FramerOptions>;

/** A complete frame whose CRC verified. */
export interface FrameEvent {
  readonly type: "frame";
  /** The data segment, decoded as UTF-8 (from `QN=`/`ST=` up to and including the final `&&`). */
  readonly segment: string;
  /** The CRC as printed by the device (case kept). */
  readonly crc: string;
  readonly crcAlgorithm: CrcAlgorithm;
  /** Bytes the frame took on the wire, CR LF not counted. */
  readonly bytes: number;
}

interface ErrorBase {
  readonly type: "error";
  /** Why the bytes were refused, for logs and dead letters. */
  readonly reason: string;
  /** Bytes discarded with this error. */
  readonly bytes: number;
  /** The first bytes discarded, printable ASCII with other bytes as `\xNN`, for diagnosis. */
  readonly preview: string;
}

export type FramingError =
  /** Bytes outside any frame. */
  | (ErrorBase & { readonly code: "HJ212_GARBAGE" })
  /**
   * `##` not followed by 4 digits, or no 4 hex digits of CRC right after the declared segment, or
   * a line end inside the declared segment (the length field claims more than the frame holds).
   * `segment` is set when the bytes up to that line end form a segment whose CRC verified, so the
   * sender can be answered.
   */
  | (ErrorBase & { readonly code: "HJ212_BAD_LENGTH"; readonly segment?: string })
  /** The header declares more than `maxFrameBytes`. */
  | (ErrorBase & {
      readonly code: "HJ212_FRAME_TOO_LONG";
      readonly declaredSegmentBytes: number;
      readonly maxFrameBytes: number;
    })
  /** A well-formed frame whose CRC does not match its segment. */
  | (ErrorBase & {
      readonly code: "HJ212_CRC_MISMATCH";
      readonly segment: string;
      readonly expectedCrc: string;
      readonly receivedCrc: string;
    })
  /** The stream ended inside a frame (from `end()`). */
  | (ErrorBase & { readonly code: "HJ212_TRUNCATED" })
  /** Defensive: the buffer filled up with nothing parseable; it was emptied. */
  | (ErrorBase & { readonly code: "HJ212_BUFFER_OVERFLOW" });

export type FramingErrorCode = FramingError["code"];
export type FramerEvent = FrameEvent | FramingError;

const HASH = 0x23;
const CR = 0x0d;
const LF = 0x0a;
const HEADER_BYTES = 6; // "##" + 4 digits
const CRC_BYTES = 4;
const PREVIEW_BYTES = 32;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8");

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

function isHexDigit(byte: number | undefined): boolean {
  if (byte === undefined) return false;
  return isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function preview(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes.subarray(0, PREVIEW_BYTES)) {
    out +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x5c
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return bytes.length > PREVIEW_BYTES ? `${out}…` : out;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

export class Hj212Framer {
  readonly maxFrameBytes: number;
  readonly maxBufferBytes: number;
  readonly crcMode: CrcMode;
  private readonly buf: Uint8Array;
  private head = 0;
  private tail = 0;
  /** Garbage seen since the last event, reported as one event (not one per buffer fill). */
  private garbage: { bytes: number; preview: string } | undefined;
  /** How far the body of the frame waiting at `at` was searched for a line end. */
  private scanned = { at: -1, to: 0 };

  /** Throws a RangeError on inconsistent options (a programming or configuration error). */
  constructor(options: FramerOptions = {}) {
    this.maxFrameBytes = positiveInt(
      "maxFrameBytes",
      options.maxFrameBytes ?? FRAMER_DEFAULTS.maxFrameBytes,
    );
    this.maxBufferBytes = positiveInt(
      "maxBufferBytes",
      options.maxBufferBytes ?? FRAMER_DEFAULTS.maxBufferBytes,
    );
    if (this.maxFrameBytes < HEADER_BYTES + CRC_BYTES) {
      throw new RangeError(`maxFrameBytes must be at least ${HEADER_BYTES + CRC_BYTES}`);
    }
    if (this.maxBufferBytes < this.maxFrameBytes) {
      throw new RangeError(
        `maxBufferBytes (${this.maxBufferBytes}) must be at least maxFrameBytes (${this.maxFrameBytes})`,
      );
    }
    this.crcMode = options.crcMode ?? FRAMER_DEFAULTS.crcMode;
    this.buf = new Uint8Array(this.maxBufferBytes);
  }

  /** Bytes held for the next read (a partial frame, or a trailing `#`). */
  get bufferedBytes(): number {
    return this.tail - this.head;
  }

  /** Feeds one read from the socket; returns the frames and errors it completed, in order. */
  push(chunk: Uint8Array | string): FramerEvent[] {
    const bytes = typeof chunk === "string" ? utf8Encoder.encode(chunk) : chunk;
    const events: FramerEvent[] = [];
    let offset = 0;
    while (offset < bytes.length) {
      if (this.head > 0 && this.tail + (bytes.length - offset) > this.maxBufferBytes) {
        this.compact();
      }
      const room = Math.min(this.maxBufferBytes - this.tail, bytes.length - offset);
      if (room === 0) {
        // Unreachable while maxBufferBytes >= maxFrameBytes; kept so no input can wedge the framer.
        this.emit(
          events,
          this.discard("HJ212_BUFFER_OVERFLOW", this.head, this.tail, "buffer full"),
        );
        this.head = 0;
        this.tail = 0;
        continue;
      }
      this.buf.set(bytes.subarray(offset, offset + room), this.tail);
      this.tail += room;
      offset += room;
      this.parse(events);
    }
    this.flushGarbage(events);
    return events;
  }

  /** The connection closed: reports whatever is left (a cut frame or garbage) and resets. */
  end(): FramerEvent[] {
    const events: FramerEvent[] = [];
    this.flushGarbage(events);
    this.skipLineEnds();
    if (this.tail > this.head) {
      const cut = this.buf[this.head] === HASH;
      events.push(
        this.discard(
          cut ? "HJ212_TRUNCATED" : "HJ212_GARBAGE",
          this.head,
          this.tail,
          cut ? "the connection closed inside a frame" : "bytes outside any frame",
        ),
      );
    }
    this.head = 0;
    this.tail = 0;
    return events;
  }

  private compact(): void {
    this.buf.copyWithin(0, this.head, this.tail);
    this.tail -= this.head;
    this.head = 0;
  }

  private noteGarbage(from: number, to: number): void {
    if (this.garbage === undefined) {
      this.garbage = { bytes: 0, preview: preview(this.buf.subarray(from, to)) };
    }
    this.garbage.bytes += to - from;
  }

  private flushGarbage(events: FramerEvent[]): void {
    if (this.garbage === undefined) return;
    events.push({
      type: "error",
      code: "HJ212_GARBAGE",
      reason: "bytes outside any frame",
      ...this.garbage,
    });
    this.garbage = undefined;
  }

  /** Every event other than garbage goes through here, so garbage is reported in stream order. */
  private emit(events: FramerEvent[], event: FramerEvent): void {
    this.flushGarbage(events);
    events.push(event);
  }

  private skipLineEnds(): void {
    while (this.head < this.tail) {
      const byte = this.buf[this.head];
      if (byte !== CR && byte !== LF) break;
      this.head++;
    }
  }

  private discard(
    code: "HJ212_GARBAGE" | "HJ212_BAD_LENGTH" | "HJ212_TRUNCATED" | "HJ212_BUFFER_OVERFLOW",
    from: number,
    to: number,
    reason: string,
  ): FramingError {
    return {
      type: "error",
      code,
      reason,
      bytes: to - from,
      preview: preview(this.buf.subarray(from, to)),
    };
  }

  /**
   * Where a frame's real end shows inside the segment its header declares: a CR or LF (a segment
   * holds neither), or a `##` right after `&&` and 4 hex digits (a device that omits CR LF). A
   * length field that claims more than the frame holds (`0999` on a 100-byte segment) is refused
   * as soon as that end has arrived, instead of holding the connection's later frames until the
   * declared bytes are in. Searched once per byte, however the frame arrives.
   */
  private lineEndInside(at: number, segmentBytes: number): number | undefined {
    const bodyStart = at + HEADER_BYTES;
    const end = Math.min(this.tail, bodyStart + segmentBytes);
    let i = this.scanned.at === at ? Math.max(this.scanned.to, bodyStart) : bodyStart;
    for (; i < end; i++) {
      const byte = this.buf[i];
      if (byte === CR || byte === LF) return i;
      if (
        byte === HASH &&
        this.buf[i + 1] === HASH &&
        i + 1 < this.tail &&
        i - 6 >= bodyStart &&
        this.buf[i - 6] === 0x26 &&
        this.buf[i - 5] === 0x26 &&
        [1, 2, 3, 4].every((k) => isHexDigit(this.buf[i - k]))
      ) {
        return i;
      }
    }
    // A `#` at the last byte may be the first of `##`: search it again with the next read.
    this.scanned = { at, to: end > bodyStart && this.buf[end - 1] === HASH ? end - 1 : end };
    return undefined;
  }

  /** The error of a length field that lies; the segment up to the real end, if its CRC verifies. */
  private lengthLie(at: number, segmentBytes: number, lineEnd: number): FramingError {
    const real = lineEnd - at - HEADER_BYTES - CRC_BYTES;
    let segment: string | undefined;
    if (real > 0) {
      const body = this.buf.subarray(at + HEADER_BYTES, lineEnd - CRC_BYTES);
      const printed = String.fromCharCode(...this.buf.subarray(lineEnd - CRC_BYTES, lineEnd));
      if (checkCrc(body, printed, this.crcMode).ok) segment = utf8Decoder.decode(body);
    }
    return {
      ...this.discard(
        "HJ212_BAD_LENGTH",
        at,
        lineEnd,
        `the header declares a ${segmentBytes}-byte segment but the frame ends after ${Math.max(0, real)} bytes (the length field does not match the frame)`,
      ),
      ...(segment !== undefined ? { segment } : {}),
    };
  }

  /**
   * Index of the next frame start at or after `from`: a `##` not followed by a third `#` (so in
   * `###0101` the first `#` is garbage). Returns `end` when there is none; a trailing `#` or `##`
   * that might still start a frame is reported by returning its index with `complete = false`.
   */
  private findStart(from: number): { index: number; complete: boolean } {
    // Search only the filled part: the bytes past `tail` are stale, and scanning them would
    // cost the whole buffer on every read.
    const filled = this.buf.subarray(0, this.tail);
    let index = filled.indexOf(HASH, from);
    while (index !== -1) {
      if (index + 1 >= this.tail) return { index, complete: false };
      if (filled[index + 1] === HASH) {
        if (index + 2 >= this.tail) return { index, complete: false };
        if (filled[index + 2] !== HASH) return { index, complete: true };
      }
      index = filled.indexOf(HASH, index + 1);
    }
    return { index: this.tail, complete: false };
  }

  private parse(events: FramerEvent[]): void {
    for (;;) {
      this.skipLineEnds();
      if (this.head >= this.tail) {
        this.head = 0;
        this.tail = 0;
        return;
      }
      const found = this.findStart(this.head);
      if (found.index > this.head) {
        this.noteGarbage(this.head, found.index);
        this.head = found.index;
      }
      if (!found.complete) return; // nothing, or a `#`/`##` that needs the next read
      const at = this.head;
      if (this.tail - at < HEADER_BYTES) return;

      const lengthOk = [2, 3, 4, 5].every((i) => isDigit(this.buf[at + i]));
      if (!lengthOk) {
        this.emit(
          events,
          this.discard(
            "HJ212_BAD_LENGTH",
            at,
            at + 2,
            `"##" is not followed by a 4-digit length: ${preview(this.buf.subarray(at, at + HEADER_BYTES))}`,
          ),
        );
        this.head = at + 2;
        continue;
      }
      const segmentBytes = Number(String.fromCharCode(...this.buf.subarray(at + 2, at + 6)));
      const frameBytes = HEADER_BYTES + segmentBytes + CRC_BYTES;
      if (frameBytes > this.maxFrameBytes) {
        this.emit(events, {
          type: "error",
          code: "HJ212_FRAME_TOO_LONG",
          reason: `the header declares a ${segmentBytes}-byte segment, a ${frameBytes}-byte frame; at most ${this.maxFrameBytes} bytes are accepted`,
          bytes: 2,
          preview: preview(this.buf.subarray(at, at + HEADER_BYTES)),
          declaredSegmentBytes: segmentBytes,
          maxFrameBytes: this.maxFrameBytes,
        });
        this.head = at + 2;
        continue;
      }
      const lie = this.lineEndInside(at, segmentBytes);
      if (lie !== undefined) {
        // A frame cut short and followed by the next one: that next frame starts before the
        // line end found, and parsing resumes at its start so it is not lost with the cut one.
        const next = this.findStart(at + 2);
        const resumeAt = next.complete && next.index < lie ? next.index : lie;
        this.emit(events, this.lengthLie(at, segmentBytes, resumeAt));
        this.head = resumeAt;
        continue;
      }
      if (this.tail - at < frameBytes) return; // a half frame: wait for the next read

      const crcAt = at + HEADER_BYTES + segmentBytes;
      const crcOk = [0, 1, 2, 3].every((i) => isHexDigit(this.buf[crcAt + i]));
      if (!crcOk) {
        this.emit(
          events,
          this.discard(
            "HJ212_BAD_LENGTH",
            at,
            at + 2,
            `no 4 hex digits of CRC after the declared ${segmentBytes}-byte segment (the length field does not match the frame)`,
          ),
        );
        this.head = at + 2;
        continue;
      }
      const segment = this.buf.subarray(at + HEADER_BYTES, crcAt);
      const printed = String.fromCharCode(...this.buf.subarray(crcAt, crcAt + CRC_BYTES));
      const check = checkCrc(segment, printed, this.crcMode);
      if (check.ok) {
        this.emit(events, {
          type: "frame",
          segment: utf8Decoder.decode(segment),
          crc: printed,
          crcAlgorithm: check.algorithm,
          bytes: frameBytes,
        });
        this.head = at + frameBytes;
        continue;
      }
      // A frame start inside a frame that fails its CRC means this header was not a real one
      // (or the frame was cut short and another began): resume there instead of skipping it.
      const inner = this.buf.subarray(at + 2, at + frameBytes).indexOf(HASH);
      let resumeAt = at + frameBytes;
      if (inner !== -1) {
        const next = this.findStart(at + 2 + inner);
        if (next.index < at + frameBytes) resumeAt = next.index;
      }
      this.emit(events, {
        type: "error",
        code: "HJ212_CRC_MISMATCH",
        reason: `CRC ${printed} does not match the segment (expected ${check.expected})`,
        bytes: resumeAt - at,
        preview: preview(this.buf.subarray(at, resumeAt)),
        segment: utf8Decoder.decode(segment),
        expectedCrc: check.expected,
        receivedCrc: printed,
      });
      this.head = resumeAt;
    }
  }
}
