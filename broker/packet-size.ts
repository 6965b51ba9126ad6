import type { Client } from "aedes";

/** Raised into the client's error path when a packet announces more bytes than allowed. */
export class PacketTooLargeError extends Error {
  readonly code = "BROKER_PACKET_TOO_LARGE";
  constructor(
    readonly announced: number,
    readonly limit: number,
  ) {
    super(`packet of ${announced} bytes exceeds the limit of ${limit} bytes`);
  }
}

interface ParserWithLength {
  packet: { length: number };
  _parseLength: () => boolean;
  _emitError: (error: Error) => void;
}

function isParser(value: unknown): value is ParserWithLength {
  const p = value as Partial<ParserWithLength> | undefined;
  return typeof p?._parseLength === "function" && typeof p._emitError === "function";
}

/**
 * Refuse a packet as soon as its fixed header announces a remaining length above `limit`,
 * before its body is buffered. aedes 1.x has no packet-size option and parses with mqtt-packet,
 * which would otherwise accumulate up to 256 MB for one packet [MQTT-2.2.3]. The check wraps the
 * client's parser state `_parseLength` (an mqtt-packet internal): zero cost per byte, unlike a
 * stream in front of the socket. `assertPacketLimitSupported` fails the broker at start if a
 * future aedes/mqtt-packet changes that shape, so the limit can never be silently off.
 */
export function limitPacketSize(
  client: Client,
  limit: number,
  onRejected: (error: PacketTooLargeError) => void,
) {
  const parser = (client as unknown as { _parser?: unknown })._parser;
  if (!isParser(parser))
    throw new Error("aedes client parser has no _parseLength: packet-size limit unsupported");
  const parseLength = parser._parseLength;
  parser._parseLength = function limitedParseLength(this: ParserWithLength): boolean {
    const done = parseLength.call(this);
    if (done && this.packet.length > limit) {
      const error = new PacketTooLargeError(this.packet.length, limit);
      onRejected(error);
      this._emitError(error);
      return false;
    }
    return done;
  };
}
