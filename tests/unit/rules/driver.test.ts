import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { Device, Site } from "../../../contracts/index.js";
import { AlarmStore } from "../../../rules/alarm-store.js";
import {
  MAX_SAMPLES_PER_SERIES,
  RulesDriver,
  type RulesDriverDeps,
} from "../../../rules/driver.js";
import type { StoredReading } from "../../../contracts/model/stored-readings.js";
import { RuleSet } from "../../../rules/rule-set.js";
import type { AlarmNotice, TaskSink } from "../../../contracts/model/alarms.js";

const segment = Site.parse({
  id: "seg-1",
  type: "tunnel_segment",
  name: "Segment 1",
  area: { district: "d", gridCell: "g" },
  location: { lat: 30, lon: 104 },
  tunnel: "t1",
  compartment: "gas",
  neighbours: [],
});
const site = Site.parse({
  id: "s1",
  type: "ambient",
  name: "S1",
  area: { district: "d", gridCell: "g" },
  location: { lat: 30, lon: 104 },
});
const device = (id: string, kind: "noise" | "dust" | "utility_tunnel" = "noise") =>
  Device.parse({
    id,
    kind,
    model: "M",
    serial: id,
    siteId: kind === "utility_tunnel" ? "seg-1" : "s1",
    area: { district: "d", gridCell: "g" },
    location: { lat: 30, lon: 104 },
    expectedIntervalS: 60,
  });

/** The driver over the real pack, an in-memory alarm store and a sink that records notices. */
function setUp(devices: Device[], backfill?: RulesDriverDeps["backfill"]) {
  const rules = new RuleSet();
  expect(rules.reload()).toEqual([]);
  const notices: AlarmNotice[] = [];
  const sink: TaskSink = { handleAlarm: (n) => notices.push(n), onAcknowledged: () => () => {} };
  let now = Date.parse("2026-11-27T12:00:00Z");
  const registry = new Registry();
  const driver = new RulesDriver({
    log: pino({ level: "silent" }),
    rules,
    registry: { devices: () => devices, sites: () => [site, segment] },
    alarms: new AlarmStore(":memory:"),
    sink,
    region: "default",
    tickMs: 60_000,
    now: () => now,
    metricsRegistry: registry,
    ...(backfill === undefined ? {} : { backfill }),
  });
  return { driver, notices, registry, advance: (ms: number) => (now += ms), now: () => now };
}

const reading = (deviceId: string, timeMs: number, laeq: number): StoredReading => ({
  deviceId,
  kind: "noise",
  timeMs,
  quality: "normal",
  values: { LAeq: laeq },
  replay: false,
});

/** Twelve readings of tunnel monitor gas-1, 5 s apart from `start`, values by index. */
const gasBatch = (start: number, values: (i: number) => Record<string, number>): StoredReading[] =>
  Array.from({ length: 12 }, (_, i) => ({
    deviceId: "gas-1",
    kind: "utility_tunnel",
    timeMs: start + i * 5_000,
    quality: "normal",
    values: values(i),
    replay: false,
  }));

/** Twenty readings of n1 3 s apart, flagged normal except one fault in the middle. */
const faultInTheMiddle = (start: number): StoredReading[] =>
  Array.from({ length: 20 }, (_, i) => ({
    ...reading("n1", start + i * 3_000, 50),
    quality: i === 9 ? "fault" : "normal",
  }));

