import { describe, expect, it } from "vitest";
import { routeTask } from "../../../tasks/routing.js";
import { registry, tasksConfig } from "./fixtures.js";

const config = tasksConfig();
const route = (
  kind: "enforcement" | "emergency" | "maintenance",
  ruleId: string,
  siteId?: string,
) =>
  routeTask(config, {
    kind,
    ruleId,
    site: siteId === undefined ? undefined : registry.site(siteId),
  });

describe("routeTask", () => {
  it("takes the first matching responsibility line and the grid team of the site's cell", () => {
    expect(route("enforcement", "noise.construction.laeq", "cs-1")).toEqual({
      department: "pudong-enforcement-brigade",
      team: "Pudong grid team 17",
      district: "pudong",
      gridCell: "pd-017",
      rule: 1,
    });
  });

  it("matches by district: the same rule in another district goes to the next line", () => {
    expect(route("enforcement", "noise.construction.laeq", "cs-3")).toMatchObject({
      department: "city-enforcement-brigade",
      team: "grid xh-002",
      district: "xuhui",
      rule: 2,
    });
  });

  it("matches by kind, rule prefix and site type; a line's own team wins over the grid team", () => {
    expect(route("emergency", "tunnel.ch4", "ts-2")).toMatchObject({
      department: "emergency-management-bureau",
      rule: 0,
    });
    expect(route("maintenance", "device.deadman", "ts-1")).toMatchObject({
      department: "tunnel-operations",
      team: "tunnel maintenance crew",
      rule: 3,
    });
  });

  it("falls back to the default department; a district- or site-type-bound line never matches a task without a site", () => {
    expect(route("maintenance", "device.deadman", "cs-1")).toMatchObject({
      department: "urban-management-command-centre",
      team: "Pudong grid team 17",
      rule: null,
    });
    expect(route("enforcement", "dust.pm10.default")).toEqual({
      department: "city-enforcement-brigade",
      team: "city-enforcement-brigade",
      rule: 2,
    });
  });
});
