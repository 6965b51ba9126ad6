import { describe, expect, it } from "vitest";
import { byVariables, influxql, normalOnly } from "../../../dashboards/influxql.js";
import { expandInfluxQL } from "../../../dashboards/queries.js";

describe("InfluxQL builder", () => {
  it("writes an aggregate per interval and tag, filtered by the variables and the time range", () => {
    expect(
      influxql({
        select: [{ fn: "max", field: "ch4" }],
        from: "utility_tunnel",
        where: [...byVariables, normalOnly],
        perInterval: true,
        groupBy: ["site"],
      }),
    ).toBe(
      `SELECT MAX("ch4") AS "ch4" FROM "utility_tunnel" WHERE "district" =~ /^$district$/ AND ` +
        `"site" =~ /^$site$/ AND "device" =~ /^$device$/ AND "quality" = 'normal' AND $timeFilter ` +
        `GROUP BY time($__interval), "site" fill(null)`,
    );
  });

  it("writes an energy mean through a subquery with the float base 10.0 (data-model.md 7.3)", () => {
    expect(
      influxql({
        select: [{ energyMeanOf: "energy", as: "LAeq" }],
        from: { energyOf: "LAeq", measurement: "noise", where: [normalOnly], groupBy: ["zone"] },
        perInterval: true,
        groupBy: ["zone"],
        fill: "none",
      }),
    ).toBe(
      `SELECT 10 * LOG10(MEAN("energy")) AS "LAeq" FROM (SELECT POW(10.0, "LAeq" / 10.0) AS ` +
        `"energy" FROM "noise" WHERE "quality" = 'normal' GROUP BY "zone") WHERE $timeFilter ` +
        `GROUP BY time($__interval), "zone" fill(none)`,
    );
  });

  it("selects the newest point per device with its tag, and escapes string values", () => {
    expect(
      influxql({
        select: [{ column: "seq" }, { column: "quality" }],
        from: "dust",
        where: [{ tag: "district", equals: "O'Hare\\" }],
        groupBy: ["device"],
        newestOnly: true,
      }),
    ).toBe(
      `SELECT "seq", "quality" FROM "dust" WHERE "district" = 'O\\'Hare\\\\' AND $timeFilter ` +
        `GROUP BY "device" ORDER BY time DESC LIMIT 1`,
    );
  });
});

describe("expandInfluxQL (Grafana's macros for raw InfluxQL)", () => {
  const query = `SELECT MEAN("pm10") FROM "dust" WHERE "site" =~ /^$site$/ AND "device" =~ /^$device$/ AND $timeFilter GROUP BY time($__interval)`;

  it("expands the time filter in ms, the interval, one value, several values and All", () => {
    expect(
      expandInfluxQL(query, {
        fromMs: 1000,
        toMs: 2000,
        intervalMs: 60_000,
        variables: { site: { values: ["a.b", "c/d"] }, device: { all: ".*" } },
      }),
    ).toBe(
      `SELECT MEAN("pm10") FROM "dust" WHERE "site" =~ /^(a\\.b|c\\/d)$/ AND "device" =~ /^.*$/ ` +
        `AND time >= 1000ms and time <= 2000ms GROUP BY time(60000ms)`,
    );
  });

  it("refuses to leave a variable unexpanded", () => {
    expect(() =>
      expandInfluxQL(query, {
        fromMs: 0,
        toMs: 1,
        intervalMs: 1,
        variables: { site: { all: ".*" } },
      }),
    ).toThrow(/unexpanded \$device/);
  });
});
