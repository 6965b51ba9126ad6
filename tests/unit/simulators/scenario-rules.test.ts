import { describe, expect, it } from "vitest";
import type { Device, Rule, Site } from "../../../contracts/index.js";
import { ruleApplies } from "../../../rules/engine/conditions.js";
import { builtInScenarios, loadScenario } from "../../../simulators/scenario/load.js";
import { compileScenario, type Timeline } from "../../../simulators/scenario/compile.js";
import type { ExpectedTask } from "../../../simulators/scenario/schema.js";
import { Harness, PACK } from "../rules/engine/harness.js";

/*
 * Each built-in scenario, run through every rule of the default pack on the pure rule engine
 * (the same harness the pack's own tests use), raises exactly the tasks its `expect:` block
 * lists, and no others. The end-to-end tests check the same list against the running system's
 * tasks API; this test is what the scenarios were tuned with.
 */

/** 2026-11-27 12:00 Asia/Shanghai: every "HH:MM" start lands on the 26th or 27th. */
const NOW = Date.parse("2026-11-27T12:00:00+08:00");

interface Subject {
  id: string;
  site: Site | undefined;
  devices: Device[];
}

function subjectsOf(rule: Rule, timeline: Timeline): Subject[] {
  const sites = new Map(timeline.layout.sites.map((s) => [s.id as string, s]));
  const devices = timeline.layout.devices;
  const view = (d: Device) => ({ device: d, series: {} });
  if (rule.subject === "device") {
    return devices
      .filter((d) =>
        ruleApplies(rule, d.kind, view(d), { site: sites.get(d.siteId), devices: [view(d)] }),
      )
      .map((d) => ({ id: d.id, site: sites.get(d.siteId), devices: [d] }));
  }
  return timeline.layout.sites.flatMap((site) => {
    const mine = devices.filter(
      (d) =>
        d.siteId === site.id && ruleApplies(rule, d.kind, view(d), { site, devices: [view(d)] }),
    );
    return mine.length === 0 ? [] : [{ id: site.id, site, devices: mine }];
  });
}

/** The tasks the pack raises on a timeline: one per (rule, subject), at the highest level reached. */
export function raisedTasks(timeline: Timeline): ExpectedTask[] {
  const readings = timeline.devices.flatMap((d) =>
    [...d.messages()].flatMap((m) =>
      m.uplink.readings.map((r) => ({
        deviceId: d.device.id,
        at: Date.parse(r.ts),
        quality: r.quality,
        values: r.values as Record<string, number | boolean>,
      })),
    ),
  );
  readings.sort((a, b) => a.at - b.at);
  const tasks: ExpectedTask[] = [];
  for (const rule of PACK) {
    for (const subject of subjectsOf(rule, timeline)) {
      const h = new Harness(rule, {
        ...(subject.site !== undefined ? { site: subject.site } : {}),
        devices: subject.devices,
        start: timeline.startMs,
        tickMs: 60_000,
      });
      for (const r of readings) {
        if (h.devices.has(r.deviceId) && r.at <= timeline.endMs)
          h.reading(r.deviceId, r.at, r.values, { quality: r.quality });
      }
      h.tick(timeline.endMs);
      let best: { index: number; level: string | undefined } | undefined;
      for (const d of h.decisions) {
        if (d.type !== "raise" && d.type !== "escalate-level") continue;
        if (best === undefined || d.levelIndex > best.index)
          best = { index: d.levelIndex, level: d.level };
      }
      if (best !== undefined) {
        tasks.push({
          rule: rule.id,
          subject: subject.id,
          kind: rule.taskKind,
          ...(best.level !== undefined ? { level: best.level } : {}),
        });
      }
    }
  }
  return tasks;
}

const order = (tasks: readonly ExpectedTask[]) =>
  [...tasks].sort((a, b) => `${a.rule}/${a.subject}`.localeCompare(`${b.rule}/${b.subject}`));

describe("built-in scenarios against the default rule pack (pure engine)", () => {
  for (const name of builtInScenarios()) {
    it(`${name} raises exactly the tasks it documents`, () => {
      const timeline = compileScenario(loadScenario(name), { nowMs: NOW });
      expect(order(raisedTasks(timeline))).toEqual(order(timeline.expect.tasks));
    }, 120_000);
  }
});
