import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { TasksConfig } from "../../../contracts/config/tasks.js";
import { ComplaintRequest, ManualTaskRequest } from "../../../contracts/model/complaints.js";
import type { Task, TaskEvent } from "../../../contracts/model/tasks.js";
import {
  complaintRuleId,
  complaintTargets,
  corroboration,
  distanceM,
  energyMean,
  freshTimestamp,
  kindOfCategory,
  limitFor,
  nearbyDevices,
  nearestSite,
  validSignature,
} from "../../../tasks/complaints.js";
import { DEVICES, SITES } from "./fixtures.js";

const site = (id: string) => SITES.find((s) => s.id === id)!;

describe("complaint intake: the pure parts", () => {
  it("measures distance on the sphere (1° of latitude ≈ 111.2 km; same point 0)", () => {
    expect(distanceM({ lat: 31, lon: 121 }, { lat: 32, lon: 121 })).toBeCloseTo(111_195, -2);
    expect(distanceM({ lat: 31.23, lon: 121.5 }, { lat: 31.23, lon: 121.5 })).toBe(0);
  });

  it("takes the energy mean of levels, not their arithmetic mean", () => {
    expect(energyMean([60, 60])).toBeCloseTo(60, 10);
    // 50 and 70 dB: 10·log10((10^5 + 10^7)/2) = 67.03, not 60.
    expect(energyMean([50, 70])).toBeCloseTo(67.03, 2);
    expect(energyMean([])).toBeNull();
  });

  it("finds the nearest site by point, and by address with district when there is no point", () => {
    expect(nearestSite(SITES, { lat: 31.2401, lon: 121.5101 })?.site.id).toBe("cs-2");
    expect(nearestSite(SITES, { lat: 31.19, lon: 121.43 })?.site.id).toBe("cs-3");
    expect(
      nearestSite(SITES, { address: "next to Other builder, gate 2", district: "xuhui" })?.site.id,
    ).toBe("cs-3");
    // The name matches, the district does not.
    expect(
      nearestSite(SITES, { address: "next to Other builder", district: "pudong" }),
    ).toBeUndefined();
  });

  it("lists devices of the matching kind within the radius, nearest first", () => {
    const near = nearbyDevices(DEVICES, "noise", { lat: 31.2301, lon: 121.5001 }, 500);
    expect(near.map((d) => d.device.id).sort()).toEqual(["n-1", "n-2", "n-3"]);
    expect(nearbyDevices(DEVICES, "noise", { lat: 31.3, lon: 121.5 }, 500)).toEqual([]);
    expect(
      nearbyDevices(DEVICES, "utility_tunnel", { lat: 31.23, lon: 121.5 }, 500).map(
        (d) => d.device.id,
      ),
    ).toEqual(["g-1"]);
  });

  it("maps categories to task kinds and routable rule ids", () => {
    expect(kindOfCategory("noise")).toBe("enforcement");
    expect(kindOfCategory("cooking_fume")).toBe("enforcement");
    expect(kindOfCategory("water")).toBe("maintenance");
    expect(kindOfCategory("other")).toBe("environmental");
    expect(complaintRuleId("cooking_fume", "hotline-12345", "A-1")).toBe(
      "cooking-fume.complaint/hotline-12345/A-1",
    );
  });

  it("picks the limit and says where it comes from", () => {
    const night = "2026-12-05T23:10:00+08:00";
    const day = "2026-12-05T10:10:00+08:00";
    expect(
      limitFor({ category: "noise", site: site("cs-1"), receivedAt: night, linked: undefined }),
    ).toEqual({
      value: 55,
      quantity: "LAeq",
      source: "GB 12523-2011 construction site boundary limit, night",
    });
    expect(
      limitFor({ category: "noise", site: site("cs-1"), receivedAt: day, linked: undefined })
        ?.value,
    ).toBe(70);
    const linked = {
      id: "enf-000007",
      rule: { id: "noise.construction.laeq", version: 1, clause: { standard: "s", section: "x" } },
      limit: 52,
    } as Pick<Task, "id" | "rule" | "limit">;
    expect(
      limitFor({ category: "noise", site: site("cs-1"), receivedAt: night, linked })?.source,
    ).toBe("the limit of open case enf-000007 (noise.construction.laeq)");
    // A dust case's limit is never compared with noise readings.
    expect(
      limitFor({
        category: "noise",
        site: site("cs-1"),
        receivedAt: night,
        linked: { ...linked, rule: { ...linked.rule, id: "dust.pm10.default" } },
      })?.value,
    ).toBe(55);
    expect(
      limitFor({ category: "cooking_fume", site: undefined, receivedAt: day, linked: undefined }),
    ).toMatchObject({ value: 2, quantity: "oilFume" });
    expect(
      limitFor({ category: "dust", site: site("cs-1"), receivedAt: day, linked: undefined }),
    ).toBeNull();
  });

  it("summarises readings per device and states an exceedance against the limit", () => {
    const r = (ms: number, laeq: number, lamax: number, quality = "normal") => ({
      timeMs: ms,
      quality,
      values: { LAeq: laeq, LAmax: lamax },
    });
    const limit = { value: 55, quantity: "LAeq", source: "GB 12523-2011, night" };
    const c = corroboration({
      category: "noise",
      fromMs: 0,
      toMs: 60_000,
      radiusM: 500,
      located: true,
      limit,
      devices: [
        {
          deviceId: "n-1",
          siteId: "cs-1",
          distanceM: 12.4,
          // The faulty 99 dB reading is left out of the mean and the maximum.
          readings: [r(0, 50, 60), r(1, 70, 80), r(2, 99, 120, "fault")],
        },
        { deviceId: "n-2", siteId: "cs-2", distanceM: 300, readings: [] },
      ],
    });
    expect(c.devices[0]).toMatchObject({ readings: 2, mean: 67, max: 70, maxLAmax: 80 });
    expect(c.devices[1]).toMatchObject({ readings: 0, mean: null });
    expect(c.exceedance).toBe(true);
    expect(c.statement).toContain("compared with 55 (GB 12523-2011, night): exceeded at n-1");
    const quiet = corroboration({
      category: "noise",
      fromMs: 0,
      toMs: 1,
      radiusM: 500,
      located: true,
      limit,
      devices: [{ deviceId: "n-1", siteId: "cs-1", distanceM: 1, readings: [r(0, 50, 60)] }],
    });
    expect(quiet.exceedance).toBe(false);
    expect(quiet.statement).toContain("no device's mean exceeds it");
    const none = corroboration({
      category: "noise",
      fromMs: 0,
      toMs: 1,
      radiusM: 500,
      located: true,
      limit,
      devices: [],
    });
    expect(none.exceedance).toBeNull();
    expect(none.statement).toContain("no noise device within 500 m");
    const other = corroboration({
      category: "other",
      fromMs: 0,
      toMs: 1,
      radiusM: 500,
      located: true,
      limit: null,
      devices: [],
    });
    expect(other.statement).toContain("no sensor measures this category");
  });

  it("checks signatures in constant time and timestamps within the skew", () => {
    const sig = `sha256=${createHmac("sha256", "s".repeat(16)).update("100.{}").digest("hex")}`;
    expect(validSignature("s".repeat(16), "100", "{}", sig)).toBe(true);
    expect(validSignature("s".repeat(16), "101", "{}", sig)).toBe(false);
    expect(validSignature("t".repeat(16), "100", "{}", sig)).toBe(false);
    expect(validSignature("s".repeat(16), "100", "{}", "sha256=short")).toBe(false);
    expect(freshTimestamp("1000", 1_000_000 + 299_000, 300_000)).toBe(true);
    expect(freshTimestamp("1000", 1_000_000 + 301_000, 300_000)).toBe(false);
    expect(freshTimestamp("1e3", 1_000_000, 300_000)).toBe(false);
    expect(freshTimestamp("", 1_000_000, 300_000)).toBe(false);
  });

  it("validates a complaint naming every problem", () => {
    const bad = ComplaintRequest.safeParse({
      complaintId: "",
      receivedAt: "2026-12-05 23:10",
      category: "smell",
      text: "x".repeat(4_001),
      location: { lat: 31.2 },
      contact: { phone: "" },
    });
    expect(bad.success).toBe(false);
    const paths = bad.error!.issues.map((i) => i.path.join("."));
    for (const p of [
      "complaintId",
      "receivedAt",
      "category",
      "text",
      "location.lat",
      "contact.phone",
    ])
      expect(paths).toContain(p);
    expect(
      ComplaintRequest.safeParse({
        complaintId: "A-1",
        receivedAt: "2026-12-05T23:10:00+08:00",
        category: "water",
        text: "ponding in the underpass",
        location: { address: "Underpass 3" },
      }).success,
    ).toBe(true);
    const manual = ManualTaskRequest.safeParse({
      siteId: "cs-1",
      rule: {
        id: "noise.construction.laeq",
        clause: { standard: "GB 12523-2011", section: "4.1" },
      },
      observation: "both",
      note: "n",
      readings: [{ deviceId: "n-1", from: "2026-12-05T23:10:00Z", to: "2026-12-05T23:00:00Z" }],
    });
    expect(manual.success).toBe(false);
    expect(manual.error!.issues.map((i) => i.message)).toEqual(
      expect.arrayContaining([
        "name either a rule or an observation (exactly one)",
        "each readings range needs its to after its from",
      ]),
    );
  });

  it("configures platforms with secrets of 16 characters or more and unique names", () => {
    expect(TasksConfig.parse({}).complaints.platforms).toEqual([]);
    expect(
      TasksConfig.safeParse({ complaints: { platforms: [{ name: "p", secret: "short" }] } })
        .success,
    ).toBe(false);
    const twice = { name: "p", secret: "s".repeat(16) };
    expect(TasksConfig.safeParse({ complaints: { platforms: [twice, twice] } }).success).toBe(
      false,
    );
  });

  it("gives a platform's outbox target its own complaints' closing events only", () => {
    const [target] = complaintTargets(
      [
        { name: "hotline-12345", secret: "s".repeat(16), callbackUrl: "http://127.0.0.1:9/x" },
        { name: "hotline-12319", secret: "s".repeat(16) },
      ],
      { timeoutMs: 1_000, now: Date.now },
    );
    expect(target?.name).toBe("complaint:hotline-12345");
    const source = {
      type: "complaint" as const,
      platform: "hotline-12345",
      complaintId: "A-1",
      receivedAt: "2026-12-05T23:10:00+08:00",
      category: "noise" as const,
      text: "t",
      location: {},
      corroboration: {
        from: "",
        to: "",
        radiusM: 500,
        devices: [],
        limit: null,
        exceedance: null,
        statement: "",
      },
    };
    const event = (state: Task["state"], to: Task["state"] | undefined, src: Task["source"]) =>
      ({
        id: 1,
        type: "transition",
        at: "",
        task: { id: "enf-000001", state, source: src } as Task,
        entries: [
          { id: 1, taskId: "enf-000001", at: "", actor: "a", action: "transition", to, detail: "" },
        ],
      }) as TaskEvent;
    expect(target?.accepts?.(event("closed", "closed", source))).toBe(true);
    expect(target?.accepts?.(event("filed", undefined, source))).toBe(false);
    expect(
      target?.accepts?.(event("closed", "closed", { ...source, platform: "hotline-12319" })),
    ).toBe(false);
    expect(target?.accepts?.(event("closed", "closed", undefined))).toBe(false);
  });
});
