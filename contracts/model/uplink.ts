import { z } from "zod";
import { DeviceId } from "./ids.js";
import { QualityFlag } from "./quality.js";
import { SensorKind, valuesSchema } from "./sensors.js";
import { Timestamp } from "./time.js";

/** Version of the uplink payload format; bumped only for breaking changes. */
export const PROTOCOL_VERSION = 1;

/** Readings in one uplink message at most (see docs/protocol.md, Limits). */
export const MAX_READINGS_PER_MESSAGE = 500;

/**
 * Per-device message sequence number: starts at 1, increases by one per message, survives
 * restarts and never wraps (2^53 − 1 messages is beyond any device's life). The ingest's commit
 * for a device it has never heard from is 0, so a device's first messages can never be skipped.
 */
export const Seq = z
  .number({ error: "seq must be a number" })
  // zod's int() also refuses integers beyond 2^53 - 1, which JSON numbers cannot carry exactly.
  .int({ error: "seq must be an integer in 0..2^53-1" })
  .min(1, { error: "seq must be >= 1" });
export type Seq = z.infer<typeof Seq>;

function readingSchema<K extends SensorKind>(kind: K) {
  return z.strictObject({
    /** When the reading was measured (for an interval value: the end of the interval). */
    ts: Timestamp,
    quality: QualityFlag,
    values: valuesSchema(kind),
  });
}

function uplinkSchema<K extends SensorKind>(kind: K) {
  return z.strictObject({
    v: z.literal(PROTOCOL_VERSION, { error: `v must be ${PROTOCOL_VERSION}` }),
    deviceId: DeviceId,
    seq: Seq,
    kind: z.literal(kind),
    /**
     * True when the message is re-sent from the edge's log after an outage: the readings are
     * stored and evaluated as evidence, but do not fire live emergency alarms without saying so.
     */
    replay: z.boolean().optional(),
    readings: z
      .array(readingSchema(kind), { error: "readings must be an array" })
      .min(1, { error: "readings must hold at least one reading" })
      .max(MAX_READINGS_PER_MESSAGE, {
        error: `readings must hold at most ${MAX_READINGS_PER_MESSAGE} readings`,
      }),
  });
}

export const NoiseUplink = uplinkSchema("noise");
export const DustUplink = uplinkSchema("dust");
export const CookingFumeUplink = uplinkSchema("cooking_fume");
export const WaterLevelUplink = uplinkSchema("water_level");
export const UtilityTunnelUplink = uplinkSchema("utility_tunnel");

/**
 * The payload a device publishes on its data topic: one message, one `seq`, a batch of readings
 * of the device's kind. Discriminated by `kind`.
 */
export const Uplink = z.discriminatedUnion(
  "kind",
  [NoiseUplink, DustUplink, CookingFumeUplink, WaterLevelUplink, UtilityTunnelUplink],
  {
    error: (issue) => {
      // The declared issue type omits it, but a non-object input is reported as invalid_type here.
      const code: string = issue.code;
      if (
        code === "invalid_type" ||
        typeof issue.input !== "object" ||
        issue.input === null ||
        Array.isArray(issue.input)
      ) {
        return "an uplink message must be a JSON object";
      }
      if (code !== "invalid_union") return undefined;
      const kind = (issue.input as { kind?: unknown } | undefined)?.kind;
      const expected = `expected one of ${SensorKind.options.join(", ")}`;
      return kind === undefined
        ? `kind is required; ${expected}`
        : `unknown sensor kind ${JSON.stringify(kind)}; ${expected}`;
    },
  },
);
export type Uplink = z.infer<typeof Uplink>;
export type Reading = Uplink["readings"][number];
