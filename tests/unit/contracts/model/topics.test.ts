import { describe, expect, it } from "vitest";
import {
  allDevicesFilter,
  DeviceChannel,
  deviceTopic,
  parseTopic,
  TaskKind,
  taskTopic,
  tasksFilter,
} from "../../../../contracts/index.js";

describe("topic scheme", () => {
  it("builds and parses every device channel round trip", () => {
    for (const channel of DeviceChannel.options) {
      const topic = deviceTopic("noise-0042", channel);
      expect(topic).toBe(`citywatch/v1/devices/noise-0042/${channel}`);
      expect(parseTopic(topic)).toEqual({
        ok: true,
        topic: { type: "device", deviceId: "noise-0042", channel },
      });
    }
  });

  it("builds and parses task topics round trip", () => {
    for (const kind of TaskKind.options) {
      const topic = taskTopic(kind, "T-2026-000123");
      expect(parseTopic(topic)).toEqual({
        ok: true,
        topic: { type: "task", taskKind: kind, taskId: "T-2026-000123" },
      });
    }
  });

  it("refuses to build a topic from an id that is not a valid level", () => {
    for (const id of ["a/b", "+", "#", "", "with space", "x".repeat(65)]) {
      expect(() => deviceTopic(id, "data")).toThrow();
    }
  });

  it("rejects foreign and malformed topics with a reason", () => {
    const cases: Array<[string, RegExp]> = [
      ["sensors/dev-1/data", /not a citywatch topic/],
      ["citywatch/v2/devices/dev-1/data", /not a citywatch topic/],
      ["citywatch/v1/devices/dev-1/telemetry", /unknown device channel "telemetry"/],
      ["citywatch/v1/devices/dev-1/data/extra", /too many topic levels/],
      ["citywatch/v1/devices/+/data", /invalid device id level/],
      ["citywatch/v1/devices//data", /invalid device id level/],
      ["citywatch/v1/things/dev-1/data", /unknown topic area "things"/],
      ["citywatch/v1/tasks/fire/T1", /unknown task kind "fire"/],
      ["citywatch/v1/devices/dev-1", /unknown device channel/],
    ];
    for (const [topic, reason] of cases) {
      const parsed = parseTopic(topic);
      expect(parsed.ok, topic).toBe(false);
      if (!parsed.ok) expect(parsed.reason).toMatch(reason);
    }
  });

  it("builds subscription filters", () => {
    expect(allDevicesFilter("data")).toBe("citywatch/v1/devices/+/data");
    expect(allDevicesFilter("status", "ingest")).toBe(
      "$share/ingest/citywatch/v1/devices/+/status",
    );
    expect(tasksFilter()).toBe("citywatch/v1/tasks/#");
    expect(tasksFilter("emergency")).toBe("citywatch/v1/tasks/emergency/+");
  });
});
