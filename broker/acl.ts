import {
  DownlinkChannel,
  type Principal,
  TOPIC_ROOT,
  UplinkChannel,
  DeviceChannel,
  DeviceId,
} from "../contracts/index.js";

/**
 * Topic access control. Pure functions of (principal, topic), so they are tested without a broker.
 *
 * - A device publishes only on its own uplink topics (data, status, config-ack) and subscribes only
 *   to its own downlink topics (commit, config); it can never publish as another device or read
 *   another device's traffic.
 * - `ingest` subscribes to every device's uplink and publishes downlink and task events.
 * - `simulator` publishes any device's uplink and subscribes to any device's downlink.
 * - `monitor` subscribes to anything under `citywatch/v1/` and publishes nothing.
 * Wildcards are allowed to service accounts only in the device-id level (`+`), and to `monitor`.
 */

const DEVICES = `${TOPIC_ROOT}/devices/`;
const TASKS = `${TOPIC_ROOT}/tasks/`;

/** The exact topics a device may publish on. Computed once per connection. */
export function devicePublishTopics(deviceId: string): ReadonlySet<string> {
  return new Set(UplinkChannel.options.map((channel) => `${DEVICES}${deviceId}/${channel}`));
}

/** The exact topics a device may subscribe to. */
export function deviceSubscribeTopics(deviceId: string): ReadonlySet<string> {
  return new Set(DownlinkChannel.options.map((channel) => `${DEVICES}${deviceId}/${channel}`));
}

/**
 * Parse `citywatch/v1/devices/{id|+}/{channel}` (optionally behind `$share/{group}/`).
 * Returns the channel, or undefined for anything else (other areas, `#`, wildcards elsewhere).
 */
function deviceChannelOf(filter: string, allowPlus: boolean): DeviceChannel | undefined {
  let topic = filter;
  if (topic.startsWith("$share/")) {
    const rest = topic.indexOf("/", "$share/".length);
    if (rest < 0) return undefined;
    topic = topic.slice(rest + 1);
  }
  if (!topic.startsWith(DEVICES)) return undefined;
  const levels = topic.slice(DEVICES.length).split("/");
  if (levels.length !== 2) return undefined;
  const [id, channel] = levels as [string, string];
  if (!(allowPlus && id === "+") && !DeviceId.safeParse(id).success) return undefined;
  const parsed = DeviceChannel.safeParse(channel);
  return parsed.success ? parsed.data : undefined;
}

function isUplink(channel: DeviceChannel): boolean {
  return (UplinkChannel.options as readonly string[]).includes(channel);
}

function isConcreteTaskTopic(topic: string): boolean {
  if (!topic.startsWith(TASKS)) return false;
  const levels = topic.slice(TASKS.length).split("/");
  return (
    levels.length === 2 && levels.every((l) => l.length > 0 && !l.includes("+") && !l.includes("#"))
  );
}

/** May `principal` publish on `topic`? (`topic` is concrete: the broker refuses wildcards in PUBLISH.) */
export function mayPublish(principal: Principal, topic: string): boolean {
  switch (principal.type) {
    case "device": {
      const channel = deviceChannelOf(topic, false);
      return (
        channel !== undefined &&
        isUplink(channel) &&
        topic === `${DEVICES}${principal.deviceId}/${channel}`
      );
    }
    case "service":
      switch (principal.role) {
        case "ingest": {
          if (isConcreteTaskTopic(topic)) return true;
          const channel = deviceChannelOf(topic, false);
          return channel !== undefined && !isUplink(channel) && !topic.startsWith("$");
        }
        case "simulator": {
          const channel = deviceChannelOf(topic, false);
          return channel !== undefined && isUplink(channel) && !topic.startsWith("$");
        }
        case "monitor":
          return false;
      }
  }
}

/** May `principal` subscribe with `filter`? */
export function maySubscribe(principal: Principal, filter: string): boolean {
  switch (principal.type) {
    case "device": {
      const channel = deviceChannelOf(filter, false);
      return (
        channel !== undefined &&
        !isUplink(channel) &&
        filter === `${DEVICES}${principal.deviceId}/${channel}`
      );
    }
    case "service":
      switch (principal.role) {
        case "ingest": {
          const channel = deviceChannelOf(filter, true);
          return channel !== undefined && isUplink(channel);
        }
        case "simulator": {
          const channel = deviceChannelOf(filter, true);
          return channel !== undefined && !isUplink(channel);
        }
        case "monitor": {
          const topic = filter.startsWith("$share/")
            ? filter.slice(filter.indexOf("/", 7) + 1)
            : filter;
          return topic === `${TOPIC_ROOT}/#` || topic.startsWith(`${TOPIC_ROOT}/`);
        }
      }
  }
}

/**
 * A device's `data` and `config-ack` are not retained (docs/protocol.md section 3): a retained
 * batch of readings would be handed to every later subscriber as if it were new. The broker drops
 * the retain flag of a PUBLISH on them (delivers it, keeps nothing).
 */
export function retainForbidden(topic: string): boolean {
  const channel = deviceChannelOf(topic, false);
  return channel === "data" || channel === "config-ack";
}
