import { z } from "zod";
import { Port } from "../../contracts/index.js";
import { FRAMER_DEFAULTS } from "../hj212/framer.js";
import { DataCn, Hj212Mapping } from "../hj212/mapping.js";
import { SPLIT_DEFAULTS } from "../hj212/split.js";

/**
 * Options of the HJ 212 TCP server driver: the driver entry of an edge config,
 * `drivers: [{ type: hj212, port: 9212, mapping: { models, devices } }]` (docs/edge-drivers.md).
 *
 * Every bound a monitor could push against is an option with a default and a counter in the
 * driver's stats: connections, bytes held per connection, unsent replies per connection, idle
 * time, split packets pending.
 */

const Count = (min: number, max: number) =>
  z
    .number({ error: "must be a whole number" })
    .int({ error: "must be a whole number" })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` });

/** `##` + 4 digits + at most 9 999 bytes of segment + 4 hex digits: the longest frame the length field can state. */
const LONGEST_FRAME = 6 + 9_999 + 4;

export const Hj212DriverOptions = z
  .strictObject({
    /** The entry's own `type`, accepted so the config entry can be parsed as it is written. */
    type: z.literal("hj212").optional(),
    /** Address the monitors connect to; `0.0.0.0` for all interfaces. */
    host: z.string().min(1).default("0.0.0.0"),
    /** HJ 212 has no standard port: the one set in the monitors' platform address. 0 = any free port (tests). */
    port: Port,
    /**
     * `strict`: only the HJ 212 CRC. `lenient`: a plain Modbus CRC printed low byte first is
     * accepted too (docs/hj212.md, CRC: a few devices send it); counted as `lenientCrcFrames`.
     */
    crc: z.enum(["strict", "lenient"]).default("strict"),
    /**
     * The data uploads turned into samples. A reading carries no interval length, so one
     * device's stream must hold one kind of data: minute data (2051, the default, which every
     * monitor sends) or real-time data (2011, for the agent to aggregate), not both, and hourly
     * (2061) or daily (2031) data only alone: an hourly value ends on the same timestamp as the
     * minute value of the hour's last minute and would overwrite it in the store. Frames of other
     * data CNs are answered 9014 (nothing is wrong with them) and counted as `ignoredData`.
     */
    dataCns: z.array(DataCn).min(1).default(["2051"]),
    /** Monitors connected at once; one more is closed at once and counted (`connectionsRefused`). */
    maxConnections: Count(1, 10_000).default(256),
    /**
     * A connection with no byte received for this long is closed (`idleTimeouts`). Monitors keep
     * one connection and send at least minute data; a closed one reconnects by itself.
     */
    idleTimeoutS: Count(1, 86_400).default(600),
    /**
     * A frame must be complete this long after the first byte that followed the connection's last
     * frame; otherwise the connection is closed (`frameTimeouts`): a peer dribbling one byte a
     * second, or a partial frame that never completes, cannot hold a connection for ever.
     */
    frameTimeoutS: Count(1, 3_600).default(30),
    /** Longest frame accepted (header + segment + CRC); a longer length field is refused before buffering (`frameTooLong`). */
    maxFrameBytes: Count(64, LONGEST_FRAME).default(LONGEST_FRAME),
    /** Bytes held per connection between reads (a partial frame); fixed, allocated once. */
    maxBufferBytes: Count(64, 1_048_576).default(FRAMER_DEFAULTS.maxBufferBytes),
    /**
     * Replies queued on a connection whose peer does not read; past this the connection is
     * closed (`replyBacklogOverflows`) instead of buffering without end.
     */
    maxReplyBacklogBytes: Count(1_024, 1_048_576).default(65_536),
    /** Split packets (Flag bit D) being reassembled, server-wide (edge/hj212/split.ts). */
    split: z
      .strictObject({
        maxPendingGroups: Count(1, 1_024).default(SPLIT_DEFAULTS.maxPendingGroups),
        maxPieces: Count(2, 9_999).default(SPLIT_DEFAULTS.maxPieces),
        timeoutS: Count(1, 3_600).default(SPLIT_DEFAULTS.timeoutMs / 1_000),
      })
      .prefault({}),
    /** The same kind of problem (bad CRC, unknown MN…) is logged at warn at most once per this interval; all are counted. */
    problemLogIntervalS: Count(1, 3_600).default(60),
    /** Factor models and MN → device(s) (edge/hj212/mapping.ts). */
    mapping: Hj212Mapping,
  })
  .refine((options) => options.maxBufferBytes >= options.maxFrameBytes, {
    path: ["maxBufferBytes"],
    error: "must be at least maxFrameBytes (a whole frame must fit)",
  });
export type Hj212DriverOptions = z.infer<typeof Hj212DriverOptions>;
export type Hj212DriverOptionsInput = z.input<typeof Hj212DriverOptions>;
