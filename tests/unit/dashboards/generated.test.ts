import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  GENERATED_DIR,
  buildDashboards,
  parseDashboard,
  queriesOf,
  staleDashboards,
  writeDashboards,
} from "../../../dashboards/index.js";
import { DashboardError, limitOf } from "../../../dashboards/limits.js";
import { dashboardInput } from "../../../cli/commands/dashboards.js";
import { registryPath } from "../../../cli/runtime/registry-file.js";
import { RegistryStore } from "../../../registry/store.js";

/** The same inputs as `citywatch dashboards build`: the default pack and the built-in city. */
const input = dashboardInput();
const boards = readdirSync(GENERATED_DIR)
  .filter((f) => f.endsWith(".json") && f !== "citywatch-devices.json")
  .map((f) => parseDashboard(readFileSync(join(GENERATED_DIR, f), "utf8")));

describe("generated dashboards", () => {
  it("the committed JSON is what a fresh build writes (run `citywatch dashboards build`)", () => {
    expect(staleDashboards(buildDashboards(input))).toEqual([]);
  });

  it("has the five dashboards, with unique uids and unique panel ids per dashboard", () => {
    expect(boards.map((b) => b.uid).sort()).toEqual([
      "citywatch-city-overview",
      "citywatch-environment",
      "citywatch-fleet-health",
      "citywatch-flood",
      "citywatch-utility-tunnel",
    ]);
    for (const b of boards) {
      const ids = b.panels.map((p) => p.id);
      expect(new Set(ids).size, b.uid).toBe(ids.length);
    }
  });

  it("keeps every panel inside the 24-column grid, without overlaps", () => {
    for (const b of boards) {
      const cells = new Set<string>();
      for (const p of b.panels) {
        const { x, y, w, h } = p.gridPos;
        expect(x >= 0 && w > 0 && x + w <= 24 && h > 0, `${b.uid} ${p.title}`).toBe(true);
        for (let i = x; i < x + w; i++)
          for (let j = y; j < y + h; j++) {
            expect(cells.has(`${i},${j}`), `${b.uid} ${p.title} overlaps at ${i},${j}`).toBe(false);
            cells.add(`${i},${j}`);
          }
      }
    }
  });

  it("shows the legend of every panel that has one, and gives every panel a query", () => {
    for (const b of boards)
      for (const p of b.panels) {
        if (p.options?.legend !== undefined)
          expect(p.options.legend.showLegend, p.title).toBe(true);
        expect(queriesOf(b).filter((q) => q.panel === p).length, p.title).toBeGreaterThan(0);
      }
    const withLegend = boards.flatMap((b) => b.panels).filter((p) => p.type === "timeseries");
    expect(withLegend.every((p) => p.options?.legend?.showLegend === true)).toBe(true);
  });

  it("carries the district, site and device variables on every dashboard", () => {
    for (const b of boards)
      expect(
        b.templating.list.map((v) => v.name),
        b.uid,
      ).toEqual(["district", "site", "device"]);
  });

  it("draws the tunnel bands from the rule pack and cites the rule", () => {
    const tunnel = boards.find((b) => b.uid === "citywatch-utility-tunnel");
    const ch4 = tunnel?.panels.find((p) => p.title.startsWith("Methane"));
    const steps = (ch4 as { fieldConfig?: { defaults?: { thresholds?: { steps: unknown[] } } } })
      ?.fieldConfig?.defaults?.thresholds?.steps;
    expect(steps).toEqual([
      { value: null, color: "green" },
      { value: 20, color: "orange" },
      { value: 25, color: "red" },
    ]);
    expect(ch4?.["description"]).toMatch(/rule tunnel\.ch4: GB 50838-2015/);
  });

  it("moves a line when the rule moves, and refuses a limit no rule holds", () => {
    const moved = input.rules.map((r) =>
      r.id === "tunnel.sump" ? { ...r, limits: { rows: [], default: { level: 35 } } } : r,
    );
    expect(limitOf(moved, "tunnel.sump", "level").value).toBe(35);
    expect(staleDashboards(buildDashboards({ ...input, rules: moved }))).toEqual([
      "citywatch-utility-tunnel.json is stale",
    ]);
    expect(() => limitOf(input.rules, "tunnel.ch4", "nope")).toThrow(DashboardError);
    expect(() => limitOf(input.rules, "noise.area.laeq", "day", { zoneClass: "9" as "0" })).toThrow(
      /no limit day for \{"zoneClass":"9"\}/,
    );
  });

  it("names a missing, a stale and a left-over file in another directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-dash-"));
    try {
      const files = buildDashboards(input);
      writeDashboards(files, dir);
      expect(staleDashboards(files, dir)).toEqual([]);
      rmSync(join(dir, "citywatch-flood.json"));
      writeFileSync(join(dir, "citywatch-devices.json"), "[]\n");
      writeFileSync(join(dir, "hand-made.json"), "{}\n");
      expect(staleDashboards(files, dir).sort()).toEqual([
        "citywatch-devices.json is stale",
        "citywatch-flood.json is missing",
        "hand-made.json is not generated",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("draws river levels and device positions from a running system's registry (--data-dir)", () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-dash-reg-"));
    const registry = new RegistryStore(registryPath(dir));
    try {
      const area = { district: "Qingyang", street: "Wenhua", gridCell: "QY-WH-001" };
      registry.putSite({
        id: "fu-river",
        type: "river_station",
        name: "Fu River gauge",
        area,
        location: { lat: 30.67, lon: 104.05 },
        levels: { warning: 3.2, guaranteed: 4.1, historicalMax: 4.9 },
      });
      registry.addDevice({
        id: "fu-gauge",
        kind: "water_level",
        model: "RLS-20",
        serial: "QY-1",
        location: { lat: 30.671, lon: 104.051 },
        area,
        siteId: "fu-river",
      });
    } finally {
      registry.close();
    }
    try {
      const files = buildDashboards(dashboardInput({ dataDir: dir }));
      const flood = parseDashboard(files.get("citywatch-flood.json") ?? "");
      const overrides = JSON.stringify(flood.panels[0]?.["fieldConfig"]);
      expect(overrides).toContain('"options":"fu-river"');
      expect(overrides).toContain('{"value":3.2,"color":"yellow"}');
      expect(overrides).not.toContain("dm-river");
      expect(JSON.parse(files.get("citywatch-devices.json") ?? "")).toEqual([
        {
          key: "fu-gauge",
          latitude: 30.671,
          longitude: 104.051,
          name: "fu-gauge (water_level, fu-river)",
        },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("places every device of the built-in city in the gazetteer", () => {
    const gazetteer = JSON.parse(
      readFileSync(join(GENERATED_DIR, "citywatch-devices.json"), "utf8"),
    ) as Array<{ key: string; latitude: number; longitude: number }>;
    expect(gazetteer.map((g) => g.key).sort()).toEqual(input.devices.map((d) => d.id).sort());
  });
});
