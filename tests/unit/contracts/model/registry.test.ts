import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  Commit,
  ConfigAck,
  Device,
  DeviceConfig,
  DeviceStatus,
  problemsOf,
  RegistryFile,
  resolveRelativeDates,
  Site,
} from "../../../../contracts/index.js";

const area = { district: "Jinjiang", gridCell: "JJ-01" };
const location = { lat: 30.65, lon: 104.08 };

describe("registry schemas", () => {
  it("the demo registry is valid, its dates relative to the day it is seeded", () => {
    const raw: unknown = parse(readFileSync("simulators/demo-city/registry.yaml", "utf8"));
    const resolved = resolveRelativeDates(raw, "2026-12-05");
    expect(resolved.problems).toEqual([]);
    const file = RegistryFile.parse(resolved.value);
    expect(file.devices.every((d) => d.standby === true)).toBe(true);
    expect(new Set(file.devices.map((d) => d.calibratedOn))).toEqual(new Set(["2026-12-05"]));
    expect(new Set(file.devices.map((d) => d.calibrationDueOn))).toEqual(
      new Set(["2027-12-05", "2027-06-05", undefined]),
    );
    expect(file.sites.flatMap((s) => s.permits ?? [])).toEqual([
      expect.objectContaining({
        validFrom: "2026-12-19T22:00:00+08:00",
        validTo: "2026-12-20T06:00:00+08:00",
      }),
    ]);
    expect(file.devices.map((d) => d.kind).sort()).toEqual([
      "cooking_fume",
      "dust",
      "noise",
      "utility_tunnel",
      "utility_tunnel",
      "water_level",
      "water_level",
    ]);
  });

  it("defaults a device's interval and enabled flag", () => {
    const d = Device.parse({
      id: "n1",
      kind: "noise",
      model: "m",
      serial: "s",
      location,
      area,
      siteId: "s1",
    });
    expect(d.expectedIntervalS).toBe(60);
    expect(d.enabled).toBe(true);
  });

  it("rejects a device with an unknown kind, a bad zone and a bad date, naming each", () => {
    const result = Device.safeParse({
      id: "n1",
      kind: "sonar",
      model: "m",
      serial: "s",
      location: { lat: 91, lon: 104 },
      area,
      siteId: "s1",
      zoneClass: "5",
      calibratedOn: "2026-02-30",
    });
    expect(result.success).toBe(false);
    const paths = result.success ? [] : problemsOf(result.error).map((p) => p.path);
    expect(paths.sort()).toEqual(["calibratedOn", "kind", "location.lat", "zoneClass"]);
  });

  it("requires a regulated party for enforcement sites and validates its credit code", () => {
    const base = {
      id: "c1",
      name: "Site",
      area,
      location,
      type: "construction_site",
      phase: "earthwork",
    };
    expect(Site.safeParse(base).success).toBe(false);
    expect(
      Site.safeParse({ ...base, regulatedParty: { name: "Co.", creditCode: "91510100MA6C5XXX0X" } })
        .success,
    ).toBe(true);
    expect(
      Site.safeParse({ ...base, regulatedParty: { name: "Co.", creditCode: "12345" } }).success,
    ).toBe(false);
  });

  it("checks river station levels are ordered", () => {
    const station = { id: "r1", name: "Gauge", area, location, type: "river_station" };
    expect(
      Site.safeParse({ ...station, levels: { warning: 4.5, guaranteed: 5.6, historicalMax: 6.3 } })
        .success,
    ).toBe(true);
    expect(
      Site.safeParse({ ...station, levels: { warning: 5.7, guaranteed: 5.6, historicalMax: 6.3 } })
        .success,
    ).toBe(false);
  });

  it("lists cross-reference problems of a registry file with their paths", () => {
    const result = RegistryFile.safeParse({
      sites: [
        {
          id: "t1",
          name: "Seg 1",
          area,
          location,
          type: "tunnel_segment",
          tunnel: "east",
          compartment: "gas",
          neighbours: ["t9"],
        },
        { id: "t1", name: "Dup", area, location, type: "ambient" },
      ],
      devices: [
        {
          id: "g1",
          kind: "utility_tunnel",
          model: "m",
          serial: "s",
          location,
          area,
          siteId: "nowhere",
        },
      ],
      serviceAccounts: [{ name: "g1", role: "ingest" }],
    });
    expect(result.success).toBe(false);
    const problems = result.success ? [] : problemsOf(result.error);
    expect(problems).toEqual([
      { path: "sites.1.id", message: "duplicate site id t1" },
      { path: "sites.0.neighbours.0", message: "neighbour t9 is not a site in this file" },
      { path: "devices.0.siteId", message: "site nowhere is not a site in this file" },
      {
        path: "serviceAccounts.0.name",
        message: "duplicate id g1 (devices and service accounts share one namespace)",
      },
    ]);
  });
});

describe("device messages", () => {
  const ts = "2026-11-27T08:00:00+08:00";
  it("accepts birth, death, commit, config and config-ack", () => {
    expect(
      DeviceStatus.safeParse({ v: 1, deviceId: "d1", state: "online", ts, reason: "startup" })
        .success,
    ).toBe(true);
    expect(
      DeviceStatus.safeParse({
        v: 1,
        deviceId: "d1",
        state: "offline",
        ts,
        reason: "lost",
        log: { pending: 3, dropped: 0 },
      }).success,
    ).toBe(true);
    expect(Commit.safeParse({ v: 1, deviceId: "d1", committedSeq: 41, ts }).success).toBe(true);
    expect(
      DeviceConfig.safeParse({
        v: 1,
        deviceId: "d1",
        kind: "utility_tunnel",
        revision: 2,
        reportIntervalS: 30,
        localThresholds: [{ quantity: "ch4", above: 20 }],
      }).success,
    ).toBe(true);
    expect(
      ConfigAck.safeParse({
        v: 1,
        deviceId: "d1",
        revision: 2,
        ts,
        status: "rejected",
        problems: ["reportIntervalS: must be >= 1"],
      }).success,
    ).toBe(true);
  });

  it("rejects a status with an unknown state, a negative commit and a threshold without a bound", () => {
    expect(DeviceStatus.safeParse({ v: 1, deviceId: "d1", state: "sleeping", ts }).success).toBe(
      false,
    );
    expect(Commit.safeParse({ v: 1, deviceId: "d1", committedSeq: -1, ts }).success).toBe(false);
    const bad = DeviceConfig.safeParse({
      v: 1,
      deviceId: "d1",
      kind: "noise",
      revision: 1,
      localThresholds: [{ quantity: "LAeq" }],
    });
    expect(bad.success ? [] : problemsOf(bad.error)).toEqual([
      { path: "localThresholds.0", message: "a local threshold needs `above`, `below` or both" },
    ]);
  });
});
