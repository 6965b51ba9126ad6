import { z } from "zod";
import { MAX_READINGS_PER_MESSAGE } from "../../contracts/uplink.js";

/**
 * Bounds of the edge's write-ahead log. The schema lives here until the edge agent's configuration
 * lands in contracts/config/, which will embed it.
 *
 * Policy when a bound is reached (docs/protocol.md 6.3, "Log full"): the OLDEST uncommitted
 * messages are deleted, across all devices of the agent, oldest append first, until the log is
 * back under `maxBytes`; messages whose last reading was appended more than `maxAgeMs` ago are
 * deleted too (so no reading is dropped for age before it spent `maxAgeMs` in the log). Every deleted message is added to its device's `dropped` count, which
 * the device reports in its status message (`log.dropped`); its seq is never reused, so the ingest's
 * gap timeout records it as `missing_seq` (protocol 6.6). Nothing is dropped silently.
 */
export const WalLimits = z.strictObject({
  /** Readings per message, at most the protocol's limit (protocol section 8). */
  maxReadingsPerMessage: z.number().int().min(1).max(MAX_READINGS_PER_MESSAGE).default(100),
  /**
   * Bytes of reading JSON kept in the log, all devices together (SQLite's own overhead, about
   * 30-40 bytes per message, comes on top). At least 64 KiB so a full message always fits.
   */
  maxBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .default(256 * 1024 * 1024),
  /** Time in the log after which an uncommitted message is dropped: 7 days by default. */
  maxAgeMs: z
    .number()
    .int()
    .min(60_000)
    .default(7 * 24 * 3_600_000),
});
export type WalLimits = z.infer<typeof WalLimits>;
export type WalLimitsInput = z.input<typeof WalLimits>;
