import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkDeviceConfig, RevisionStore } from "../../../../edge/agent/remote-config.js";

const device = { deviceId: "tunnel-1", kind: "utility_tunnel" as const };
const limits = { minReportIntervalS: 10 };
const payload = (value: unknown) => Buffer.from(JSON.stringify(value));
const base = { v: 1, deviceId: "tunnel-1", kind: "utility_tunnel", revision: 7 };

describe("checking a config message", () => {
  it("accepts a valid revision with the settings it sets, and only those", () => {
    const check = checkDeviceConfig(
      payload({ ...base, reportIntervalS: 30, localThresholds: [{ quantity: "ch4", above: 20 }] }),
      device,
      limits,
    );
    expect(check).toEqual({
      ok: true,
      revision: 7,
      settings: { reportIntervalS: 30, localThresholds: [{ quantity: "ch4", above: 20 }] },
    });
    expect(checkDeviceConfig(payload(base), device, limits)).toEqual({
      ok: true,
      revision: 7,
      settings: {},
    });
  });

  it("rejects with every problem named, keeping the revision to answer", () => {
    const check = checkDeviceConfig(
      payload({
        ...base,
        deviceId: "tunnel-2",
        reportIntervalS: 5,
        localThresholds: [
          { quantity: "pm10", above: 50 },
          { quantity: "ch4", above: 20 },
        ],
      }),
      device,
      limits,
    );
    expect(check).toEqual({
      ok: false,
      revision: 7,
      problems: [
        "deviceId tunnel-2 is not this device (tunnel-1)",
        "reportIntervalS 5 is below this agent's minimum of 10 s",
        'localThresholds[0]: quantity "pm10" is not measured by a utility_tunnel device',
      ],
    });
  });

  it("refuses unknown settings and contract breaks by path", () => {
    const check = checkDeviceConfig(
      payload({ ...base, samplingRateHz: 10, localThresholds: [{ quantity: "ch4" }] }),
      device,
      limits,
    );
    expect(check.ok).toBe(false);
    expect(check.revision).toBe(7);
    expect(!check.ok && check.problems.join("\n")).toMatch(/samplingRateHz/);
    expect(!check.ok && check.problems.join("\n")).toMatch(/localThresholds\.0: /);
  });

  it("cannot answer what it cannot read", () => {
    expect(checkDeviceConfig(Buffer.from("{not json"), device, limits)).toMatchObject({
      ok: false,
      problems: [expect.stringMatching(/^not JSON/)],
    });
    expect(checkDeviceConfig(payload({ v: 1 }), device, limits).revision).toBeUndefined();
  });
});

describe("revision store", () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("keeps the handled revision across instances and reports a damaged file", () => {
    dir = mkdtempSync(join(tmpdir(), "cw-revisions-"));
    const record = {
      revision: 8,
      status: "rejected" as const,
      problems: ["x"],
      applied: { revision: 7, reportIntervalS: 30 },
    };
    new RevisionStore(dir).save("tunnel-1", record);
    expect(new RevisionStore(dir).load("tunnel-1")).toEqual({ record });
    expect(new RevisionStore(dir).load("tunnel-2")).toEqual({});
    writeFileSync(join(dir, "tunnel-3.json"), "{");
    expect(new RevisionStore(dir).load("tunnel-3").problem).toBeDefined();
  });
});
