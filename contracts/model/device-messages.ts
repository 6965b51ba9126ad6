import { z } from "zod";
import { DeviceId } from "./ids.js";
import { SensorKind } from "./sensors.js";
import { Timestamp } from "./time.js";
import { PROTOCOL_VERSION } from "./uplink.js";

const v = z.literal(PROTOCOL_VERSION, { error: `v must be ${PROTOCOL_VERSION}` });

/**
 * Birth and death on `citywatch/v1/devices/{id}/status`, retained.
 * A device publishes `online` right after connecting and registers `offline` (reason `lost`)
 * as its MQTT Will, so the broker announces a dead link; on a clean shutdown it publishes
 * `offline` with reason `shutdown` itself before disconnecting.
 */
export const DeviceStatus = z.strictObject({
  v,
  deviceId: DeviceId,
  state: z.enum(["online", "offline"]),
  ts: Timestamp,
  reason: z.enum(["startup", "reconnect", "shutdown", "lost"]).optional(),
  /** Software of the agent or firmware, for fleet health. */
  agent: z.strictObject({ name: z.string().max(64), version: z.string().max(32) }).optional(),
  /** State of the device's local log (edge agents): entries waiting and entries dropped when full. */
  log: z
    .strictObject({
      pending: z.number().int().min(0),
      dropped: z.number().int().min(0),
      oldestPendingTs: Timestamp.optional(),
    })
    .optional(),
});
export type DeviceStatus = z.infer<typeof DeviceStatus>;

/**
 * Commit on `citywatch/v1/devices/{id}/commit`, retained, published by the ingest only after the
 * time-series store acknowledged the readings: every message with `seq <= committedSeq` is stored
 * (or dead-lettered with a reason), and the device may delete it from its log.
 */
export const Commit = z.strictObject({
  v,
  deviceId: DeviceId,
  /** 0 until the first message is stored. */
  committedSeq: z.number().int().min(0),
  ts: Timestamp,
});
export type Commit = z.infer<typeof Commit>;

/** A local alarm threshold evaluated on the device itself, so it works while the link is down. */
export const LocalThreshold = z
  .strictObject({
    quantity: z.string().min(1).max(32),
    above: z.number().optional(),
    below: z.number().optional(),
  })
  .refine((t) => t.above !== undefined || t.below !== undefined, {
    error: "a local threshold needs `above`, `below` or both",
  });
export type LocalThreshold = z.infer<typeof LocalThreshold>;

/**
 * Configuration on `citywatch/v1/devices/{id}/config`, retained. `revision` increases with every
 * change; a device applies a revision once and answers on `config-ack`.
 */
export const DeviceConfig = z.strictObject({
  v,
  deviceId: DeviceId,
  kind: SensorKind,
  revision: z.number().int().min(1),
  /** Seconds between readings the device sends (after local aggregation). */
  reportIntervalS: z.number().int().min(1).max(86_400).optional(),
  localThresholds: z.array(LocalThreshold).max(32).optional(),
});
export type DeviceConfig = z.infer<typeof DeviceConfig>;

/** The device's answer to a configuration revision, on `citywatch/v1/devices/{id}/config-ack`. */
export const ConfigAck = z.strictObject({
  v,
  deviceId: DeviceId,
  revision: z.number().int().min(1),
  ts: Timestamp,
  status: z.enum(["applied", "rejected"]),
  /** Why a revision was rejected; the previous configuration stays in force. */
  problems: z.array(z.string().max(500)).max(32).optional(),
});
export type ConfigAck = z.infer<typeof ConfigAck>;