describe("rules driver", () => {
  it("bounds every series and counts what it drops", async () => {
    const { driver, registry, now } = setUp([device("n1")]);
    await driver.start();
    const start = now() - 3_600_000;
    const batch: StoredReading[] = [];
    // 1.5 bound's worth of readings 10 ms apart: all within any window, so only the bound cuts.
    const n = Math.floor(MAX_SAMPLES_PER_SERIES * 1.5);
    for (let i = 0; i < n; i++) batch.push(reading("n1", start + i * 10, 50));
    driver.onStored(batch);
    const dropped = (await registry.getSingleMetric("citywatch_rules_samples_dropped_total")?.get())
      ?.values[0]?.value;
    expect(dropped).toBe(n - MAX_SAMPLES_PER_SERIES);
    driver.stop();
  });

  it("keeps windows only for the quantities the device's own rules read", async () => {
    const { driver, registry, now } = setUp([
      device("d1", "dust"),
      device("gas-1", "utility_tunnel"),
    ]);
    await driver.start();
    const samples = async () =>
      (await registry.getSingleMetric("citywatch_rules_window_samples")?.get())?.values[0]?.value;
    const start = now() - 600_000;
    // A dust monitor at an ambient site: the pack's dust rules are for construction sites; only
    // the device rules (deadman, flags) apply, and they read no quantity. No window.
    driver.onStored(
      Array.from({ length: 100 }, (_, i) => ({
        ...reading("d1", start + i * 1_000, 0),
        kind: "dust" as const,
        values: { pm10: 80, tsp: 200 },
      })),
    );
    expect(driver.windowSamples()).toBe(0);
    expect(await samples()).toBe(0);
    // The tunnel monitor's segment rules read ch4 and o2 (latest values): the newest of each.
    driver.onStored(gasBatch(start, () => ({ ch4: 1, o2: 20.9, humidity: 50 })));
    expect(driver.windowSamples()).toBe(2);
    expect(await samples()).toBe(2);
    driver.stop();
  });

  it("reads its windows back from the store after a restart: the hour before counts", async () => {
    // A zone 1 area monitor (day limit 55 dB LAeq per clock hour). Before the restart it heard
    // 70 dB all through 19:00-20:00 Shanghai; after it, one quiet reading at 20:00:00 closes
    // that hour. Only the read-back hour can raise: the new reading alone is under the limit.
    const monitor = Device.parse({ ...device("n1"), zoneClass: "1" });
    const hourStart = Date.parse("2026-11-27T11:00:00Z");
    const stored = Array.from({ length: 60 }, (_, i) => reading("n1", hourStart + i * 60_000, 70));
    const asked: Array<[number, number]> = [];
    const { driver, notices, now } = setUp([monitor], (_device, fromMs, toMs) => {
      asked.push([fromMs, toMs]);
      return Promise.resolve(stored.filter((r) => r.timeMs >= fromMs && r.timeMs <= toMs));
    });
    await driver.start();
    driver.onStored([reading("n1", now(), 50)]);
    driver.stop();
    const raised = notices.filter((n) => n.rule.id === "noise.area.laeq");
    expect(asked.length).toBe(1);
    expect(asked[0]?.[0]).toBeLessThanOrEqual(hourStart);
    expect(raised.map((n) => n.decision.type)).toEqual(["raise"]);
    expect(raised[0]?.evidence?.readings.length).toBe(60);
    // The same without the read-back: an empty hour, nothing to judge.
    const cold = setUp([monitor], () => Promise.resolve([]));
    await cold.driver.start();
    cold.driver.onStored([reading("n1", cold.now(), 50)]);
    cold.driver.stop();
    expect(cold.notices.filter((n) => n.rule.id === "noise.area.laeq")).toEqual([]);
  });

  it("picks up a device registered after start at its first reading", async () => {
    const devices = [device("n1")];
    const { driver, registry, advance } = setUp(devices);
    await driver.start();
    devices.push(device("n2"));
    advance(2_000);
    const before = driver.evaluationCount;
    driver.onStored([reading("n2", Date.parse("2026-11-27T11:59:59Z"), 50)]);
    expect(driver.evaluationCount).toBeGreaterThan(before);
    const evaluations = (await registry.getSingleMetric("citywatch_rules_evaluations_total")?.get())
      ?.values[0]?.value;
    expect(evaluations).toBe(driver.evaluationCount);
    driver.stop();
  });

  it("judges data that runs behind real time on its own clock, not as silence", () => {
    const { driver, notices, advance } = setUp([device("n1")]);
    void driver.start();
    // A tick before any data: the device is watched from real now.
    driver.tick();
    // Last night's readings arrive now, one a minute for two hours, quickly.
    const night = Date.parse("2026-11-26T14:00:00Z"); // 22:00 Asia/Shanghai
    for (let i = 0; i < 120; i++) {
      advance(50);
      driver.onStored([reading("n1", night + i * 60_000, 45)]);
      if (i % 20 === 0) driver.tick();
    }
    // Eight hours behind real time, yet no deadman: the data clock runs with the data.
    expect(notices.filter((n) => n.rule.id === "device.deadman")).toEqual([]);
    driver.stop();
  });

  it("evaluates a latest-reading rule at every reading of a batch: a spike inside one raises", async () => {
    const { driver, notices, now } = setUp([device("gas-1", "utility_tunnel")]);
    await driver.start();
    const start = now() - 60_000;
    // 30 %LEL for one reading in the middle; the batch ends at 1 %LEL.
    const batch = gasBatch(start, (i) => ({ ch4: i === 6 ? 30 : 1, o2: 20.9 }));
    driver.onStored(batch);
    const ch4 = notices.filter((n) => n.rule.id === "tunnel.ch4");
    expect(ch4.map((n) => n.decision.type)).toContain("raise");
    expect(ch4[0]?.subjectId).toBe("seg-1");
    driver.stop();
  });

  it("saves an alarm's state only once its decisions were applied: a kill before decides again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cw-driver-handled-"));
    try {
      const file = join(dir, "alarms.db");
      const rules = new RuleSet();
      expect(rules.reload()).toEqual([]);
      const now = Date.parse("2026-11-27T12:00:00Z");
      /** A driver on alarms.db whose sink applies nothing until the test opens its gate. */
      const node = () => {
        const notices: AlarmNotice[] = [];
        let open: () => void = () => {};
        const applied = new Promise<void>((resolve) => (open = resolve));
        const alarms = new AlarmStore(file);
        const driver = new RulesDriver({
          log: pino({ level: "silent" }),
          rules,
          registry: { devices: () => [device("gas-1", "utility_tunnel")], sites: () => [segment] },
          alarms,
          sink: {
            handleAlarm: (n) => notices.push(n),
            handled: () => applied,
            onAcknowledged: () => () => {},
          },
          region: "default",
          tickMs: 60_000,
          now: () => now,
        });
        return { driver, alarms, notices, open };
      };
      const stored = () => new AlarmStore(file).all().filter((a) => a.ruleId === "tunnel.ch4");
      const batch = gasBatch(now - 60_000, () => ({ ch4: 22, o2: 20.9 }));

      // The first process raises; the task service has not applied the raise when it dies.
      const first = node();
      await first.driver.start();
      first.driver.onStored(batch);
      expect(
        first.notices.filter((n) => n.rule.id === "tunnel.ch4").map((n) => n.decision.type),
      ).toEqual(["raise"]);
      expect(stored()).toEqual([]);
      first.driver.stop();

      // The next one finds no raised state and raises again: the decision is not lost.
      const second = node();
      await second.driver.start();
      second.driver.onStored(batch);
      expect(
        second.notices.filter((n) => n.rule.id === "tunnel.ch4").map((n) => n.decision.type),
      ).toEqual(["raise"]);
      // Applied: the state is saved as it is then.
      second.open();
      await second.driver.saved();
      expect(stored().map((a) => a.state.phase)).toEqual(["active"]);
      second.driver.stop();
      first.alarms.close();
      second.alarms.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("evaluates a low-side rule at its lowest reading of a batch: an O2 dip inside one raises", async () => {
    const { driver, notices, now } = setUp([device("gas-1", "utility_tunnel")]);
    await driver.start();
    const start = now() - 60_000;
    // Readings without o2 (fewer quantities) must not crowd out the dip to 17 %vol.
    const batch = gasBatch(start, (i) =>
      i === 7 ? { ch4: 1, o2: 17 } : i % 2 === 0 ? { ch4: 1 } : { ch4: 1, o2: 20.9 },
    );
    driver.onStored(batch);
    const o2 = notices.filter((n) => n.rule.id === "tunnel.o2-low");
    expect(o2.map((n) => n.decision.type)).toContain("raise");
    driver.stop();
  });

  it("evaluates a quality rule where the flag changes inside a batch", async () => {
    const { driver, notices, now } = setUp([device("n1")]);
    await driver.start();
    const start = now() - 60_000;
    // Normal, then a fault flag for one reading in the middle, then normal again to the end.
    const batch = faultInTheMiddle(start);
    driver.onStored(batch);
    const flagged = notices.filter((n) => n.rule.id === "device.quality-flag");
    expect(flagged.map((n) => n.decision.type)).toEqual(["raise", "clear"]);
    driver.stop();
  });

  it("judges silence on the clock only: a batch's inner gap raises nothing, a tick does", async () => {
    const { driver, notices, now, advance } = setUp([device("n1")]);
    await driver.start();
    let t = now() - 3_000_000;
    driver.onStored([reading("n1", t, 50)]);
    // A minute apart (the expected interval), except one silence of ten minutes in the middle:
    // however the readings were batched, the ticks then saw data, not silence.
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      t += i === 10 ? 600_000 : 60_000;
      times.push(t);
    }
    driver.onStored(times.map((at) => reading("n1", at, 50)));
    const deadman = () => notices.filter((n) => n.rule.id === "device.deadman");
    expect(deadman()).toEqual([]);
    // Silent now: the tick past 3 expected intervals raises, the next reading clears.
    advance(3 * 60_000 + 1);
    driver.tick();
    expect(deadman().map((n) => n.decision.type)).toEqual(["raise"]);
    driver.onStored([reading("n1", times[19]! + 4 * 60_000, 50)]);
    expect(deadman().map((n) => n.decision.type)).toEqual(["raise", "clear"]);
    driver.stop();
  });

  it("judges the first reading of a device registered a moment after the last registry read", async () => {
    const devices = [device("n1")];
    const { driver, notices, now, advance } = setUp(devices);
    await driver.start();
    advance(100); // well within a second of the read at start
    devices.push(device("n2"));
    driver.onStored([{ ...reading("n2", now(), 50), quality: "fault" }]);
    expect(notices.map((n) => [n.rule.id, n.subjectId, n.decision.type])).toContainEqual([
      "device.quality-flag",
      "n2",
      "raise",
    ]);
    driver.stop();
  });

  it("raises no deadman when batches are stored out of order", async () => {
    // The pipeline stores up to three rounds at once: a device's later messages can be stored
    // before its earlier ones. The gap before the later batch is not silence.
    const { driver, notices, now } = setUp([device("n1")]);
    await driver.start();
    const minute = (i: number) => now() - 3_000_000 + i * 60_000;
    const batch = (from: number) =>
      Array.from({ length: 20 }, (_, i) => reading("n1", minute(from + i), 50));
    driver.onStored(batch(0));
    driver.onStored(batch(40)); // stored first
    driver.onStored(batch(20)); // the readings in between, a moment later
    expect(notices.filter((n) => n.rule.id === "device.deadman")).toEqual([]);
    driver.stop();
  });

  it("judges readings that arrive out of time order by each instant's own flag", async () => {
    const { driver, notices, now } = setUp([device("n1")]);
    await driver.start();
    const start = now() - 60_000;
    const batch = faultInTheMiddle(start);
    // The edge sent them newest first.
    driver.onStored(batch.reverse());
    const flagged = notices.filter((n) => n.rule.id === "device.quality-flag");
    expect(flagged.map((n) => n.decision.type)).toEqual(["raise", "clear"]);
    driver.stop();
  });
});
