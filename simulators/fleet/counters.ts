/** What the fleet runner counts; the progress display and the summary read the same object. */
export interface FleetCounters {
  devices: number;
  connected: number;
  /** Messages sent for the first time, and their readings. */
  published: number;
  publishedReadings: number;
  /** Messages sent again: after the re-send timeout, or as replays after a reconnect. */
  resent: number;
  /** Messages (and readings) covered by a commit and trimmed from the log. */
  committedMessages: number;
  committedReadings: number;
  /** Injected extra copies of messages already sent (duplicate bursts). */
  duplicatesSent: number;
  /** Schema-invalid messages (dead-lettered with a committed seq) and non-JSON payloads. */
  malformedSchema: number;
  malformedNotJson: number;
  /** Payloads over the broker's packet limit (the broker closes the connection). */
  oversized: number;
  /** Connection attempts with unregistered ids: refused as they must be, and (wrongly) accepted. */
  unknownRefused: number;
  unknownAccepted: number;
  /** Messages whose readings carry a skewed clock. */
  skewed: number;
  /** Connections cut by a disconnect storm or a link outage; reconnects that followed. */
  cuts: number;
  reconnects: number;
  /** Messages dropped at the log bound (uncommitted, lost to the device). */
  dropped: number;
  /** Commits above anything the device sent (§6.2: the counter went backwards). */
  commitAhead: number;
  /** Connection errors, publish errors, unreadable downlink. */
  errors: number;
}

export function createCounters(devices: number): FleetCounters {
  return {
    devices,
    connected: 0,
    published: 0,
    publishedReadings: 0,
    resent: 0,
    committedMessages: 0,
    committedReadings: 0,
    duplicatesSent: 0,
    malformedSchema: 0,
    malformedNotJson: 0,
    oversized: 0,
    unknownRefused: 0,
    unknownAccepted: 0,
    skewed: 0,
    cuts: 0,
    reconnects: 0,
    dropped: 0,
    commitAhead: 0,
    errors: 0,
  };
}
