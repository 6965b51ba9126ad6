import { type Device, parseTopic, problemsOf, type Site, Uplink } from "../contracts/index.js";
import type { Point } from "./store/types.js";

/** Why a message was dead-lettered; stable codes for metrics and the API. */
export type DeadLetterReason =
  | "not_json"
  | "bad_topic"
  | "schema"
  | "unknown_device"
  | "device_mismatch"
  | "wrong_kind"
  | "disabled_device"
  | "future_timestamp"
  | "stale_timestamp"
  | "store_rejected"
  | "state_rejected"
  | "missing_seq";

export interface DecodeLimits {
  readonly maxFutureMs: number;
  readonly maxAgeMs: number;
}

export interface DeviceLookup {
  device(id: string): Device | undefined;
  site(id: string): Site | undefined;
}

export type Decoded =
  | {
      readonly ok: true;
      readonly deviceId: string;
      readonly seq: number;
      readonly replay: boolean;
      readonly points: Point[];
    }
  | {
      readonly ok: false;
      readonly reason: DeadLetterReason;
      readonly detail: string;
      /** Known when the topic named a device and, for the seq, when the envelope was readable. */
      readonly deviceId?: string;
      readonly seq?: number;
    };

function seqOf(value: unknown): number | undefined {
  const seq = (value as { seq?: unknown } | null)?.seq;
  return typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
}

/**
 * Decode and validate one uplink message against contracts/ and the registry. Pure: the clock
 * and the registry come in as arguments. Bad input is a result, never an exception.
 */
export function decodeUplink(
  topic: string,
  payload: Buffer,
  registry: DeviceLookup,
  nowMs: number,
  limits: DecodeLimits,
): Decoded {
  const parsedTopic = parseTopic(topic);
  if (
    !parsedTopic.ok ||
    parsedTopic.topic.type !== "device" ||
    parsedTopic.topic.channel !== "data"
  ) {
    return {
      ok: false,
      reason: "bad_topic",
      detail: parsedTopic.ok ? `not a data topic: ${topic}` : parsedTopic.reason,
    };
  }
  const topicDevice = parsedTopic.topic.deviceId as string;
  let json: unknown;
  try {
    json = JSON.parse(payload.toString("utf8"));
  } catch (error) {
    return {
      ok: false,
      reason: "not_json",
      detail: `payload is not JSON: ${(error as Error).message}`,
      deviceId: topicDevice,
    };
  }
  const seq = seqOf(json);
  const base = { deviceId: topicDevice, ...(seq !== undefined ? { seq } : {}) };
  const message = Uplink.safeParse(json);
  if (!message.success) {
    const detail = problemsOf(message.error)
      .slice(0, 10)
      .map((p) => `${p.path}: ${p.message}`)
      .join("; ");
    return { ok: false, reason: "schema", detail, ...base };
  }
  const uplink = message.data;
  if (uplink.deviceId !== topicDevice) {
    return {
      ok: false,
      reason: "device_mismatch",
      detail: `deviceId ${uplink.deviceId} does not match the topic's ${topicDevice}`,
      ...base,
    };
  }
  const device = registry.device(topicDevice);
  if (device === undefined) {
    return {
      ok: false,
      reason: "unknown_device",
      detail: `device ${topicDevice} is not registered`,
      ...base,
    };
  }
  if (!device.enabled) {
    return {
      ok: false,
      reason: "disabled_device",
      detail: `device ${topicDevice} is disabled`,
      ...base,
    };
  }
  if (uplink.kind !== device.kind) {
    return {
      ok: false,
      reason: "wrong_kind",
      detail: `device ${topicDevice} is registered as ${device.kind}, message has ${uplink.kind} readings`,
      ...base,
    };
  }
  const site = registry.site(device.siteId);
  const zone = device.zoneClass ?? site?.zoneClass;
  // One tags object per quality flag in the message, shared by its points (the line-protocol
  // serializer caches a tags object's text, so a message's series key is escaped once).
  const tagsByQuality = new Map<string, Point["tags"]>();
  const points: Point[] = [];
  const { readings } = uplink;
  for (let i = 0; i < readings.length; i++) {
    const reading = readings[i] as (typeof readings)[number];
    const timeMs = Date.parse(reading.ts);
    if (timeMs > nowMs + limits.maxFutureMs) {
      return {
        ok: false,
        reason: "future_timestamp",
        detail: `readings.${i}.ts ${reading.ts} is more than ${limits.maxFutureMs} ms ahead of the ingest's clock`,
        ...base,
      };
    }
    if (timeMs < nowMs - limits.maxAgeMs) {
      return {
        ok: false,
        reason: "stale_timestamp",
        detail: `readings.${i}.ts ${reading.ts} is older than ${limits.maxAgeMs} ms`,
        ...base,
      };
    }
    let tags = tagsByQuality.get(reading.quality);
    if (tags === undefined) {
      tags = {
        device: device.id,
        site: device.siteId,
        district: device.area.district,
        grid_cell: device.area.gridCell,
        ...(zone !== undefined ? { zone } : {}),
        quality: reading.quality,
      };
      tagsByQuality.set(reading.quality, tags);
    }
    points.push({
      measurement: uplink.kind,
      tags,
      fields: reading.values as Record<string, number | boolean>,
      seq: uplink.seq,
      timeMs,
    });
  }
  return { ok: true, deviceId: device.id, seq: uplink.seq, replay: uplink.replay === true, points };
}
