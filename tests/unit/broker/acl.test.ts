import { describe, expect, it } from "vitest";
import { mayPublish, maySubscribe } from "../../../broker/acl.js";
import { DeviceId, type Principal, ServiceAccountName } from "../../../contracts/index.js";

const device: Principal = { type: "device", deviceId: DeviceId.parse("noise-1"), kind: "noise" };
const service = (role: "ingest" | "simulator" | "monitor"): Principal => ({
  type: "service",
  name: ServiceAccountName.parse(role),
  role,
});
const own = (channel: string) => `citywatch/v1/devices/noise-1/${channel}`;
const other = (channel: string) => `citywatch/v1/devices/noise-2/${channel}`;

describe("device ACL", () => {
  it("publishes only its own uplink topics", () => {
    expect(mayPublish(device, own("data"))).toBe(true);
    expect(mayPublish(device, own("status"))).toBe(true);
    expect(mayPublish(device, own("config-ack"))).toBe(true);
    expect(mayPublish(device, own("commit"))).toBe(false); // cannot forge its own commit
    expect(mayPublish(device, own("config"))).toBe(false);
    expect(mayPublish(device, other("data"))).toBe(false); // never as another device
    expect(mayPublish(device, other("status"))).toBe(false);
    expect(mayPublish(device, "citywatch/v1/tasks/emergency/T1")).toBe(false);
    expect(mayPublish(device, "noise-1/data")).toBe(false);
    expect(mayPublish(device, "citywatch/v1/devices/noise-1/data/x")).toBe(false);
    expect(mayPublish(device, "$share/g/citywatch/v1/devices/noise-1/data")).toBe(false);
  });

  it("subscribes only to its own downlink topics, without wildcards", () => {
    expect(maySubscribe(device, own("commit"))).toBe(true);
    expect(maySubscribe(device, own("config"))).toBe(true);
    expect(maySubscribe(device, own("data"))).toBe(false);
    expect(maySubscribe(device, other("commit"))).toBe(false);
    expect(maySubscribe(device, "citywatch/v1/devices/+/commit")).toBe(false);
    expect(maySubscribe(device, "citywatch/v1/devices/noise-1/#")).toBe(false);
    expect(maySubscribe(device, "citywatch/v1/devices/noise-1/+")).toBe(false);
    expect(maySubscribe(device, "#")).toBe(false);
    expect(maySubscribe(device, "$SYS/#")).toBe(false);
    expect(maySubscribe(device, "$share/g/citywatch/v1/devices/noise-1/commit")).toBe(false);
  });
});

describe("service ACL", () => {
  it("ingest reads every device's uplink and writes downlink and tasks", () => {
    const ingest = service("ingest");
    expect(maySubscribe(ingest, "citywatch/v1/devices/+/data")).toBe(true);
    expect(maySubscribe(ingest, "$share/ingest/citywatch/v1/devices/+/data")).toBe(true);
    expect(maySubscribe(ingest, "citywatch/v1/devices/+/status")).toBe(true);
    expect(maySubscribe(ingest, "citywatch/v1/devices/+/commit")).toBe(false);
    expect(maySubscribe(ingest, "citywatch/v1/#")).toBe(false);
    expect(maySubscribe(ingest, "#")).toBe(false);
    expect(mayPublish(ingest, other("commit"))).toBe(true);
    expect(mayPublish(ingest, other("config"))).toBe(true);
    expect(mayPublish(ingest, other("data"))).toBe(false); // cannot forge readings
    expect(mayPublish(ingest, "citywatch/v1/tasks/emergency/T-1")).toBe(true);
    expect(mayPublish(ingest, "citywatch/v1/tasks/emergency")).toBe(false);
  });

  it("simulator publishes as any device and reads their downlink", () => {
    const sim = service("simulator");
    expect(mayPublish(sim, other("data"))).toBe(true);
    expect(mayPublish(sim, other("status"))).toBe(true);
    expect(mayPublish(sim, other("commit"))).toBe(false);
    expect(mayPublish(sim, "citywatch/v1/tasks/emergency/T-1")).toBe(false);
    expect(maySubscribe(sim, "citywatch/v1/devices/+/commit")).toBe(true);
    expect(maySubscribe(sim, "citywatch/v1/devices/+/data")).toBe(false);
  });

  it("monitor reads everything under citywatch/v1 and publishes nothing", () => {
    const monitor = service("monitor");
    expect(maySubscribe(monitor, "citywatch/v1/#")).toBe(true);
    expect(maySubscribe(monitor, "citywatch/v1/devices/+/data")).toBe(true);
    expect(maySubscribe(monitor, "#")).toBe(false);
    expect(maySubscribe(monitor, "$SYS/#")).toBe(false);
    expect(mayPublish(monitor, other("data"))).toBe(false);
    expect(mayPublish(monitor, other("commit"))).toBe(false);
  });
});
