import { z } from "zod";
import { DeviceId, Identifier } from "./ids.js";

/**
 * The MQTT topic scheme. Every topic starts with `citywatch/v1/`; a device's topics carry its id
 * as one level, so a topic ACL can be a string comparison (see broker/acl.ts).
 *
 * | topic                                   | direction         | QoS | retained |
 * |-----------------------------------------|-------------------|-----|----------|
 * | `citywatch/v1/devices/{id}/data`        | device → ingest   | 1   | no       |
 * | `citywatch/v1/devices/{id}/status`      | device → all      | 1   | yes (birth / death, Will) |
 * | `citywatch/v1/devices/{id}/config-ack`  | device → ingest   | 1   | no       |
 * | `citywatch/v1/devices/{id}/commit`      | ingest → device   | 1   | yes      |
 * | `citywatch/v1/devices/{id}/config`      | ingest → device   | 1   | yes      |
 * | `citywatch/v1/tasks/{kind}/{taskId}`    | ingest → consoles | 1   | no       |
 */
export const TOPIC_ROOT = "citywatch/v1";

/** Channels a device publishes on. */
export const UplinkChannel = z.enum(["data", "status", "config-ack"]);
export type UplinkChannel = z.infer<typeof UplinkChannel>;

/** Channels a device subscribes to. */
export const DownlinkChannel = z.enum(["commit", "config"]);
export type DownlinkChannel = z.infer<typeof DownlinkChannel>;

export const DeviceChannel = z.enum([...UplinkChannel.options, ...DownlinkChannel.options]);
export type DeviceChannel = z.infer<typeof DeviceChannel>;

/**
 * Kinds of task published on the task topics. `environmental`: an environmental-quality alert
 * (an area exceedance of GB 3096 with no party to address it to), for the environment bureau and
 * the grid to investigate; never an enforcement case.
 */
export const TaskKind = z.enum(["enforcement", "emergency", "maintenance", "environmental"]);
export type TaskKind = z.infer<typeof TaskKind>;

/** A parsed citywatch topic. */
export type ParsedTopic =
  | { readonly type: "device"; readonly deviceId: DeviceId; readonly channel: DeviceChannel }
  | { readonly type: "task"; readonly taskKind: TaskKind; readonly taskId: string };

/** Why a topic is not a citywatch topic. */
export type TopicParseResult = { ok: true; topic: ParsedTopic } | { ok: false; reason: string };

/** The topic of `channel` for device `deviceId`. Throws on an id that is not a valid topic level. */
export function deviceTopic(deviceId: string, channel: DeviceChannel): string {
  DeviceId.parse(deviceId);
  return `${TOPIC_ROOT}/devices/${deviceId}/${channel}`;
}

/** The topic of one task's events. */
export function taskTopic(taskKind: TaskKind, taskId: string): string {
  Identifier.parse(taskId);
  return `${TOPIC_ROOT}/tasks/${taskKind}/${taskId}`;
}

/**
 * Subscription filter matching `channel` of every device, e.g. `citywatch/v1/devices/+/data`.
 * With `shareGroup`, an MQTT 5 / aedes-style shared subscription (`$share/{group}/…`).
 */
export function allDevicesFilter(channel: DeviceChannel, shareGroup?: string): string {
  const filter = `${TOPIC_ROOT}/devices/+/${channel}`;
  return shareGroup === undefined ? filter : `$share/${shareGroup}/${filter}`;
}

/** Subscription filter matching every task event, or those of one kind. */
export function tasksFilter(taskKind?: TaskKind): string {
  return taskKind === undefined ? `${TOPIC_ROOT}/tasks/#` : `${TOPIC_ROOT}/tasks/${taskKind}/+`;
}

/** Parse a concrete topic (no wildcards). Foreign or malformed topics are refused with a reason. */
export function parseTopic(topic: string): TopicParseResult {
  const levels = topic.split("/");
  if (levels[0] !== "citywatch" || levels[1] !== "v1") {
    return { ok: false, reason: `not a citywatch topic (expected prefix ${TOPIC_ROOT}/)` };
  }
  const [, , area, id, last, ...extra] = levels;
  if (extra.length > 0) return { ok: false, reason: "too many topic levels" };
  if (area === "devices") {
    const device = DeviceId.safeParse(id);
    if (!device.success)
      return { ok: false, reason: `invalid device id level ${JSON.stringify(id)}` };
    const channel = DeviceChannel.safeParse(last);
    if (!channel.success) {
      return {
        ok: false,
        reason: `unknown device channel ${JSON.stringify(last)}; expected one of ${DeviceChannel.options.join(", ")}`,
      };
    }
    return { ok: true, topic: { type: "device", deviceId: device.data, channel: channel.data } };
  }
  if (area === "tasks") {
    const kind = TaskKind.safeParse(id);
    if (!kind.success) return { ok: false, reason: `unknown task kind ${JSON.stringify(id)}` };
    const taskId = Identifier.safeParse(last);
    if (!taskId.success)
      return { ok: false, reason: `invalid task id level ${JSON.stringify(last)}` };
    return { ok: true, topic: { type: "task", taskKind: kind.data, taskId: taskId.data } };
  }
  return {
    ok: false,
    reason: `unknown topic area ${JSON.stringify(area)}; expected devices or tasks`,
  };
}
